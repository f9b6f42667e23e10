"""Any miner of pytorch-metric-learning by name: ``miner=pml miner.name=MultiSimilarityMiner``
(see :mod:`dml.losses.pml` for why an adapter, and how settings are given)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dml.pml_lookup import pml_component
from dml.tuples import Mined


class PMLMiner(nn.Module):
    """PML's miners already return dml's tuples (index tensors in PML's layout)."""

    def __init__(self, name: str, **settings: Any) -> None:
        super().__init__()
        self.name = name
        self.miner = pml_component("miners", name, settings)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Mined:
        with torch.no_grad():
            return self.miner(embeddings.detach(), labels)
