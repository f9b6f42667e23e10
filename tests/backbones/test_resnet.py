"""torchvision ResNets: embedding head, pooling, frozen BatchNorm, offline weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision import models

from dml.backbones.resnet import ResNet
from dml.errors import DmlError

SHAPE = [3, 64, 64]


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A resnet18 state dict in torchvision's format (random, not ImageNet, weights)."""
    torch.manual_seed(0)
    state = models.resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18-custom.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("pooling", ["avg", "max", "avgmax"])
def test_forward_gives_embedding_dim(pooling: str) -> None:
    model = ResNet("resnet18", SHAPE, embedding_dim=24, weights=None, pooling=pooling)
    out = model(torch.randn(2, *SHAPE))
    assert out.shape == (2, 24) and torch.isfinite(out).all()


def test_avgmax_pooling_is_the_sum_of_both() -> None:
    model = ResNet("resnet18", SHAPE, weights=None, pooling="avgmax")
    features = torch.randn(2, 512, 3, 3)
    expected = features.mean(dim=(2, 3)) + features.amax(dim=(2, 3))
    assert torch.allclose(model.pool(features), expected)


def test_resnet50_builds_with_its_2048_wide_features() -> None:
    model = ResNet("resnet50", SHAPE, embedding_dim=16, weights=None)
    assert model.head.in_features == 2048
    assert model(torch.randn(1, *SHAPE)).shape == (1, 16)


def test_frozen_batchnorm_keeps_running_statistics_and_affine_parameters() -> None:
    model = ResNet("resnet18", SHAPE, weights=None, freeze_batchnorm=True)
    model.train()
    bn = model.trunk[1]
    assert isinstance(bn, nn.BatchNorm2d) and not bn.training
    assert not bn.weight.requires_grad and not bn.bias.requires_grad
    before = bn.running_mean.clone()
    model(torch.randn(4, *SHAPE) * 5 + 3)
    assert torch.equal(bn.running_mean, before)
    assert model.head.weight.requires_grad and model.trunk[0].weight.requires_grad


def test_unfrozen_batchnorm_updates_statistics() -> None:
    model = ResNet("resnet18", SHAPE, weights=None, freeze_batchnorm=False)
    model.train()
    bn = model.trunk[1]
    before = bn.running_mean.clone()
    model(torch.randn(4, *SHAPE) * 5 + 3)
    assert not torch.equal(bn.running_mean, before)


def test_param_groups_give_the_head_a_scaled_learning_rate() -> None:
    model = ResNet("resnet18", SHAPE, weights=None, head_lr_multiplier=10.0)
    trunk, head = model.param_groups(1e-4)
    assert trunk["lr"] == pytest.approx(1e-4) and head["lr"] == pytest.approx(1e-3)
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in (trunk, head) for p in g["params"]} == trainable
    optimizer = torch.optim.Adam(model.param_groups(1e-4))
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-4, 1e-3])


def test_weights_load_from_a_local_file(resnet18_file: tuple[Path, dict]) -> None:
    path, state = resnet18_file
    model = ResNet("resnet18", SHAPE, weights=str(path))
    assert torch.equal(model.trunk[0].weight, state["conv1.weight"])
    assert torch.equal(model.trunk[7][1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_weights_load_from_the_torch_hub_cache(
    resnet18_file: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, state = resnet18_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    model = ResNet("resnet18", SHAPE, weights="IMAGENET1K_V1")
    assert torch.equal(model.trunk[0].weight, state["conv1.weight"])
    assert torch.equal(
        ResNet("resnet18", SHAPE, weights="DEFAULT").trunk[0].weight, state["conv1.weight"]
    )


def test_missing_hub_weights_say_where_to_put_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DmlError) as info:
        ResNet("resnet50", SHAPE, weights="IMAGENET1K_V2")
    message = str(info.value)
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert f"pretrained resnet50 weights not found at {expected}" in message
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in message
    assert "backbone.weights=null" in message and "\n" not in message


def test_missing_local_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "resnet50.pth"
    with pytest.raises(DmlError, match=rf"pretrained resnet50 weights not found at {missing}"):
        ResNet("resnet50", SHAPE, weights=str(missing))


def test_file_of_another_architecture_is_rejected(resnet18_file: tuple[Path, dict]) -> None:
    path, _ = resnet18_file
    with pytest.raises(DmlError, match=rf"backbone.weights={path} does not fit resnet50"):
        ResNet("resnet50", SHAPE, weights=str(path))


def test_damaged_or_foreign_files_are_rejected(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(DmlError, match=rf"cannot read pretrained weights {damaged}"):
        ResNet("resnet18", SHAPE, weights=str(damaged))
    partial = tmp_path / "partial.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, partial)
    missing = r"does not hold resnet18 weights: \d+ trunk parameters missing, 0 unknown"
    with pytest.raises(DmlError, match=missing):
        ResNet("resnet18", SHAPE, weights=str(partial))


def test_lightning_style_checkpoint_with_state_dict_key_loads(
    resnet18_file: tuple[Path, dict], tmp_path: Path
) -> None:
    _, state = resnet18_file
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    model = ResNet("resnet18", SHAPE, weights=str(wrapped))
    assert torch.equal(model.trunk[0].weight, state["conv1.weight"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "resnet34"}, "backbone.arch='resnet34' is not one of"),
        ({"weights": "IMAGENET1K_V9"}, "neither a file nor a torchvision weight name"),
        ({"pooling": "gem"}, "backbone.pooling='gem' is not one of"),
        ({"input_shape": [1, 28, 28]}, "needs RGB image inputs"),
    ],
)
def test_bad_settings_fail_clearly(kwargs: dict, message: str) -> None:
    options = {"arch": "resnet18", "input_shape": SHAPE, "weights": None, **kwargs}
    with pytest.raises(DmlError, match=message):
        ResNet(**options)


def test_imagenet_names_torchvisions_original_weights_in_the_hub_cache(
    resnet18_file: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, state = resnet18_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    model = ResNet("resnet18", SHAPE, weights="imagenet")
    assert torch.equal(model.trunk[0].weight, state["conv1.weight"])


def test_missing_imagenet_weights_name_the_file_and_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DmlError) as info:
        ResNet("resnet50", SHAPE, weights="imagenet")
    message = str(info.value)
    folder = tmp_path / "hub" / "checkpoints"
    assert f"the file resnet50-0676ba61.pth must be in the folder {folder}" in message
    assert "\n" not in message


def test_dml_train_fails_on_missing_weights_before_reading_any_data(
    compose_cfg,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    from dml.commands.train import train

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = compose_cfg(
        "dataset=cub200",
        f"dataset.data_dir={tmp_path / 'not_there'}",
        "backbone=resnet50",
        "backbone.weights=imagenet",
        "logger=none",
    )
    with pytest.raises(DmlError, match="the file resnet50-0676ba61.pth must be in the folder"):
        train(cfg, tmp_path / "run")
