import pytest
import pytorch_metric_learning.losses as pml_losses
import pytorch_metric_learning.miners as pml_miners
import torch

from dml.losses.contrastive import ContrastiveLoss
from dml.miners.batch_hard import BatchHardMiner
from dml.miners.semihard import SemiHardMiner
from dml.tuples import Pairs, Triplets, to_pairs
from tests.reference_losses import (
    CASES,
    DISTANCES,
    assert_same,
    hadsell_contrastive_reference,
    make_batch,
    pml_distance,
)


def margins(distance: str) -> tuple[float, float]:
    return (0.8, 0.3) if distance == "cosine" else (0.5, 2.5)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", sorted(DISTANCES))
def test_pml_form_equals_pml(case: str, distance: str) -> None:
    x, labels = make_batch(case)
    pos_margin, neg_margin = margins(distance)
    ours = ContrastiveLoss(pos_margin, neg_margin, "pml", DISTANCES[distance]())
    theirs = pml_losses.ContrastiveLoss(pos_margin, neg_margin, distance=pml_distance(distance))
    assert_same(ours(x, labels), theirs(x, labels), x)


@pytest.mark.parametrize("case", ["random", "duplicates", "collapsed_class", "singletons"])
def test_pml_form_equals_pml_with_mined_tuples(case: str) -> None:
    """Triplets become (a, p) and (a, n) pairs once per triplet, repeats kept, as in PML."""
    x, labels = make_batch(case, seed=2)
    ours = ContrastiveLoss(0.5, 2.5, "pml")
    theirs = pml_losses.ContrastiveLoss(0.5, 2.5, distance=pml_distance("euclidean"))
    semihard = SemiHardMiner(1.0)(x, labels)
    for mined in (
        BatchHardMiner()(x, labels),
        semihard,
        Triplets(*semihard),
        Pairs(*pml_miners.PairMarginMiner(0.5, 2.5, distance=pml_distance("euclidean"))(x, labels)),
    ):
        assert_same(ours(x, labels, mined), theirs(x, labels, tuple(mined)), x)


@pytest.mark.parametrize("case", ["random", "duplicates", "collapsed_class", "singletons"])
@pytest.mark.parametrize("pos_margin", [0.0, 0.7])
def test_hadsell_form_matches_python_loop(case: str, pos_margin: float) -> None:
    x, labels = make_batch(case, seed=4, n=12)
    ours = ContrastiveLoss(pos_margin, 2.5)(x, labels)
    assert_same(ours, hadsell_contrastive_reference(x, labels, pos_margin, 2.5), x)


def test_hadsell_form_with_mined_pairs_matches_python_loop() -> None:
    x, labels = make_batch("random", seed=6, n=12)
    mined = to_pairs(BatchHardMiner()(x, labels))
    pairs = list(zip(mined.anchor_pos.tolist(), mined.positive.tolist(), strict=True))
    pairs += list(zip(mined.anchor_neg.tolist(), mined.negative.tolist(), strict=True))
    ours = ContrastiveLoss(0.0, 2.0).compute(x, labels, mined)
    assert ours.num_tuples == len(pairs)
    assert_same(ours.loss, hadsell_contrastive_reference(x, labels, 0.0, 2.0, pairs), x)


def test_hadsell_differs_from_pml_form() -> None:
    """The two forms are different losses: squared vs unsquared hinges, one mean vs two."""
    x, labels = make_batch("random")
    hadsell = ContrastiveLoss(0.0, 2.5, "hadsell")(x, labels).item()
    pml = ContrastiveLoss(0.0, 2.5, "pml")(x, labels).item()
    assert hadsell != pytest.approx(pml, rel=1e-3)


@pytest.mark.parametrize("form", ["hadsell", "pml"])
def test_no_pairs_gives_differentiable_zero(form: str) -> None:
    x, labels = make_batch("random")
    empty = torch.empty(0, dtype=torch.long)
    out = ContrastiveLoss(form=form).compute(x, labels, Pairs(empty, empty, empty, empty))
    assert out.loss.item() == 0.0 and out.num_tuples == 0
    out.loss.backward()
    assert torch.count_nonzero(x.grad) == 0


def test_single_class_batch_only_pulls() -> None:
    x, labels = make_batch("one_class")
    out = ContrastiveLoss(0.0, 1.0).compute(x, labels)
    assert out.num_tuples == 16 * 15
    assert_same(out.loss, hadsell_contrastive_reference(x, labels, 0.0, 1.0), x)


def test_pml_quirk_single_pairs_are_scored() -> None:
    """PML returns 0 when every mined list holds at most one pair; dml scores that pair."""
    x, labels = make_batch("random")
    others = torch.arange(len(labels)) != 0
    a = [0]
    p = [int(((labels == labels[0]) & others).nonzero()[0])]
    n = [int((labels != labels[0]).nonzero()[0])]
    mined = Pairs(torch.tensor(a), torch.tensor(p), torch.tensor(a), torch.tensor(n))
    theirs = pml_losses.ContrastiveLoss(0.0, 10.0, distance=pml_distance("euclidean"))
    assert theirs(x, labels, tuple(mined)).item() == 0.0
    assert ContrastiveLoss(0.0, 10.0, "pml")(x, labels, mined).item() > 0.0


def test_rejects_unknown_form() -> None:
    with pytest.raises(ValueError, match="form"):
        ContrastiveLoss(form="squared")
