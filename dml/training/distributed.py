"""What the processes of a DDP run share: the training batch and the evaluated split.

(How they start: :mod:`dml.training.ddp_launch`.)

- the training batch: :func:`gather_with_grad` gives the loss and miner the embeddings of
  every process, so negatives come from the global batch (``loss.gather=false`` keeps each
  process to its own). Each process computes the same loss on the same global batch, and
  its gradient flows into its own rows only, scaled by the world size; DDP then averages
  the processes' gradients, so the update is exactly the one-process gradient of the loss
  on the concatenated batch, for the backbone and for loss parameters (proxies) alike.
  (Scaling the loss instead would multiply the proxies' gradients by the world size.)
- evaluation: :func:`gather_unique` collects every process's embeddings with their
  sample indices and drops the copies a padded DistributedSampler adds, so the metrics
  equal the one-process metrics on the same data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor
from torch import distributed as dist

from dml.errors import DmlError


def world_size() -> int:
    """Processes in the default group; 1 without torch.distributed (one process)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_rank_zero() -> bool:
    """Whether this is the launching process; known before the process group exists."""
    return rank_zero_only.rank == 0


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


def all_gather_uneven(tensor: Tensor) -> list[Tensor]:
    """Every process's ``tensor`` (detached), in rank order; sizes may differ along dim 0."""
    world = world_size()
    if world == 1:
        return [tensor.detach()]
    size = torch.tensor([len(tensor)], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(sizes).item())
    padded = tensor.detach().new_zeros((longest, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor.detach()
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return [part[: int(n.item())] for part, n in zip(parts, sizes, strict=True)]


def all_gather_cat(tensor: Tensor) -> Tensor:
    """The concatenation of every process's ``tensor``, detached; ``tensor`` on one process."""
    if world_size() == 1:
        return tensor
    return torch.cat(all_gather_uneven(tensor))


def gather_with_grad(tensor: Tensor) -> Tensor:
    """The global batch, with this process's rows on the autograd graph (see the module doc).

    The other rows are constants here: their gradient is computed by their own process,
    which computes the same loss. Scaling the local gradient by the world size makes DDP's
    average equal the sum over processes, i.e. the one-process gradient.
    """
    world = world_size()
    if world == 1:
        return tensor
    parts = all_gather_uneven(tensor)
    parts[dist.get_rank()] = _ScaleGrad.apply(tensor, float(world))
    return torch.cat(parts)


def gather_unique(indices: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Every process's evaluated samples, once each, in sample-index order.

    ``indices`` are the dataset indices of this process's rows; a padded DistributedSampler
    gives some samples to two processes, and only the first copy is kept. Returns the
    sorted unique indices, then each of ``tensors`` reordered to match.
    """
    if world_size() == 1:
        return (indices, *tensors)
    indices = all_gather_cat(indices)
    order = torch.argsort(indices, stable=True)
    ordered = indices[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    keep = order[first]
    return (indices[keep], *(all_gather_cat(t)[keep.to(t.device)] for t in tensors))


def mean_over_processes(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over the processes (a copy); ``tensor`` itself on one process."""
    if world_size() == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total / world_size()


def loader_indices(loader: Iterable[Any], count: int) -> Tensor:
    """The dataset indices of the first ``count`` samples of an unshuffled DataLoader."""
    batches = getattr(loader, "batch_sampler", None)
    if batches is None:
        raise DmlError("evaluation under DDP needs batched DataLoaders (batch_size set)")
    return torch.tensor(list(itertools.islice(itertools.chain.from_iterable(batches), count)))
