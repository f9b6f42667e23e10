"""The base class that every dml loss derives from.

The call signature follows pytorch-metric-learning: ``loss(embeddings, labels, mined=None)``
returns a scalar. :meth:`EmbeddingLoss.compute` also reports how many tuples were used and
how many were active (non-zero loss), which the module logs as training health.

Losses that compare samples accept ``memory``: extra, detached references (a cross-batch
memory, see :mod:`dml.training.memory`) that every anchor of the batch is also compared with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from dml.distances import Distance, EuclideanDistance, References
from dml.errors import DmlError
from dml.tuples import Mined


@runtime_checkable
class Loss(Protocol):
    """pytorch-metric-learning's call: ``loss(embeddings, labels, mined=None)`` → a scalar.

    dml's own losses (:class:`EmbeddingLoss`) also report their tuple counts through
    ``compute``; PML's losses plug in through ``_target_`` with this call alone.
    """

    def __call__(
        self, embeddings: Tensor, labels: Tensor, mined: Mined | None = None
    ) -> Tensor: ...


@runtime_checkable
class HasOwnLearningRate(Protocol):
    """A loss with parameters of its own (proxies) that train at ``lr`` (None: the
    optimizer's rate) in their own optimizer group."""

    lr: float | None


@runtime_checkable
class KnowsCollapsedValue(Protocol):
    """A loss that knows its value when every embedding is the same point: a training loss
    that stays there means the embedding has collapsed."""

    @property
    def collapsed_value(self) -> float: ...


class LossOutput(NamedTuple):
    loss: Tensor
    num_tuples: int
    num_active: int


class EmbeddingLoss(nn.Module, ABC):
    """Owns the distance and the reduction; subclasses compute per-tuple losses.

    ``tuple_kind`` says what mined tuples the loss consumes: "triplets", "pairs", or None
    for losses (proxy, NCA) that use the whole batch and reject a miner at start.
    ``supports_memory`` says whether extra references (cross-batch memory) make sense.
    ``min_samples_per_class`` is what a batch must hold per class for the loss to see a
    positive pair; :func:`dml.losses.compat.check_compatible` checks it at start.
    ``scores_pairs_alone`` says whether each mined pair's term depends on that pair only,
    so the loss can train on a Siamese pair stream (``dataset.pairs=true``).
    """

    tuple_kind: ClassVar[str | None] = "triplets"
    supports_memory: ClassVar[bool] = True
    min_samples_per_class: ClassVar[int] = 2
    scores_pairs_alone: ClassVar[bool] = False

    def __init__(self, distance: Distance | None = None) -> None:
        super().__init__()
        self.distance = distance if distance is not None else EuclideanDistance()

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> Tensor:
        return self.compute(embeddings, labels, mined, memory).loss

    @abstractmethod
    def compute(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        memory: References | None = None,
    ) -> LossOutput:
        """The reduced loss with its tuple counts."""


def zero_loss(anchor: Tensor) -> Tensor:
    """A zero that stays on the autograd graph, so ``backward()`` works on an empty batch."""
    return (anchor * 0.0).sum()


def mean_of_nonzero(per_tuple: Tensor, anchor: Tensor) -> tuple[Tensor, int]:
    """PML's AvgNonZeroReducer: the mean over tuples with a positive loss.

    ``anchor`` is any tensor on the autograd graph, so an all-zero batch still returns a
    differentiable zero instead of breaking ``backward()``.
    """
    active = per_tuple > 0
    num_active = int(active.sum())
    if num_active == 0:
        return zero_loss(anchor), 0
    return per_tuple[active].sum() / num_active, num_active


def masked_logsumexp(x: Tensor, weight: Tensor, add_one: bool = False) -> Tensor:
    """Row-wise log(Σ weight·exp(x) [+ 1]); rows with no weighted entry give 0, as in PML.

    ``weight`` counts how often each entry is present (repeated mined pairs count that
    many times), or is a boolean mask (each entry once). Excluded entries are filled with
    the most negative finite value, not -inf, so even an empty row has a finite (zero)
    gradient.
    """
    lowest = torch.finfo(x.dtype).min
    if weight.dtype == torch.bool:
        keep = weight
        filled = torch.where(keep, x, lowest)
    else:
        keep = weight > 0
        filled = torch.where(keep, x + torch.where(keep, weight, 1.0).log(), lowest)
    if add_one:
        filled = torch.cat([filled, filled.new_zeros(len(filled), 1)], dim=1)
    return torch.where(keep.any(1), torch.logsumexp(filled, dim=1), 0.0)


def require_num_classes(num_classes: int | None, owner: str) -> int:
    """A loss with one parameter row per class cannot guess the class count: say so early."""
    if num_classes is None or num_classes < 1:
        raise DmlError(
            f"{owner} needs num_classes (got {num_classes}): set loss.num_classes, "
            "which defaults to ${dataset.num_classes}"
        )
    return int(num_classes)


def check_labels_fit(labels: Tensor, num_classes: int, owner: str) -> None:
    """Labels index per-class parameters, so one outside [0, num_classes) is a config error."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DmlError(
            f"{owner} has num_classes={num_classes} but got label "
            f"{int(labels.max()) if int(labels.min()) >= 0 else int(labels.min())}; "
            "set loss.num_classes to the dataset's number of classes"
        )


def with_gradient(dist: Tensor, value: Tensor, weight: Tensor) -> Tensor:
    """``value`` (cast to dist's dtype) whose gradient with respect to ``dist`` is ``weight``."""
    return _WithGradient.apply(dist, value.to(dist.dtype), weight)


class _WithGradient(torch.autograd.Function):
    """First-order only: losses that are sums of simple per-tuple terms compute their exact
    derivative with respect to each distance themselves (counts for a hinge, slopes for a
    smooth term), so autograd keeps neither a graph over millions of triplets nor the
    B×R intermediates of a pair loss."""

    @staticmethod
    def forward(ctx, dist: Tensor, value: Tensor, weight: Tensor) -> Tensor:  # noqa: ARG004
        ctx.save_for_backward(weight)
        return value.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        return weight * grad, None, None
