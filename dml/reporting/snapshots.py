"""Embeddings of one split at one moment of training, kept for a run's pictures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class EmbeddingSnapshot:
    """Embeddings of one split at one moment of training, with their class labels."""

    embeddings: np.ndarray
    labels: np.ndarray
    epoch: int
    split: str


def snapshot_embeddings(
    module: torch.nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    epoch: int,
    split: str,
    max_samples: int = 5000,
    seed: int = 0,
) -> EmbeddingSnapshot:
    """Embed a whole loader in eval mode, keeping at most ``max_samples`` random items.

    The module evaluates on batches it then discards, so the histograms and the projection
    need their own pass. The module's train/eval mode is restored afterwards; the subset
    is fixed by ``seed`` and keeps the loader's order, so start and end snapshots of one
    split hold the same items.
    """
    import torch

    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    chunks, labels = [], []
    try:
        with torch.no_grad():
            for x, y in loader:
                chunks.append(module(x.to(device)).float().cpu())
                labels.append(y.cpu())
    finally:
        module.train(was_training)
    embeddings, targets = torch.cat(chunks).numpy(), torch.cat(labels).numpy()
    if len(embeddings) > max_samples:
        keep = np.random.default_rng(seed).choice(len(embeddings), size=max_samples, replace=False)
        keep.sort()
        embeddings, targets = embeddings[keep], targets[keep]
    return EmbeddingSnapshot(embeddings, targets, epoch=epoch, split=split)
