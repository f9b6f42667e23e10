"""backbone=timm inside a run: the optimizer's layer-wise groups, bf16-mixed precision,
torch.compile, a checkpoint that evaluates without the pretrained weights it began from,
and an exported model that embeds as dml does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from omegaconf import DictConfig
from safetensors.torch import save_file

from dml.commands.train import train
from dml.config.build import build_module
from tests.fixtures.trees import Tree, make_imagefolder

VIT = "vit_tiny_patch16_224"
TINY = [
    "dataset=imagefolder",
    "backbone=timm",
    f"backbone.name={VIT}",
    "backbone.img_size=32",
    "backbone.embedding_dim=16",
    "trainer=debug",
    "logger=none",
    "data.batch_size=6",
    "data.samples_per_class=2",
    "data.eval_batch_size=12",
]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return make_imagefolder(tmp_path_factory.mktemp("images"))


def test_the_optimizer_gets_the_layer_wise_groups(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg(
        *TINY,
        "dataset.data_dir=unused",
        "backbone.pretrained=false",
        "backbone.layer_decay=0.5",
        "backbone.head_lr_multiplier=4",
        "optimizer=adamw",
        "optimizer.lr=0.001",
        "optimizer.weight_decay=0.05",
        "scheduler=none",
    )
    module = build_module(cfg)
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    backbone = module.backbone
    head = group_of[id(backbone.head.weight)]
    assert head["lr"] == pytest.approx(0.004) and head["weight_decay"] == 0.05
    stem = group_of[id(backbone.trunk.patch_embed.proj.weight)]
    assert stem["lr"] == pytest.approx(0.001 * 0.5**13) and stem["weight_decay"] == 0.05
    assert group_of[id(backbone.trunk.pos_embed)]["weight_decay"] == 0.0
    assert set(group_of) == {id(p) for p in module.backbone.parameters()}


def test_bf16_mixed_trains_a_vit(
    compose_cfg: Callable[..., DictConfig], images: Tree, tmp_path: Path
) -> None:
    cfg = compose_cfg(
        *TINY,
        f"dataset.data_dir={images.root}",
        "backbone.pretrained=false",
        "trainer.precision=bf16-mixed",
    )
    metrics = train(cfg, tmp_path)
    assert 0 <= metrics["test/map_at_r"] <= 1


def test_a_checkpoint_evaluates_without_its_pretrained_file(
    compose_cfg: Callable[..., DictConfig], images: Tree, tmp_path: Path
) -> None:
    """Trained from a local file, evaluated once the file is gone (as on another machine):
    the checkpoint holds every weight, so none is fetched."""
    from dml.commands.evaluate import evaluate

    weights = tmp_path / "start.safetensors"
    save_file(timm.create_model(VIT).state_dict(), str(weights))
    cfg = compose_cfg(*TINY, f"dataset.data_dir={images.root}", f"backbone.weights={weights}")
    trained = train(cfg, tmp_path / "run")
    weights.unlink()
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    evaluated = evaluate(compose_cfg(f"ckpt_path={checkpoint}", config_name="eval"), tmp_path)
    assert evaluated["test/map_at_r"] == pytest.approx(trained["test/map_at_r"], abs=1e-6)


@pytest.mark.slow
def test_compile_trains_a_vit(
    compose_cfg: Callable[..., DictConfig], images: Tree, tmp_path: Path
) -> None:
    """Inductor compiles the ViT's kernels first: minutes on a small CPU."""
    cfg = compose_cfg(
        *TINY,
        f"dataset.data_dir={images.root}",
        "backbone.pretrained=false",
        "backbone.compile=true",
    )
    metrics = train(cfg, tmp_path)
    assert 0 <= metrics["test/map_at_r"] <= 1


def test_an_exported_clip_vit_matches_dml_embed_from_the_documented_pixels(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """CLIP's mean and std go inside the exported model; a service resizes (bicubic, as
    the model's data config says), crops and scales to [0, 1]."""
    import numpy as np
    from PIL import Image

    from dml.config.build import build_datamodule
    from dml.transforms import ImageTransforms
    from tests.commands.test_export import embed_test_split, exported_embeddings
    from tests.fixtures.checkpoints import untrained_checkpoint

    tree = make_imagefolder(tmp_path, num_classes=4, per_class=5)
    cfg = compose_cfg(
        *TINY,
        "backbone.name=vit_xsmall_patch16_clip_224.tinyclip_yfcc15m",
        "backbone.pretrained=false",
        f"dataset.data_dir={tree.root}",
    )
    ckpt = untrained_checkpoint(cfg, tmp_path / "run.ckpt")
    expected = embed_test_split(compose_cfg, ckpt, tmp_path / "test.npz")
    preprocess = ImageTransforms(crop_size=32, resize_size=35, interpolation="bicubic")
    test = build_datamodule(cfg, training=False).splits.test
    pixels = torch.stack([preprocess.pixel_transform()(Image.open(p)) for p in test.paths])
    for name, embeddings in exported_embeddings(
        compose_cfg, ckpt, tmp_path, pixels.numpy()
    ).items():
        np.testing.assert_allclose(embeddings, expected, atol=1e-4, err_msg=name)
