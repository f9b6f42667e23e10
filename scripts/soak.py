"""Soak test: many short runs, SIGKILLed at random moments, then resumed until they finish.

Checks afterwards that every run directory holds a loadable last.ckpt, a complete
metrics.json and a single W&B (offline) run id across all its resumes. Prints a Markdown
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
from pathlib import Path

from dml.checkpoints import load_checkpoint
from dml.errors import DmlError

DML = str(Path(sys.executable).parent / "dml")
SETTINGS = [
    "dataset=digits",
    "backbone=mlp",
    "trainer.max_epochs=3",
    "logger=wandb",
    "trainer.enable_progress_bar=false",
    "data.batch_size=60",
    "data.samples_per_class=6",
]


def run_once(args: list[str], kill_after: float | None) -> bool:
    """Run ``dml train``; True if it was killed before finishing."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.Popen(
        [DML, "train", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        proc.wait(timeout=kill_after)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("outputs/soak"))
    parser.add_argument("--kill-probability", type=float, default=0.7)
    parser.add_argument("--max-kill-seconds", type=float, default=12.0)
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
        "more than one W&B run id": 0,
    }
    start = time.time()
    for job in range(args.jobs):
        run_dir = (args.out / f"job{job:03d}").resolve()
        base = [*SETTINGS, f"seed={job}", f"hydra.run.dir={run_dir}"]
        kill_after = (
            rng.uniform(1.0, args.max_kill_seconds)
            if rng.random() < args.kill_probability
            else None
        )
        if run_once(base, kill_after):
            counts["killed"] += 1
        for attempt in range(6):
            if (run_dir / "metrics.json").is_file():
                break
            # Resumes are killed too, less and less often, so a job can die several times.
            kill_again = (
                rng.uniform(1.0, args.max_kill_seconds)
                if attempt < 4 and rng.random() < args.kill_probability / (attempt + 2)
                else None
            )
            if (run_dir / "checkpoints" / "last.ckpt").is_file():
                counts["resumed from checkpoint"] += 1
                killed = run_once([*base, "resume=true"], kill_again)
            else:
                counts["restarted (killed before a checkpoint)"] += 1
                killed = run_once(base, kill_again)
            counts["killed"] += int(killed)
        run_ids = {path.name.rsplit("-", 1)[-1] for path in run_dir.glob("wandb/offline-run-*")}
        if len(run_ids) > 1:
            counts["more than one W&B run id"] += 1
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
        f"kill probability {args.kill_probability}, kills within {args.max_kill_seconds} s"
    )
    print("| outcome | count |")
    print("|---|---|")
    for key, value in counts.items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
