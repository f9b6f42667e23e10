"""train(cfg) and evaluate(cfg): plain functions that Hydra's entry points wrap.

They can be called from Python with a composed config (tests, notebooks, the scikit-learn
wrapper) as well as from the CLI.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import Logger

from dml.baseline import raw_input_baseline
from dml.config_checks import check_config
from dml.datamodule import EmbeddingDataModule
from dml.datasets.base import DatasetSource, DataSplits, LabeledDataset
from dml.distributed import finish_distributed, is_rank_zero, prepare_distributed
from dml.errors import DmlError
from dml.history import EpochHistoryLogger
from dml.losses.compat import check_compatible
from dml.metrics.neighbours import check_backend
from dml.module import EmbeddingModule
from dml.plots import log_plots, write_run_plots
from dml.report import print_metrics_table
from dml.resume import AtomicCheckpointIO, check_writable, resume_checkpoint
from dml.semi import PseudoLabeler, SemiSupervisedDataModule
from dml.wandb_logging import INTERRUPTED, build_wandb_logger, finish_loggers

log = logging.getLogger(__name__)


def build(node: DictConfig | None, **kwargs: Any) -> Any:
    """Instantiate a config node; an empty node (e.g. ``miner=none``) gives None.

    Hydra wraps errors raised by constructors; a DmlError is unwrapped so the user sees
    its one-line message, not Hydra's report around it.
    """
    if node is None or "_target_" not in node:
        return None
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, DmlError):
            raise cause from None
        raise DmlError(f"{str(exc).splitlines()[0]} {cause}" if cause else str(exc)) from exc


def build_module(cfg: DictConfig) -> EmbeddingModule:
    check_backend(cfg.eval.backend, "eval.backend")
    backbone = build(cfg.backbone)
    loss, gather = build_loss(cfg)
    miner = build(cfg.miner)
    memory = build(cfg.get("memory"))
    pairs = cfg.get("dataset", {}).get("pairs", False)
    check_compatible(loss, miner, memory, cfg.data.samples_per_class, pairs=pairs)
    return EmbeddingModule(
        backbone=backbone,
        loss=loss,
        miner=miner,
        memory=memory,
        optimizer=build(cfg.optimizer),
        scheduler=build(cfg.scheduler),
        normalize=cfg.normalize_embeddings,
        k_values=list(cfg.eval.k_values),
        eval_backend=cfg.eval.backend,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        gather=gather,
    )


def build_loss(cfg: DictConfig) -> tuple[Any, bool]:
    """The loss, and whether it sees the batches of all DDP processes (``loss.gather``).

    ``gather`` is the module's key, not the loss class's; train.yaml sets it under ``loss``
    so that ``loss.gather=false`` composes with every loss option, the user's own included.
    """
    node = cfg.loss.copy()
    with open_dict(node):
        gather = node.pop("gather", True)
    if not isinstance(gather, bool):
        raise DmlError(f"loss.gather={gather!r} must be true or false")
    return build(node), gather


# Keys under ``dataset`` that say how the data module serves the data, not where it lives.
DATAMODULE_KEYS = ("labeled_fraction", "pairs", "positive_ratio")


def build_source(cfg: DictConfig) -> DatasetSource:
    """The dataset source; the DATAMODULE_KEYS under ``dataset`` are the data module's.

    train.yaml sets those keys under ``dataset`` so that ``dataset.labeled_fraction=0.1``
    or ``dataset.pairs=true`` composes with every dataset option, the user's own included.
    """
    node = cfg.dataset.copy()
    with open_dict(node):
        for key in DATAMODULE_KEYS:
            node.pop(key, None)
    return build(node)


def build_datamodule(
    cfg: DictConfig, pseudo_labeler: PseudoLabeler | None = None, training: bool = True
) -> EmbeddingDataModule:
    """With ``dataset.labeled_fraction < 1`` (or pseudo-labels), the training split hides
    the other labels. ``training=False`` (``dml eval``, ``dml embed``) shows every label."""
    source = build_source(cfg)
    data = {**cfg.data, "eval_groups": cfg.eval.exclude_same_group}
    fraction = cfg.dataset.get("labeled_fraction", 1.0)
    pairs = cfg.dataset.get("pairs", False)
    if not training or (fraction == 1 and pseudo_labeler is None):
        return EmbeddingDataModule(
            source=source,
            seed=cfg.seed,
            pairs=pairs and training,
            positive_ratio=cfg.dataset.get("positive_ratio", 0.5),
            **data,
        )
    if pairs:
        raise DmlError(
            "dataset.pairs=true trains on labelled pairs, which a semi-supervised split "
            "cannot form: set dataset.labeled_fraction=1.0 and semi=none, or dataset.pairs=false"
        )
    return SemiSupervisedDataModule(
        source,
        labeled_fraction=fraction,
        pseudo_labeler=pseudo_labeler,
        seed=cfg.seed,
        **data,
    )


def build_loggers(cfg: DictConfig, run_dir: Path, resuming: bool = False) -> list[Logger]:
    """metrics.csv always; then the configured logger. A resumed run continues its W&B run."""
    loggers: list[Logger] = [EpochHistoryLogger(run_dir / "metrics.csv", keep_existing=resuming)]
    if cfg.logger is None or "_target_" not in cfg.logger:
        return loggers
    if cfg.logger._target_.endswith("WandbLogger"):
        loggers.append(build_wandb_logger(cfg, run_dir, resuming, build))
    else:
        loggers.append(build(cfg.logger, save_dir=str(run_dir)))
    return loggers


class LossProgressBar(RichProgressBar):
    """Rich progress with the loss, without Lightning's logger-version column."""

    def get_metrics(self, trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, module)
        items.pop("v_num", None)
        return items


