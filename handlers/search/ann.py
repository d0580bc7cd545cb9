"""hnswlib approximate nearest-neighbour index of one embedding space, saved atomically.

On disk, in the space's folder (``<paths.state>/vectors/<space>/``):

- ``index.json``: the commit record: which index file is current (``file``), its BLAKE3
  (``blake3``) and size (``bytes``), ``dim``, ``m``, ``ef_construction``, element ``count``
  (including deleted), the ``deleted`` labels, ``applied_seq`` (every ``vectors`` row with
  ``seq <= applied_seq`` is in this index) and ``store_rows`` at save time.
- ``index.<generation>.bin``: the hnswlib graph (``Index.save_index``).

A save writes a new ``.bin`` (fsync), then the new ``index.json`` through a temp file, fsync
and ``rename`` (the commit point), then removes older ``.bin`` files. A crash at any point
leaves the previous commit record and its file intact, so a load never sees a half-written
index; a record that does not match its file (size, BLAKE3, element count) is reported as
:class:`IndexInvalid` and the caller rebuilds from the vector store.

Parameters (hnswlib's ALGO_PARAMS.md): ``M`` is the number of bi-directional links per
element (memory ~ ``M * 2 * 4`` bytes per element per layer; 12-48 suits 384-1024-d
embeddings); ``ef_construction`` is the candidate list size while building (higher = better
graph, slower build); ``ef`` is the candidate list size at query time and must be >= k
(higher = better recall, slower query). The ``cosine`` space stores normalised vectors and
returns ``1 - cos`` distances.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import hnswlib
import numpy as np
from numpy.typing import NDArray

from harbord.errors import IndexInvalid
from harbord.fsio import fsync_path, locked, write_atomic

if TYPE_CHECKING:
    from handlers.search.config import IndexConfig

META = "index.json"
SAVE_LOCK = "save.lock"
FORMAT = 1


@dataclass(frozen=True)
class AnnParams:
    """hnswlib parameters: ``m`` links per node, ``ef_construction`` and ``ef_search``
    candidate-list sizes (see the module docstring)."""

    m: int = 16
    ef_construction: int = 200
    ef_search: int = 64


def ann_params(index: IndexConfig) -> AnnParams:
    """The parameters of the ``[index]`` config section."""
    return AnnParams(index.m, index.ef_construction, index.ef_search)


def file_blake3(path: Path) -> str:
    """BLAKE3 hex digest of a file's bytes."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(str(path))
    return str(hasher.hexdigest())


@contextlib.contextmanager
def save_lock(directory: Path) -> Iterator[None]:
    """Hold the space's save lock (an flock, waited for) while committing or cleaning index
    files."""
    directory.mkdir(parents=True, exist_ok=True)
    with locked(directory / SAVE_LOCK):
        yield


