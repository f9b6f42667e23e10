"""Margin, multi-similarity, lifted structure, NT-Xent and N-pair losses against PML."""

import pytest
import pytorch_metric_learning.losses as pml_losses
import pytorch_metric_learning.miners as pml_miners
import torch

from dml.distances import CosineSimilarity, DotProductSimilarity, EuclideanDistance
from dml.losses.lifted_structure import LiftedStructureLoss
from dml.losses.margin import MarginLoss
from dml.losses.multi_similarity import MultiSimilarityLoss
from dml.losses.npair import NPairLoss
from dml.losses.ntxent import NTXentLoss
from dml.miners.multi_similarity import MultiSimilarityMiner
from dml.miners.semihard import SemiHardMiner
from dml.tuples import Pairs, Triplets
from tests.reference_losses import CASES, assert_same, grad_of, make_batch, pml_distance

DISTANCE_PAIRS = {
    "euclidean": EuclideanDistance,
    "cosine": CosineSimilarity,
}


def pair_losses(distance: str):
    """(dml loss, PML loss) pairs configured alike; margins suit the distance's scale."""
    d, p = DISTANCE_PAIRS[distance](), pml_distance(distance)
    cos = distance == "cosine"
    return [
        (
            MultiSimilarityLoss(2.0, 40.0, 0.5, d),
            pml_losses.MultiSimilarityLoss(2, 40, 0.5, distance=p),
        ),
        (
            LiftedStructureLoss(0.3 if cos else 2.0, 0.8 if cos else 0.3, d),
            pml_losses.LiftedStructureLoss(0.3 if cos else 2.0, 0.8 if cos else 0.3, distance=p),
        ),
        (NTXentLoss(0.1, d), pml_losses.NTXentLoss(0.1, distance=p)),
    ]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", sorted(DISTANCE_PAIRS))
def test_pair_losses_equal_pml_on_all_pairs(case: str, distance: str) -> None:
    x, labels = make_batch(case)
    for ours, theirs in pair_losses(distance):
        assert_same(ours(x, labels), theirs(x, labels), x)


@pytest.mark.parametrize("case", ["random", "duplicates", "collapsed_class", "singletons"])
def test_pair_losses_equal_pml_with_mined_tuples(case: str) -> None:
    """Repeated pairs (a triplet miner's (a, p) once per negative) weigh as in PML."""
    x, labels = make_batch(case, seed=1)
    semihard = SemiHardMiner(1.0)(x, labels)
    pairs = pml_miners.PairMarginMiner(1.0, 3.0, distance=pml_distance("euclidean"))(x, labels)
    for ours, theirs in pair_losses("euclidean"):
        for mined in (semihard, Triplets(*semihard), Pairs(*pairs)):
            assert_same(ours(x, labels, mined), theirs(x, labels, tuple(mined)), x)


@pytest.mark.parametrize("case", CASES)
def test_multi_similarity_with_its_miner_equals_pml(case: str) -> None:
    x, labels = make_batch(case, seed=2)
    mined = MultiSimilarityMiner(0.1)(x, labels)
    theirs_mined = pml_miners.MultiSimilarityMiner(0.1)(x, labels)
    ours = MultiSimilarityLoss()(x, labels, mined)
    assert_same(ours, pml_losses.MultiSimilarityLoss()(x, labels, theirs_mined), x)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("per_class", [False, True])
def test_margin_loss_equals_pml_incl_beta_gradient(case: str, per_class: bool) -> None:
    x, labels = make_batch(case, seed=3)
    labels = labels % 4
    num_classes = 4 if per_class else None
    ours = MarginLoss(0.2, 1.2, 0.1, True, num_classes).double()
    theirs = pml_losses.MarginLoss(
        0.2, 0.1, 1.2, learn_beta=True, num_classes=num_classes, distance=pml_distance("euclidean")
    ).double()
    for mined in (None, SemiHardMiner(0.5)(x, labels)):
        ours_loss = ours(x, labels, mined)
        theirs_loss = theirs(x, labels, None if mined is None else tuple(mined))
        assert_same(ours_loss, theirs_loss, x)
        if case not in ("one_class", "no_positive"):
            torch.testing.assert_close(
                grad_of(ours_loss, ours.beta), grad_of(theirs_loss, theirs.beta)
            )


def test_margin_loss_beta_can_be_frozen() -> None:
    loss = MarginLoss(learn_beta=False)
    assert not loss.beta.requires_grad and not list(p for p in loss.parameters() if p.requires_grad)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", ["dot", "cosine"])
def test_npair_equals_pml(case: str, distance: str) -> None:
    x, labels = make_batch(case, seed=4)
    d = DotProductSimilarity() if distance == "dot" else CosineSimilarity()
    ours = NPairLoss(d)
    theirs = pml_losses.NPairsLoss(distance=pml_distance(distance))
    assert_same(ours(x, labels), theirs(x, labels), x)
    mined = SemiHardMiner(1.0)(x, labels)
    assert_same(ours(x, labels, mined), theirs(x, labels, tuple(mined)), x)


def test_pml_pair_quirk_is_a_named_difference() -> None:
    """PML scores 0 whenever every mined list has at most one pair; dml scores the pair."""
    x, labels = make_batch("random")
    same = (labels == labels[0]) & (torch.arange(len(labels)) != 0)
    mined = Pairs(
        torch.tensor([0]),
        same.nonzero()[0],
        torch.tensor([0]),
        (labels != labels[0]).nonzero()[0],
    )
    pml = pml_losses.LiftedStructureLoss(2.0, 0.0, distance=pml_distance("euclidean"))
    assert pml(x, labels, tuple(mined)).item() == 0.0
    assert LiftedStructureLoss(2.0, 0.0)(x, labels, mined).item() > 0.0


@pytest.mark.parametrize(
    "loss", [MultiSimilarityLoss(), LiftedStructureLoss(), NTXentLoss(), NPairLoss(), MarginLoss()]
)
@pytest.mark.parametrize("case", ["one_class", "no_positive"])
def test_degenerate_batches_give_finite_differentiable_losses(loss, case: str) -> None:
    x, labels = make_batch(case)
    out = loss.compute(x, labels)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()
