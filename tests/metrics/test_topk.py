"""nearest_neighbours against an obvious sort of every distance, ties and exclusions included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dml.errors import DmlError
from dml.metrics import topk
from dml.metrics.topk import nearest_neighbours


def brute_force(query: np.ndarray, gallery: np.ndarray, k: int, exclude=None):
    """Per query: gallery rows sorted by (exact distance, row), its excluded row left out."""
    rows, dists = [], []
    for i, q in enumerate(query):
        d = np.linalg.norm(gallery.astype(np.float64) - q, axis=1)
        order = sorted(
            (j for j in range(len(gallery)) if exclude is None or j != exclude[i]),
            key=lambda j: (d[j], j),
        )[:k]
        rows.append(order)
        dists.append(d[order])
    return np.array(rows), np.array(dists)


@pytest.mark.parametrize("chunk", [7, 64, 8192])
def test_matches_brute_force_with_ties(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    gallery = rng.integers(-2, 3, size=(150, 4)).astype(np.float32)  # many equal distances
    query = np.r_[gallery[:5], rng.integers(-2, 3, size=(20, 4))].astype(np.float32)
    monkeypatch.setattr(topk, "TILE_ELEMENTS", 7 * chunk)  # several query blocks too
    got = nearest_neighbours(query, gallery, k=12, gallery_chunk=chunk)
    rows, dists = brute_force(query, gallery, 12)
    assert got.indices.tolist() == rows.tolist()
    np.testing.assert_allclose(got.distances.numpy(), dists, rtol=0, atol=1e-6)
    assert got.distances[:5, 0].tolist() == [0.0] * 5  # each query found itself, at 0


def test_excluded_rows_are_never_retrieved() -> None:
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(40, 3)).astype(np.float32)
    exclude = np.r_[np.arange(10), -1, -1]
    query = gallery[np.r_[np.arange(10), 0, 1]]
    got = nearest_neighbours(query, gallery, k=5, exclude=torch.as_tensor(exclude))
    rows, _ = brute_force(query, gallery, 5, exclude)
    assert got.indices.tolist() == rows.tolist()
    assert got.indices[10, 0] == 0 and got.indices[11, 0] == 1


def test_k_is_capped_by_the_gallery_and_bad_input_is_one_line() -> None:
    gallery = torch.eye(3)
    assert nearest_neighbours(gallery, gallery, k=10).indices.shape == (3, 3)
    assert nearest_neighbours(gallery, gallery, k=10, exclude=torch.arange(3)).indices.shape == (
        3,
        2,
    )
    with pytest.raises(DmlError, match="queries have dimension 2 but the gallery has 3"):
        nearest_neighbours(torch.zeros(1, 2), gallery, k=1)
    with pytest.raises(DmlError, match="k=0 must be a positive integer"):
        nearest_neighbours(gallery, gallery, k=0)
