"""Soak test: many short runs, SIGKILLed at random moments, then resumed until they finish.

A kill is planned by progress, not by the clock (a loaded machine makes any fixed time land
in start-up): after a random number of logged epochs (none: during start-up or the first
epoch), at a random moment up to ``--max-delay`` seconds later.

Checks afterwards that every run directory holds a loadable last.ckpt, a complete
metrics.json, and that every resume went on with the W&B run it resumed. Prints a Markdown
table of what happened.
Run: python scripts/soak.py --jobs 50 --out /tmp/dml-soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dml.errors import DmlError
from dml.training.checkpoints import load_checkpoint

DML = str(Path(sys.executable).parent / "dml")
EPOCHS = 3
SETTINGS = [
    "dataset=digits",
    "backbone=mlp",
    f"trainer.max_epochs={EPOCHS}",
    "logger=wandb",
    "trainer.enable_progress_bar=false",
    "data.batch_size=60",
    "data.samples_per_class=6",
]


@dataclass(frozen=True)
class Kill:
    """SIGKILL once ``metrics.csv`` holds ``after_rows`` epoch rows, ``delay`` s later."""

    after_rows: int
    delay: float


def logged_rows(run_dir: Path) -> int:
    try:
        return max(len((run_dir / "metrics.csv").read_text().splitlines()) - 1, 0)
    except OSError:
        return 0


def run_once(args: list[str], run_dir: Path, kill: Kill | None) -> bool:
    """Run ``dml train``; True if it was killed before finishing."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.Popen(
        [DML, "train", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if kill is None:
        proc.wait()
        return False
    armed_at = None
    while proc.poll() is None:
        if armed_at is None and logged_rows(run_dir) >= kill.after_rows:
            armed_at = time.monotonic()
        if armed_at is not None and time.monotonic() - armed_at >= kill.delay:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    return False


def wandb_runs(run_dir: Path) -> set[Path]:
    return set(run_dir.glob("wandb/offline-run-*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("outputs/soak"))
    parser.add_argument("--kill-probability", type=float, default=0.7)
    parser.add_argument("--max-delay", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    counts = {
        "jobs": args.jobs,
        "killed": 0,
        "resumed from checkpoint": 0,
        "restarted (killed before a checkpoint)": 0,
        "finished": 0,
        "corrupt or missing last.ckpt": 0,
        "missing or bad metrics.json": 0,
        "resume that started a new W&B run": 0,
    }
    start = time.time()

    def plan(run_dir: Path, probability: float) -> Kill | None:
        if rng.random() >= probability:
            return None
        # Rows: epoch 0 (before training) and one per finished epoch.
        rows = logged_rows(run_dir) + rng.randint(0, EPOCHS)
        return Kill(after_rows=rows, delay=rng.uniform(0.0, args.max_delay))

    for job in range(args.jobs):
        run_dir = (args.out / f"job{job:03d}").resolve()
        base = [*SETTINGS, f"seed={job}", f"hydra.run.dir={run_dir}"]
        counts["killed"] += int(run_once(base, run_dir, plan(run_dir, args.kill_probability)))
        for attempt in range(6):
            if (run_dir / "metrics.json").is_file():
                break
            # Resumes are killed too, less and less often, so a job can die several times.
            kill = plan(run_dir, args.kill_probability / (attempt + 2) if attempt < 4 else 0)
            if (run_dir / "checkpoints" / "last.ckpt").is_file():
                counts["resumed from checkpoint"] += 1
                before = wandb_runs(run_dir)
                killed = run_once([*base, "resume=true"], run_dir, kill)
                saved_id = (run_dir / "wandb_run_id").read_text().strip()
                if any(not p.name.endswith(saved_id) for p in wandb_runs(run_dir) - before):
                    counts["resume that started a new W&B run"] += 1
            else:
                counts["restarted (killed before a checkpoint)"] += 1
                killed = run_once(base, run_dir, kill)
            counts["killed"] += int(killed)
        try:
            load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
        except DmlError:
            counts["corrupt or missing last.ckpt"] += 1
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text())
            assert "test/map_at_r" in metrics
            counts["finished"] += 1
        except (OSError, ValueError, AssertionError):
            counts["missing or bad metrics.json"] += 1
    print(
        f"soak: {args.jobs} jobs in {time.time() - start:.0f} s, seed {args.seed}, "
        f"kill probability {args.kill_probability}, kills up to {args.max_delay} s after "
        "a random number of logged epochs"
    )
    print("| outcome | count |")
    print("|---|---|")
    for key, value in counts.items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
