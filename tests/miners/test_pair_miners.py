import pytest
import pytorch_metric_learning.miners as pml_miners
import torch

from dml.distances import References
from dml.miners.multi_similarity import MultiSimilarityMiner
from dml.miners.pair_margin import PairMarginMiner
from dml.tuples import Pairs
from tests.reference_losses import CASES, DISTANCES, make_batch, pml_distance


def assert_valid_pairs(mined: Pairs, labels: torch.Tensor, refs: torch.Tensor | None = None):
    refs = labels if refs is None else torch.cat([labels, refs])
    a1, p, a2, n = mined
    assert (a1 < len(labels)).all() and (a2 < len(labels)).all()
    assert (refs[a1] == refs[p]).all() and (a1 != p).all()
    assert (refs[a2] != refs[n]).all()


def as_set(first: torch.Tensor, second: torch.Tensor) -> set[tuple[int, int]]:
    return set(zip(first.tolist(), second.tolist(), strict=True))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", sorted(DISTANCES))
def test_multi_similarity_miner_equals_pml(case: str, distance: str) -> None:
    """Same pairs; PML lists them in sorted-distance order, dml in column order."""
    x, labels = make_batch(case)
    ours = MultiSimilarityMiner(0.1, DISTANCES[distance]())(x, labels)
    theirs = pml_miners.MultiSimilarityMiner(0.1, distance=pml_distance(distance))(x, labels)
    assert_valid_pairs(ours, labels)
    assert as_set(ours[0], ours[1]) == as_set(theirs[0], theirs[1])
    assert as_set(ours[2], ours[3]) == as_set(theirs[2], theirs[3])
    assert len(ours[0]) == len(theirs[0]) and len(ours[2]) == len(theirs[2])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", sorted(DISTANCES))
def test_pair_margin_miner_equals_pml(case: str, distance: str) -> None:
    x, labels = make_batch(case)
    margins = {"cosine": (0.3, 0.1), "euclidean": (2.0, 3.0), "squared": (4.0, 9.0)}[distance]
    ours = PairMarginMiner(*margins, DISTANCES[distance]())(x, labels)
    theirs = pml_miners.PairMarginMiner(*margins, distance=pml_distance(distance))(x, labels)
    assert_valid_pairs(ours, labels)
    for mine, pml in zip(ours, theirs, strict=True):
        assert torch.equal(mine, pml)


def test_pair_margin_rule() -> None:
    x = torch.tensor([[0.0], [0.1], [1.0], [3.0]])
    labels = torch.tensor([0, 0, 0, 1])
    a1, p, a2, n = PairMarginMiner(0.5, 2.5)(x, labels)
    assert as_set(a1, p) == {(0, 2), (2, 0), (1, 2), (2, 1)}
    assert as_set(a2, n) == {(2, 3), (3, 2)}


@pytest.mark.parametrize("miner", [MultiSimilarityMiner(), PairMarginMiner()])
def test_pair_miners_with_memory(miner) -> None:
    x, labels = make_batch("random")
    mem_x, mem_labels = make_batch("random", seed=3, n=24)
    mined = miner(x, labels, References(mem_x, mem_labels))
    assert_valid_pairs(mined, labels, mem_labels)
    assert (mined.positive >= len(x)).any() or (mined.negative >= len(x)).any()