class InterruptCheckpoint(Callback):
    """On Ctrl-C, save ``checkpoints/interrupted.ckpt`` before Lightning shuts down."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "checkpoints" / "interrupted.ckpt"
        self.interrupted = False

    def on_exception(
        self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.interrupted = True
            trainer.save_checkpoint(self.path)


def resume_command(cfg: DictConfig, run_dir: Path) -> str:
    """The command line that continues this run."""
    from hydra.core.hydra_config import HydraConfig

    overrides = []
    if HydraConfig.initialized():
        overrides = [
            o
            for o in HydraConfig.get().overrides.task
            if not o.startswith(("hydra.run.dir=", "resume="))
        ]
    return " ".join(["dml train", *overrides, f"hydra.run.dir={run_dir}", "resume=true"])


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """Name the fix when a GPU trainer is asked for on a machine without one."""
    if trainer_cfg.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise DmlError("trainer=gpu needs a CUDA GPU, and torch sees none here; use trainer=cpu")


def build_trainer(
    cfg: DictConfig, run_dir: Path, loggers: list[Logger], extra: list[Callback] | None = None
) -> pl.Trainer:
    check_accelerator(cfg.trainer)
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor="val/map_at_r",
            mode="max",
            save_last=True,
            save_top_k=1,
            auto_insert_metric_name=False,
        ),
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
    prepare_distributed(trainer)
    return trainer


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def train(cfg: DictConfig, run_dir: Path | str | None = None) -> dict[str, float]:
    """Train, validate every epoch (and once before training), test; return final metrics.

    Under DDP the other processes run this too (started by rank 0's first trainer call),
    but only rank 0 writes: they return an empty dict.
    """
    check_config(cfg)
    run_dir = resolve_run_dir(run_dir)
    if is_rank_zero():
        check_writable(run_dir)
    ckpt_path = resume_checkpoint(cfg, run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    pseudo_labeler = build(cfg.get("semi"))
    datamodule = build_datamodule(cfg, pseudo_labeler)
    datamodule.setup("fit")
    module = build_module(cfg)
    loggers = build_loggers(cfg, run_dir, resuming=ckpt_path is not None)
    exit_code = 1
    trainer = None
    final: dict[str, float] = {}
    interrupt = InterruptCheckpoint(run_dir)
    extra = [interrupt] if pseudo_labeler is None else [interrupt, pseudo_labeler]
    try:
        trainer = build_trainer(cfg, run_dir, loggers, extra=extra)
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
        trainer.test(module, datamodule=datamodule, verbose=False)
        if trainer.is_global_zero:
            history = loggers[0].rows
            raw = {k: v for k, v in history.get(0, {}).items() if k.startswith("test/raw_")}
            final = {**raw, **history[max(history)]}
            write_json(run_dir / "metrics.json", final)
            log_plots(loggers, write_run_plots(run_dir, **module.snapshots))
        exit_code = 0
    except SystemExit:
        if not interrupt.interrupted:
            raise
        exit_code = INTERRUPTED
        raise DmlError(
            f"interrupted; saved {interrupt.path}. Continue from the last finished epoch "
            f"with: {resume_command(cfg, run_dir)}"
        ) from None
    finally:
        # Children first: once this process has failed, one of them exiting must not
        # make Lightning's watcher kill this process before W&B has finished.
        finish_distributed(trainer, failed=exit_code != 0)
        finish_loggers(loggers, exit_code)
    if final:
        print_metrics_table(final, run_dir)
    return final


def resolve_run_dir(run_dir: Path | str | None) -> Path:
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_config(cfg: DictConfig, stored: dict[str, Any]) -> DictConfig:
    """The stored training config, with the command line's own overrides applied on top.

    An override replaces its node whole: ``backbone=linear`` must not keep the stored
    backbone's other keys (``hidden_dims``), or the model cannot even be built and the
    checkpoint's mismatch is never named. ``eval`` keys the stored config lacks (it
    predates them) come from this command's config.
    """
    from hydra.core.hydra_config import HydraConfig

    merged = OmegaConf.create(stored)
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
    from dml.checkpoints import load_checkpoint, load_weights

    checkpoint = load_checkpoint(cfg.ckpt_path)
    config = checkpoint_config(cfg, checkpoint["dml_config"])
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = build_module(config)
    load_weights(module, checkpoint["state_dict"], cfg.ckpt_path)
    return config, module, build_datamodule(config, training=False)


def without_augmentation(dataset: LabeledDataset, splits: DataSplits) -> LabeledDataset:
    """The split as evaluation sees it: the training split carries the random training
    transform, so it is given the validation split's (deterministic) one instead."""
    if dataset is not splits.train:
        return dataset
    view = copy.copy(dataset)
    view.transform = splits.val.transform
    return view


