"""checksum: the BLAKE3 content hash that names a file's object in the library
(:mod:`handlers.files.hashing`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from handlers.files.hashing import hash_file, unchanged
from handlers.files.oserrors import file_errors
from harbord import offload
from harbord.errors import RetryableError, translate
from harbord.fsio import job_roots
from harbord.job import Job

if TYPE_CHECKING:  # annotations only: keeps pydantic/sqlite-utils/numpy out of the CPU pool's workers
    from harbord.context import Context


class Checksum:
    """Chain step ``checksum``: sets ``job.file_hash`` (BLAKE3 hex, 64 chars).

    Raises RetryableError("file changed while hashing") if the size or mtime differ from settle
    time or change during the read; PermanentError if the file vanished or cannot be read.
    Always re-hashes (also when ``file_hash`` is set), so a re-run after a crash is correct.
    """

    name: ClassVar[str] = "checksum"

    @classmethod
    def from_context(cls, ctx: Context) -> Checksum:
        """Checksum needs nothing from the context."""
        return cls()

    async def handle(self, job: Job) -> Job:
        """Hash ``job.path``; see the class docstring."""
        with translate(file_errors()):
            facts = await offload.small_io(job.size, hash_file, job.path,
                                           job_roots(job.watch_root, job.path) if job.watch_root else [])
        before, after = facts["before"], facts["after"]
        if before != after or facts["read"] != after[0] or not unchanged(job, *after):
            raise RetryableError("file changed while hashing (size or mtime differ from settle time)")
        return dataclasses.replace(job, file_hash=facts["hash"], file_id=facts["file_id"])
