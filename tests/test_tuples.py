import math

import pytest
import torch
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

import dml.tuples
from dml.distances import positive_negative_masks
from dml.tuples import (
    Pairs,
    Triplets,
    TripletSelection,
    all_pairs,
    all_triplets,
    bucket_of,
    pair_counts,
    positive_slots,
    siamese_pairs,
    sort_rows,
    to_pairs,
    to_triplets,
)


def labels_of(seed: int, n: int = 20, classes: int = 5) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", range(4))
def test_all_pairs_and_triplets_equal_pml(seed: int) -> None:
    labels = labels_of(seed)
    for ours, pml in zip(all_pairs(labels), lmu.get_all_pairs_indices(labels), strict=True):
        assert torch.equal(ours, pml)
    for ours, pml in zip(all_triplets(labels), lmu.get_all_triplets_indices(labels), strict=True):
        assert torch.equal(ours, pml)


def test_all_triplets_in_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = labels_of(0, n=30)
    whole = all_triplets(labels)
    monkeypatch.setattr(dml.tuples, "CHUNK_ELEMENTS", 7)
    for a, b in zip(all_triplets(labels), whole, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("seed", range(4))
def test_to_triplets_equals_pml_conversion(seed: int) -> None:
    labels = labels_of(seed)
    g = torch.Generator().manual_seed(seed)
    a1, p, a2, n = all_pairs(labels)
    keep_pos = torch.rand(len(a1), generator=g) < 0.5
    keep_neg = torch.rand(len(a2), generator=g) < 0.3
    pairs = Pairs(a1[keep_pos], p[keep_pos], a2[keep_neg], n[keep_neg])
    ours = to_triplets(pairs)
    pml = lmu.convert_to_triplets(tuple(pairs), labels)
    for x, y in zip(ours, pml, strict=True):
        assert torch.equal(x, y)


def test_to_triplets_of_empty_pairs_is_empty() -> None:
    empty = torch.empty(0, dtype=torch.long)
    one = torch.tensor([0])
    assert all(len(t) == 0 for t in to_triplets(Pairs(one, one, empty, empty)))
    assert all(len(t) == 0 for t in to_triplets(Pairs(empty, empty, one, one)))


def test_to_pairs_keeps_one_pair_per_triplet_like_pml() -> None:
    triplets = Triplets(torch.tensor([0, 0, 1]), torch.tensor([1, 1, 0]), torch.tensor([2, 3, 2]))
    pairs = to_pairs(triplets)
    for x, y in zip(pairs, lmu.convert_to_pairs(tuple(triplets), None), strict=True):
        assert torch.equal(x, y)
    assert to_pairs(pairs) == pairs


def test_positive_slots_pack_each_row() -> None:
    pos = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]], dtype=torch.bool)
    cols, valid = positive_slots(pos)
    assert valid.tolist() == [[True, True], [False, False], [True, True]]
    assert cols[valid].tolist() == [1, 2, 0, 3]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sort_rows_equals_stable_torch_sort(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    values = (torch.randn(50, 300, generator=g) * 3).round().to(dtype) + 0.0  # ties, no -0
    values[0, :5] = math.inf
    values[1, ::3] = -0.0  # sorts before +0.0 in the fast path: equal values, other order
    values[2, ::2] = 0.0
    sorted_values, cols = sort_rows(values)
    expected_values, expected_cols = values.sort(dim=1, stable=True)
    assert torch.equal(sorted_values, expected_values)
    assert torch.equal(torch.gather(values, 1, cols), expected_values)
    assert torch.equal(cols[2:], expected_cols[2:])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "bounds", [(-math.inf, math.inf), (0.0, 0.6), (0.6, math.inf), (-0.3, 0.2)]
)
def test_selection_window_and_counts_agree_with_listing(seed: int, bounds) -> None:
    labels = labels_of(seed, n=24, classes=4)
    dist = torch.cdist(*(2 * [torch.randn(24, 3, generator=torch.Generator().manual_seed(seed))]))
    pos, neg = positive_negative_masks(labels)
    selection = TripletSelection(pos, neg, dist, *bounds)
    a, p, n = selection.triplets
    margin = dist[a, n] - dist[a, p]
    assert ((margin > bounds[0]) & (margin <= bounds[1])).all()
    everything = TripletSelection(pos, neg).triplets
    m_all = (
        dist[everything.anchor, everything.negative] - dist[everything.anchor, everything.positive]
    )
    assert len(a) == int(((m_all > bounds[0]) & (m_all <= bounds[1])).sum())
    pos_count, neg_count = pair_counts(selection, pos, neg)
    expected_pos = torch.zeros_like(pos_count).index_put_(
        (a, p), torch.ones_like(a), accumulate=True
    )
    expected_neg = torch.zeros_like(neg_count).index_put_(
        (a, n), torch.ones_like(a), accumulate=True
    )
    assert torch.equal(pos_count, expected_pos) and torch.equal(neg_count, expected_neg)
    assert selection.windows(dist).num_selected == len(a)


