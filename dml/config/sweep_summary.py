"""A Hydra callback that ends a sweep with what to do next, not with the last job's table.

Once every job has returned it prints the sweep directory, one line per failed job (read
from the job's FAILED marker, so jobs that ran in other processes, under the joblib or
submitit launchers, are counted too) and the ``dml compare`` command for the sweep, then
exits non-zero if any job failed.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dml.reporting.compare.runs import natural_key
from dml.reporting.run_files import is_run_dir, read_failure


def job_dirs(sweep_dir: Path) -> list[Path]:
    if not sweep_dir.is_dir():
        return []
    jobs = (path for path in sweep_dir.iterdir() if path.is_dir() and is_run_dir(path))
    return sorted(jobs, key=natural_key)


def failure(job: Path) -> str | None:
    """Why a job failed (its FAILED marker's first line), or None if it finished."""
    reason = read_failure(job)
    if reason is not None:
        return reason.removeprefix("DmlError: ")
    if not (job / "metrics.json").is_file():
        return "it ended without writing metrics.json"
    return None


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = job_dirs(sweep_dir)
        if not jobs:
            return
        failed = [(job, reason) for job in jobs if (reason := failure(job)) is not None]
        counted = f"{len(jobs)} jobs" + (f", {len(failed)} failed" if failed else "")
        sys.stdout.write(f"Sweep directory: {sweep_dir} ({counted})\n")
        sys.stdout.flush()
        for job, reason in failed:
            sys.stderr.write(f"error: job {job.name} ({job}) failed: {reason}\n")
        sys.stderr.flush()
        sys.stdout.write(f"Compare the runs: dml compare {shlex.quote(str(sweep_dir))}\n")
        sys.stdout.flush()
        if failed:
            # SystemExit passes through Hydra's error reporting; the lines above say why.
            raise SystemExit(1)
