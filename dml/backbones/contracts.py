"""What the training module needs of a backbone, as typed protocols.

Any ``nn.Module`` that maps a batch of inputs to a batch of vectors is a backbone; a
user's own plugs in through ``_target_`` without deriving from anything here.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Backbone(Protocol):
    """Inputs (N, ...) to raw embeddings (N, embedding_dim), before any normalisation."""

    def __call__(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class HasParameterGroups(Protocol):
    """A backbone whose parts train at different learning rates, e.g. a pretrained trunk at
    the base rate under a new head at a multiple of it."""

    def param_groups(self, lr: float) -> list[dict[str, Any]]: ...
