"""Vector store + hnswlib index: replace/delete, growth, atomic saves, crash recovery."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from handlers.search.ann import AnnIndex, AnnParams
from handlers.search.config import EmbedConfig
from handlers.search.embedders import Embedder, load_embedder
from handlers.search.reader import SpaceReader, brute_force
from handlers.search.vectors import VectorSpace, VectorStore, space_dir
from harbord.catalog import Catalog, open_db
from harbord.errors import IndexInvalid, SpaceBusyError, VectorError
from harbord.job import Job
from tests.support.fixtures import recorded_objects

ROOT = Path(__file__).resolve().parents[1]
SPACE = "test-space"
PARAMS = AnnParams(m=16, ef_construction=100, ef_search=64)


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    """The packaged MiniLM model, loaded once per test session (cached per process)."""
    return load_embedder(EmbedConfig())


def fixture_titles() -> list[str]:
    """Titles and overviews from the recorded TMDb/OMDb responses (real text)."""
    texts: list[str] = []
    for node in recorded_objects():
        title = node.get("title") or node.get("name") or node.get("Title")
        overview = node.get("overview") or node.get("Plot")
        if isinstance(title, str) and isinstance(overview, str) and overview:
            texts.append(f"{title}. {overview}")
    return list(dict.fromkeys(texts))


@pytest.fixture(scope="session")
def real_vectors(minilm: Embedder) -> NDArray[np.float32]:
    """~400 real MiniLM vectors: fixture plots, plus each plot's first sentence and title."""
    texts = fixture_titles()
    texts += [t.split(".")[0] + " (short)" for t in texts] + [t[:80] for t in texts]
    return minilm.embed_texts(list(dict.fromkeys(texts)))


def make_item(catalog: Catalog, n: int, media_type: str = "movie") -> int:
    file_hash = f"{n:064x}"
    catalog.add_object(file_hash, 1, ".mkv", f"/library/{file_hash}.mkv")
    return catalog.upsert_item(Job(id=f"{n:032x}", path=f"/inbox/{n}.mkv", file_hash=file_hash,
                                   media_type=media_type, parsed={"title": f"item {n}"}))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Path, Path, Catalog]]:
    db_path = tmp_path / "h.db"
    catalog = Catalog(open_db(db_path))
    yield tmp_path / "state", db_path, catalog
    catalog.db.conn.close()


def open_space(state: Path, db_path: Path, dim: int = 384, params: AnnParams = PARAMS) -> VectorSpace:
    return VectorSpace.open(state, db_path, space=SPACE, model_id="test", dim=dim, params=params)


def put(space: VectorSpace, item_id: int, vector: NDArray[np.float32], tag: str = "") -> int | None:
    staged = space.stage(item_id, vector.reshape(1, -1), [f"{item_id}:{tag}"])
    return space.commit([(item_id, staged[0].vector_id)])[0]


def live_rows(catalog: Catalog) -> list[tuple[int, int]]:
    return [(r[0], r[1]) for r in catalog.db.execute(
        "SELECT item_id, vector_id FROM vectors WHERE deleted = 0 ORDER BY item_id").fetchall()]


# --- store and index pieces --------------------------------------------------------------------

def test_store_appends_reads_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    folder = tmp_path / "space"
    store = VectorStore.open(folder, space="s", model_id="m", dim=4)
    ids = store.append(np.eye(4, dtype=np.float32)[:3])
    assert ids.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(store.get([2, 0]), np.eye(4, dtype=np.float32)[[2, 0]])
    store.close()
    with open(folder / "vectors.f32", "ab") as handle:  # a crash mid-append: half a row
        handle.write(b"\x00" * 7)
    store = VectorStore.open(folder, space="s", model_id="m", dim=4)
    assert store.rows == 3 and (folder / "vectors.f32").stat().st_size == 3 * 16
    assert store.append(np.ones((1, 4), np.float32)).tolist() == [3]
    with pytest.raises(VectorError, match="out of range"):
        store.get([9])
    store.close()
    with pytest.raises(VectorError, match="4-d"):
        VectorStore.open(folder, space="s", model_id="m", dim=8)
    reader = VectorStore.open(folder, space="s", model_id="", dim=None, writable=False)
    assert reader.dim == 4 and reader.model_id == "m" and reader.rows == 4


def test_index_grows_without_a_stop_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = AnnIndex(32, PARAMS, capacity=16)
    for start in range(0, 3000, 250):
        index.add(vectors[start:start + 250], np.arange(start, start + 250))
    assert index.count == 3000 and int(index.index.get_max_elements()) >= 3000
    ids, sims = index.query(vectors[1234], 5)
    assert ids[0] == 1234 and sims[0] == pytest.approx(1.0, abs=1e-5)
    index.mark_deleted([1234, 1234, 999_999])
    assert 1234 not in index.query(vectors[1234], 5)[0]
    index.save(tmp_path, {"applied_seq": 7})
    loaded, meta = AnnIndex.load(tmp_path, 32, PARAMS)
    assert meta["applied_seq"] == 7 and loaded.deleted == {1234} and loaded.live_count == 2999
    np.testing.assert_array_equal(loaded.query(vectors[5], 10)[0], index.query(vectors[5], 10)[0])
    with pytest.raises(IndexInvalid, match="stale"):
        AnnIndex.load(tmp_path, 64, PARAMS)


