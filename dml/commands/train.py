"""``dml train``: train, validate every epoch (and once before training), test."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig

from dml.commands.final_metrics import check_final_metrics
from dml.config.build import build_datamodule, build_module
from dml.config.checks import check_config
from dml.config.preprocessing import announce
from dml.errors import RunInterrupted
from dml.instantiate import build
from dml.metrics.baseline import raw_input_baseline
from dml.reporting.console import print_metrics_table
from dml.reporting.evaluation_plots import write_evaluation_plots
from dml.reporting.run_files import resolve_run_dir, split_record, write_json
from dml.reporting.run_plots import log_plots, write_run_plots
from dml.reporting.wandb_run import INTERRUPTED, finish_loggers
from dml.training.ddp_launch import start_ddp_processes, stop_ddp_processes
from dml.training.distributed import is_rank_zero
from dml.training.health import BELOW_RAW, below_raw_baseline
from dml.training.resume import check_writable, resume_checkpoint
from dml.training.selection import (
    SELECTION_SCORE,
    TESTED_EPOCH,
    selection_score,
    tested_checkpoint,
)
from dml.training.trainer import InterruptCheckpoint, build_loggers, build_trainer

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: Path | str | None = None) -> dict[str, float]:
    """Train, validate every epoch (and once before training), test; return final metrics.

    Under DDP the other processes run this too (rank 0 starts them once its Trainer is
    built), but only rank 0 writes: they return an empty dict.
    """
    check_config(cfg)
    run_dir = resolve_run_dir(run_dir)
    if is_rank_zero():
        check_writable(run_dir)
    ckpt_path = resume_checkpoint(cfg, run_dir)
    announce(cfg, run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    pseudo_labeler = build(cfg.get("semi"))
    # The model first: missing weights or a compile failure show before the data loads.
    module = build_module(cfg)
    datamodule = build_datamodule(cfg, pseudo_labeler)
    datamodule.setup("fit")
    if is_rank_zero():
        write_json(run_dir / "splits.json", split_record(datamodule.splits))
    loggers = build_loggers(cfg, run_dir, resuming=ckpt_path is not None)
    exit_code = 1
    processes = None
    final: dict[str, float] = {}
    below_raw: str | None = None
    interrupt = InterruptCheckpoint(run_dir)
    extra = [interrupt] if pseudo_labeler is None else [interrupt, pseudo_labeler]
    try:
        trainer = build_trainer(cfg, run_dir, loggers, extra=extra)
        processes = start_ddp_processes(trainer)
        if ckpt_path is None:
            if is_rank_zero():
                baseline = raw_input_baseline(
                    datamodule.splits,
                    cfg.normalize_embeddings,
                    list(cfg.eval.k_values),
                    backend=cfg.eval.backend,
                    exclude_same_group=cfg.eval.exclude_same_group,
                )
                for logger in loggers:
                    logger.log_metrics({**baseline, "epoch": 0})
            trainer.validate(module, datamodule=datamodule, verbose=False)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        tested = tested_checkpoint(cfg, run_dir)
        trainer.test(module, datamodule=datamodule, ckpt_path=str(tested), verbose=False)
        if trainer.is_global_zero:
            history = loggers[0].rows
            raw = {k: v for k, v in history.get(0, {}).items() if k.startswith("test/raw_")}
            final = {**raw, **history[max(history)]}
            # The run's health is the whole run's, as warned in the console.
            final["health/collapse"] = float(module.collapse.warned)
            below_raw = below_raw_baseline(final)
            if raw:
                final[BELOW_RAW] = float(below_raw is not None)
                for logger in loggers:
                    logger.log_metrics({BELOW_RAW: final[BELOW_RAW], "epoch": max(history)})
            final[SELECTION_SCORE] = selection_score(
                history, cfg.optimized_metric, int(final[TESTED_EPOCH])
            )
            write_json(run_dir / "metrics.json", final)
            names = datamodule.splits.test.class_names
            plots = write_run_plots(run_dir, **module.snapshots, class_names=names)
            plots += write_evaluation_plots(
                run_dir,
                module.extras.retrieval_examples,
                module.extras.roc_curves,
                datamodule.splits,
                datamodule.source.transform,
            )
            log_plots(loggers, plots)
        exit_code = 0
    except SystemExit:
        if not interrupt.interrupted:
            raise
        exit_code = INTERRUPTED
        raise RunInterrupted(
            f"interrupted by {interrupt.cause}; saved {interrupt.path}. Continue from the "
            f"last finished epoch with: {resume_command(cfg, run_dir)}"
        ) from None
    finally:
        # Children first: once this process has failed, one of them exiting must not
        # make the watcher kill this process before W&B has finished.
        stop_ddp_processes(processes, failed=exit_code != 0)
        finish_loggers(loggers, exit_code)
    if final:
        if below_raw is not None:
            log.warning(below_raw)
        print_metrics_table(final, run_dir)
        check_final_metrics(final, run_dir)
    return final


def resume_command(cfg: DictConfig, run_dir: Path) -> str:
    """The command line that continues this run (a fold of ``cv.folds`` continues its
    whole job, whose directory is Hydra's)."""
    from hydra.core.hydra_config import HydraConfig

    overrides = []
    if HydraConfig.initialized():
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        overrides = [
            o
            for o in HydraConfig.get().overrides.task
            if not o.startswith(("hydra.run.dir=", "resume="))
        ]
    return " ".join(["dml train", *overrides, f"hydra.run.dir={run_dir}", "resume=true"])
