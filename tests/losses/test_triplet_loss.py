import pytest
import pytorch_metric_learning.losses as pml_losses
import pytorch_metric_learning.miners as pml_miners
import torch

import dml.tuples
from dml.distances import References
from dml.losses.triplet import TripletLoss
from dml.miners.all_triplets import AllTripletsMiner
from dml.miners.batch_hard import BatchHardMiner
from dml.miners.semihard import SemiHardMiner
from dml.tuples import Pairs, Triplets
from tests.reference_losses import (
    CASES,
    DISTANCES,
    assert_same,
    grad_of,
    make_batch,
    pml_distance,
    triplet_reference,
)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", sorted(DISTANCES))
@pytest.mark.parametrize("soft", [False, True])
def test_equals_pml_on_all_triplets(case: str, distance: str, soft: bool) -> None:
    x, labels = make_batch(case)
    margin = 0.1 if distance == "cosine" else 0.5
    ours = TripletLoss(margin, soft, DISTANCES[distance]())
    theirs = pml_losses.TripletMarginLoss(margin, smooth_loss=soft, distance=pml_distance(distance))
    assert_same(ours(x, labels), theirs(x, labels), x)
    assert_same(
        ours(x, labels, AllTripletsMiner(DISTANCES[distance]())(x, labels)), theirs(x, labels), x
    )


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", sorted(DISTANCES))
def test_equals_pml_with_pml_miners(case: str, distance: str) -> None:
    x, labels = make_batch(case, seed=3)
    ours = TripletLoss(0.3, distance=DISTANCES[distance]())
    theirs = pml_losses.TripletMarginLoss(0.3, distance=pml_distance(distance))
    for miner in (
        pml_miners.BatchHardMiner(distance=pml_distance(distance)),
        pml_miners.TripletMarginMiner(0.3, "semihard", distance=pml_distance(distance)),
        pml_miners.PairMarginMiner(0.5, 0.5, distance=pml_distance(distance)),
    ):
        mined = miner(x, labels)
        as_dml = Triplets(*mined) if len(mined) == 3 else Pairs(*mined)
        assert_same(ours(x, labels, as_dml), theirs(x, labels, mined), x)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("miner_margin", [0.3, 0.4, 0.2])
def test_fused_semihard_equals_pml_on_listed_triplets(
    case: str, soft: bool, miner_margin: float
) -> None:
    x, labels = make_batch(case, seed=5)
    selection = SemiHardMiner(miner_margin)(x, labels)
    listed = Triplets(*selection)
    ours = TripletLoss(0.3, soft)
    theirs = pml_losses.TripletMarginLoss(0.3, smooth_loss=soft, distance=pml_distance("euclidean"))
    out = ours.compute(x, labels, selection)
    assert out.num_tuples == len(listed.anchor)
    assert_same(out.loss, theirs(x, labels, tuple(listed)), x)
    assert_same(ours(x, labels, listed), theirs(x, labels, tuple(listed)), x)


@pytest.mark.parametrize("case", ["random", "duplicates", "collapsed_class", "singletons"])
@pytest.mark.parametrize("soft", [False, True])
def test_matches_python_loop_reference(case: str, soft: bool) -> None:
    x, labels = make_batch(case, seed=7, n=12)
    ours = TripletLoss(0.4, soft)(x, labels)
    reference = triplet_reference(x, labels, 0.4, soft)
    assert_same(ours, reference, x)


@pytest.mark.parametrize("case", ["one_class", "no_positive"])
@pytest.mark.parametrize("miner", [None, AllTripletsMiner(), SemiHardMiner(), BatchHardMiner()])
def test_no_valid_triplet_gives_differentiable_zero(case: str, miner) -> None:
    x, labels = make_batch(case)
    mined = None if miner is None else miner(x, labels)
    out = TripletLoss().compute(x, labels, mined)
    assert out.loss.item() == 0.0 and out.num_tuples == 0 and out.num_active == 0
    out.loss.backward()
    assert torch.count_nonzero(x.grad) == 0


def test_zero_distances_give_finite_gradients() -> None:
    x = torch.zeros(8, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = TripletLoss(0.2)(x, labels)
    loss.backward()
    assert loss.item() == pytest.approx(0.2)
    assert torch.isfinite(x.grad).all()


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels = make_batch("random", n=40)
    whole = TripletLoss(0.5).compute(x, labels)
    monkeypatch.setattr(dml.tuples, "CHUNK_ELEMENTS", 50)
    chunked = TripletLoss(0.5).compute(x, labels)
    assert (chunked.num_tuples, chunked.num_active) == (whole.num_tuples, whole.num_active)
    assert_same(chunked.loss, whole.loss, x)


def test_float32_matches_pml() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(64, 16, generator=g), dim=1).requires_grad_()
    labels = torch.arange(64) // 8
    theirs = pml_losses.TripletMarginLoss(0.2, distance=pml_distance("euclidean"))(x, labels)
    ours = TripletLoss(0.2)(x, labels)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    torch.testing.assert_close(grad_of(ours, x), grad_of(theirs, x), atol=1e-5, rtol=1e-4)


def test_memory_adds_references_without_gradient() -> None:
    """With a memory the loss equals the batch+memory loss restricted to batch anchors."""
    x, labels = make_batch("random", n=12)
    mem_x, mem_labels = make_batch("random", seed=9, n=10)
    memory = References(mem_x.detach(), mem_labels)
    out = TripletLoss(0.5).compute(x, labels, memory=memory)
    both = torch.cat([x, mem_x.detach()])
    both_labels = torch.cat([labels, mem_labels])
    listed = dml.tuples.all_triplets(both_labels)
    batch_anchor = listed.anchor < len(x)
    restricted = Triplets(*(t[batch_anchor] for t in listed))
    expected = TripletLoss(0.5).compute(both, both_labels, restricted)
    assert out.num_tuples == expected.num_tuples
    assert_same(out.loss, expected.loss, x)
