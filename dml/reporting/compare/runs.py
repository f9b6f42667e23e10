"""The runs of a sweep as `dml compare` sees them, read from their run directories alone.

Everything comes from files a run directory holds (``.hydra/overrides.yaml`` and
``hydra.yaml``, ``metrics.json``, ``metrics.csv``), so a sweep can be compared on a
machine with no W&B account, or after the W&B runs were deleted. W&B's local run file is
read only to tell a crashed run from one still going, and only when the ``wandb``
command is there.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from dml.errors import DmlError
from dml.reporting.run_files import is_run_dir, read_failure, read_history, read_metrics
from dml.reporting.run_naming import override_key, variant_of

BEST_METRIC = "val/map_at_r"


@dataclass
class RunRecord:
    """One run directory as compare sees it.

    ``metrics`` is metrics.json for a finished run; for any other run it is the latest
    value of each column in metrics.csv, so a crashed run still shows how far it got.
    ``choices`` are the config group options Hydra composed (``.hydra/hydra.yaml``),
    also those no override named.
    """

    path: Path
    overrides: list[str]
    status: str
    reason: str
    metrics: dict[str, float]
    history: dict[str, np.ndarray] = field(repr=False)
    best_epoch: int | None
    best_value: float | None
    epochs: int
    choices: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def variant(self) -> str:
        """The W&B ``variant`` this run logged: its overrides less seed and fold."""
        return variant_of(self.overrides)

    @property
    def dataset(self) -> str | None:
        """The dataset option the run used; None where its files do not say."""
        return self.setting("dataset")

    def setting(self, key: str) -> str | None:
        """The value the run gave ``key``: its override, else Hydra's group choice."""
        for override in self.overrides:
            if override_key(override) == key:
                return override.partition("=")[2]
        return self.choices.get(key)


def natural_key(path: Path) -> tuple[int, int | str]:
    """Job directories 0, 1, …, 10 in numeric order, other names after them."""
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Run directories named directly, or the job directories inside a multirun directory."""
    runs: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise DmlError(
                f"{path}: no such directory; give a multirun directory or run directories"
            )
        if is_run_dir(path):
            runs.append(path)
            continue
        jobs = sorted((p for p in path.iterdir() if p.is_dir() and is_run_dir(p)), key=natural_key)
        if not jobs:
            raise DmlError(
                f"{path} holds no run directories: a run directory has .hydra/ or metrics.csv, "
                "and a multirun directory holds them as numbered job directories"
            )
        runs.extend(jobs)
    return runs


def read_overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(item) for item in yaml.safe_load(path.read_text()) or []]


def read_choices(run_dir: Path) -> dict[str, str]:
    """The group options Hydra composed, from ``.hydra/hydra.yaml``; {} without it."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    runtime = (yaml.safe_load(path.read_text()) or {}).get("hydra", {}).get("runtime", {})
    return {str(k): str(v) for k, v in (runtime.get("choices") or {}).items() if v is not None}


def wandb_exit_code(run_dir: Path) -> int | None:
    """The exit code a W&B run recorded for itself, or None if it recorded none (yet).

    Read with ``wandb leet inspect``, the reader W&B ships for its local run files.
    """
    files = sorted(run_dir.glob("wandb/*run-*/run-*.wandb"))
    executable = Path(sys.executable).with_name("wandb")
    command = str(executable) if executable.exists() else shutil.which("wandb")
    if not files or command is None:
        return None
    try:
        result = subprocess.run(
            [command, "leet", "inspect", "--summary", "--json", str(files[-1])],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        code = json.loads(result.stdout).get("exit_code")
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return None
    return None if code is None else int(code)


def latest_values(history: dict[str, np.ndarray]) -> dict[str, float]:
    latest = {}
    for column, values in history.items():
        present = values[~np.isnan(values)]
        if len(present):
            latest[column] = float(present[-1])
    return latest


def best_epoch(
    history: dict[str, np.ndarray], metric: str = BEST_METRIC
) -> tuple[int | None, float | None]:
    """The epoch with the highest value of ``metric`` (the first, on ties) and that value."""
    values = history.get(metric)
    if values is None or np.isnan(values).all():
        return None, None
    index = int(np.nanargmax(values))
    return int(history["epoch"][index]), float(values[index])


def load_run(run_dir: Path) -> RunRecord:
    history = read_history(run_dir / "metrics.csv") if (run_dir / "metrics.csv").is_file() else {}
    epochs = int(np.nanmax(history["epoch"])) if len(history.get("epoch", ())) else 0
    failure = read_failure(run_dir)
    if (run_dir / "metrics.json").is_file():
        status, reason, metrics = "finished", "", read_metrics(run_dir / "metrics.json")
    elif failure is not None:
        status, reason, metrics = "failed", failure, latest_values(history)
    else:
        code = wandb_exit_code(run_dir)
        metrics = latest_values(history)
        if code:
            status, reason = "failed", f"W&B run exited with code {code}"
        elif history:
            status, reason = "unfinished", f"no metrics.json; metrics.csv reaches epoch {epochs}"
        else:
            status, reason = "unfinished", "no metrics.json nor metrics.csv"
    best, best_value = best_epoch(history)
    return RunRecord(
        path=run_dir,
        overrides=read_overrides(run_dir),
        status=status,
        reason=reason,
        metrics=metrics,
        history=history,
        best_epoch=best,
        best_value=best_value,
        epochs=epochs,
        choices=read_choices(run_dir),
    )


def sort_runs(runs: list[RunRecord], metric: str, ascending: bool) -> list[RunRecord]:
    """Finished runs first, each part ordered by ``metric``; a run without it goes last."""

    def key(run: RunRecord) -> tuple[bool, bool, float]:
        value = run.metrics.get(metric, math.nan)
        if math.isnan(value):
            return (run.status != "finished", True, 0.0)
        return (run.status != "finished", False, value if ascending else -value)

    return sorted(runs, key=key)


def varying_overrides(runs: Sequence[RunRecord]) -> tuple[list[list[str]], list[str]]:
    """Each run's overrides that differ across the runs, and those all runs share.

    A sweep's jobs repeat the same fixed overrides (``dataset=digits``); showing them once
    keeps the table's column to what tells the runs apart.
    """
    common = set.intersection(*(set(run.overrides) for run in runs)) if runs else set()
    shared = [o for o in runs[0].overrides if o in common] if runs else []
    return [[o for o in run.overrides if o not in common] for run in runs], shared
