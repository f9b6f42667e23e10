"""Time dml's losses and miners against pytorch-metric-learning's, side by side.

One step is: L2-normalise a B×128 batch (8 samples per class), mine, compute the loss,
backpropagate. Each step runs for dml and for PML in alternation, so both sides see the
same machine load, and the table reports medians (or minima), the speed-up, the peak memory of one
step and both loss values (which must agree).

    .venv/bin/python scripts/bench_losses.py                 # B = 256 and 1024, 2 threads
    .venv/bin/python scripts/bench_losses.py --sizes 256 --repeats 3
    .venv/bin/python scripts/bench_losses.py --threads 1 --clock cpu --statistic min

On a shared, oversubscribed machine, two threads that wait for each other at every
parallel op make wall times swing by 10× between runs; one thread and the CPU clock
measure the step's own compute instead.

Peak memory on CPU is the rise of the process's peak resident set (VmHWM) during one
step, after resetting it; glibc is told to return large blocks to the system at once,
so freed tensors do not hide later peaks. On CUDA it is ``max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytorch_metric_learning.losses as pml_losses
import pytorch_metric_learning.miners as pml_miners
import torch

from dml.losses.contrastive import ContrastiveLoss
from dml.losses.multi_similarity import MultiSimilarityLoss
from dml.losses.triplet import TripletLoss
from dml.miners.all_triplets import AllTripletsMiner
from dml.miners.batch_hard import BatchHardMiner
from dml.miners.multi_similarity import MultiSimilarityMiner
from dml.miners.semihard import SemiHardMiner

EMBEDDING_DIM = 128
PER_CLASS = 8
MARGIN = 0.2

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _with_miner(loss: Callable, miner: Callable | None) -> Step:
    def step(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return loss(x, labels, None if miner is None else miner(x, labels))

    return step


def cases() -> dict[str, tuple[Step, Step]]:
    """Step name -> (dml step, PML step), each with the library's natural defaults."""
    return {
        "triplet + all triplets": (
            _with_miner(TripletLoss(MARGIN), AllTripletsMiner()),
            _with_miner(pml_losses.TripletMarginLoss(MARGIN), None),
        ),
        "triplet + semihard": (
            _with_miner(TripletLoss(MARGIN), SemiHardMiner(MARGIN)),
            _with_miner(
                pml_losses.TripletMarginLoss(MARGIN),
                pml_miners.TripletMarginMiner(MARGIN, type_of_triplets="semihard"),
            ),
        ),
        "triplet + batch-hard": (
            _with_miner(TripletLoss(MARGIN), BatchHardMiner()),
            _with_miner(pml_losses.TripletMarginLoss(MARGIN), pml_miners.BatchHardMiner()),
        ),
        "contrastive": (
            _with_miner(ContrastiveLoss(0.0, 1.0, form="pml"), None),
            _with_miner(pml_losses.ContrastiveLoss(0.0, 1.0), None),
        ),
        "MS loss + MS miner": (
            _with_miner(MultiSimilarityLoss(), MultiSimilarityMiner()),
            _with_miner(pml_losses.MultiSimilarityLoss(), pml_miners.MultiSimilarityMiner()),
        ),
    }


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _return_freed_memory_at_once() -> None:
    """Fixed mmap threshold: blocks over 64 KiB are mmapped and unmapped when freed."""
    libc = _libc()
    if libc is not None:
        m_mmap_threshold = -3
        libc.mallopt(m_mmap_threshold, 64 * 1024)


