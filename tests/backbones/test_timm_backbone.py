"""backbone=timm: timm's trunk, pooling, heads, fine-tuning controls, local weight files.

Every model here is random (pretrained=False, or weights the test writes itself), small
(vit_tiny at 32 px, convnext_atto, resnet18) and built without any network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from dml.backbones.timm_backbone import TimmBackbone, frozen_modules
from dml.errors import DmlError

VIT = "vit_tiny_patch16_224"
SHAPE = [3, 32, 32]


def vit(input_shape: list[int] = SHAPE, **kwargs: object) -> TimmBackbone:
    """A vit_tiny, random unless ``weights`` names a file."""
    options = {"embedding_dim": 16, "pretrained": "weights" in kwargs, **kwargs}
    return TimmBackbone(VIT, input_shape, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def vit_state() -> dict[str, torch.Tensor]:
    """A random vit_tiny with its 1000-class classifier, as timm builds it."""
    torch.manual_seed(1)
    return timm.create_model(VIT, pretrained=False).state_dict()


def test_the_trunk_has_no_classifier_and_the_head_maps_to_embedding_dim() -> None:
    model = vit()
    assert isinstance(model.trunk.head, nn.Identity)
    assert isinstance(model.head, nn.Linear) and model.head.in_features == 192
    out = model(torch.randn(2, *SHAPE))
    assert out.shape == (2, 16) and torch.isfinite(out).all()


def test_the_model_is_built_at_the_input_size_with_resized_position_embeddings() -> None:
    model = vit()
    assert model.trunk.pos_embed.shape == (1, 1 + (32 // 16) ** 2, 192)


@pytest.mark.parametrize(("pooling", "expected"), [("token", "token"), ("avg", "avg")])
def test_vit_pooling_uses_timms_switch(pooling: str, expected: str) -> None:
    model = vit(pooling=pooling)
    assert model.trunk.global_pool == expected
    tokens = model.trunk.forward_features(torch.randn(2, *SHAPE))
    pooled = tokens[:, 0] if pooling == "token" else tokens[:, 1:].mean(dim=1)
    torch.testing.assert_close(model.trunk.forward_head(tokens), pooled)


def test_gem_pools_a_convolutional_map_and_learns_p() -> None:
    model = TimmBackbone("resnet18", [3, 64, 64], embedding_dim=8, pretrained=False, pooling="gem")
    features = torch.rand(2, 512, 2, 2)
    expected = features.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
    torch.testing.assert_close(model.gem(features), expected)
    lrs = {id(p): g["lr"] for g in model.param_groups(1e-3) for p in g["params"]}
    assert id(model.gem.p) in lrs
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pooling": "gem"}, r"pooling=gem needs a convolutional feature map"),
        ({"pooling": "mean"}, r"backbone.pooling='mean' is not one of"),
        ({"head": "none"}, r"head=none keeps the trunk's 192 features.*embedding_dim=192"),
        ({"head": "deep"}, r"backbone.head='deep' is not one of linear, mlp, none"),
        ({"freeze_blocks": 13}, r"freeze_blocks=13 must be between 0 and the trunk's 12"),
        ({"layer_decay": 1.5}, r"layer_decay=1.5 must be in \(0, 1\]"),
        ({"drop_path_rate": 1.0}, r"drop_path_rate=1.0 must be in \[0, 1\)"),
        ({"img_size": 64}, r"backbone.img_size=64, but the dataset's images are 32×32"),
        (
            {"weights": "w.pth", "pretrained": False},
            r"backbone.weights=w.pth loads pretrained weights, but backbone.pretrained=false",
        ),
        ({"input_shape": [64]}, r"needs image inputs shaped \[channels, height, width\]"),
    ],
)
def test_bad_settings_fail_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(DmlError, match=message) as info:
        vit(**kwargs)
    assert "\n" not in str(info.value)


def test_cnn_pooling_a_vit_option_is_refused() -> None:
    with pytest.raises(DmlError, match=r"pooling=token does not apply to timm's resnet18"):
        TimmBackbone("resnet18", [3, 64, 64], pretrained=False, pooling="token")


def test_unknown_names_and_tags_suggest_what_exists() -> None:
    with pytest.raises(DmlError, match=r"is not a timm model \(did you mean vit_tiny_patch16"):
        TimmBackbone("vit_tinny_patch16_224", SHAPE, pretrained=False)
    with pytest.raises(DmlError, match=r"has no pretrained tag 'nope'; its tags: augreg"):
        TimmBackbone(f"{VIT}.nope", SHAPE, pretrained=False)


def test_head_none_and_mlp() -> None:
    assert isinstance(vit(head="none", embedding_dim=192).head, nn.Identity)
    mlp = vit(head="mlp", head_hidden_dim=64).head
    assert [m.__class__.__name__ for m in mlp] == ["Linear", "GELU", "Linear"]
    assert mlp[0].out_features == 64 and mlp[2].out_features == 16


def test_cnns_take_any_input_size_and_drop_path() -> None:
    model = TimmBackbone(
        "convnext_atto", [3, 48, 48], embedding_dim=8, pretrained=False, drop_path_rate=0.1
    )
    assert model.trunk.stages[3].blocks[1].drop_path.drop_prob == pytest.approx(0.1)
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 8)


def test_freezing_the_first_blocks_stops_their_gradient_and_randomness() -> None:
    model = vit(freeze_blocks=2, drop_path_rate=0.2)
    frozen = {n for n, p in model.trunk.named_parameters() if not p.requires_grad}
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight"} <= frozen
    assert {n for n in frozen if n.startswith("blocks.")} == {
        n for n, _ in model.trunk.named_parameters() if n.startswith(("blocks.0.", "blocks.1."))
    }
    model.train()
    assert not model.trunk.blocks[1].training and model.trunk.blocks[2].training
    model(torch.randn(2, *SHAPE)).sum().backward()
    assert model.trunk.blocks[0].attn.qkv.weight.grad is None
    assert model.trunk.blocks[2].attn.qkv.weight.grad is not None


def test_freeze_stem_alone_and_the_linear_probe() -> None:
    stem = vit(freeze_stem=True)
    trainable = {n for n, p in stem.trunk.named_parameters() if p.requires_grad}
    assert "patch_embed.proj.weight" not in trainable and "blocks.0.attn.qkv.weight" in trainable
    probe = vit(freeze_trunk=True)
    assert not any(p.requires_grad for p in probe.trunk.parameters())
    assert frozen_modules(probe.trunk) == [probe.trunk]
    probe.train()
    assert not probe.trunk.training and probe.head.training
    groups = probe.param_groups(1e-3)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in probe.head.parameters()}


def test_frozen_batchnorm_keeps_statistics_of_a_cnn() -> None:
    model = TimmBackbone("resnet18", [3, 64, 64], embedding_dim=8, pretrained=False)
    model.train()
    before = model.trunk.bn1.running_mean.clone()
    model(torch.randn(4, 3, 64, 64) * 3 + 1)
    assert torch.equal(model.trunk.bn1.running_mean, before)
    moving = TimmBackbone(
        "resnet18", [3, 64, 64], embedding_dim=8, pretrained=False, freeze_batchnorm=False
    )
    moving.train()
    moving(torch.randn(4, 3, 64, 64) * 3 + 1)
    assert not torch.equal(moving.trunk.bn1.running_mean, before)


def test_layer_decay_scales_each_layer_below_the_head() -> None:
    model = vit(layer_decay=0.5, head_lr_multiplier=10.0)
    lr_of = {id(p): g["lr"] for g in model.param_groups(1.0) for p in g["params"]}
    trunk = dict(model.trunk.named_parameters())
    # 12 blocks: the head is layer 13, the last block 12, the stem 0.
    assert lr_of[id(model.head.weight)] == pytest.approx(10.0)
    assert lr_of[id(trunk["blocks.11.mlp.fc1.weight"])] == pytest.approx(0.5)
    assert lr_of[id(trunk["norm.weight"])] == pytest.approx(0.5)
    assert lr_of[id(trunk["blocks.0.mlp.fc1.weight"])] == pytest.approx(0.5**12)
    assert lr_of[id(trunk["patch_embed.proj.weight"])] == pytest.approx(0.5**13)
    every = {id(p) for p in model.parameters()}
    assert set(lr_of) == every


def test_no_weight_decay_on_biases_norms_and_tokens() -> None:
    model = vit()
    decay_of = {
        id(p): g.get("weight_decay", "optimizer's")
        for g in model.param_groups(1e-3)
        for p in g["params"]
    }
    trunk = dict(model.trunk.named_parameters())
    for name in ("pos_embed", "cls_token", "norm.weight", "blocks.3.attn.qkv.bias"):
        assert decay_of[id(trunk[name])] == 0.0, name
    assert decay_of[id(trunk["blocks.3.attn.qkv.weight"])] == "optimizer's"
    assert decay_of[id(model.head.weight)] == "optimizer's"
    assert decay_of[id(model.head.bias)] == 0.0
    optimizer = torch.optim.AdamW(model.param_groups(1e-3), weight_decay=0.05)
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.05}


def test_bf16_autocast_forward_and_backward() -> None:
    model = vit()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, *SHAPE))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert model.trunk.blocks[0].attn.qkv.weight.grad is not None


# Local weight files: the test writes them from a random model.


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_load_from_a_local_file(
    vit_state: dict[str, torch.Tensor], tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"vit{suffix}"
    if suffix == ".pth":
        torch.save(vit_state, path)
    else:
        save_file(vit_state, str(path))
    model = vit(weights=str(path), input_shape=[3, 224, 224])
    trunk = model.trunk.state_dict()
    for key in ("cls_token", "pos_embed", "blocks.7.attn.qkv.weight", "norm.bias"):
        assert torch.equal(trunk[key], vit_state[key]), key


def test_a_file_without_classifier_loads_too(
    vit_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = tmp_path / "trunk.safetensors"
    save_file({k: v for k, v in vit_state.items() if not k.startswith("head.")}, str(path))
    model = vit(weights=str(path), input_shape=[3, 224, 224])
    assert torch.equal(model.trunk.blocks[0].mlp.fc2.weight, vit_state["blocks.0.mlp.fc2.weight"])


def test_local_weights_are_resized_to_another_input_size(
    vit_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = tmp_path / "vit.pth"
    torch.save(vit_state, path)
    model = vit(weights=str(path), input_shape=[3, 64, 64], img_size=64)
    assert model.trunk.pos_embed.shape == (1, 1 + 16, 192)
    torch.testing.assert_close(model.trunk.pos_embed[:, 0], vit_state["pos_embed"][:, 0])
    proj = vit_state["blocks.5.attn.proj.weight"]
    assert torch.equal(model.trunk.blocks[5].attn.proj.weight, proj)


def test_a_file_of_another_model_is_refused_not_loaded_loosely(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    with pytest.raises(DmlError, match=rf"{path} does not hold weights of timm's {VIT}: Missing"):
        vit(weights=str(path))


def test_missing_and_damaged_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "none.safetensors"
    with pytest.raises(DmlError, match=rf"backbone.weights={missing}: no such file"):
        vit(weights=str(missing))
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not a safetensors file")
    with pytest.raises(DmlError, match=rf"{damaged} does not hold weights of timm's {VIT}"):
        vit(weights=str(damaged))