def embed(cfg: DictConfig) -> Path:
    """Write ``embeddings``, ``labels`` and ``ids`` (indices into the split) of a split,
    and ``groups`` where the data defines them."""
    import numpy as np

    _, module, datamodule = load_trained(cfg)
    splits = ["train", "val", "test"]
    if datamodule.splits.query is not None:
        splits += ["query", "gallery"]
    if cfg.split not in splits:
        raise DmlError(f"split={cfg.split!r} is not one of {', '.join(splits)}")
    dataset = without_augmentation(getattr(datamodule.splits, cfg.split), datamodule.splits)
    module.eval()
    chunks = []
    with torch.no_grad():
        for x, _ in datamodule._eval_loader(dataset):
            chunks.append(module(x))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        embeddings=torch.cat(chunks).numpy(),
        labels=dataset.labels.numpy(),
        ids=np.arange(len(dataset)),
        **({"groups": dataset.groups.numpy()} if dataset.groups is not None else {}),
    )
    log.info("wrote %d %s embeddings to %s", len(dataset), cfg.split, out)
    return out


def evaluate(cfg: DictConfig, run_dir: Path | str | None = None) -> dict[str, float]:
    """Test a checkpoint; writes metrics.json in this run's directory."""
    run_dir = resolve_run_dir(run_dir)
    config, module, datamodule = load_trained(cfg)
    history = EpochHistoryLogger(run_dir / "metrics.csv")
    trainer = build(
        config.trainer,
        logger=[history],
        default_root_dir=str(run_dir),
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    prepare_distributed(trainer)
    failed = True
    try:
        trainer.test(module, datamodule=datamodule, verbose=False)
        failed = False
    finally:
        finish_distributed(trainer, failed)
    if not trainer.is_global_zero:
        return {}
    final = dict(history.rows[max(history.rows)])
    write_json(run_dir / "metrics.json", final)
    print_metrics_table(final, run_dir, title=f"Evaluation of {cfg.ckpt_path}")
    return final
