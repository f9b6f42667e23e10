"""ProxyNCA, Proxy-Anchor and ArcFace against PML, with PML's parameters copied in."""

import math

import pytest
import pytorch_metric_learning.losses as pml_losses
import torch

from dml.errors import DmlError
from dml.losses.arcface import ArcFaceLoss
from dml.losses.proxy_anchor import ProxyAnchorLoss
from dml.losses.proxy_nca import ProxyNCALoss
from tests.reference_losses import CASES, assert_same, grad_of, make_batch

NUM_CLASSES = 4


def twins(kind: str):
    """A dml loss and a PML loss sharing the same parameters; returns both parameters."""
    if kind == "proxy_nca":
        ours, theirs = (
            ProxyNCALoss(NUM_CLASSES, 6, 2.0),
            pml_losses.ProxyNCALoss(NUM_CLASSES, 6, softmax_scale=2.0),
        )
        ours, theirs = ours.double(), theirs.double()
        ours.proxies.data.copy_(theirs.proxies.data)
        return ours, theirs, ours.proxies, theirs.proxies, lambda g: g
    if kind == "proxy_anchor":
        ours, theirs = (
            ProxyAnchorLoss(NUM_CLASSES, 6, 0.1, 16.0),
            pml_losses.ProxyAnchorLoss(NUM_CLASSES, 6, 0.1, 16),
        )
        ours, theirs = ours.double(), theirs.double()
        ours.proxies.data.copy_(theirs.proxies.data)
        return ours, theirs, ours.proxies, theirs.proxies, lambda g: g
    ours, theirs = (
        ArcFaceLoss(NUM_CLASSES, 6, 28.6, 16.0),
        pml_losses.ArcFaceLoss(NUM_CLASSES, 6, 28.6, 16),
    )
    ours, theirs = ours.double(), theirs.double()
    ours.proxies.data.copy_(theirs.W.data.T)
    return ours, theirs, ours.proxies, theirs.W, lambda g: g.T


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", ["proxy_nca", "proxy_anchor", "arcface"])
def test_proxy_losses_equal_pml(case: str, kind: str) -> None:
    x, labels = make_batch(case, seed=5)
    labels = labels % NUM_CLASSES
    ours, theirs, ours_param, theirs_param, as_ours = twins(kind)
    ours_loss, theirs_loss = ours(x, labels), theirs(x, labels)
    assert_same(ours_loss, theirs_loss, x)
    torch.testing.assert_close(
        grad_of(ours_loss, ours_param),
        as_ours(grad_of(theirs_loss, theirs_param)),
        atol=1e-5,
        rtol=1e-5,
    )


def test_arcface_margin_is_angular() -> None:
    """With one class weight per axis, the target logit is cos(θ + m) exactly."""
    loss = ArcFaceLoss(2, 2, margin=30.0, scale=1.0)
    loss.proxies.data = torch.eye(2)
    theta = math.radians(20)
    x = torch.tensor([[math.cos(theta), math.sin(theta)]])
    expected = -torch.log_softmax(
        torch.tensor([math.cos(theta + math.radians(30)), math.sin(theta)]), 0
    )[0]
    assert loss(x, torch.tensor([0])).item() == pytest.approx(expected.item(), rel=1e-6)


def test_arcface_gradient_is_finite_on_the_class_weight() -> None:
    """PML's acos gives NaN here; the guarded expansion gives a finite gradient."""
    loss = ArcFaceLoss(2, 2, scale=4.0)
    loss.proxies.data = torch.eye(2)
    x = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss(x, torch.tensor([0])).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("cls", [ProxyNCALoss, ProxyAnchorLoss, ArcFaceLoss])
def test_missing_num_classes_is_a_one_line_error(cls) -> None:
    with pytest.raises(DmlError, match="needs num_classes") as info:
        cls(num_classes=None, embedding_dim=8)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls", [ProxyNCALoss, ProxyAnchorLoss, ArcFaceLoss])
def test_label_outside_num_classes_is_a_clear_error(cls) -> None:
    with pytest.raises(DmlError, match="num_classes=3 but got label 5"):
        cls(num_classes=3, embedding_dim=4)(torch.randn(2, 4), torch.tensor([0, 5]))


@pytest.mark.parametrize("cls", [ProxyNCALoss, ProxyAnchorLoss, ArcFaceLoss])
def test_proxies_are_parameters_with_their_own_rate(cls) -> None:
    loss = cls(num_classes=5, embedding_dim=4, lr=0.05)
    assert [p.shape for p in loss.parameters()] == [torch.Size([5, 4])]
    assert loss.lr == 0.05 and loss.tuple_kind is None and loss.min_samples_per_class == 1


@pytest.mark.parametrize("cls", [ProxyNCALoss, ProxyAnchorLoss, ArcFaceLoss])
def test_single_sample_classes_still_train(cls) -> None:
    x = torch.randn(4, 6, requires_grad=True)
    out = cls(num_classes=4, embedding_dim=6).compute(x, torch.arange(4))
    out.loss.backward()
    assert out.loss.item() > 0 and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_arcface_accepts_only_cosine() -> None:
    from dml.distances import CosineSimilarity, EuclideanDistance

    ArcFaceLoss(3, 4, distance=CosineSimilarity())
    with pytest.raises(DmlError, match="must be CosineSimilarity, not EuclideanDistance"):
        ArcFaceLoss(3, 4, distance=EuclideanDistance())
