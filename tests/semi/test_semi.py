"""Semi-supervised DML: labelled fraction, pseudo-labels, batches and the weighted loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dml.datasets.base import TensorLabeledDataset
from dml.errors import DmlError
from dml.losses.triplet import TripletLoss
from dml.semi import (
    PseudoLabeledDataset,
    PseudoLabeler,
    SemiSupervisedBatchSampler,
    kmeans_pseudo_labels,
    knn_pseudo_labels,
    labeled_mask,
    semi_supervised_loss,
)
from dml.semi.data import UNLABELED


def blobs(per_class: int = 40, classes: int = 4, spread: float = 0.3, seed: int = 0):
    """Separated Gaussian clusters, one per class, in 8-D."""
    generator = torch.Generator().manual_seed(seed)
    centres = 4.0 * torch.eye(classes, 8)
    labels = torch.arange(classes).repeat_interleave(per_class)
    points = centres[labels] + spread * torch.randn(len(labels), 8, generator=generator)
    return points, labels


def test_labeled_mask_keeps_a_stratified_fraction() -> None:
    labels = torch.tensor([0] * 100 + [1] * 50 + [2] * 20)
    mask = labeled_mask(labels, 0.1, seed=0)
    assert [int(mask[labels == c].sum()) for c in range(3)] == [10, 5, 2]
    assert torch.equal(mask, labeled_mask(labels, 0.1, seed=0))
    assert not torch.equal(mask, labeled_mask(labels, 0.1, seed=1))
    assert bool(labeled_mask(labels, 1.0, seed=0).all())


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5, "half"])
def test_labeled_fraction_outside_zero_one_fails_naming_the_setting(fraction) -> None:
    with pytest.raises(DmlError, match=r"dataset.labeled_fraction=.* must lie in \(0, 1\]"):
        labeled_mask(torch.tensor([0, 0, 1, 1]), fraction, seed=0)


def test_a_class_left_with_fewer_than_two_labels_fails_with_the_fraction_that_works() -> None:
    labels = torch.tensor([0] * 100 + [1] * 50 + [2] * 5)
    with pytest.raises(DmlError) as error:
        labeled_mask(labels, 0.1, seed=0)
    message = str(error.value)
    assert "\n" not in message
    assert "class 2: 0 of its 5" in message
    assert "raise dataset.labeled_fraction to at least 0.4" in message
    assert int(labeled_mask(labels, 0.4, seed=0)[labels == 2].sum()) == 2


@pytest.mark.parametrize("method", [kmeans_pseudo_labels, knn_pseudo_labels])
def test_pseudo_labels_recover_separated_classes(method) -> None:
    points, labels = blobs()
    labeled = labeled_mask(labels, 0.25, seed=0)
    hidden = torch.where(labeled, labels, 0)
    pseudo, confidence = method(points, hidden, labeled)
    assert torch.equal(pseudo, labels)
    assert torch.equal(confidence[labeled], torch.ones(int(labeled.sum())))
    assert confidence[~labeled].min() > 0.5


def test_kmeans_confidence_is_zero_halfway_between_two_classes() -> None:
    points = torch.tensor([[0.0, 0.0], [0.0, 0.2], [4.0, 0.0], [4.0, 0.2], [2.0, 0.1]])
    labels = torch.tensor([0, 0, 1, 1, 0])
    labeled = torch.tensor([True, True, True, True, False])
    pseudo, confidence = kmeans_pseudo_labels(points, labels, labeled, iterations=0)
    assert confidence[4] == pytest.approx(0.0, abs=1e-6)
    near = torch.tensor([[3.0, 0.1]])
    _, confidence = kmeans_pseudo_labels(
        torch.cat([points[:4], near]), labels, labeled, iterations=0
    )
    assert confidence[4] == pytest.approx(1 - 1 / 3, abs=1e-6)


def test_knn_confidence_is_the_winning_share_of_votes() -> None:
    points = torch.tensor([[0.0], [0.1], [0.2], [1.0], [0.15]])
    labels = torch.tensor([0, 0, 1, 1, 0])
    labeled = torch.tensor([True, True, True, True, False])
    pseudo, confidence = knn_pseudo_labels(points, labels, labeled, k=3)
    assert int(pseudo[4]) == 0
    assert confidence[4] == pytest.approx(2 / 3)


def pseudo_dataset(seed: int = 0) -> tuple[PseudoLabeledDataset, torch.Tensor]:
    points, labels = blobs(seed=seed)
    dataset = PseudoLabeledDataset(
        TensorLabeledDataset(points, labels), labeled_mask(labels, 0.25, seed)
    )
    return dataset, labels


def test_assign_uses_confident_pseudo_labels_and_never_touches_labelled_items() -> None:
    dataset, labels = pseudo_dataset()
    assert torch.equal(dataset.labels[~dataset.labeled], torch.full((120,), UNLABELED))
    x, label, weight = dataset[int(torch.nonzero(dataset.labeled)[0])]
    assert weight == 1.0 and label >= 0
    wrong = (labels + 1) % 4
    confident = torch.arange(160) % 2 == 0
    dataset.assign(wrong, confident, weight=0.3)
    used = confident & ~dataset.labeled
    assert torch.equal(dataset.labels[dataset.labeled], labels[dataset.labeled])
    assert torch.equal(dataset.labels[used], wrong[used])
    assert bool((dataset.labels[~confident & ~dataset.labeled] == UNLABELED).all())
    assert torch.equal(dataset.pseudo_labeled, used)
    assert torch.equal(dataset.weights[dataset.labeled], torch.ones(40))
    assert torch.allclose(dataset.weights[used], torch.tensor(0.3))
    assert bool((dataset.weights[~confident & ~dataset.labeled] == 0).all())


def test_batches_are_a_labelled_block_then_a_pseudo_block_once_there_are_pseudo_labels() -> None:
    dataset, labels = pseudo_dataset()
    sampler = SemiSupervisedBatchSampler(dataset, 16, 4, pseudo_batch_size=8, seed=0)
    assert len(sampler) == 160 // 16
    before = list(sampler)
    assert len(before) == 10 and all(len(batch) == 16 for batch in before)
    assert all(bool(dataset.labeled[batch].all()) for batch in before)
    dataset.assign(labels, torch.ones(160, dtype=torch.bool), weight=0.5)
    sampler.set_epoch(1)
    after = list(sampler)
    assert all(len(batch) == 24 for batch in after)
    for batch in after:
        head, tail = torch.tensor(batch[:16]), torch.tensor(batch[16:])
        assert bool(dataset.labeled[head].all()) and not bool(dataset.labeled[tail].any())
        for block in (head, tail):
            _, counts = dataset.labels[block].unique(return_counts=True)
            assert bool((counts == 4).all())
    assert after == list(sampler)


def test_loss_is_labelled_part_plus_weighted_pseudo_part() -> None:
    torch.manual_seed(0)
    embeddings = torch.randn(16, 8)
    labels = torch.arange(4).repeat(4)
    weights = torch.tensor([1.0] * 8 + [0.25] * 8)
    loss_fn = TripletLoss(margin=0.5)

    def compute_loss(emb: torch.Tensor, lab: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        out = loss_fn.compute(emb, lab)
        return out.loss, out.num_tuples, out.num_active

    total, tuples, _ = semi_supervised_loss(compute_loss, embeddings, labels, weights)
    first, second = (
        loss_fn.compute(embeddings[:8], labels[:8]),
        loss_fn.compute(embeddings[8:], labels[8:]),
    )
    assert total.item() == pytest.approx(first.loss.item() + 0.25 * second.loss.item())
    assert tuples == first.num_tuples + second.num_tuples
    whole, _, _ = semi_supervised_loss(compute_loss, embeddings, labels, torch.ones(16))
    assert whole.item() == pytest.approx(loss_fn(embeddings, labels).item())


class Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


def test_pseudo_labeler_relabels_from_the_embedding_and_reports_accuracy() -> None:
    dataset, labels = pseudo_dataset()
    labeler = PseudoLabeler(method="kmeans", confidence=0.5, weight=0.5)
    metrics = labeler.relabel(Identity(), dataset)
    assert metrics["pseudo_label_accuracy"] == 1.0
    assert metrics["pseudo_label_fraction"] > 0.9
    assert torch.equal(dataset.labels[dataset.pseudo_labeled], labels[dataset.pseudo_labeled])
    assert [labeler.due(e) for e in range(1, 6)] == [False, True, True, True, True]
    assert [PseudoLabeler(start_epoch=2, every_n_epochs=2).due(e) for e in range(1, 6)] == [
        False,
        True,
        False,
        True,
        False,
    ]
    with pytest.raises(DmlError, match="kmeans, knn"):
        PseudoLabeler(method="spectral")


def test_data_module_hides_labels_of_the_training_split_only(compose_cfg) -> None:
    from dml.config.build import build_source
    from dml.semi import SemiSupervisedDataModule

    cfg = compose_cfg("dataset=digits")
    source = build_source(cfg)
    full = source.load()
    module = SemiSupervisedDataModule(source, labeled_fraction=0.1, seed=0)
    train = module.splits.train
    assert isinstance(train, PseudoLabeledDataset)
    assert len(train) == len(full.train)
    assert int(train.labeled.sum()) == pytest.approx(0.1 * len(full.train), abs=10)
    assert torch.equal(module.splits.test.labels, full.test.labels)
    assert np.array_equal(module.splits.val.labels.numpy(), full.val.labels.numpy())
    with pytest.raises(DmlError, match="persistent_workers=false"):
        SemiSupervisedDataModule(
            source,
            labeled_fraction=0.1,
            pseudo_labeler=PseudoLabeler(),
            num_workers=1,
            persistent_workers=True,
        )
