"""OSError -> the chain's errors, for the files capability's steps: ``with
translate(file_errors()):`` (:func:`harbord.errors.translate`) around a step's file I/O."""

from __future__ import annotations

import errno

from harbord.errors import HandlerError, PermanentError, RetryableError, Translations
from harbord.fsio import Refused

TRANSIENT = frozenset({
    errno.EAGAIN, errno.EBUSY, errno.ETXTBSY, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE,
    errno.ENOLCK, errno.EMFILE, errno.ENFILE, errno.ENOMEM,
})
"""errno values that retrying later can fix (busy, locked, out of descriptors, stale NFS...)."""
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def os_error(err: OSError, doing: str = "cannot read", missing: str = "file disappeared") -> HandlerError:
    """Translate an OSError into the error the chain understands (for ``raise ... from err``).

    Missing file -> PermanentError(``missing``); permission -> PermanentError("<doing>:
    permission denied"); ENOSPC/EDQUOT -> RetryableError("disk full ..."); EFBIG ->
    PermanentError("... file too large ..."); EAGAIN, EBUSY and the
    other :data:`TRANSIENT` errnos -> RetryableError; anything else -> PermanentError with the
    system's strerror.
    """
    reason = err.strerror or str(err)
    if isinstance(err, FileNotFoundError):
        return PermanentError(missing)
    if isinstance(err, PermissionError):
        return PermanentError(f"{doing}: permission denied")
    if isinstance(err, IsADirectoryError):
        return PermanentError("not a regular file (a directory)")
    if err.errno in DISK_FULL:
        return RetryableError(f"disk full: {reason}")
    if err.errno == errno.EFBIG:  # RLIMIT_FSIZE, or past the file system's largest file
        return PermanentError(f"{doing}: file too large for the file system or the process limit")
    if err.errno in TRANSIENT:
        return RetryableError(f"{doing}: {reason} (transient)")
    return PermanentError(f"{doing}: {reason}")


def file_errors(doing: str = "cannot read", missing: str = "file disappeared") -> Translations:
    """The :func:`harbord.errors.translate` mapping of a step's file I/O: OSError ->
    :func:`os_error` (``doing``, ``missing``); Refused (outside the watched folders, not a regular
    file) -> PermanentError with its reason."""
    return {OSError: lambda err: os_error(err, doing, missing), Refused: PermanentError}
