"""The README's "Comparing fairly" measurement: three losses, several seeds, one table.

Runs, one job after another (so wall times do not compete for the cores):

    dml train -m experiment=mnist5k_unseen loss=triplet,contrastive,multi_similarity \\
        seed=0,1,2,3,4 hydra.sweep.dir=<out>
    dml compare <out>

and prints compare.md (mean ± 95% CI per loss, Welch's p-value of the best against the
runner-up) followed by the wall time of each loss: the mean seconds per run, from the
job's start (Hydra writes ``.hydra/config.yaml``) to its ``metrics.json``, so it includes
loading the data and evaluating, as a user waits for them. Run it on a quiet machine.

    .venv/bin/python scripts/fair_comparison.py                       # the full measurement
    .venv/bin/python scripts/fair_comparison.py --seeds 2 -- trainer.max_epochs=1   # a check

Overrides after ``--`` are added to the `dml train` command line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

LOSSES = ("triplet", "contrastive", "multi_similarity")


def dml(*args: str) -> None:
    """Run `dml` from this Python's environment; stop with its exit status if it fails."""
    executable = Path(sys.executable).with_name("dml")
    result = subprocess.run([str(executable), *args], check=False)
    if result.returncode != 0:
        raise SystemExit(f"`dml {' '.join(args)}` failed with exit status {result.returncode}")


def run_seconds(job: Path) -> float | None:
    """From the job's start to its metrics.json; None for a job that did not finish."""
    start, end = job / ".hydra" / "config.yaml", job / "metrics.json"
    if not (start.is_file() and end.is_file()):
        return None
    return end.stat().st_mtime - start.stat().st_mtime


def wall_time_table(sweep: Path) -> list[str]:
    per_loss: dict[str, list[float]] = {}
    for job in sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        loss = dict(o.split("=", 1) for o in overrides)["loss"]
        seconds = run_seconds(job)
        if seconds is not None:
            per_loss.setdefault(loss, []).append(seconds)
    lines = [
        "| loss | finished runs | seconds per run (mean) | min | max |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for loss, seconds in per_loss.items():
        lines.append(
            f"| {loss} | {len(seconds)} | {np.mean(seconds):.0f} | {min(seconds):.0f} | "
            f"{max(seconds):.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 … N−1 (default 5)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/fair_comparison") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"),
        help="the sweep directory (default: outputs/fair_comparison/<timestamp>)",
    )
    parser.add_argument("overrides", nargs="*", help="extra `dml train` overrides, after --")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    seeds = ",".join(str(seed) for seed in range(args.seeds))
    command = [
        "train",
        "-m",
        "experiment=mnist5k_unseen",
        f"loss={','.join(LOSSES)}",
        f"seed={seeds}",
        *args.overrides,
        f"hydra.sweep.dir={args.out}",
    ]
    start = time.perf_counter()
    dml(*command)
    total = time.perf_counter() - start
    dml("compare", str(args.out))
    print(f"\n`dml {' '.join(command)}`\n")
    print((args.out / "compare.md").read_text())
    print("\n".join(wall_time_table(args.out)))
    print(f"\nThe whole sweep: {total / 60:.1f} minutes.")


if __name__ == "__main__":
    main()
