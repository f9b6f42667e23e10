import math

import pytest
import torch

from dml.miners.distance_weighted import DistanceWeightedMiner
from tests.reference_losses import make_batch


def loop_weights(x: torch.Tensor, labels: torch.Tensor, cutoff: float, nonzero: float):
    """Wu et al.'s 1/q(d) on the unit sphere, one entry at a time, each row normalised."""
    x = torch.nn.functional.normalize(x.detach(), dim=1)
    n, dim = x.shape
    w = torch.zeros(n, n, dtype=x.dtype)
    for i in range(n):
        for j in range(n):
            d = (x[i] - x[j]).norm().item()
            if labels[i] == labels[j] or d >= nonzero:
                continue
            dc = max(d, cutoff)
            w[i, j] = math.exp((2 - dim) * math.log(dc) - (dim - 3) / 2 * math.log(1 - dc * dc / 4))
        if w[i].sum() > 0:
            w[i] /= w[i].sum()
    return w


@pytest.mark.parametrize("dim", [3, 16])
def test_weights_follow_the_inverse_density(dim: int) -> None:
    x, labels = make_batch("random", n=20, dim=dim)
    ours = DistanceWeightedMiner(0.5, 1.4).weights(x.detach(), labels)
    torch.testing.assert_close(ours, loop_weights(x, labels, 0.5, 1.4))


def test_draws_follow_the_weights_and_skip_far_negatives() -> None:
    torch.manual_seed(0)
    x, labels = make_batch("random", n=12, dim=4)
    miner = DistanceWeightedMiner(0.5, 1.4, triplets_per_anchor=4000)
    a, p, n = miner(x, labels)
    weights = miner.weights(x.detach(), labels)
    d = torch.cdist(*(2 * [torch.nn.functional.normalize(x.detach(), dim=1)]))
    assert (d[a, n] < 1.4).all()
    assert (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all() and (a != p).all()
    anchor = int(a[0])
    drawn = torch.bincount(n[a == anchor], minlength=len(labels)).double() / 4000
    torch.testing.assert_close(drawn, weights[anchor], atol=0.03, rtol=0)


def test_default_budget_is_the_class_size() -> None:
    torch.manual_seed(1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    x = torch.randn(9, 8)
    a, _, _ = DistanceWeightedMiner(0.5, 2.0)(x, labels)
    counts = torch.bincount(a, minlength=9)
    assert counts.tolist() == [3, 3, 3, 2, 2, 4, 4, 4, 4]


def test_no_usable_negative_gives_nothing() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    a, p, n = DistanceWeightedMiner(0.5, 1.4)(x, labels)  # negatives are 2 apart
    assert len(a) == len(p) == len(n) == 0


def test_rejects_empty_budget() -> None:
    with pytest.raises(ValueError, match="triplets_per_anchor"):
        DistanceWeightedMiner(triplets_per_anchor=0)
