"""``dml eval``: test a checkpoint, with the model and data its stored config describes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from dml.commands.final_metrics import check_final_metrics
from dml.config.build import (
    build_datamodule,
    build_module,
    without_pretrained_weights,
)
from dml.instantiate import build
from dml.moved_targets import moved_to_current
from dml.reporting.console import print_metrics_table
from dml.reporting.evaluation_plots import write_evaluation_plots
from dml.reporting.history import EpochHistoryLogger
from dml.reporting.run_files import record_config, resolve_run_dir, write_json
from dml.training.datamodule import EmbeddingDataModule
from dml.training.ddp_launch import check_ddp_config, start_ddp_processes, stop_ddp_processes
from dml.training.module import EmbeddingModule
from dml.training.precision import check_precision
from dml.training.selection import weights_epoch


def checkpoint_config(cfg: DictConfig, stored: dict[str, Any]) -> DictConfig:
    """The stored training config, with the command line's own overrides applied on top.

    An override replaces its node whole: ``backbone=linear`` must not keep the stored
    backbone's other keys (``hidden_dims``), or the model cannot even be built and the
    checkpoint's mismatch is never named. ``eval`` keys the stored config lacks (it
    predates them) come from this command's config, and classes that moved since the
    checkpoint was written are found at their new paths.
    """
    from hydra.core.hydra_config import HydraConfig

    merged = OmegaConf.create(moved_to_current(stored))
    merged.eval = OmegaConf.merge(cfg.eval, merged.get("eval") or {})
    if HydraConfig.initialized():
        for override in HydraConfig.get().overrides.task:
            key = override.lstrip("+~").split("=", 1)[0]
            if key != "ckpt_path" and not key.startswith("hydra"):
                value = OmegaConf.select(cfg, key)
                OmegaConf.update(merged, key, value, merge=False, force_add=True)
    return merged


def load_trained(cfg: DictConfig) -> tuple[DictConfig, EmbeddingModule, EmbeddingDataModule]:
    """The checkpoint's config (with this command line's overrides), model and data."""
    from dml.training.checkpoints import load_checkpoint, load_weights

    checkpoint = load_checkpoint(cfg.ckpt_path)
    config = checkpoint_config(cfg, checkpoint["dml_config"])
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = build_module(without_pretrained_weights(config))
    load_weights(module, checkpoint["state_dict"], cfg.ckpt_path)
    module.weights_epoch = weights_epoch(checkpoint)
    return config, module, build_datamodule(config, training=False)


def evaluate(cfg: DictConfig, run_dir: Path | str | None = None) -> dict[str, float]:
    """Test a checkpoint; writes metrics.json in this run's directory."""
    run_dir = resolve_run_dir(run_dir)
    config, module, datamodule = load_trained(cfg)
    record_config(run_dir, config)
    history = EpochHistoryLogger(run_dir / "metrics.csv")
    check_ddp_config(config.trainer)
    check_precision(config.trainer)
    trainer = build(
        config.trainer,
        logger=[history],
        default_root_dir=str(run_dir),
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    processes = start_ddp_processes(trainer)
    failed = True
    try:
        trainer.test(module, datamodule=datamodule, verbose=False)
        failed = False
    finally:
        stop_ddp_processes(processes, failed)
    if not trainer.is_global_zero:
        return {}
    final = dict(history.rows[max(history.rows)])
    write_json(run_dir / "metrics.json", final)
    write_evaluation_plots(
        run_dir,
        module.extras.retrieval_examples,
        module.extras.roc_curves,
        datamodule.splits,
        datamodule.source.transform,
    )
    print_metrics_table(final, run_dir, title=f"Evaluation of {cfg.ckpt_path}")
    check_final_metrics(final, run_dir)
    return final
