"""LMNN (no PML equivalent) against a Python loop; NCA against PML and a Python loop."""

import pytest
import pytorch_metric_learning.losses as pml_losses
import torch

from dml.distances import CosineSimilarity, SquaredEuclideanDistance
from dml.losses.lmnn import LMNNLoss
from dml.losses.nca import NCALoss
from tests.reference_losses import (
    CASES,
    assert_same,
    lmnn_reference,
    make_batch,
    nca_reference,
    pml_distance,
)

# Duplicates tie target neighbours; which twin is pulled is then arbitrary.
LOOP_CASES = ["random", "singletons", "one_class", "no_positive", "collapsed_class"]


@pytest.mark.parametrize("case", LOOP_CASES)
@pytest.mark.parametrize("k", [1, 3, 20])
@pytest.mark.parametrize("push_weight", [0.0, 0.5, 1.0])
def test_lmnn_matches_python_loop(case: str, k: int, push_weight: float) -> None:
    x, labels = make_batch(case, seed=11, n=12)
    ours = LMNNLoss(k, push_weight, 1.0)(x, labels)
    assert_same(ours, lmnn_reference(x, labels, k, push_weight, 1.0), x)


def test_lmnn_pulls_only_the_k_nearest_targets() -> None:
    x = torch.tensor([[0.0], [1.0], [5.0], [100.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1])
    LMNNLoss(k=1, push_weight=0.0)(x, labels).backward()
    # sample 0's and 1's target is each other, sample 2's target is 1: nobody pulls towards 0 from 2
    assert x.grad[3].item() == 0.0
    loss = LMNNLoss(k=1, push_weight=0.0).compute(x, labels)
    assert loss.loss.item() == pytest.approx((1 + 1 + 16) / 3)


def test_lmnn_impostor_inside_unit_margin_is_pushed() -> None:
    x = torch.tensor([[0.0], [0.5], [0.9]], requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    out = LMNNLoss(k=1, push_weight=1.0).compute(x, labels)
    assert out.num_active > 0
    out.loss.backward()
    assert (
        x.grad[2].item() < 0
    )  # the impostor moves away from the class (towards smaller x? no: left of it is the class)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", ["squared", "cosine"])
def test_nca_equals_pml(case: str, distance: str) -> None:
    x, labels = make_batch(case, seed=12)
    d = SquaredEuclideanDistance() if distance == "squared" else CosineSimilarity()
    ours = NCALoss(1.5, d)(x, labels)
    theirs = pml_losses.NCALoss(1.5, distance=pml_distance(distance))(x, labels)
    if case == "no_positive":  # named difference: PML averages an empty set (NaN)
        assert torch.isnan(theirs) and ours.item() == 0.0
        return
    assert_same(ours, theirs, x)


@pytest.mark.parametrize("case", LOOP_CASES)
def test_nca_matches_python_loop(case: str) -> None:
    x, labels = make_batch(case, seed=13, n=12)
    assert_same(NCALoss(0.7)(x, labels), nca_reference(x, labels, 0.7), x)


def test_nca_keeps_a_sample_whose_probability_underflows() -> None:
    """Named difference: PML drops the sample (its probability is 0.0); dml keeps its loss."""
    x = torch.tensor([[0.0], [30.0], [0.1]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    ours = NCALoss(1.0).compute(x, labels)
    assert ours.num_tuples == 2 and ours.loss.item() > 100
    pml = pml_losses.NCALoss(1.0, distance=pml_distance("squared"))(x, labels)
    assert pml.item() < ours.loss.item()