def read_meta(directory: Path) -> dict[str, Any] | None:
    """The current commit record of ``directory``, or None when there is none (or unreadable)."""
    try:
        data = json.loads((directory / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class AnnIndex:
    """An hnswlib index over unit float32 vectors whose labels are vector ids (store rows).

    Not thread-safe on its own: the owner (:class:`handlers.search.vectors.VectorSpace`) serialises
    writes; concurrent ``query`` calls on a read-only index are fine.
    """

    def __init__(self, dim: int, params: AnnParams, capacity: int = 1024) -> None:
        self.dim = dim
        self.params = params
        self.index = hnswlib.Index(space="cosine", dim=dim)
        self.index.init_index(
            max_elements=max(capacity, 16),
            ef_construction=params.ef_construction,
            M=params.m,
            allow_replace_deleted=True,
        )
        self.index.set_ef(params.ef_search)
        self.deleted: set[int] = set()
        self.generation = 0

    # size ----------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Elements in the graph, deleted ones included."""
        return int(self.index.get_current_count())

    @property
    def live_count(self) -> int:
        """Elements a query can return."""
        return self.count - len(self.deleted)

    def labels(self) -> set[int]:
        """Every label in the graph (deleted ones included)."""
        return {int(x) for x in self.index.get_ids_list()}

    def _reserve(self, extra: int) -> None:
        """Grow capacity (``resize_index``) so ``extra`` more elements fit; doubles at least."""
        need = self.count + extra
        capacity = int(self.index.get_max_elements())
        if need > capacity:
            self.index.resize_index(max(need, capacity * 2))

    # writes --------------------------------------------------------------------------------
    def add(self, vectors: NDArray[np.float32], ids: Sequence[int] | NDArray[np.int64]) -> None:
        """Add ``vectors`` (``(n, dim)`` float32) under labels ``ids`` (n ints).

        Re-adding a live label updates its vector; deleted slots are reused
        (``replace_deleted``). Capacity grows as needed without a stop.
        """
        ids_array = np.asarray(ids, dtype=np.int64)
        if len(ids_array) == 0:
            return
        if vectors.shape != (len(ids_array), self.dim):
            raise ValueError(
                f"vectors shape {vectors.shape} does not match {len(ids_array)} ids x {self.dim}")
        revived = self.deleted.intersection(int(i) for i in ids_array)
        for label in revived:
            self.index.unmark_deleted(label)
            self.deleted.discard(label)
        self._reserve(len(ids_array))
        self.index.add_items(vectors, ids_array, replace_deleted=bool(self.deleted))
        if self.deleted:  # a reused slot drops its old (deleted) label from the graph
            self.deleted &= self.labels()

    def mark_deleted(self, ids: Sequence[int]) -> int:
        """Hide labels from queries; unknown or already deleted labels are ignored.

        Returns how many labels were newly deleted.
        """
        done = 0
        for label in ids:
            label = int(label)
            if label in self.deleted:
                continue
            try:
                self.index.mark_deleted(label)
            except RuntimeError:  # "Label not found" / "already deleted"
                continue
            self.deleted.add(label)
            done += 1
        return done

    # reads ---------------------------------------------------------------------------------
    def query(self, vector: NDArray[np.float32], k: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The ``k`` nearest live labels to ``vector`` (``(dim,)`` float32, unit norm).

        Returns ``(ids, similarities)``: int64 ``(m,)`` and float32 cosine similarities
        ``(m,)``, best first, ``m = min(k, live_count)``. Sets ``ef`` to at least ``k``.
        """
        k = min(k, self.live_count)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        ef = max(self.params.ef_search, k)
        while True:
            self.index.set_ef(ef)
            try:
                labels, dists = self.index.knn_query(vector.reshape(1, -1), k=k)
                break
            except RuntimeError:
                # hnswlib could not fill k slots (a graph with many deleted elements):
                # widen the search, then ask for fewer.
                if ef < 4 * k:
                    ef = 4 * k
                elif k > 1:
                    k //= 2
                else:
                    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        self.index.set_ef(self.params.ef_search)
        return labels[0].astype(np.int64), (1.0 - dists[0]).astype(np.float32)

    # persistence ---------------------------------------------------------------------------
    def save(self, directory: Path, extra: dict[str, Any]) -> dict[str, Any]:
        """Commit this index to ``directory`` atomically (see the module docstring).

        ``extra`` is merged into the commit record (``space``, ``model_id``, ``applied_seq``,
        ``store_rows`` ...). Returns the record written. Raises OSError (disk full ...): the
        previous commit then stays current.
        """
        directory.mkdir(parents=True, exist_ok=True)
        with save_lock(directory):
            old = read_meta(directory) or {}
            generation = max(int(old.get("generation", 0)), self.generation) + 1
            name = f"index.{generation:06d}.bin"
            tmp = directory / f"{name}.{os.getpid()}.tmp"
            self.index.save_index(str(tmp))
            fsync_path(tmp)
            os.replace(tmp, directory / name)  # (the folder is fsynced with index.json's rename)
            meta = {
                "format": FORMAT,
                **extra,
                "generation": generation,
                "file": name,
                "bytes": (directory / name).stat().st_size,
                "blake3": file_blake3(directory / name),
                "dim": self.dim,
                "m": self.params.m,
                "ef_construction": self.params.ef_construction,
                "count": self.count,
                "max_elements": int(self.index.get_max_elements()),
                "deleted": sorted(self.deleted),
                "saved_at": time.time(),
            }
            write_atomic(directory / META, json.dumps(meta, sort_keys=True).encode())
            self.generation = generation
            for stale in directory.glob("index.*.bin*"):
                if stale.name != name:
                    with contextlib.suppress(OSError):
                        stale.unlink()
        return meta

    @classmethod
    def load(
        cls, directory: Path, dim: int, params: AnnParams, *, verify: bool = True
    ) -> tuple[AnnIndex, dict[str, Any]]:
        """Load the committed index of ``directory``; returns ``(index, commit record)``.

        With ``verify`` the file's size and BLAKE3 are checked against the record. Raises
        IndexInvalid when there is no index, it was built for another dimension or format, or
        it does not match its record (size, hash, element count) or cannot be parsed.
        """
        for _attempt in range(3):  # a concurrent save may remove the file we were about to read
            meta = read_meta(directory)
            if meta is None:
                raise IndexInvalid("missing: no index.json")
            if meta.get("format") != FORMAT:
                raise IndexInvalid(f"stale: index format {meta.get('format')!r}")
            if int(meta.get("dim", -1)) != dim:
                raise IndexInvalid(f"stale: index is {meta.get('dim')}-d, space is {dim}-d")
            path = directory / str(meta.get("file", ""))
            try:
                size = path.stat().st_size
            except OSError:
                time.sleep(0.05)
                continue
            if size != int(meta.get("bytes", -1)):
                raise IndexInvalid(f"corrupt: {path.name} is {size} bytes, record says {meta.get('bytes')}")
            if verify and file_blake3(path) != meta.get("blake3"):
                raise IndexInvalid(f"corrupt: {path.name} does not match its BLAKE3")
            self = cls.__new__(cls)
            self.dim = dim
            self.params = AnnParams(int(meta.get("m", params.m)),
                                    int(meta.get("ef_construction", params.ef_construction)),
                                    params.ef_search)
            self.index = hnswlib.Index(space="cosine", dim=dim)
            try:
                self.index.load_index(str(path), max_elements=int(meta.get("max_elements", 0)),
                                      allow_replace_deleted=True)
            except (RuntimeError, ValueError, MemoryError) as err:
                raise IndexInvalid(f"corrupt: hnswlib cannot load {path.name}: {err}") from err
            self.index.set_ef(params.ef_search)
            self.deleted = {int(x) for x in meta.get("deleted", [])}
            self.generation = int(meta.get("generation", 0))
            if self.count != int(meta.get("count", -1)):
                raise IndexInvalid(f"corrupt: {self.count} elements, record says {meta.get('count')}")
            return self, meta
        raise IndexInvalid("missing: index file vanished while loading")

    @classmethod
    def build(
        cls, dim: int, params: AnnParams, vectors: NDArray[np.float32], ids: NDArray[np.int64],
        chunk: int = 20_000,
    ) -> AnnIndex:
        """A fresh index over ``vectors`` (``(n, dim)`` float32) labelled ``ids`` (``(n,)``)."""
        self = cls(dim, params, capacity=max(1024, int(len(ids) * 1.25)))
        for start in range(0, len(ids), chunk):
            self.add(np.ascontiguousarray(vectors[start:start + chunk]), ids[start:start + chunk])
        return self

