"""Time and memory of dml's retrieval metrics against PML's AccuracyCalculator with faiss.

    .venv/bin/python scripts/bench_eval.py                 # N = 10k and 50k, d = 128
    .venv/bin/python scripts/bench_eval.py --n 50000 --methods pml dml --threads 2
    .venv/bin/python scripts/bench_eval.py --n 200000 --methods dml

Each measurement runs in a fresh process on ``--threads`` threads (torch's and faiss'),
so its peak resident memory (above what the process held once the embeddings were made)
is its own. Methods alternate, and their order flips every repeat, so load from other
users of the machine falls on all of them. Timings mean something only on a quiet
machine: the script prints the CPU model and the load average before and after. It
prints a Markdown table and fails if the methods' values disagree by more than 1e-6.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import resource
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

METRICS = ("precision_at_1", "r_precision", "map_at_r")
# dml ranks exactly (float64 where float32 cannot tell); PML ranks by faiss' float32
# distances, so it may swap references within float32 rounding of each other. One swap
# moves r_precision or map_at_r by about 1/(N·R), far below this.
AGREEMENT = 1e-6


@dataclass
class Measurement:
    method: str
    n: int
    seconds: float
    peak_bytes: int
    values: dict[str, float]


def make_data(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-structured Gaussians, so the metrics sit far from both 0 and 1."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    centers = rng.normal(size=(classes, d)).astype(np.float32)
    noise = rng.normal(size=(len(labels), d)).astype(np.float32)
    return centers[labels] * 0.5 + noise, labels


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        import faiss
    except ImportError:
        return
    faiss.omp_set_num_threads(threads)


def measure(method: str, n: int, d: int, classes: int, seed: int, threads: int) -> Measurement:
    """Runs in a child process: make the data, then time one evaluation."""
    logging.basicConfig(level=logging.INFO, format="    %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    set_threads(threads)
    x, y = make_data(n, d, classes, seed)
    query, labels = torch.from_numpy(x), torch.from_numpy(y)
    if method == "pml":
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calculator = AccuracyCalculator(
            include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
            k="max_bin_count",
            device=torch.device("cpu"),
        )
        baseline = rss_bytes()
        start = time.perf_counter()
        got = calculator.get_accuracy(query, labels)
        seconds = time.perf_counter() - start
        values = {
            "precision_at_1": got["precision_at_1"],
            "r_precision": got["r_precision"],
            "map_at_r": got["mean_average_precision_at_r"],
        }
    else:
        from dml.metrics import retrieval_metrics

        backend = "faiss" if method == "dml-faiss" else "torch"
        baseline = rss_bytes()
        start = time.perf_counter()
        values = retrieval_metrics(query, labels, k_values=(1,), backend=backend)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return Measurement(method, n, seconds, peak, {k: values[k] for k in METRICS})


def matmul_throughput(d: int, threads: int, tile: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of the tile-shaped matmul that dml's distance tiles use (best of repeats):
    the best case, so the bound it gives is a true lower bound on a quiet machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(tile, d), torch.randn(tile, d)
    out = torch.empty(tile, tile)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b.T, out=out)
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(before)
    return 2 * tile * tile * d / best


def throughputs(d: int, threads: int) -> dict[int, float]:
    return {n: matmul_throughput(d, n) for n in sorted({1, threads})}


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["pml", "dml", "dml-faiss"],
        choices=["pml", "dml", "dml-faiss"],
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch's and faiss' threads in each measurement"
    )
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    print(f"{cpu_model()}, {os.cpu_count()} cores; load average {load_before:.2f} before the runs")
    before = throughputs(args.d, args.threads)
    context = multiprocessing.get_context("spawn")
    results: list[Measurement] = []
    with context.Pool(1, maxtasksperchild=1) as pool:
        for n in args.n:
            for repeat in range(args.repeats):
                order = args.methods if repeat % 2 == 0 else args.methods[::-1]
                for method in order:
                    print(f"  N={n} {method} (repeat {repeat + 1}) ...", flush=True)
                    job = (method, n, args.d, args.classes, args.seed, args.threads)
                    results.append(pool.apply(measure, job))

    after = throughputs(args.d, args.threads)
    best = {n: max(before[n], after[n]) for n in before}
    flops = max(best.values())
    print(
        f"\nMatmul throughput, best of 20 {args.d}-deep 1024×1024 tiles before and after the "
        "runs: "
        + ", ".join(f"{best[n] / 1e9:.0f} GFLOP/s on {n} thread(s)" for n in best)
        + f"; load average {load_before:.2f} before the runs, {os.getloadavg()[0]:.2f} after; "
        + f"{args.threads} thread(s) per measurement.\n"
    )
    print(
        "| N | method | time (s) | × PML time | × matmul bound | peak memory above "
        "embeddings (MiB) | precision_at_1 | r_precision | map_at_r |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    disagreements = []
    for n in args.n:
        rows = [m for m in results if m.n == n]
        pml = [m.seconds for m in rows if m.method == "pml"]
        pml_seconds = float(np.median(pml)) if pml else float("nan")
        bound = 2 * n * n * args.d / flops
        for method in args.methods:
            mine = [m for m in rows if m.method == method]
            seconds = float(np.median([m.seconds for m in mine]))
            peak = max(m.peak_bytes for m in mine) / 2**20
            values = mine[0].values
            print(
                f"| {n} | {method} | {seconds:.2f} | {seconds / pml_seconds:.2f} | "
                f"{seconds / bound:.2f} | {peak:.0f} | "
                + " | ".join(f"{values[k]:.6f}" for k in METRICS)
                + " |"
            )
            for other in rows:
                gap = max(abs(other.values[k] - values[k]) for k in METRICS)
                if gap > AGREEMENT:
                    disagreements.append(f"N={n}: {method} vs {other.method} differ by {gap:.2g}")
        print(
            f"| {n} | matmul lower bound: N²·d·2 = {2 * n * n * args.d:.2e} FLOP | "
            f"{bound:.2f} (half: {bound / 2:.2f}) | | 1.00 | | | | |"
        )
    if disagreements:
        print("\n".join(sorted(set(disagreements))), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
