"""The files of a run directory, read and written: metrics.json, metrics.csv, splits.json,
the W&B run id and the FAILED marker.

Training, plots, ``dml compare``, the sweep summary and the commands share these, so each
file format lives in one place.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from dml.datasets.base import DataSplits


def read_history(path: Path) -> dict[str, np.ndarray]:
    """metrics.csv as one float array per column; cells a row never logged are NaN.

    A run killed mid-epoch still leaves a readable file (it is replaced atomically), so
    this also serves runs that never finished.
    """
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {
        column: np.array([float(row[column]) if row.get(column) else math.nan for row in rows])
        for column in rows[0]
    }


def read_metrics(path: Path) -> dict[str, float]:
    return {key: float(value) for key, value in json.loads(Path(path).read_text()).items()}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically: a killed run never leaves half a metrics.json."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def split_record(splits: DataSplits) -> dict[str, dict[str, Any]]:
    """Each split's class ids (sorted) and number of samples: the content of splits.json.

    With it anyone can check, from the run directory alone, that no test class was ever
    trained or validated on, and that the folds of a cross-validation are disjoint.
    Semi-supervised training records the true classes of its items, hidden labels too.
    """
    record = {}
    for field in fields(splits):
        dataset = getattr(splits, field.name)
        if dataset is not None:
            classes = np.unique(dataset.class_labels.numpy())
            record[field.name] = {"classes": classes.tolist(), "samples": len(dataset)}
    return record


def resolve_run_dir(run_dir: Path | str | None) -> Path:
    """The given directory, or Hydra's output directory of this job; created if missing."""
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_run_dir(path: Path) -> bool:
    """A directory a run wrote: Hydra's record of its config, or its metric history."""
    return (path / ".hydra").is_dir() or (path / "metrics.csv").is_file()


# What makes a run directory worth keeping after a failure: anything the run measured.
RESULT_FILES = ("metrics.csv", "metrics.json", "checkpoints")


def holds_results(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in RESULT_FILES)


def record_config(run_dir: Path, config: Any) -> None:
    """Save the config a command actually used as ``.hydra/config.yaml``.

    ``dml eval`` and ``dml embed`` compose train.yaml's defaults, but run the checkpoint's
    own config; Hydra's record would name the defaults, not what was evaluated.
    """
    from omegaconf import OmegaConf

    hydra_dir = Path(run_dir) / ".hydra"
    if hydra_dir.is_dir():
        OmegaConf.save(config, hydra_dir / "config.yaml")


# Holds the error of a run that failed; a run without it either finished (metrics.json) or
# may still be running.
FAILED_MARKER = "FAILED"


def write_failure_marker(run_dir: Path, error: BaseException) -> None:
    """Leave ``FAILED`` in a run directory, holding the error, so compare can mark the run.

    Without it a crash and a run still training look the same from the files alone.
    """
    Path(run_dir, FAILED_MARKER).write_text(f"{type(error).__name__}: {error}\n")


def read_failure(run_dir: Path) -> str | None:
    """The first line of the run's FAILED marker ("FAILED" if empty); None without one."""
    marker = Path(run_dir) / FAILED_MARKER
    if not marker.is_file():
        return None
    return (marker.read_text().strip().splitlines() or [FAILED_MARKER])[0]


# The W&B run of a run directory, so that a resumed run logs into the same W&B run.
WANDB_ID_FILE = "wandb_run_id"


def saved_wandb_id(run_dir: Path) -> str | None:
    path = Path(run_dir) / WANDB_ID_FILE
    return path.read_text().strip() if path.is_file() else None


def save_wandb_id(run_dir: Path, run_id: str) -> None:
    (Path(run_dir) / WANDB_ID_FILE).write_text(run_id + "\n")