def test_pair_counts_of_listed_tuples_count_repeats() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    pos, neg = positive_negative_masks(labels)
    triplets = Triplets(torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([2, 3]))
    pos_count, neg_count = pair_counts(triplets, pos, neg)
    assert pos_count[0, 1] == 2 and pos_count.sum() == 2
    assert neg_count[0, 2] == 1 and neg_count[0, 3] == 1 and neg_count.sum() == 2
    all_pos, all_neg = pair_counts(None, pos, neg)
    assert torch.equal(all_pos, pos.long()) and torch.equal(all_neg, neg.long())


def test_selection_unpacks_like_a_triplet_tuple() -> None:
    labels = torch.tensor([0, 0, 1])
    selection = TripletSelection(*positive_negative_masks(labels))
    a, p, n = selection
    assert len(selection) == 3 and selection[0] is a
    assert list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True)) == [(0, 1, 2), (1, 0, 2)]


def test_bounded_selection_needs_a_matrix() -> None:
    pos, neg = positive_negative_masks(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="distance matrix"):
        TripletSelection(pos, neg, low=0.0)


def test_siamese_pairs_score_only_the_stream_pairs() -> None:
    from dml.losses.contrastive import ContrastiveLoss

    same = torch.tensor([1, 0, 1])
    pairs = siamese_pairs(same)
    assert pairs.anchor_pos.tolist() == [0, 2] and pairs.positive.tolist() == [3, 5]
    assert pairs.anchor_neg.tolist() == [1] and pairs.negative.tolist() == [4]
    first = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    second = torch.tensor([[3.0, 4.0], [0.3, 0.4], [1.0, 1.0]])
    out = ContrastiveLoss(0.0, 1.0).compute(torch.cat([first, second]), torch.arange(6), pairs)
    # Hadsell: similar pairs ½·5² and ½·0², dissimilar pair ½·max(0, 1 − 0.5)²; mean of 3.
    assert out.num_tuples == 3
    assert out.loss.item() == pytest.approx((12.5 + 0.0 + 0.125) / 3)


def test_mismatched_labels_are_a_clear_error() -> None:
    from dml.losses.triplet import TripletLoss

    with pytest.raises(ValueError, match=r"got \(4, 3\) and \(5,\)"):
        TripletLoss()(torch.randn(4, 3), torch.arange(5))


@pytest.mark.parametrize("num_bounds", [1, 7, 32, 33, 80])
def test_bucket_of_equals_searchsorted(num_bounds: int) -> None:
    g = torch.Generator().manual_seed(num_bounds)
    values = torch.randn(30, 50, generator=g).round(decimals=1)
    bounds = torch.randn(30, num_bounds, generator=g).round(decimals=1).sort(1).values
    bounds[0] = math.inf
    expected = torch.searchsorted(bounds.contiguous(), values, right=True)
    assert torch.equal(bucket_of(values, bounds), expected)
