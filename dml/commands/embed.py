"""``dml embed``: write a split's embeddings, labels and ids to an ``.npz``."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dml.commands.evaluate import load_trained
from dml.datasets.base import DataSplits, LabeledDataset
from dml.datasets.tokens import TextDataset
from dml.errors import DmlError
from dml.reporting.run_files import record_config

log = logging.getLogger(__name__)


def without_augmentation(dataset: LabeledDataset, splits: DataSplits) -> LabeledDataset:
    """The split as evaluation sees it: the training split carries the random training
    transform, so it is given the validation split's (deterministic) one instead."""
    if dataset is not splits.train:
        return dataset
    view = copy.copy(dataset)
    view.transform = splits.val.transform
    return view


def embed(cfg: DictConfig) -> Path:
    """Write ``embeddings``, ``labels`` and ``ids`` (indices into the split) of a split;
    where the data has them, ``groups``, ``paths`` (each item's file), ``texts`` (each
    item's text, dataset=text) and ``class_names`` (``class_names[label]``: an image
    folder's name, a feature file's text label)."""
    import numpy as np

    config, module, datamodule = load_trained(cfg)
    if HydraConfig.initialized():
        record_config(Path(HydraConfig.get().runtime.output_dir), config)
    splits = ["train", "val", "test"]
    if datamodule.splits.query is not None:
        splits += ["query", "gallery"]
    if cfg.split not in splits:
        raise DmlError(f"split={cfg.split!r} is not one of {', '.join(splits)}")
    dataset = without_augmentation(getattr(datamodule.splits, cfg.split), datamodule.splits)
    module.eval()
    chunks = []
    with torch.no_grad():
        for x, _ in datamodule.eval_loader(dataset):
            chunks.append(module(x))
    is_text = isinstance(dataset, TextDataset)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        embeddings=torch.cat(chunks).numpy(),
        labels=dataset.labels.numpy(),
        ids=np.arange(len(dataset)),
        **({"groups": dataset.groups.numpy()} if dataset.groups is not None else {}),
        **({"paths": np.asarray(dataset.paths, dtype=str)} if dataset.paths else {}),
        **({"texts": np.asarray(dataset.texts, dtype=str)} if is_text else {}),
        **(
            {"class_names": np.asarray(dataset.class_names, dtype=str)}
            if dataset.class_names
            else {}
        ),
    )
    log.info("wrote %d %s embeddings to %s", len(dataset), cfg.split, out)
    return out
