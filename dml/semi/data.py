"""The labelled and unlabelled parts of a training split, and the batches drawn from them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import Sampler

from dml.datasets.base import DatasetSource, DataSplits, LabeledDataset
from dml.errors import DmlError
from dml.training.datamodule import EmbeddingDataModule
from dml.training.samplers import ClassBalancedBatchSampler
from dml.training.workers import AUTO

# The label of an item whose label is hidden and that has no confident pseudo-label.
UNLABELED = -1
# Fewest labelled items kept per class: a class needs a positive pair to train at all.
MIN_LABELED_PER_CLASS = 2


class PseudoLabels(Protocol):
    """What the data module needs of the pseudo-labelling callback
    (:class:`dml.semi.pseudo_label.PseudoLabeler`): the size of its batch block (None:
    ``data.batch_size``). The callback imports this module's dataset, not the reverse."""

    batch_size: int | None


def labeled_mask(labels: Tensor, fraction: float, seed: int) -> Tensor:
    """Which items keep their label: a random ``fraction`` of every class.

    Stratified, so no class disappears from the labelled part by chance. A class left
    with fewer than two labelled items could form no positive pair, so that is an error
    naming the smallest fraction that works, not a silent change of the fraction.
    """
    check_labeled_fraction(fraction)
    classes, counts = labels.unique(return_counts=True)
    keep = (float(fraction) * counts).round().long()
    short = (keep < MIN_LABELED_PER_CLASS) & (counts >= MIN_LABELED_PER_CLASS)
    if short.any():
        worst = int(counts[short].argmin())
        cls, kept, smallest = (int(t[short][worst]) for t in (classes, keep, counts))
        needed = math.ceil(1000 * MIN_LABELED_PER_CLASS / smallest) / 1000
        raise DmlError(
            f"dataset.labeled_fraction={fraction} leaves {int(short.sum())} training class(es) "
            f"with fewer than {MIN_LABELED_PER_CLASS} labelled items (class {cls}: {kept} of its "
            f"{smallest}), so they form no positive pair "
            f"in a P×K batch; raise dataset.labeled_fraction to at least {needed:g}"
        )
    keep = torch.where(counts < MIN_LABELED_PER_CLASS, counts, keep)
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for cls, count in zip(classes.tolist(), keep.tolist(), strict=True):
        members = torch.nonzero(labels == cls).flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:count]]
        mask[chosen] = True
    return mask


def check_labeled_fraction(fraction: float) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise DmlError(
            f"dataset.labeled_fraction={fraction!r} must lie in (0, 1]: the share of the "
            "training split that keeps its labels, e.g. 0.1, or 1.0 (the default) for all"
        )


class PseudoLabeledDataset(LabeledDataset):
    """A training split with some labels hidden; items are ``(x, label, weight)``.

    ``labels`` holds the true label of labelled items, the current pseudo-label of
    unlabelled ones that have a confident one, and ``UNLABELED`` (-1) otherwise;
    ``weights`` is 1 for labelled items, the pseudo-label weight for pseudo-labelled ones
    and 0 for the rest, and the loss scales each part by it. The hidden labels stay in
    ``hidden_labels`` only to measure how accurate the pseudo-labels are.
    """

    def __init__(self, base: LabeledDataset, labeled: Tensor) -> None:
        if len(labeled) != len(base):
            raise DmlError(f"{len(labeled)} labelled flags for {len(base)} training items")
        self.base = base
        self.labeled = labeled.clone()
        self.hidden_labels = base.labels.clone()
        self.labels = torch.where(labeled, base.labels, UNLABELED)
        self.weights = labeled.float()

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        x, _ = self.base[index]
        return x, self.labels[index], self.weights[index]

    def assign(self, pseudo_labels: Tensor, confident: Tensor, weight: float) -> None:
        """Label the unlabelled items that are ``confident`` with ``pseudo_labels``.

        Both tensors cover every item; entries of labelled items are ignored, and an
        unlabelled item that is not confident this time loses its previous pseudo-label.
        """
        use = confident & ~self.labeled
        self.labels = torch.where(self.labeled, self.hidden_labels, UNLABELED)
        self.labels[use] = pseudo_labels[use]
        self.weights = torch.where(self.labeled, 1.0, torch.where(use, weight, 0.0))

    @property
    def class_labels(self) -> Tensor:
        return self.hidden_labels

    @property
    def pseudo_labeled(self) -> Tensor:
        return (self.labels != UNLABELED) & ~self.labeled

    def labeled_items(self) -> LabeledDataset:
        """The labelled items alone, as ``(x, label)``: what a classifier may fit on."""
        return LabeledSubset(self.base, torch.nonzero(self.labeled).flatten())


class LabeledSubset(LabeledDataset):
    """The items of ``base`` at ``indices``, with their labels."""

    def __init__(self, base: LabeledDataset, indices: Tensor) -> None:
        self.base = base
        self.indices = indices
        self.labels = base.labels[indices]

    def __getitem__(self, index: int) -> Any:
        return self.base[int(self.indices[index])]