def peak_memory(run: Callable[[], None], device: torch.device) -> int:
    """Bytes that one call of ``run`` needs beyond what was already allocated."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)  # hand back heap freed earlier, so new blocks show in the RSS
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    run()
    return (_status_kib("VmHWM") - before) * 1024


class Runner:
    """One benchmark cell: a fixed batch, and the dml (side 0) and PML (side 1) steps."""

    def __init__(self, steps: tuple[Step, Step], batch: int, device: torch.device) -> None:
        generator = torch.Generator().manual_seed(batch)
        raw = torch.randn(batch, EMBEDDING_DIM, generator=generator)
        self.raw = raw.to(device).requires_grad_()
        self.labels = (torch.arange(batch) // PER_CLASS).to(device)
        self.steps = steps
        self.device = device
        self.losses = [0.0, 0.0]

    def run(self, side: int) -> None:
        self.raw.grad = None
        embeddings = torch.nn.functional.normalize(self.raw, dim=1)
        loss = self.steps[side](embeddings, self.labels)
        loss.backward()
        self.losses[side] = loss.item()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step_ms(self, repeats: int, statistic: str, clock: str = "wall") -> tuple[float, float]:
        """Step time of each side (median or minimum), timed in alternation after a warm-up.

        On a shared machine the minimum is the steadier estimate of what a step costs:
        other processes only ever add time, and more to long steps than to short ones.
        ``clock="cpu"`` times the CPU the process spends (all its threads), which waiting
        for a core that another process holds does not add to.
        """
        now = time.process_time if clock == "cpu" else time.perf_counter
        times: list[list[float]] = [[], []]
        for side in (0, 1):
            self.run(side)
        for _ in range(repeats):
            for side in (0, 1):
                start = now()
                self.run(side)
                times[side].append(now() - start)
        reduce = min if statistic == "min" else statistics.median
        return 1000 * reduce(times[0]), 1000 * reduce(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per side")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", default="", help="run the steps whose name contains this")
    parser.add_argument("--statistic", choices=["median", "min"], default="median")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or the process's CPU time (steadier on a loaded machine; with "
        "--threads 1 it is the step's own compute)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    mib = 1024 * 1024
    rows = [
        f"Forward + backward, {EMBEDDING_DIM}-d L2-normalised embeddings, {PER_CLASS} per "
        f"class, {args.threads} threads, {device.type}, {args.statistic} of {args.repeats} "
        f"({args.clock} clock).",
        "",
        "| step | B | dml ms | PML ms | speed-up | dml peak MiB | PML peak MiB "
        "| dml loss | PML loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    timed: list[tuple[str, int, Runner, tuple[float, float]]] = []
    peaks: dict[tuple[str, int], tuple[int, int]] = {}
    for name, steps in cases().items():
        if args.only not in name:
            continue
        for batch in args.sizes:
            runner = Runner(steps, batch, device)
            times = runner.step_ms(args.repeats, args.statistic, args.clock)
            timed.append((name, batch, runner, times))
    # Memory last: the fixed mmap threshold it needs would add page faults to the timings.
    _return_freed_memory_at_once()
    for name, batch, runner, (ours_ms, theirs_ms) in timed:
        ours_peak, theirs_peak = (peak_memory(partial(runner.run, side), device) for side in (0, 1))
        peaks[name, batch] = (ours_peak, theirs_peak)
        rows.append(
            f"| {name} | {batch} | {ours_ms:,.1f} | {theirs_ms:,.1f} | "
            f"{theirs_ms / ours_ms:,.1f}× | {ours_peak / mib:,.1f} | {theirs_peak / mib:,.1f} "
            f"| {runner.losses[0]:.6f} | {runner.losses[1]:.6f} |"
        )
    rows += growth_rows(peaks, sorted(args.sizes))
    print("\n".join(rows))


def growth_rows(peaks: dict[tuple[str, int], tuple[int, int]], sizes: list[int]) -> list[str]:
    """How peak memory grows from the smallest to the largest B, next to B² and B³."""
    if len(sizes) < 2:
        return []
    low, high = sizes[0], sizes[-1]
    scale = high / low
    rows = [
        "",
        f"Peak memory growth from B = {low} to B = {high} (B² grows {scale**2:,.0f}×, "
        f"B³ {scale**3:,.0f}×):",
        "",
        "| step | dml | PML |",
        "|---|---|---|",
    ]
    for name in dict.fromkeys(name for name, _ in peaks):
        if (name, low) in peaks and (name, high) in peaks:
            (ours_low, theirs_low), (ours_high, theirs_high) = peaks[name, low], peaks[name, high]
            rows.append(
                f"| {name} | {ours_high / max(ours_low, 1):,.1f}× "
                f"| {theirs_high / max(theirs_low, 1):,.1f}× |"
            )
    return rows


if __name__ == "__main__":
    main()
