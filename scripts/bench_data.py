"""Images/s of dml's training loader against a plain torchvision pipeline, on full-size CUB.

    python scripts/bench_data.py --data data            # writes data/CUB_200_2011 if absent
    python scripts/bench_data.py --data data --workers 4 --rounds 5

dml's loader is built exactly as `dml train dataset=cub200` builds it (the data module's
P×K train loader, the `imagenet` transform, data.num_workers=auto unless --workers is
given). The plain pipeline is torchvision's ImageFolder over the same JPEGs with the same
transform object, shuffled batches of the same size, and the same worker, pinning and
persistence settings. The two are timed in alternation, in several rounds (the order
flips every round), and the median of each is reported. The last rows are the bound a
worker pool can reach: one process decoding and transforming items back to back (CPU
time per image, from time.process_time), times the workers. Target: dml ≥ 0.95× plain.

Timings depend on the machine and its load: the table prints the CPU model and the load
average; measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from dml.config.build import build_datamodule
from dml.datasets.fakes.benchmarks import make_benchmark
from dml.instantiate import build
from dml.training.workers import usable_cores

WARMUP_BATCHES = 2


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def dml_config(root: Path, workers: str, num_classes: int, train_classes: int) -> Any:
    overrides = [
        "dataset=cub200",
        f"dataset.data_dir={root}",
        f"dataset.num_classes={num_classes}",
        f"dataset.train_classes={train_classes}",
        f"data.num_workers={workers}",
        "logger=none",
    ]
    with initialize_config_module("dml.conf", version_base="1.3"):
        return compose("train", overrides=overrides)


def class_counts(root: Path) -> tuple[int, int]:
    """(classes, training classes) of a CUB tree: the first half train, as in the release."""
    classes = len((root / "classes.txt").read_text().split("\n")) - 1
    return classes, classes // 2


def images_per_second(loader: DataLoader, batches: int) -> float:
    iterator = iter(loader)
    for _ in range(WARMUP_BATCHES):
        next(iterator)
    count = 0
    start = time.perf_counter()
    for _ in range(batches):
        x, _ = next(iterator)
        count += len(x)
    return count / (time.perf_counter() - start)


def one_worker(dataset: Any, items: int) -> tuple[float, float]:
    """(images/s, CPU ms per image) of decoding and transforming items in this process,
    with one intra-op thread as a DataLoader worker has."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:items]
    wall, cpu = time.perf_counter(), time.process_time()
    for index in order.tolist():
        dataset[index]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    torch.set_num_threads(threads)
    return len(order) / wall, 1000 * cpu / len(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="holds CUB_200_2011/")
    parser.add_argument("--scale", type=float, default=1.0, help="size of a tree to generate")
    parser.add_argument("--workers", default="auto", help="data.num_workers (default: auto)")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=200, help="items for the one-worker rows")
    args = parser.parse_args()

    root = args.data / "CUB_200_2011"
    if not (root / "images.txt").is_file():
        start = time.perf_counter()
        make_benchmark("cub200", args.data, scale=args.scale)
        print(f"wrote {root} in {time.perf_counter() - start:.0f} s")
    cfg = dml_config(root, args.workers, *class_counts(root))
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    dml_loader = datamodule.train_dataloader()
    transform = build(cfg.dataset.transform).train_transform()
    folder = ImageFolder(str(root / "images"), transform=transform)
    plain_loader = DataLoader(
        folder,
        batch_size=cfg.data.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=datamodule.num_workers,
        pin_memory=datamodule.pin_memory,
        persistent_workers=datamodule.persistent_workers,
    )
    batches = min(args.batches, len(dml_loader) - WARMUP_BATCHES, len(plain_loader) - 2)
    if batches < 1:
        raise SystemExit(f"{root} is too small for {cfg.data.batch_size}-image batches")
    load_before = os.getloadavg()[0]
    # The one-worker rows come first: once a loader with persistent workers has run, its
    # workers go on prefetching in the background and would slow whatever is timed next.
    dml_rate, dml_cpu = one_worker(datamodule.splits.train, args.items)
    plain_rate, plain_cpu = one_worker(folder, args.items)
    rates: dict[str, list[float]] = {"dml": [], "plain": []}
    loaders = {"dml": dml_loader, "plain": plain_loader}
    for round_number in range(args.rounds):
        order = ("dml", "plain") if round_number % 2 == 0 else ("plain", "dml")
        for name in order:
            rates[name].append(images_per_second(loaders[name], batches))
    load_after = os.getloadavg()[0]

    dml_median = statistics.median(rates["dml"])
    plain_median = statistics.median(rates["plain"])
    workers = datamodule.num_workers
    print(
        f"CPU: {cpu_model()}, {usable_cores()} usable cores; load average {load_before:.2f} "
        f"before, {load_after:.2f} after; torch {torch.__version__}"
    )
    print(
        f"data: {root} ({len(folder)} JPEGs, {len(datamodule.splits.train)} in dml's train "
        f"split); batches of {cfg.data.batch_size}, {batches} timed after {WARMUP_BATCHES} "
        f"warm-up, {args.rounds} rounds (median)"
    )
    print()
    print("| pipeline | workers | images/s | vs plain | CPU ms/image |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| dml train loader (P×K, imagenet transform) | {workers} | {dml_median:.0f} "
        f"| {dml_median / plain_median:.2f}× | |"
    )
    print(f"| torchvision ImageFolder + DataLoader | {workers} | {plain_median:.0f} | 1.00× | |")
    print(f"| one worker: dml item (decode + transform) | 1 | {dml_rate:.0f} | | {dml_cpu:.2f} |")
    print(f"| one worker: ImageFolder item | 1 | {plain_rate:.0f} | | {plain_cpu:.2f} |")
    bound = dml_rate * max(workers, 1)
    print(f"| bound: one worker × {max(workers, 1)} | {workers} | {bound:.0f} | | |")
    print()
    verdict = "meets" if dml_median >= 0.95 * plain_median else "misses"
    print(f"dml / plain = {dml_median / plain_median:.3f} ({verdict} the 0.95 target)")
    for name, values in rates.items():
        print(f"rounds, {name}: {', '.join(f'{value:.0f}' for value in values)} images/s")


if __name__ == "__main__":
    main()
