"""Benchmark: hnswlib ANN vs exact numpy brute force at 100k x 384, plus MiniLM throughput.

Run: ``python bench/search.py`` (options: ``--n``, ``--queries``, ``--m``, ``--ef-construction``,
``--ef``, ``--texts``, ``--seed``). Everything is measured in one run on this machine:

- data (``--data synthetic``, default): ``n`` unit vectors of dimension 384 with
  embedding-like structure, low effective rank + noise: a Gaussian mixture (one topic per 10
  vectors) whose covariance has a power-law spectrum (eigenvalue i ~ i^-0.8: the top 50 of
  384 principal components hold ~55 % of the variance, the tail is noise), plus a shared
  direction. ``--data minilm``: real MiniLM vectors of generated film titles and premises
  (~5 min to embed 100k on 2 cores; cached). The run prints the median cosine of random
  pairs and of the 1st/10th neighbour and the variance share of the top 50 components so the
  structure can be judged. Queries are held-out draws (not copies of indexed vectors).
- build: :meth:`handlers.search.ann.AnnIndex.build` (cosine, M, ef_construction), seconds.
- query latency at k=10, one query per call (``num_threads=1``), p50/p99 in ms, for the bare
  hnswlib query and for the reader path (ANN + exact cosine re-rank on the memory-mapped
  float32 store, as ``harbord search`` does).
- brute force: ``vectors @ q`` + ``argpartition`` in numpy per single query, p50/p99 ms.
- recall@10: |ANN top-10 ∩ exact top-10| / 10, averaged over the queries.
- MiniLM (the default backend) throughput on ``--texts`` short generated titles, texts/s.

Targets (issue "Semantic search"): recall@10 >= 0.95, ANN p50 <= 2 ms, ANN >= 20x faster than
brute force. The last line says PASS or FAIL.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handlers.search.ann import AnnIndex, AnnParams
from handlers.search.config import IndexConfig
from handlers.search.reader import brute_force
from handlers.search.vectors import VectorStore

DIM = 384


class Generator:
    """Draws embedding-like unit vectors: a Gaussian mixture with a power-law spectrum.

    ``topics`` centres and the per-item offsets (``spread`` times smaller) are drawn from
    N(0, S) where S has eigenvalues proportional to i^-alpha (i = 1..384) in a random
    orthonormal basis, so variance is concentrated in few directions (low effective rank) with
    a long tail (noise); a shared direction is added (sentence embeddings share one: random
    pairs have cosine > 0). alpha = 0.8 puts ~55 % of the variance in the top 50 principal
    components, as is typical of sentence embeddings.
    """

    def __init__(self, rng: np.random.Generator, topics: int, alpha: float = 0.8, spread: float = 0.8,
                 shared: float = 0.35) -> None:
        self.rng = rng
        spectrum = np.arange(1, DIM + 1, dtype=np.float64) ** -alpha
        self.sd = np.sqrt(spectrum / spectrum.sum()).astype(np.float32)
        self.basis = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0].T.astype(np.float32)
        self.centres = (rng.standard_normal((topics, DIM)).astype(np.float32) * self.sd) @ self.basis
        common = rng.standard_normal(DIM).astype(np.float32)
        self.common = shared * common / np.linalg.norm(common)
        self.spread = spread

    def draw(self, n: int) -> NDArray[np.float32]:
        """``n`` vectors, float32 ``(n, 384)``, unit rows."""
        rng = self.rng
        offsets = (rng.standard_normal((n, DIM)).astype(np.float32) * self.sd) @ self.basis
        vectors = self.centres[rng.integers(0, len(self.centres), n)] + self.spread * offsets + self.common
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def title_texts(count: int, seed: int) -> list[str]:
    """``count`` generated film-like titles with a one-line premise (for ``--data minilm``)."""
    rng = np.random.default_rng(seed)
    adjectives = ["last", "lost", "silent", "dark", "golden", "broken", "hidden", "burning", "frozen",
                  "wild", "secret", "little", "long", "strange", "distant", "forgotten"]
    nouns = ["train", "river", "ghost", "king", "city", "summer", "dragon", "winter", "island", "mirror",
             "garden", "empire", "shadow", "star", "road", "fire", "ocean", "song", "house", "war", "girl",
             "detective", "planet", "robot", "family", "school", "heist", "spy", "witch", "soldier",
             "doctor", "teacher", "hunter", "pilot", "queen", "thief"]
    places = ["Paris", "Tokyo", "Mars", "the desert", "the jungle", "a village", "space", "the sea",
              "New York", "the mountains", "a prison", "a hospital", "the future", "the 1920s", "Rome",
              "a small town"]
    verbs = ["falls in love with", "hunts", "escapes from", "searches for", "betrays", "protects",
             "races against", "fights", "rescues", "haunts", "befriends", "investigates"]
    texts = []
    for i in range(count):
        a, b = rng.choice(adjectives, 2)
        n1, n2, n3 = rng.choice(nouns, 3)
        texts.append(f"The {a} {n1} ({1930 + i % 95}). A {b} {n2} in {rng.choice(places)} "
                     f"{rng.choice(verbs)} a {n3}.")
    return texts


def minilm_vectors(count: int, seed: int, cache: Path) -> NDArray[np.float32]:
    """MiniLM vectors of :func:`title_texts` (cached in ``cache`` as .npy: ~5 min at 100k)."""
    path = cache / f"minilm_titles_{count}_{seed}.npy"
    if path.exists():
        cached: NDArray[np.float32] = np.load(path)
        return cached
    from handlers.search.config import EmbedConfig
    from handlers.search.embedders import load_embedder

    vectors = load_embedder(EmbedConfig()).embed_texts(title_texts(count, seed))
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def structure(data: NDArray[np.float32], rng: np.random.Generator) -> tuple[float, float, float]:
    """Median cosine of random pairs, of the nearest and of the 10th nearest neighbour
    (over 200 sampled rows)."""
    rows = data[rng.choice(len(data), 200, replace=False)]
    sims = rows @ data.T
    top = -np.sort(-sims, axis=1)[:, 1:11]  # column 0 is the row itself
    return float(np.median(sims)), float(np.median(top[:, 0])), float(np.median(top[:, 9]))


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``samples`` (seconds) in milliseconds."""
    array = np.asarray(samples) * 1000
    return float(np.percentile(array, 50)), float(np.percentile(array, 99))


