"""Semi-supervised DML: pseudo-labels against the labelled part alone, on mnist5k.

Each seed trains twice with ``dataset.labeled_fraction`` of the training labels (10% by
default): ``semi=none`` on the labelled items alone, ``semi=pseudo_label`` adding the
unlabelled ones under pseudo-labels. Both take the same number of steps (an epoch is the
whole training split either way), so the difference is the pseudo-labelled term. The
seed also draws which items keep their labels. The table gives test MAP@R and P@1 per
seed and their mean, the accuracy of the last pseudo-labels against the hidden truth, and
the minutes per run. Every run is a ``dml train`` subprocess; its directory stays under
``--out`` (metrics.csv holds the pseudo-label accuracy per epoch).

    python scripts/bench_semi.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODES = ("none", "pseudo_label")


def run(
    dml: list[str], mode: str, seed: int, fraction: float, extra: list[str], out: Path
) -> tuple[dict[str, float], float]:
    """One ``dml train``; returns its final metrics and the wall-clock minutes it took."""
    run_dir = out / f"{mode}-seed{seed}"
    command = [
        *dml,
        "train",
        "dataset=mnist5k",
        f"dataset.labeled_fraction={fraction}",
        f"semi={mode}",
        f"seed={seed}",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    minutes = (time.perf_counter() - start) / 60
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with (run_dir / "metrics.csv").open(newline="") as handle:
        accuracies = [
            float(row["train/pseudo_label_accuracy"])
            for row in csv.DictReader(handle)
            if row.get("train/pseudo_label_accuracy")
        ]
    if accuracies:
        metrics["last_pseudo_label_accuracy"] = accuracies[-1]
    return metrics, minutes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labeled-fraction", type=float, default=0.1)
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/bench_semi"), help="run directories"
    )
    parser.add_argument(
        "--dml",
        default=f"{shlex.quote(sys.executable)} -m dml",
        help="the command that runs dml (default: this Python's -m dml)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="further Hydra overrides for every run, e.g. logger=wandb trainer.max_epochs=12",
    )
    args = parser.parse_args()
    extra = (
        args.overrides
        if any(o.startswith("logger=") for o in args.overrides)
        else [
            "logger=none",
            *args.overrides,
        ]
    )
    results: dict[str, list[tuple[dict[str, float], float]]] = {mode: [] for mode in MODES}
    for seed in args.seeds:
        for mode in MODES:
            results[mode].append(
                run(shlex.split(args.dml), mode, seed, args.labeled_fraction, extra, args.out)
            )
    seeds = " | ".join(f"seed {s}" for s in args.seeds)
    print(
        f"\nmnist5k, {100 * args.labeled_fraction:g}% of the training labels, test MAP@R by seed"
        f" (overrides: {' '.join(extra)})\n"
    )
    print(f"| semi | {seeds} | mean MAP@R | mean P@1 | last pseudo-label accuracy | min/run |")
    print("|---|" + "---|" * (len(args.seeds) + 4))
    for mode in MODES:
        runs = results[mode]
        map_at_r = [m["test/map_at_r"] for m, _ in runs]
        p_at_1 = [m["test/precision_at_1"] for m, _ in runs]
        pseudo = [
            m["last_pseudo_label_accuracy"] for m, _ in runs if "last_pseudo_label_accuracy" in m
        ]
        cells = " | ".join(f"{100 * v:.1f}" for v in map_at_r)
        pseudo_cell = f"{100 * np.mean(pseudo):.1f}" if pseudo else "–"
        print(
            f"| {mode} | {cells} | {100 * np.mean(map_at_r):.1f} | {100 * np.mean(p_at_1):.1f} "
            f"| {pseudo_cell} | {np.mean([t for _, t in runs]):.1f} |"
        )


if __name__ == "__main__":
    main()
