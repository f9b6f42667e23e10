import pytest
import torch

from dml.distances import (
    CosineSimilarity,
    DotProductSimilarity,
    EuclideanDistance,
    References,
    SquaredEuclideanDistance,
    compare,
    positive_negative_masks,
    safe_sqrt,
)


@pytest.mark.parametrize(
    "distance, exact",
    [
        (EuclideanDistance(), lambda x, y: torch.cdist(x, y)),
        (SquaredEuclideanDistance(), lambda x, y: torch.cdist(x, y) ** 2),
        (
            CosineSimilarity(),
            lambda x, y: (
                torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(y, dim=1).T
            ),
        ),
        (DotProductSimilarity(), lambda x, y: x @ y.T),
    ],
)
def test_pairwise_and_paired_agree_with_definitions(distance, exact) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.randn(9, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(distance.pairwise(x, y), exact(x, y))
    torch.testing.assert_close(distance.pairwise(x), exact(x, x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(distance.paired(x, y[:7]), exact(x, y[:7]).diagonal())


def test_as_distance_flips_only_similarities() -> None:
    m = torch.tensor([[0.5, -1.0]])
    assert torch.equal(EuclideanDistance().as_distance(m), m)
    assert torch.equal(CosineSimilarity().as_distance(m), -m)


@pytest.mark.parametrize("n", [3, 40])  # cdist computes exact differences up to 25 rows
def test_sqrt_gradient_is_zero_not_nan_at_zero(n: int) -> None:
    x = torch.zeros(n, 4, requires_grad=True)
    EuclideanDistance().pairwise(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    sq = torch.tensor([0.0, 4.0], requires_grad=True)
    safe_sqrt(sq).sum().backward()
    assert sq.grad.tolist() == [0.0, 0.25]


def test_masks_exclude_self_only_in_the_batch_block() -> None:
    labels = torch.tensor([0, 0, 1])
    pos, neg = positive_negative_masks(labels, torch.tensor([0, 1]))
    assert pos.tolist() == [
        [False, True, False, True, False],
        [True, False, False, True, False],
        [False, False, False, False, True],
    ]
    assert neg.tolist() == [
        [False, False, True, False, True],
        [False, False, True, False, True],
        [True, True, False, True, False],
    ]


def test_compare_with_memory_appends_detached_references() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    memory = References(torch.randn(5, 3, requires_grad=True), torch.tensor([0, 1, 1, 2, 2]))
    mat, pos, neg = compare(EuclideanDistance(), x, torch.tensor([0, 0, 1, 2]), memory)
    assert mat.shape == pos.shape == neg.shape == (4, 9)
    mat.sum().backward()
    assert memory.embeddings.grad is None and x.grad is not None