def minilm_throughput(count: int) -> float:
    """Texts per second of the default backend on ``count`` short generated titles."""
    from handlers.search.config import EmbedConfig
    from handlers.search.embedders import load_embedder

    rng = np.random.default_rng(1)
    words = ["night", "train", "storm", "river", "ghost", "king", "city", "last", "summer", "dragon",
             "secret", "winter", "island", "mirror", "garden", "empire", "lost", "shadow", "star",
             "road", "fire", "ocean", "song", "house", "war", "love"]
    texts = [f"The {' '.join(rng.choice(words, 3))} ({1950 + i % 70}). A story about "
             f"{' and '.join(rng.choice(words, 2))}." for i in range(count)]
    embedder = load_embedder(EmbedConfig())
    embedder.embed_texts(texts[:64])  # warm-up
    started = time.perf_counter()
    embedder.embed_texts(texts)
    return count / (time.perf_counter() - started)


def main() -> int:
    """Run the benchmark and print figures; returns 0 on PASS, 1 on FAIL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=IndexConfig().ef_construction)
    parser.add_argument("--ef", type=int, default=IndexConfig().ef_search)
    parser.add_argument("--ef-sweep", default="32,128,256",
                        help="other query-time ef values to report recall/latency for (comma list)")
    parser.add_argument("--texts", type=int, default=2000, help="MiniLM throughput sample (0 = skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=["synthetic", "minilm"], default="minilm",
                        help="real MiniLM vectors of generated titles (first run embeds them, ~5 min)"
                        " or a synthetic power-law mixture (harder, fast)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "harbord-bench",
                        help="where --data minilm keeps its vectors")
    args = parser.parse_args()
    k = 10
    rng = np.random.default_rng(args.seed)
    print(f"cores: {os.cpu_count()}, numpy {np.__version__}, hnswlib {importlib.metadata.version('hnswlib')}")
    started = time.perf_counter()
    if args.data == "synthetic":
        generator = Generator(rng, topics=max(100, args.n // 10))
        data = generator.draw(args.n)
        queries = generator.draw(args.queries)
        what = f"power-law spectrum (alpha 0.8) mixture of {max(100, args.n // 10)} topics"
    else:
        everything = minilm_vectors(args.n + args.queries, args.seed, args.cache)
        data, queries = everything[:args.n], everything[args.n:]
        what = "MiniLM vectors of generated film titles + premises"
    rand, nn1, nn10 = structure(data, rng)
    centred = data[:5000] - data[:5000].mean(axis=0)
    energy = np.linalg.svd(centred, compute_uv=False) ** 2
    top50 = float(energy[:50].sum() / energy.sum())
    print(f"data: {args.n} x {DIM} float32, {what}; {args.queries} held-out queries "
          f"({time.perf_counter() - started:.1f} s)")
    print(f"structure: median cosine random pair {rand:.2f}, 1st neighbour {nn1:.2f}, "
          f"10th neighbour {nn10:.2f}; top 50 principal components hold {top50:.0%} of the variance")

    params = AnnParams(m=args.m, ef_construction=args.ef_construction, ef_search=args.ef)
    started = time.perf_counter()
    index = AnnIndex.build(DIM, params, data, np.arange(args.n, dtype=np.int64))
    build_s = time.perf_counter() - started
    index.index.set_num_threads(1)
    index.index.set_ef(args.ef)

    # Brute force is the ground truth and the baseline. Timings alternate in blocks (5 rounds
    # of 40 brute-force then 200 ANN queries), so load from other processes on the machine
    # hits both sides of the ratio alike while each side runs warm, as it would in a server.
    exact = [brute_force(data, q, k) for q in queries]
    brute_times, ann_times, hits = [], [], 0
    rounds = 5
    per_round = -(-len(queries) // rounds)
    for r in range(rounds):
        block = range(r * per_round, min((r + 1) * per_round, len(queries)))
        for i in list(block)[:40]:
            t0 = time.perf_counter()
            brute_force(data, queries[i], k)
            brute_times.append(time.perf_counter() - t0)
        for i in block:
            t0 = time.perf_counter()
            labels, _ = index.index.knn_query(queries[i].reshape(1, -1), k=k)
            ann_times.append(time.perf_counter() - t0)
            hits += len(set(labels[0].tolist()) & set(exact[i].tolist()))
    recall = hits / (k * len(queries))

    with tempfile.TemporaryDirectory() as folder:  # the reader path: ANN + exact re-rank on the store
        store = VectorStore.open(Path(folder), space="bench", model_id="bench", dim=DIM)
        store.append(data)
        store.matrix()
        reader_times = []
        for q in queries:
            t0 = time.perf_counter()
            ids, _ = index.query(q, k)
            scores = store.get(ids) @ q
            ids[np.argsort(-scores)]
            reader_times.append(time.perf_counter() - t0)
        store.close()

    ann50, ann99 = percentiles(ann_times)
    read50, read99 = percentiles(reader_times)
    brute50, brute99 = percentiles(brute_times)
    ratio = brute50 / ann50
    load = os.getloadavg()[0]
    print(f"machine load average (1 min) after the timings: {load:.2f} on {os.cpu_count()} cores")
    print(f"hnswlib: M={args.m} ef_construction={args.ef_construction} ef={args.ef} (cosine), "
          f"{index.index.index_file_size() / 1e6:.0f} MB on disk")
    rate = args.n / build_s
    rate = args.n / build_s
    print(f"build:            {build_s:8.1f} s  ({rate:,.0f} vectors/s, {os.cpu_count()} threads)")
    print(f"ANN query k=10:   p50 {ann50:7.3f} ms   p99 {ann99:7.3f} ms   (1 thread, single queries)")
    print(f"ANN + re-rank:    p50 {read50:7.3f} ms   p99 {read99:7.3f} ms   (reader path)")
    print(f"brute force:      p50 {brute50:7.3f} ms   p99 {brute99:7.3f} ms   (numpy matmul + argpartition)")
    print(f"speed-up:         {ratio:8.1f} x  (brute-force p50 / ANN p50)")
    print(f"recall@10:        {recall:8.4f}")
    for ef in [int(x) for x in args.ef_sweep.split(",") if x.strip()]:
        index.index.set_ef(max(ef, k))
        times, found = [], 0
        for q, truth in zip(queries, exact, strict=True):
            t0 = time.perf_counter()
            labels, _ = index.index.knn_query(q.reshape(1, -1), k=k)
            times.append(time.perf_counter() - t0)
            found += len(set(labels[0].tolist()) & set(truth.tolist()))
        p50, p99 = percentiles(times)
        sweep_recall = found / (k * len(queries))
        print(f"  ef={ef:<4}          p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   recall@10 {sweep_recall:.4f}")
    if args.texts:
        rate = minilm_throughput(args.texts)
        print(f"MiniLM embedding: {rate:8.0f} texts/s  ({args.texts} short titles, batch 64, CPU)")
    ok = recall >= 0.95 and ann50 <= 2.0 and ratio >= 20
    print(f"{'PASS' if ok else 'FAIL'}: recall@10 {recall:.3f} (>= 0.95), p50 {ann50:.3f} ms (<= 2 ms), "
          f"{ratio:.0f}x faster than brute force (>= 20x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
