"""backbone.channels_last and backbone.compile, for any backbone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from dml.backbones.acceleration import accelerate, compile_problem
from dml.backbones.convnet import ConvNet
from dml.backbones.mlp import MLP
from dml.backbones.resnet import ResNet
from dml.config.build import build_backbone
from dml.errors import DmlError

SHAPE = [3, 32, 32]


def test_channels_last_keeps_outputs_and_parameter_names() -> None:
    torch.manual_seed(0)
    plain = ResNet("resnet18", SHAPE, embedding_dim=8, weights=None).eval()
    fast = accelerate(ResNet("resnet18", SHAPE, embedding_dim=8, weights=None), True, False)
    fast.load_state_dict(plain.state_dict())
    fast.eval()
    x = torch.randn(2, *SHAPE)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)
    conv = fast.trunk[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert list(fast.state_dict()) == list(plain.state_dict())


def test_channels_last_input_hook_converts_image_batches() -> None:
    seen: list[torch.Tensor] = []
    net = accelerate(ConvNet([1, 28, 28], embedding_dim=4), True, False)
    net.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    net(torch.randn(2, 1, 28, 28))
    assert seen[0].is_contiguous(memory_format=torch.channels_last)


def test_channels_last_on_a_network_without_convolutions_is_one_line() -> None:
    with pytest.raises(DmlError, match=r"backbone.channels_last=true needs a convolutional"):
        accelerate(MLP([1, 8, 8], embedding_dim=4), True, False)


def test_non_boolean_settings_are_refused() -> None:
    with pytest.raises(DmlError, match=r"backbone.compile='yes' must be true or false"):
        accelerate(nn.Linear(2, 2), False, "yes")  # type: ignore[arg-type]


def test_when_torch_cannot_compile_it_says_so_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("Compiler: cc is not found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    assert compile_problem("cpu") == "RuntimeError: Compiler: cc is not found"
    with pytest.raises(DmlError) as info:
        accelerate(nn.Linear(2, 2), False, True)
    message = str(info.value)
    assert message.startswith("backbone.compile=true, but torch cannot compile for cpu here")
    assert "set backbone.compile=false" in message and "\n" not in message


def test_the_keys_compose_with_every_backbone_and_default_to_off(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    cfg = compose_cfg("backbone=convnet", "backbone.channels_last=true")
    assert cfg.backbone.compile is False
    backbone = build_backbone(cfg)
    assert backbone.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_trains_and_its_checkpoint_loads_without_it(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    from dml.commands.train import train
    from dml.config.build import build_module
    from dml.training.checkpoints import load_checkpoint, load_weights

    overrides = ["dataset=digits", "backbone=convnet", "trainer=debug", "logger=none"]
    cfg = compose_cfg(*overrides, "backbone.channels_last=true", "data.batch_size=32")
    metrics = train(cfg, tmp_path)
    assert 0 <= metrics["test/map_at_r"] <= 1
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    module = build_module(compose_cfg(*overrides))
    load_weights(module, load_checkpoint(checkpoint)["state_dict"], checkpoint)


@pytest.mark.slow
def test_compile_trains_one_debug_batch_on_cpu(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """Inductor compiles C++ kernels first: about a minute on a small CPU."""
    from dml.commands.train import train

    cfg = compose_cfg(
        "dataset=digits", "backbone=mlp", "backbone.compile=true", "trainer=debug", "logger=none"
    )
    metrics = train(cfg, tmp_path)
    assert 0 <= metrics["test/map_at_r"] <= 1
