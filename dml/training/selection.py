"""Model selection on validation, never on test, and the two checkpoints a run keeps.

``optimized_metric`` (with ``optimized_direction``) is the one setting for both what a
sweeper optimises and what picks ``checkpoints/best.ckpt``: a run that tunes on one metric
must not select its checkpoint on another. ``eval.test_checkpoint`` says which of the two
checkpoints the run's own test pass scores.

``checkpoints/last.ckpt`` comes from a second callback with no monitor, so it is rewritten
after every epoch whatever validation does: kill -9 resume, Ctrl-C and ``dml eval`` rely on
it. (A monitored ModelCheckpoint with ``save_last=True`` writes last.ckpt only when best
improves, in the pytorch-lightning 2.6 that pyproject.toml pins.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from dml.errors import DmlError

CHECKPOINT_DIR = "checkpoints"
# optimized_direction, in Optuna's words, as Lightning's ModelCheckpoint mode.
LIGHTNING_MODE = {"maximize": "max", "minimize": "min"}
TEST_CHECKPOINTS = ("best", "last")
# In metrics.json: the optimized_metric of the tested checkpoint (what a sweeper receives),
# and the training epoch (1-based, as the rows of metrics.csv) whose weights were tested.
SELECTION_SCORE = "selection/score"
TESTED_EPOCH = "test/epoch"


def checkpoint_callbacks(cfg: DictConfig, run_dir: Path) -> list[ModelCheckpoint]:
    """best.ckpt (monitored on ``optimized_metric``) and last.ckpt (every epoch).

    Best comes first, so the last.ckpt of an epoch carries the best-so-far state that this
    epoch produced, and a resumed run keeps comparing against the right best. Neither adds
    ``-v1`` suffixes: a run directory holds exactly these two files.
    """
    directory = run_dir / CHECKPOINT_DIR
    best = ModelCheckpoint(
        dirpath=directory,
        filename="best",
        monitor=cfg.optimized_metric,
        mode=LIGHTNING_MODE[cfg.optimized_direction],
        save_top_k=1,
        save_last=False,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(
        dirpath=directory,
        filename="last",
        monitor=None,
        save_top_k=1,
        save_last=False,
        enable_version_counter=False,
    )
    return [best, last]


class MonitoredMetricCheck(Callback):
    """A validation pass that did not log ``optimized_metric`` stops the run in one line.

    It runs before the checkpoint callbacks (Lightning orders them last), which would
    otherwise fail with a Lightning traceback; the first such pass is the one before
    training, so a misspelt metric costs no training.
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.metric not in trainer.callback_metrics:
            logged = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
            raise DmlError(
                f"optimized_metric={self.metric} is not a metric that validation logs; "
                f"choose one of {', '.join(logged)}"
            )


def tested_checkpoint(cfg: DictConfig, run_dir: Path) -> Path:
    """The checkpoint the run's test pass scores: ``eval.test_checkpoint`` of the two."""
    path = run_dir / CHECKPOINT_DIR / f"{cfg.eval.test_checkpoint}.ckpt"
    if not path.is_file():
        raise DmlError(
            f"eval.test_checkpoint={cfg.eval.test_checkpoint} needs {path}, which training did "
            "not write; train at least one epoch, or resume the run with resume=true"
        )
    return path


def selection_score(history: dict[int, dict[str, float]], metric: str, epoch: int) -> float:
    """The validation score that selected the tested checkpoint (NaN if not logged)."""
    return float(history.get(epoch, {}).get(metric, float("nan")))


def weights_epoch(checkpoint: dict[str, Any]) -> int | None:
    """The training epoch whose weights a checkpoint holds, 1-based as metrics.csv rows
    (Lightning stores the 0-based index of the epoch the weights finished)."""
    return int(checkpoint["epoch"]) + 1 if "epoch" in checkpoint else None
