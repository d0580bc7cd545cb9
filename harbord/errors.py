"""The error tree of harbord.

::

    HarbordError
    ├── ConfigError          startup refuses to run, prints the offending key
    ├── CatalogError         the SQLite catalog or job table cannot be used
    │   ├── CatalogDamagedError  quick_check failed, or the file is not a database
    │   ├── CatalogMismatchError the catalog is not the library's (empty beside stored objects)
    │   └── UnknownItemError     no item has the id asked for
    ├── CapabilityError      a capability's own service failed (not tied to one job)
    │   ├── VectorError      the vector store or its id map is unusable (search)
    │   │   └── SpaceBusyError another process holds the embedding space's writer lock
    │   ├── IndexInvalid     a saved ANN index is missing, corrupt or stale: rebuild it
    │   ├── NoVectorError    the item asked for has no vector in the space (search --like)
    │   ├── EmbeddingError   the embedding backend cannot load or run
    │   └── ProviderError    a metadata provider could not answer (enrich)
    │       ├── NotFound     it has nothing for the request: an answer, cached
    │       ├── BadKey       the API key is missing or refused: the provider is paused
    │       ├── RateLimited  429 / limit reached (retry_after seconds) -> later
    │       └── Unavailable  network error, timeout, 5xx -> later
    ├── MediaError           a file is not usable media: empty, no track, no image (probe)
    └── HandlerError(handler, job_id)
        ├── RetryableError   network down, 429/5xx, disk full, file busy, database busy -> backoff
        │   └── FileReplacedError another file now has the job's name -> retry from the first stage
        └── PermanentError   corrupt media, unreadable file -> job failed, file left where it was
    Skip(Exception)          not a failure: duplicate, ignored file type

Each step translates library exceptions at its own boundary with :func:`translate`, in the way
of httpx's ``map_exceptions``::

    with translate({**DATABASE_BUSY, Refused: PermanentError, OSError: os_error}):
        facts = await offload.io(read, job.path)

A key is an exception class; its value is either a HarbordError subclass, raised with the
original message, or a callable ``(err) -> BaseException`` returning the error to raise (it
may return ``err`` itself to let it pass). The most specific key on the exception's MRO wins,
whatever the mapping's order; every translated error is raised ``from err``. Skip,
HandlerError and unmatched exceptions pass untouched. :data:`DATABASE_BUSY` is the standard
entry for SQLite's busy/locked errors (RetryableError). Any other exception escaping a handler
fails the job with its traceback logged (:func:`harbord.chain.run_stage`, which also turns a
busy database into a RetryableError, as the last line of defence); the worker lives on.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from harbord.txn import is_busy

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


class UnknownItemError(CatalogError):
    """No catalog item has the id (or hash, or path) asked for."""


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


class NoVectorError(CapabilityError):
    """The item asked for (``search --like``) has no vector in the embedding space: unknown,
    or not embedded (yet)."""


class EmbeddingError(CapabilityError):
    """The embedding backend cannot be loaded or fails on an input."""


class ProviderError(CapabilityError):
    """A metadata provider could not answer; ``provider`` names it (``"tmdb"``, ``"omdb"``,
    ``"musicbrainz"``)."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class NotFound(ProviderError):  # noqa: N818 - an answer, not a failure
    """The provider answered that it has nothing for the request (cached as ``not_found``)."""


class BadKey(ProviderError):  # noqa: N818 - reads as the state of the key
    """The API key is missing, invalid or revoked (TMDb 401 ``status_code`` 7, OMDb 401
    "Invalid API key!"); the provider is paused until the config changes."""


class RateLimited(ProviderError):  # noqa: N818 - reads as a state
    """429 (or OMDb's "Request limit reached!"); ``retry_after`` is seconds to wait (the
    ``Retry-After`` header when sent), or None."""

    def __init__(self, provider: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(provider, message)
        self.retry_after = retry_after


class Unavailable(ProviderError):  # noqa: N818 - reads as a state
    """Network error, timeout, or a 5xx: try again later."""


class MediaError(HarbordError):
    """A file's content is not usable media (:func:`handlers.files.probe.probe_file`): empty,
    not a regular file, no audio/video track or image data, or MediaInfo cannot open it; the
    message says which. Raised in the CPU pool (it pickles: one message argument); the probe
    step turns it into a PermanentError, ``rebuild-catalog`` into an item's probe error."""


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


Translation: TypeAlias = "type[HarbordError] | Callable[[Any], BaseException]"
"""What :func:`translate` turns a matched exception into: a HarbordError subclass (built from
the exception's message) or a callable given the exception (``(err) -> error to raise``)."""
Translations: TypeAlias = "Mapping[type[BaseException], Translation]"


@contextlib.contextmanager
def translate(mapping: Translations) -> Iterator[None]:
    """Translate exceptions raised in the ``with`` block per ``mapping`` (see the module
    docstring).

    The exception's class and its bases are looked up in ``__mro__`` order: the most specific
    key wins, whatever the mapping's order. A HarbordError subclass value is raised as
    ``value(str(err)) from err``; a callable value as ``value(err) from err``, or, when it
    returns ``err`` itself, the exception is re-raised untouched. Skip, HandlerError (already
    the chain's language), exceptions no key matches and BaseExceptions that are not Exceptions
    (cancellation, KeyboardInterrupt) pass through untouched.

    Raises the translated error; whatever the block raised otherwise.
    """
    try:
        yield
    except (Skip, HandlerError):
        raise
    except Exception as err:
        target = next((mapping[cls] for cls in type(err).__mro__ if cls in mapping), None)
        if target is None:
            raise
        if isinstance(target, type):  # a HarbordError subclass
            raise target(str(err)) from err
        replaced = target(err)
        if replaced is err:
            raise
        raise replaced from err


def _busy(err: sqlite3.OperationalError) -> BaseException:
    """A busy/locked database -> RetryableError("database: ..."); any other OperationalError
    passes untouched."""
    return RetryableError(f"database: {err}") if is_busy(err) else err


DATABASE_BUSY: Translations = {sqlite3.OperationalError: _busy}
"""The standard entry for a step whose block writes or reads SQLite: "database is locked" /
"database is busy" (another process holds the lock past the busy timeout; also
:class:`harbord.groupdb.DatabaseBusy`) becomes a RetryableError; merge it in:
``translate({**DATABASE_BUSY, ...})``."""
