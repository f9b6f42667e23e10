"""The Lightning Trainer of a run: its loggers, checkpoints and callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, RichProgressBar
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dml.errors import DmlError
from dml.instantiate import build
from dml.reporting.history import EpochHistoryLogger
from dml.reporting.wandb_run import build_wandb_logger
from dml.training.ddp_launch import check_ddp_config
from dml.training.resume import AtomicCheckpointIO
from dml.training.selection import MonitoredMetricCheck, checkpoint_callbacks


def build_loggers(cfg: DictConfig, run_dir: Path, resuming: bool = False) -> list[Logger]:
    """metrics.csv always; then the configured logger. A resumed run continues its W&B run."""
    loggers: list[Logger] = [EpochHistoryLogger(run_dir / "metrics.csv", keep_existing=resuming)]
    if cfg.logger is None or "_target_" not in cfg.logger:
        return loggers
    if cfg.logger._target_.endswith("WandbLogger"):
        loggers.append(build_wandb_logger(cfg, run_dir, resuming))
    else:
        loggers.append(build(cfg.logger, save_dir=str(run_dir)))
    return loggers


class LossProgressBar(RichProgressBar):
    """Rich progress with the loss, without Lightning's logger-version column, and with
    training epochs counted from 1: epoch 0 is the validation before training, as in
    metrics.csv, so the bar reads "Epoch 1/8" … "Epoch 8/8"."""

    def get_metrics(self, trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, module)
        items.pop("v_num", None)
        return items

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, module)
        if self.is_disabled or self.progress is None or self.train_progress_bar_id is None:
            return
        description = f"Epoch {trainer.current_epoch + 1}"
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            description += f"/{trainer.max_epochs}"
        width = len(self.validation_description)
        self.progress.update(self.train_progress_bar_id, description=f"{description:{width}}")


class InterruptCheckpoint(Callback):
    """On Ctrl-C or SIGTERM, save ``checkpoints/interrupted.ckpt`` before Lightning shuts
    down, and remember which of them stopped the run.

    SIGTERM is what a cluster scheduler (SLURM at the end of a job's time, a pre-emption)
    sends; Lightning finishes the current batch and raises SIGTERMException, which reaches
    this hook as Ctrl-C's KeyboardInterrupt does.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "checkpoints" / "interrupted.ckpt"
        self.interrupted = False
        self.cause = ""

    def on_exception(
        self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, KeyboardInterrupt | SIGTERMException):
            self.interrupted = True
            self.cause = "SIGTERM" if isinstance(exception, SIGTERMException) else "Ctrl-C"
            # The full training state, as Lightning's own checkpoints hold it (stated, so
            # Lightning does not log that it defaulted to it).
            trainer.save_checkpoint(self.path, weights_only=False)


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """Name the fix when a GPU trainer is asked for on a machine without one."""
    if trainer_cfg.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise DmlError("trainer=gpu needs a CUDA GPU, and torch sees none here; use trainer=cpu")


def build_trainer(
    cfg: DictConfig, run_dir: Path, loggers: list[Logger], extra: list[Callback] | None = None
) -> pl.Trainer:
    check_accelerator(cfg.trainer)
    check_ddp_config(cfg.trainer)
    callbacks: list[Callback] = [
        MonitoredMetricCheck(cfg.optimized_metric),
        *checkpoint_callbacks(cfg, run_dir),
        *(extra or []),
        *(build(node) for node in (cfg.get("callbacks") or {}).values()),
    ]
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(LossProgressBar(leave=True))
    trainer = build(
        cfg.trainer,
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )
    return trainer
