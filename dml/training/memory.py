"""Cross-batch memory (Wang et al. 2020, "XBM"): a queue of recent embeddings and labels.

Embeddings drift slowly once training settles, so those of the last few thousand samples
are still good negatives (and positives). Comparing each batch against them gives pair
and triplet losses far more pairs than a small machine's batch holds, for one B×M matrix.

How the module uses it (one training step)::

    refs = memory.references()                      # None until it holds something
    mined = miner(embeddings, labels, refs) if miner is not None else None
    out = loss.compute(embeddings, labels, mined, refs)
    memory.enqueue(gathered_embeddings, gathered_labels)   # after the loss

Enqueue after the loss, so a batch never meets itself in the memory (its own pairs come
from the batch block, which carries gradients; memory entries are constants). Under
DDP, enqueue the batch gathered from every process (:func:`dml.training.distributed.all_gather_cat`;
with ``loss.gather`` the loss already had it), so every rank holds the same memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dml.distances import References


class CrossBatchMemory:
    """A ring buffer of the last ``size`` embeddings and labels, stored detached.

    Storage is allocated on the first enqueue, on that batch's device and dtype, so the
    config needs no embedding size. ``warmup_steps`` enqueues are skipped first: XBM
    helps only once the embedding drifts slowly, which it does not at initialisation.
    """

    def __init__(self, size: int = 4096, warmup_steps: int = 0) -> None:
        if size < 1:
            raise ValueError("memory size must be at least 1")
        self.size = size
        self.warmup_steps = warmup_steps
        self.steps = 0
        self.filled = 0
        self.head = 0
        self.embeddings: Tensor | None = None
        self.labels: Tensor | None = None

    def __len__(self) -> int:
        return self.filled

    def references(self) -> References | None:
        """What the loss and miner compare the batch with, or None while empty."""
        if self.embeddings is None or self.labels is None or self.filled == 0:
            return None
        return References(self.embeddings[: self.filled], self.labels[: self.filled])

    @torch.no_grad()
    def enqueue(self, embeddings: Tensor, labels: Tensor) -> None:
        """Store a batch, overwriting the oldest entries once full."""
        self.steps += 1
        if self.steps <= self.warmup_steps:
            return
        embeddings, labels = embeddings.detach()[-self.size :], labels.detach()[-self.size :]
        if self.embeddings is None or self.labels is None:
            self.embeddings = embeddings.new_empty(self.size, embeddings.shape[1])
            self.labels = labels.new_empty(self.size)
        slots = (self.head + torch.arange(len(labels), device=labels.device)) % self.size
        self.embeddings[slots] = embeddings.to(self.embeddings.dtype)
        self.labels[slots] = labels
        self.head = (self.head + len(labels)) % self.size
        self.filled = min(self.size, self.filled + len(labels))

    def reset(self) -> None:
        """Forget everything (e.g. when a validation epoch changed the weights' regime)."""
        self.steps = self.filled = self.head = 0
        self.embeddings = self.labels = None
