"""Build the run's objects from its composed config: module, data, loss, any node.

Every component is a config node with a ``_target_``; :func:`dml.instantiate.build`
instantiates one and turns a constructor's DmlError into its own one-line message.
"""

from __future__ import annotations

import copy
from importlib.resources import files
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from dml.backbones.acceleration import accelerate
from dml.config.optimization import check_optimization
from dml.datasets.base import DatasetSource
from dml.datasets.splitting import class_folds
from dml.errors import DmlError
from dml.instantiate import build
from dml.losses.compat import check_compatible
from dml.metrics.neighbours import check_backend
from dml.metrics.pair_verification import MAX_PAIRS
from dml.semi import PseudoLabeler, SemiSupervisedDataModule
from dml.training.datamodule import EmbeddingDataModule
from dml.training.module import EmbeddingModule
from dml.training.precision import runs_on_gpu


def build_module(cfg: DictConfig) -> EmbeddingModule:
    check_backend(cfg.eval.backend, "eval.backend")
    backbone = build_backbone(cfg)
    loss, gather = build_loss(cfg)
    miner = build(cfg.miner)
    memory = build(cfg.get("memory"))
    pairs = cfg.get("dataset", {}).get("pairs", False)
    check_compatible(loss, miner, memory, cfg.data.samples_per_class, pairs=pairs)
    optimizer, scheduler = build(cfg.optimizer), build(cfg.scheduler)
    check_optimization(optimizer, scheduler, cfg)
    return EmbeddingModule(
        backbone=backbone,
        loss=loss,
        miner=miner,
        memory=memory,
        optimizer=optimizer,
        scheduler=scheduler,
        normalize=cfg.normalize_embeddings,
        k_values=list(cfg.eval.k_values),
        eval_backend=cfg.eval.backend,
        verification=cfg.eval.get("verification", False),
        verification_max_pairs=cfg.eval.get("verification_max_pairs", MAX_PAIRS),
        run_config=OmegaConf.to_container(cfg, resolve=True),
        gather=gather,
    )


# Keys under ``backbone`` that say how any backbone runs, not what it is.
BACKBONE_KEYS = ("channels_last", "compile")


def build_backbone(cfg: DictConfig) -> Any:
    """The backbone, in channels-last layout and compiled if asked for.

    train.yaml sets BACKBONE_KEYS under ``backbone`` so that ``backbone.compile=true``
    composes with every backbone option, the user's own included; a stored config from
    before them reads as false.
    """
    node = cfg.backbone.copy()
    with open_dict(node):
        options = {key: node.pop(key, False) for key in BACKBONE_KEYS}
    trainer = cfg.get("trainer")
    device = "cuda" if trainer is not None and runs_on_gpu(trainer) else "cpu"
    return accelerate(build(node), device=device, **options)


# Keys of the built-in backbones that fetch pretrained weights, and their "none" values.
PRETRAINED_KEYS = {"pretrained": False, "weights": None}


def without_pretrained_weights(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` whose backbone starts random: for a model about to receive every
    weight from a checkpoint (dml eval, embed, search, export), where fetching the
    pretrained ones first would only cost time, or fail on a machine without them."""
    result = copy.deepcopy(cfg)
    with open_dict(result):
        for key, value in PRETRAINED_KEYS.items():
            if key in result.backbone:
                result.backbone[key] = value
    return result


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
    ``dataset.folds``/``dataset.fold`` are set there for the same reason and handed to the
    source after it is built (:meth:`DatasetSource.use_folds`), so no source's
    constructor needs them and a source without a class split refuses them in one line.
    """
    node = cfg.dataset.copy()
    # A fold of a cv.folds job: messages about the folds name the key the user set.
    setting = "cv.folds" if OmegaConf.select(cfg, "cv.folds") is not None else "dataset.folds"
    with open_dict(node):
        for key in DATAMODULE_KEYS:
            node.pop(key, None)
        folds = class_folds(node.pop("folds", None), node.pop("fold", 0), setting)
    source = build(node)
    if folds is not None:
        source.use_folds(folds)
    return source


def default_batch_size() -> int:
    """train.yaml's data.batch_size: on small data it shrinks to the training classes
    silently; a batch size chosen on the command line or by an experiment is warned about."""
    defaults = yaml.safe_load((files("dml.conf") / "train.yaml").read_text())
    return int(defaults["data"]["batch_size"])


def build_datamodule(
    cfg: DictConfig, pseudo_labeler: PseudoLabeler | None = None, training: bool = True
) -> EmbeddingDataModule:
    """With ``dataset.labeled_fraction < 1`` (or pseudo-labels), the training split hides
    the other labels. ``training=False`` (``dml eval``, ``dml embed``) shows every label."""
    source = build_source(cfg)
    data = {
        **cfg.data,
        "eval_groups": cfg.eval.exclude_same_group,
        "batch_size_chosen": cfg.data.batch_size != default_batch_size(),
    }
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