class SemiSupervisedBatchSampler(Sampler[list[int]]):
    """Each batch: a P×K block of labelled items, then a P×K block of pseudo-labelled ones.

    The pseudo block joins once enough items have confident pseudo-labels to fill one
    (and is redrawn from the current pseudo-labels every epoch). An epoch has as many
    batches as the whole training split would give, labelled or not, so ``semi=none`` and
    ``semi=pseudo_label`` take the same number of steps and differ only in the pseudo term.
    """

    def __init__(
        self,
        dataset: PseudoLabeledDataset,
        batch_size: int,
        samples_per_class: int,
        pseudo_batch_size: int = 0,
        seed: int = 0,
    ) -> None:
        if pseudo_batch_size % samples_per_class:
            raise DmlError(
                f"the pseudo-label batch size {pseudo_batch_size} is not a multiple of "
                f"data.samples_per_class={samples_per_class}"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.pseudo_batch_size = pseudo_batch_size
        self.seed = seed
        self.epoch = 0
        self.num_batches = max(1, len(dataset) // batch_size)
        self.labeled_index = torch.nonzero(dataset.labeled).flatten()
        self.labeled_batches = ClassBalancedBatchSampler(
            dataset.labels[self.labeled_index], batch_size, samples_per_class, seed
        )
        self.labeled_batches.num_batches = self.num_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        self.labeled_batches.set_epoch(self.epoch)
        pseudo = self._pseudo_batches()
        for batch in self.labeled_batches:
            indices = self.labeled_index[batch].tolist()
            if pseudo is not None:
                indices += next(pseudo)
            yield indices

    def _pseudo_batches(self) -> Iterator[list[int]] | None:
        """Endless P×K batches over the confident pseudo-labels, or None if they fill none."""
        if not self.pseudo_batch_size:
            return None
        index = torch.nonzero(self.dataset.pseudo_labeled).flatten()
        labels = self.dataset.labels[index]
        classes, counts = labels.unique(return_counts=True)
        usable = torch.isin(labels, classes[counts >= MIN_LABELED_PER_CLASS])
        index, labels = index[usable], labels[usable]
        if len(labels.unique()) * self.samples_per_class < self.pseudo_batch_size:
            return None
        sampler = ClassBalancedBatchSampler(
            labels, self.pseudo_batch_size, self.samples_per_class, self.seed + 1
        )
        sampler.num_batches = self.num_batches
        sampler.set_epoch(self.epoch)
        return (index[batch].tolist() for batch in sampler)


class SemiSupervisedDataModule(EmbeddingDataModule):
    """The data module of a run with ``dataset.labeled_fraction < 1`` or pseudo-labels.

    Validation and test are untouched: only the training split loses labels, so metrics
    stay comparable with a fully supervised run.
    """

    def __init__(
        self,
        source: DatasetSource,
        labeled_fraction: float = 1.0,
        pseudo_labeler: PseudoLabels | None = None,
        **data: Any,
    ) -> None:
        if pseudo_labeler is not None and data.get("persistent_workers", AUTO) == AUTO:
            # Pseudo-labels change between epochs: workers must restart to see them.
            data["persistent_workers"] = False
        super().__init__(source, **data)
        check_labeled_fraction(labeled_fraction)
        if pseudo_labeler is not None and labeled_fraction == 1:
            raise DmlError(
                "semi=pseudo_label has nothing to pseudo-label: dataset.labeled_fraction=1.0 "
                "keeps every training label; set dataset.labeled_fraction below 1 (e.g. 0.1) "
                "or use semi=none"
            )
        if pseudo_labeler is not None and self.persistent_workers:
            raise DmlError(
                "semi=pseudo_label relabels the training items between epochs, which "
                "persistent workers would never see; set data.persistent_workers=false"
            )
        self.labeled_fraction = labeled_fraction
        self.pseudo_labeler = pseudo_labeler

    @property
    def splits(self) -> DataSplits:
        if self._splits is None:
            loaded = self.source.load()
            labeled = labeled_mask(loaded.train.labels, self.labeled_fraction, self.seed)
            train = PseudoLabeledDataset(loaded.train, labeled)
            self._splits = dataclasses.replace(loaded, train=train)
        return self._splits

    def state_dict(self) -> dict[str, Tensor]:
        """The training split's current labels and weights (its pseudo-labels), for
        checkpoints: a resumed run trains on what the interrupted one had assigned."""
        train = self.splits.train
        return {"labels": train.labels, "weights": train.weights}

    def load_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        train = self.splits.train
        if len(state_dict["labels"]) != len(train):
            raise DmlError(
                f"the checkpoint holds labels of {len(state_dict['labels'])} training items, "
                f"but this run's training split has {len(train)}; resume with the same dataset"
            )
        train.labels = state_dict["labels"].clone()
        train.weights = state_dict["weights"].clone()

    def train_sampler(self) -> SemiSupervisedBatchSampler:
        if not hasattr(self, "_train_sampler"):
            pseudo = self.pseudo_labeler
            pseudo_batch_size = 0
            if pseudo is not None:
                pseudo_batch_size = pseudo.batch_size or self.batch_size
            self._train_sampler = SemiSupervisedBatchSampler(
                self.splits.train,
                self.batch_size,
                self.samples_per_class,
                pseudo_batch_size,
                self.seed,
            )
        return self._train_sampler