def test_queries_survive_a_graph_that_is_mostly_deleted() -> None:
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((60, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = AnnIndex(16, AnnParams(m=4, ef_construction=10, ef_search=10), capacity=16)
    index.add(vectors, np.arange(60))
    assert index.mark_deleted(list(range(55))) == 55 and index.live_count == 5
    ids, sims = index.query(vectors[57], 10)
    assert 57 in ids.tolist() and set(ids.tolist()) <= {55, 56, 57, 58, 59}
    assert len(ids) == len(sims) <= 5
    assert index.query(vectors[0], 0)[0].size == 0


def test_a_corrupt_or_mismatched_index_is_refused(tmp_path: Path) -> None:
    index = AnnIndex(8, PARAMS)
    index.add(np.eye(8, dtype=np.float32), np.arange(8))
    meta = index.save(tmp_path, {})
    path = tmp_path / meta["file"]
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexInvalid, match="BLAKE3"):
        AnnIndex.load(tmp_path, 8, PARAMS)
    meta = index.save(tmp_path, {})
    record = json.loads((tmp_path / "index.json").read_text())
    record["count"] = 9
    (tmp_path / "index.json").write_text(json.dumps(record))
    with pytest.raises(IndexInvalid, match="elements"):
        AnnIndex.load(tmp_path, 8, PARAMS)
    (tmp_path / "index.json").unlink()
    with pytest.raises(IndexInvalid, match="missing"):
        AnnIndex.load(tmp_path, 8, PARAMS)


# --- the writer --------------------------------------------------------------------------------

def test_replace_and_delete(env: tuple[Path, Path, Catalog], real_vectors: NDArray[np.float32]) -> None:
    state, db_path, catalog = env
    a, b = make_item(catalog, 1), make_item(catalog, 2)
    space = open_space(state, db_path)
    first = put(space, a, real_vectors[0])
    put(space, b, real_vectors[1])
    assert put(space, a, real_vectors[0], "same vector, other input") == first  # equal hash: kept
    for round_ in range(40):  # replacing many times reuses deleted slots: the graph stays small
        replaced = put(space, a, real_vectors[2 + round_])
    assert replaced != first
    assert live_rows(catalog) == [(a, replaced), (b, 1)]
    assert space.index.live_count == 2 and space.index.count <= 4
    assert first is not None
    assert space.commit([(a, first)]) == [replaced]  # a superseded id resolves to the live one
    with pytest.raises(VectorError, match="never staged"):
        space.commit([(a, 10_000)])
    ids, _ = space.index.query(real_vectors[0], 2)
    assert first not in ids
    assert space.delete_item(a) == replaced and space.delete_item(a) is None
    assert live_rows(catalog) == [(b, 1)]
    assert space.index.query(real_vectors[2 + 39], 5)[0].tolist() == [1]
    space.close()


def test_one_writer_at_a_time(env: tuple[Path, Path, Catalog]) -> None:
    state, db_path, _ = env
    space = open_space(state, db_path)
    with pytest.raises(SpaceBusyError):
        open_space(state, db_path)
    space.close()
    open_space(state, db_path).close()


def test_restart_replays_what_sqlite_committed_after_the_save(
        env: tuple[Path, Path, Catalog], real_vectors: NDArray[np.float32]) -> None:
    state, db_path, catalog = env
    items = [make_item(catalog, n) for n in range(30)]
    space = open_space(state, db_path)
    for n, item in enumerate(items[:20]):
        put(space, item, real_vectors[n])
    space.save()
    for n, item in enumerate(items[20:], 20):  # committed to SQLite, never saved in the index
        put(space, item, real_vectors[n])
    put(space, items[0], real_vectors[100])  # replaced after the save
    space.delete_item(items[1])  # deleted after the save
    space.close(save=False)  # as if killed
    space = open_space(state, db_path)
    assert space.last_load == "repaired: +11 -2"
    assert space.index.live_count == 29
    reader = SpaceReader(state, catalog.db, SPACE, PARAMS)
    assert reader.index_state == "loaded"
    for n, item in enumerate(items[2:], 2):
        assert reader.search(real_vectors[n], 3)[0].item_id == item
    assert reader.search(real_vectors[100], 1)[0].item_id == items[0]
    assert items[1] not in [h.item_id for h in reader.search(real_vectors[1], 29)]
    space.close()


@pytest.mark.parametrize("damage", ["corrupt", "missing", "stale-m", "stray-files"])
def test_a_damaged_index_is_rebuilt_from_the_store(
        env: tuple[Path, Path, Catalog], real_vectors: NDArray[np.float32], damage: str) -> None:
    state, db_path, catalog = env
    items = [make_item(catalog, n) for n in range(12)]
    space = open_space(state, db_path)
    for n, item in enumerate(items):
        put(space, item, real_vectors[n])
    space.close()
    folder = space_dir(state, SPACE)
    record = json.loads((folder / "index.json").read_text())
    params = PARAMS
    if damage == "corrupt":
        (folder / record["file"]).write_bytes(b"\x00" * record["bytes"])
    elif damage == "missing":
        (folder / "index.json").unlink()
    elif damage == "stale-m":
        params = dataclasses.replace(PARAMS, m=24)
    else:  # a crash during a save: an unreferenced new file and a temp file beside the good one
        (folder / "index.999999.bin").write_bytes(b"half written")
        (folder / "index.999999.bin.123.tmp").write_bytes(b"x")
    space = open_space(state, db_path, params=params)
    expected = {"corrupt": "rebuilt: corrupt", "missing": "rebuilt: missing", "stale-m": "rebuilt: stale",
                "stray-files": "loaded"}[damage]
    assert space.last_load.startswith(expected)
    assert space.index.live_count == 12
    for n, item in enumerate(items):
        ids, _ = space.index.query(real_vectors[n], 1)
        assert int(ids[0]) == n and live_rows(catalog)[n] == (item, n)
    space.save(force=True)
    current = json.loads((folder / "index.json").read_text())["file"]
    assert {p.name for p in folder.glob("index.*")} == {"index.json", current}
    space.close()


CHILD = r"""
import sys
from pathlib import Path
import numpy as np
from handlers.search.ann import AnnParams
from harbord.catalog import Catalog, open_db
from harbord.job import Job
from handlers.search.vectors import VectorSpace

state, db_path, vectors_path, first = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
vectors = np.load(vectors_path)
catalog = Catalog(open_db(db_path))
space = VectorSpace.open(state, db_path, space="test-space", model_id="test", dim=384,
                         params=AnnParams(m=16, ef_construction=100, ef_search=64))
print("open", space.last_load, flush=True)
for n in range(first, len(vectors)):
    h = f"{n:064x}"
    catalog.add_object(h, 1, ".mkv", "/library/" + h)
    item = catalog.upsert_item(Job(id=f"{n:032x}", path=f"/inbox/{n}", file_hash=h, media_type="movie"))
    staged = space.stage(item, vectors[n:n + 1], [str(n)])
    if n % 3 == 0:  # some items get a second vector that replaces the first
        space.commit([(item, staged[0].vector_id)])
        staged = space.stage(item, vectors[n:n + 1] * -1, [str(-n)])
    space.commit([(item, staged[0].vector_id)])
    print("done", n, item, flush=True)
    if n % 5 == 0:
        space.save()
"""


def test_kill_9_while_adding_loses_nothing_committed(
        env: tuple[Path, Path, Catalog], real_vectors: NDArray[np.float32], tmp_path: Path) -> None:
    state, db_path, catalog = env
    np.save(tmp_path / "v.npy", real_vectors)
    done: dict[int, int] = {}  # n -> item id, for every commit the child reported
    loads: list[str] = []
    for round_, stop_after in enumerate([37, 61, 23]):
        first = max(done, default=-1) + 1
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(state), str(db_path),
                                 str(tmp_path / "v.npy"), str(first)],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert proc.stdout is not None
        seen = 0
        for line in proc.stdout:
            word, *rest = line.split() or [""]
            if word not in ("open", "done"):  # log lines
                continue
            if word == "open":
                loads.append(" ".join(rest))
                continue
            done[int(rest[0])] = int(rest[1])
            seen += 1
            if seen == stop_after:
                os.kill(proc.pid, signal.SIGKILL)  # mid-way: often between commit and save
                break
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, f"round {round_} ended on its own"
    assert loads[0].startswith("rebuilt: missing") and len(done) >= 37 + 61 + 23

    space = open_space(state, db_path)  # the restart
    live = live_rows(catalog)
    assert len(live) == len({item for item, _ in live})  # one live vector per item
    reader = SpaceReader(state, catalog.db, SPACE, PARAMS)
    for n, item in done.items():
        expected = -real_vectors[n] if n % 3 == 0 else real_vectors[n]
        hits = reader.search(expected, 10)
        assert hits[0].item_id == item and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.item_id for h in hits].count(item) == 1
        ids, _ = space.index.query(expected, 1)
        assert int(ids[0]) == dict(live)[item]
    assert space.index.live_count == len(live) >= len(done)
    space.close()


def test_brute_force_baseline_is_exact() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[42] * 3
    top = brute_force(vectors, query, 5)
    assert top[0] == 42
    assert np.all(np.diff((vectors @ query)[top]) <= 0)
    assert brute_force(vectors[:0], query, 5).size == 0
