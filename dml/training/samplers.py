"""The class-balanced P×K batch sampler that tuple losses need.

Every batch holds P classes with K samples each, so every anchor has positives. The
sampler is deterministic given its seed and epoch, and its state is just those two
numbers, which makes resuming a run reproduce the same batches.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import TypeVar

import torch
from torch import Tensor
from torch.utils.data import Sampler

from dml.errors import DmlError

log = logging.getLogger(__name__)

T = TypeVar("T")


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Yields ``batch_size // samples_per_class`` classes × ``samples_per_class`` indices.

    Classes are drawn without replacement within a batch. A class with fewer than K items
    is sampled with replacement. An epoch has ``len(labels) // batch_size`` batches.
    """

    def __init__(
        self, labels: Tensor, batch_size: int, samples_per_class: int, seed: int = 0
    ) -> None:
        check_batch_feasible(labels, batch_size, samples_per_class)
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.classes_per_batch = batch_size // samples_per_class
        self.seed = seed
        self.epoch = 0
        order = torch.argsort(labels, stable=True)
        classes, counts = torch.unique(labels, return_counts=True)
        self.members = list(torch.split(order, counts.tolist()))
        self.num_batches = max(1, len(labels) // batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        k = self.samples_per_class
        for _ in range(self.num_batches):
            chosen = torch.randperm(len(self.members), generator=gen)[: self.classes_per_batch]
            batch = []
            for cls in chosen.tolist():
                members = self.members[cls]
                if len(members) >= k:
                    pick = torch.randperm(len(members), generator=gen)[:k]
                else:
                    pick = torch.randint(len(members), (k,), generator=gen)
                batch.append(members[pick])
            yield torch.cat(batch).tolist()


class ShardedSampler(Sampler[T]):
    """One process's share of another sampler's items (indices, or whole batches), under DDP.

    Every process draws the same items (same seed, same epoch) and keeps every
    ``num_replicas``-th one, starting at its ``rank``: processes never share an item, and
    one epoch still covers the training split once, in ``len(items) // num_replicas`` items
    per process (at least one; a split too small for that repeats items). Lightning cannot
    put its DistributedSampler inside a custom batch sampler, so the data module does this.
    """

    def __init__(self, items: Sampler[T], num_replicas: int, rank: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.items = items
        self.num_replicas = num_replicas
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.items, "set_epoch"):
            self.items.set_epoch(epoch)

    def __len__(self) -> int:
        return max(1, len(self.items) // self.num_replicas)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[T]:
        stream = itertools.chain.from_iterable(itertools.repeat(self.items))
        shared = itertools.islice(stream, len(self) * self.num_replicas)
        yield from itertools.islice(shared, self.rank, None, self.num_replicas)


def check_batch_feasible(labels: Tensor, batch_size: int, samples_per_class: int) -> None:
    """Fail at start, with the numbers and the fix, if P×K batches cannot be formed.

    How many samples per class a loss needs is the loss's rule
    (:func:`dml.losses.compat.check_compatible`); this checks only what the sampler itself
    can or cannot draw.
    """
    if samples_per_class < 1:
        raise DmlError(f"data.samples_per_class={samples_per_class} must be at least 1")
    if batch_size % samples_per_class:
        raise DmlError(
            f"data.batch_size={batch_size} is not a multiple of "
            f"data.samples_per_class={samples_per_class}: a P×K batch holds whole classes, "
            f"at least 2 of them; {batch_fixes(batch_size, samples_per_class)}"
        )
    classes, counts = torch.unique(labels, return_counts=True)
    if samples_per_class * len(classes) < batch_size:
        raise DmlError(
            f"data.samples_per_class={samples_per_class} × {len(classes)} classes = "
            f"{samples_per_class * len(classes)} is less than data.batch_size={batch_size}; "
            f"lower data.batch_size to at most {samples_per_class * len(classes)} "
            "or raise data.samples_per_class"
        )
    small = classes[counts < 2]
    if samples_per_class > 1 and len(small):
        # Drawn with replacement, a class of one sample would fill its K slots with copies
        # of that sample: positives at distance 0, which teach nothing.
        raise DmlError(
            f"{len(small)} training classes have fewer than 2 samples (e.g. class "
            f"{int(small[0])}), so they can form no positive pair; remove them or merge them"
        )


def batch_fixes(batch_size: int, samples_per_class: int) -> str:
    """The settings nearest to the user's that form P×K batches of 2 or more classes:
    the multiples of K around ``batch_size``, and the divisor of ``batch_size`` closest
    to K (``8`` and ``16``: 32, or K=4; never "make it 0")."""
    below = batch_size // samples_per_class * samples_per_class
    sizes = [size for size in (below, below + samples_per_class) if size >= 2 * samples_per_class]
    sizes = sizes or [2 * samples_per_class]
    keep_k = " or ".join(
        f"data.batch_size={size} ({size // samples_per_class} classes of {samples_per_class})"
        for size in sizes
    )
    # K of 2 or more where the user asked for that: positives in every batch.
    smallest = min(samples_per_class, 2)
    divisors = [k for k in range(smallest, batch_size // 2 + 1) if batch_size % k == 0]
    if not divisors:
        return f"set {keep_k}"
    k = min(divisors, key=lambda d: (abs(d - samples_per_class), d))
    return f"set {keep_k}, or data.samples_per_class={k} ({batch_size // k} classes of {k})"


def fitted_batch_size(
    labels: Tensor, batch_size: int, samples_per_class: int, chosen: bool = True
) -> int:
    """``batch_size``, or ``classes × samples_per_class`` when the training split has fewer
    classes than one batch needs.

    The default batch (128 = 8 classes × 16) cannot be formed from a folder of six classes
    split in half; every batch then holds every training class instead. That is what the
    default means on small data, so it is said only for a ``chosen`` batch size (given on
    the command line or by an experiment); the data module asks once per run. Any other
    impossible setting is left to :func:`check_batch_feasible`, which explains it.
    """
    classes = len(torch.unique(labels))
    if (
        samples_per_class < 1
        or batch_size % samples_per_class
        or classes < 2
        or classes * samples_per_class >= batch_size
    ):
        return batch_size
    fitted = classes * samples_per_class
    if not chosen:
        log.debug("training on batches of %d (all %d classes)", fitted, classes)
        return fitted
    log.warning(
        "data.batch_size=%d needs %d classes of data.samples_per_class=%d, but the training "
        "split has %d; training on batches of %d (all %d classes); set data.batch_size=%d "
        "to choose this yourself",
        batch_size,
        batch_size // samples_per_class,
        samples_per_class,
        classes,
        fitted,
        classes,
        fitted,
    )
    return fitted
