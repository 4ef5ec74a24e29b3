"""Benchmark mvs_jax.retrieval: CIFAR-10-size evaluation, search throughput and memory.

Run from the repository root:

    python bench/retrieval.py                       # every section, each in its own process
    python bench/retrieval.py --section throughput  # one section

Sections:

* cifar: ``evaluate`` with 10,000 queries and 50,000 database codes at 16, 32 and 64
  bits, with k=100 and again with ``full_ranking=True`` (adds MAP over the full ranking).
* throughput: ``hamming_top_k`` with 1,000 queries, 1,000,000 database codes, 64 bits,
  top-100, in code comparisons per second. Compares with a NumPy baseline (+-1 float
  matmul and argpartition, on 100 queries) and, when faiss is importable, with
  faiss ``IndexBinaryFlat`` on 1 and 2 threads.
* memory: ``hamming_top_k`` with 256 queries against 10,000,000 database codes of 64
  bits, reporting the peak resident memory of the process.

Data are uniformly random codes with 10 uniformly random classes, from a fixed seed.
Random codes give near-chance MAP, so only the timings mean anything. Timings are
the minimum over ``--repeats`` runs after one warm-up run that compiles the kernels.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvs_jax import retrieval  # noqa: E402

SECTIONS = ("cifar", "throughput", "memory")
SEED = 0
SCALE = 1  # database and query counts are divided by this; --quick sets 100


def timed(function, repeats: int) -> tuple[float, float, object]:
    """Run ``function`` ``repeats`` times and return the minimum and median seconds and the last result."""
    seconds = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds), result


def peak_memory_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def random_dataset(rng, num_queries: int, num_database: int, num_bits: int):
    query_codes = rng.integers(0, 2, (num_queries, num_bits), dtype=np.uint8)
    database_codes = rng.integers(0, 2, (num_database, num_bits), dtype=np.uint8)
    query_labels = rng.integers(0, 10, num_queries)
    database_labels = rng.integers(0, 10, num_database)
    return query_codes, query_labels, database_codes, database_labels


def run_cifar(repeats: int) -> None:
    print("## cifar: evaluate, 10,000 queries x 50,000 database codes, 10 classes, k=100")
    print("| bits | both first calls s (compile) | evaluate(k=100) s | + full_ranking s | map@100 | tie-aware [worst, best] | map_full |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(SEED)
    for num_bits in (16, 32, 64):
        data = random_dataset(rng, 10_000 // SCALE, 50_000 // SCALE, num_bits)
        start = time.perf_counter()
        retrieval.evaluate(*data, k=100)
        retrieval.evaluate(*data, k=100, full_ranking=True)
        first = time.perf_counter() - start

        top_k_seconds, _, result = timed(lambda: retrieval.evaluate(*data, k=100), repeats)
        full_seconds, _, full = timed(lambda: retrieval.evaluate(*data, k=100, full_ranking=True), repeats)
        interval = f"{result['map@100_tie_aware']:.4f} [{result['map@100_worst']:.4f}, {result['map@100_best']:.4f}]"
        print(
            f"| {num_bits} | {first:.2f} | {top_k_seconds:.2f} | {full_seconds:.2f} | "
            f"{result['map@100']:.4f} | {interval} | {full['map_full']:.4f} |",
            flush=True,
        )


def numpy_baseline(query_codes: np.ndarray, database_codes: np.ndarray, k: int) -> np.ndarray:
    """Top-k by a float matmul of +-1 codes: distance = (K - <q, d>) / 2."""
    queries = query_codes.astype(np.float32) * 2 - 1
    database = database_codes.astype(np.float32) * 2 - 1
    distances = (query_codes.shape[1] - queries @ database.T) / 2
    return np.argpartition(distances, k, axis=1)[:, :k]


def run_throughput(repeats: int) -> None:
    num_queries, num_database, num_bits, k = 1_000, 1_000_000 // SCALE, 64, 100
    comparisons = num_queries * num_database
    print(f"## throughput: {num_queries:,} queries x {num_database:,} codes, {num_bits} bits, top-{k}")
    rng = np.random.default_rng(SEED)
    query_codes = rng.integers(0, 2, (num_queries, num_bits), dtype=np.uint8)
    database_codes = rng.integers(0, 2, (num_database, num_bits), dtype=np.uint8)
    query_words = retrieval.pack_codes(query_codes)
    database_words = retrieval.pack_codes(database_codes)

    retrieval.hamming_top_k(query_words[:256], database_words, k)  # compiles
    best, median, (distances, _) = timed(lambda: retrieval.hamming_top_k(query_words, database_words, k), repeats)
    ours = comparisons / best / 1e9
    print(f"mvs_jax hamming_top_k: {best:.3f} s (median {median:.3f} s), {ours:.2f} G comparisons/s")

    subset = 100
    baseline_seconds, _, _ = timed(lambda: numpy_baseline(query_codes[:subset], database_codes, k), 1)
    print(
        f"numpy +-1 matmul + argpartition ({subset} queries): {baseline_seconds:.3f} s, "
        f"{subset * num_database / baseline_seconds / 1e9:.3f} G comparisons/s"
    )

    try:
        import faiss
    except ImportError:
        print("faiss is not importable; skipped the faiss comparison (pip install faiss-cpu).")
        return
    query_bytes = query_words.view(np.uint8)  # little-endian words, so bit order matches on both sides
    database_bytes = database_words.view(np.uint8)
    index = faiss.IndexBinaryFlat(num_bits)
    index.add(database_bytes)
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        index.search(query_bytes[:10], k)
        seconds, median, (faiss_distances, _) = timed(lambda: index.search(query_bytes, k), repeats)
        rate = comparisons / seconds / 1e9
        same = np.array_equal(np.sort(faiss_distances, axis=1), distances)
        print(
            f"faiss {faiss.__version__} IndexBinaryFlat, {threads} thread(s): {seconds:.3f} s (median {median:.3f} s), "
            f"{rate:.2f} G comparisons/s; mvs_jax / faiss = {ours / rate:.2f}; same distances: {same}"
        )


def run_memory(repeats: int) -> None:
    num_queries, num_database, k = 256, 10_000_000 // SCALE, 100
    print(f"## memory: {num_queries} queries x {num_database:,} codes, 64 bits, top-{k}")
    rng = np.random.default_rng(SEED)
    database_words = rng.integers(0, 2**32, (num_database, 2), dtype=np.uint32)
    query_words = rng.integers(0, 2**32, (num_queries, 2), dtype=np.uint32)
    before = peak_memory_mib()
    retrieval.hamming_top_k(query_words, database_words, k)  # compiles
    seconds, _, _ = timed(lambda: retrieval.hamming_top_k(query_words, database_words, k), repeats)
    print(
        f"packed database {database_words.nbytes / 2**20:.0f} MiB; peak RSS before search {before:.0f} MiB, "
        f"after {peak_memory_mib():.0f} MiB; search {seconds:.2f} s "
        f"({num_queries * num_database / seconds / 1e9:.2f} G comparisons/s)"
    )


def describe_machine() -> None:
    model = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    import jax

    print(
        f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; CPU {model}; {len(os.sched_getaffinity(0))} cores; "
        f"python {platform.python_version()}; jax {jax.__version__}; numpy {np.__version__}; "
        f"1-minute load average before start {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", choices=SECTIONS + ("all",), default="all", help="section to run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (minimum is reported)")
    parser.add_argument("--quick", action="store_true", help="divide database and query counts by 100 to check the script")
    args = parser.parse_args()
    global SCALE
    SCALE = 100 if args.quick else 1

    if args.section == "all":
        describe_machine()
        for section in SECTIONS:
            # One process per section, so that peak memory and compiled kernels do not carry over.
            subprocess.run(
                [sys.executable, __file__, "--section", section, "--repeats", str(args.repeats)]
                + (["--quick"] if args.quick else []),
                check=True,
            )
        return
    {"cifar": run_cifar, "throughput": run_throughput, "memory": run_memory}[args.section](args.repeats)


if __name__ == "__main__":
    main()
