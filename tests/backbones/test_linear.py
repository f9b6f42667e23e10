"""The Mahalanobis backbone: Euclidean distance after L equals the M = LᵀL distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dml.backbones.linear import LinearMetric
from dml.errors import DmlError


def test_starts_as_the_identity_so_epoch_zero_is_euclidean() -> None:
    model = LinearMetric(input_shape=[4])
    x = torch.randn(6, 4)
    assert torch.equal(model(x), x)
    np.testing.assert_array_equal(model.mahalanobis_matrix(), np.eye(4))


def test_exported_matrix_is_psd_and_gives_the_same_distances() -> None:
    torch.manual_seed(0)
    model = LinearMetric(input_shape=[1, 2, 3], embedding_dim=4)
    with torch.no_grad():
        model.transform.weight.normal_()
    m = model.mahalanobis_matrix()
    assert m.shape == (6, 6) and m.dtype == np.float64
    np.testing.assert_array_equal(m, m.T)
    eigenvalues = np.linalg.eigvalsh(m)
    assert eigenvalues.min() > -1e-12
    assert (eigenvalues > 1e-9).sum() == 4  # rank-limited by the 4-dimensional embedding

    x, y = torch.randn(5, 1, 2, 3), torch.randn(5, 1, 2, 3)
    embedded = (model(x) - model(y)).pow(2).sum(1).double().detach().numpy()
    diff = (x - y).flatten(1).double().numpy()
    mahalanobis = np.einsum("ni,ij,nj->n", diff, m, diff)
    np.testing.assert_allclose(embedded, mahalanobis, rtol=1e-5)


def test_narrow_embedding_starts_with_orthonormal_rows() -> None:
    weight = LinearMetric(input_shape=[10], embedding_dim=3).transform.weight.detach()
    assert torch.allclose(weight @ weight.T, torch.eye(3), atol=1e-5)


def test_matrix_stays_psd_after_training_steps() -> None:
    torch.manual_seed(1)
    model = LinearMetric(input_shape=[5])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(20):
        loss = -model(torch.randn(8, 5)).pow(2).sum(1).mean()  # pushes L in odd directions
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert np.linalg.eigvalsh(model.mahalanobis_matrix()).min() > -1e-9


def test_bad_embedding_dim_fails_clearly() -> None:
    with pytest.raises(DmlError, match="backbone.embedding_dim=0 must be a positive integer"):
        LinearMetric(input_shape=[4], embedding_dim=0)
