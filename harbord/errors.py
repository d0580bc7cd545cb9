"""The error tree of harbord.

::

    HarbordError
    ├── ConfigError          startup refuses to run, prints the offending key
    ├── CatalogError         the SQLite catalog or job table cannot be used
    │   ├── CatalogDamagedError  quick_check failed, or the file is not a database
    │   └── CatalogMismatchError the catalog is not the library's (empty beside stored objects)
    ├── CapabilityError      a capability's own service failed (not tied to one job)
    │   ├── VectorError      the vector store or its id map is unusable (search)
    │   │   └── SpaceBusyError another process holds the embedding space's writer lock
    │   ├── IndexInvalid     a saved ANN index is missing, corrupt or stale: rebuild it
    │   └── EmbeddingError   the embedding backend cannot load or run
    └── HandlerError(handler, job_id)
        ├── RetryableError   network down, 429/5xx, disk full, file busy, database busy -> backoff
        │   └── FileReplacedError another file now has the job's name -> retry from the first stage
        └── PermanentError   corrupt media, unreadable file -> job failed, file left where it was
    Skip(Exception)          not a failure: duplicate, ignored file type

Handlers translate library exceptions at their own boundary (``raise PermanentError(...) from
err``). Any other exception escaping a handler fails the job with its traceback logged; the
worker lives on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harbord.job import Job


class HarbordError(Exception):
    """Base of every error harbord raises on purpose."""


class ConfigError(HarbordError):
    """The configuration is invalid; ``key`` names the offending dotted key when known."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class CatalogError(HarbordError):
    """The catalog database cannot be opened, migrated or written."""


class CatalogDamagedError(CatalogError):
    """The catalog file is damaged (``PRAGMA quick_check`` failed, or it is not a database);
    the message names the recovery (``harbord rebuild-catalog``)."""


class CatalogMismatchError(CatalogError):
    """The catalog is missing or empty while the library holds objects: it is not this
    library's catalog, and using it would forget the library."""


class CapabilityError(HarbordError):
    """A capability's own service failed (its store, index, model), not one job's input; the
    step that meets it translates it into a RetryableError or PermanentError."""


class VectorError(CapabilityError):
    """The vector store or its id map cannot be used (corrupt file, bad id, dimension mismatch)."""


class SpaceBusyError(VectorError):
    """Another process holds the embedding space's writer lock (``<space>/writer.lock``)."""


class IndexInvalid(CapabilityError):  # noqa: N818 - reads as a state: "the index is invalid"
    """A saved ANN index is missing, corrupt or does not match the vector store (other model
    or dimension); ``reason`` says which. Rebuild it (``harbord reindex``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EmbeddingError(CapabilityError):
    """The embedding backend cannot be loaded or fails on an input."""


class HandlerError(HarbordError):
    """A handler could not process a job.

    ``handler`` and ``job_id`` are filled in by the chain runner when the handler did not
    set them; ``path`` names the file the job is about.
    """

    def __init__(
        self,
        message: str,
        *,
        handler: str | None = None,
        job_id: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.handler = handler
        self.job_id = job_id
        self.path = path

    def __str__(self) -> str:
        where = f"{self.handler}: " if self.handler else ""
        what = f"{self.path}: " if self.path else ""
        return f"{where}{what}{self.message}"


class RetryableError(HandlerError):
    """A transient failure (network, 429/5xx, disk full, file busy); the job is retried later."""


class FileReplacedError(RetryableError):
    """The file under the job's path is not the one its earlier stages read (another inode, or
    another size/mtime): retried from the first stage, so everything is learnt from the new file."""


class PermanentError(HandlerError):
    """A failure that retrying cannot fix (corrupt media, unreadable file); the job fails at once."""


class Skip(Exception):  # noqa: N818 - the design names it Skip: it is an outcome, not an error
    """Not a failure: the job ends early with ``outcome`` (``"duplicate"`` or ``"ignored"``).

    ``job`` is the job as it stood when the handler decided to stop, so that what it learnt
    (hash, item id) is kept.
    """

    def __init__(self, outcome: str, reason: str, job: Job | None = None) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.job = job
