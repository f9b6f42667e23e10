"""The W&B logger of a run: identity, step metric, resume, and an offline fallback.

W&B must never cost a run its results: if it cannot start online (no network, a wrong
key), the run warns once and logs to local offline files, which `wandb sync` uploads later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn

from dml.instantiate import build
from dml.reporting.run_files import save_wandb_id, saved_wandb_id
from dml.reporting.run_naming import run_identity, run_variant

INTERRUPTED = 130  # the shell's exit status after SIGINT


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as dotted keys, so a W&B table can filter by any of them."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


# Keys of the logger config that configure Lightning's WandbLogger itself; every other
# key (project, mode, entity, job_type, ...) is an argument of wandb.init.
LOGGER_ONLY_KEYS = ("_target_", "log_model", "prefix", "checkpoint_name", "save_dir")


def build_wandb_logger(cfg: DictConfig, run_dir: Path, resuming: bool) -> WandbLogger:
    """Start the W&B run and wrap it in Lightning's logger.

    dml calls ``wandb.init`` itself and hands the run to ``WandbLogger(experiment=...)``:
    Lightning's own call passes ``anonymous=None``, which makes every run print W&B's
    warning that the setting has no effect.
    """
    import wandb

    name, group, tags = run_identity(cfg)
    previous_id = saved_wandb_id(run_dir) if resuming else None
    identity: dict[str, Any] = {
        "name": cfg.logger.name or name,
        "group": cfg.logger.group or group,
        "tags": list(cfg.logger.tags) if cfg.logger.tags else tags,
    }
    if previous_id:
        identity.update(id=previous_id, resume="allow")
    if rank_zero_only.rank != 0:
        # Another DDP process: rank 0 owns the W&B run, and Lightning logs only there.
        return build(cfg.logger, save_dir=str(run_dir), **identity)
    settings = OmegaConf.to_container(cfg.logger, resolve=True)
    assert isinstance(settings, dict)
    init_args = {k: v for k, v in settings.items() if k not in LOGGER_ONLY_KEYS}
    logger_args = {k: v for k, v in settings.items() if k in LOGGER_ONLY_KEYS}

    def start(**extra: Any) -> tuple[WandbLogger, Any]:
        run = wandb.init(**{**init_args, **identity, "dir": str(run_dir), **extra})
        return build(logger_args, save_dir=str(run_dir), experiment=run), run

    try:
        logger, experiment = start()
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, wandb.errors.Error) and init_args.get("mode") != "offline":
            rank_zero_warn(
                f"W&B could not start online ({reason}); logging offline to {run_dir}/wandb "
                "instead. Upload later with `wandb sync`."
            )
            logger, experiment = start(mode="offline")
        elif previous_id:
            # A run killed mid-write can leave W&B unable to continue it: keep training.
            rank_zero_warn(f"could not resume W&B run {previous_id} ({reason}); starting a new one")
            del identity["id"], identity["resume"]
            logger, experiment = start()
        else:
            raise
    save_wandb_id(run_dir, experiment.id)
    experiment.define_metric("epoch")
    for prefix in ("train", "val", "test"):
        experiment.define_metric(f"{prefix}/*", step_metric="epoch")
    experiment.define_metric("val/map_at_r", step_metric="epoch", summary="max")
    # ``variant``: the dashboard's "Group by: variant" pools the seeds of one configuration.
    logger.log_hyperparams({**flat_config(cfg), "variant": run_variant(cfg)})
    return logger


def finish_loggers(loggers: list[Logger], exit_code: int) -> None:
    """Close each W&B run, so jobs of a multirun never share one. Only rank 0 has one:
    :func:`build_wandb_logger` started it there, and Lightning logs nowhere else."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and rank_zero_only.rank == 0:
            if exit_code == INTERRUPTED:
                logger.experiment.summary["status"] = "interrupted"
            logger.experiment.finish(exit_code=exit_code)
