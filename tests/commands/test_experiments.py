"""Every experiment preset composes and runs one batch of each loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from dml.commands.train import train
from tests.conftest import group_options
from tests.fixtures.trees import Tree, make_cars, make_cub, make_inshop, make_sop

# The literature presets read a benchmark from disk: each runs on a generated tree.
LITERATURE: dict[str, tuple[Callable[[Path], Tree], list[str]]] = {
    "cub200_resnet50": (make_cub, ["dataset.train_classes=4"]),
    "cars196_resnet50": (make_cars, ["dataset.train_classes=4"]),
    "sop_resnet50": (make_sop, []),
    "inshop_resnet50": (make_inshop, []),
}
# The ViT presets (Ermolov et al. 2022) on the same trees.
VIT = {name.replace("_resnet50", "_vit_small_dino"): tree for name, tree in LITERATURE.items()}
IN_MEMORY = [name for name in group_options("experiment") if name not in {**LITERATURE, **VIT}]


def test_every_resnet50_preset_has_a_generated_tree() -> None:
    presets = {name for name in group_options("experiment") if name.endswith("_resnet50")}
    assert presets == set(LITERATURE)


def test_every_vit_preset_has_a_generated_tree() -> None:
    presets = {name for name in group_options("experiment") if "_vit_" in name}
    assert presets == set(VIT)


@pytest.mark.parametrize("experiment", IN_MEMORY)
def test_experiment_runs_one_debug_batch(
    compose_cfg: Callable[..., DictConfig], experiment: str, tmp_path: Path
) -> None:
    cfg = compose_cfg(f"experiment={experiment}", "trainer=debug", "logger=none")
    metrics = train(cfg, tmp_path)
    assert 0.0 <= metrics["test/map_at_r"] <= 1.0
    assert (tmp_path / "metrics.json").is_file()


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_trainer_debug_is_one_batch_of_each_loop_once_with_every_preset(
    compose_cfg: Callable[..., DictConfig], experiment: str
) -> None:
    """trainer=debug wins over a preset's max_epochs (cub200_resnet50: 150): the check of a
    config must not become 150 one-batch epochs with a checkpoint after each."""
    trainer = compose_cfg(f"experiment={experiment}", "trainer=debug").trainer
    assert trainer.max_epochs == 1
    assert trainer.limit_train_batches == trainer.limit_val_batches == 1
    assert trainer.limit_test_batches == 1
    assert trainer.accelerator == "cpu" and not trainer.enable_progress_bar
    # The command line still has the last word.
    again = compose_cfg(f"experiment={experiment}", "trainer=debug", "trainer.max_epochs=2")
    assert again.trainer.max_epochs == 2


@pytest.mark.parametrize("experiment", sorted(LITERATURE))
def test_literature_preset_sets_the_common_protocol(
    compose_cfg: Callable[..., DictConfig], experiment: str
) -> None:
    """Roth et al. 2020: ResNet-50, ImageNet weights, frozen BatchNorm, 128-d normalised,
    112 = 56 × 2 batches, Adam 1e-5 / 4e-4, margin loss with distance-weighted mining,
    16-mixed on a GPU."""
    cfg = compose_cfg(f"experiment={experiment}")
    assert cfg.backbone.arch == "resnet50" and cfg.backbone.weights == "imagenet"
    assert cfg.backbone.freeze_batchnorm and cfg.backbone.embedding_dim == 128
    assert cfg.normalize_embeddings
    assert (cfg.data.batch_size, cfg.data.samples_per_class) == (112, 2)
    assert cfg.optimizer._target_ == "torch.optim.Adam"
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (1e-5, 4e-4)
    assert cfg.loss._target_.endswith("MarginLoss") and cfg.loss.beta == 1.2
    assert cfg.miner._target_.endswith("DistanceWeightedMiner")
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "16-mixed"
    assert cfg.trainer.max_epochs == (100 if experiment == "sop_resnet50" else 150)


# A ResNet-50 step and its two 100 MB checkpoints take 15-40 s on a small CPU: the
# default suite runs one preset; the others share its protocol and run with the slow ones.
ON_A_TREE = [
    pytest.param(name, marks=[] if name == "cub200_resnet50" else [pytest.mark.slow])
    for name in sorted(LITERATURE)
]


@pytest.mark.parametrize("experiment", ON_A_TREE)
def test_literature_preset_runs_one_debug_batch_on_a_generated_tree(
    compose_cfg: Callable[..., DictConfig], experiment: str, tmp_path: Path
) -> None:
    make_tree, extra = LITERATURE[experiment]
    tree = make_tree(tmp_path / "data")
    cfg = compose_cfg(
        f"experiment={experiment}",
        f"dataset.data_dir={tree.root}",
        f"dataset.num_classes={tree.num_classes}",
        *extra,
        "backbone.weights=null",
        "backbone.embedding_dim=16",
        "trainer=debug",
        "logger=none",
        "dataset.transform.crop_size=32",
        "dataset.transform.resize_size=36",
        "data.batch_size=4",
        "data.eval_batch_size=16",
    )
    assert cfg.trainer.precision == "32-true"  # trainer=debug replaces the preset's gpu
    metrics = train(cfg, tmp_path / "run")
    assert 0.0 <= metrics["test/recall_at_1"] <= 1.0


@pytest.mark.parametrize("experiment", sorted(VIT))
def test_vit_preset_sets_the_hyperbolic_vit_protocol(
    compose_cfg: Callable[..., DictConfig], experiment: str
) -> None:
    """Ermolov et al. 2022, sphere version: ViT-S/16 DINO, class token, 128-d normalised,
    patch embedding frozen, NT-Xent at 0.1 without a miner, AdamW 1e-5, clipping at 3,
    224 px crops of scale 0.2-1, DINO's ImageNet mean and std, 16-mixed on a GPU."""
    cfg = compose_cfg(f"experiment={experiment}")
    assert cfg.backbone.name == "vit_small_patch16_224.dino" and cfg.backbone.pretrained
    assert cfg.backbone.pooling == "token" and cfg.backbone.freeze_stem
    assert cfg.backbone.embedding_dim == 128 and cfg.normalize_embeddings
    assert cfg.loss._target_.endswith("NTXentLoss") and cfg.loss.temperature == 0.1
    assert "_target_" not in cfg.miner
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.optimizer.lr == 1e-5
    assert cfg.trainer.gradient_clip_val == 3.0 and cfg.trainer.precision == "16-mixed"
    transform = cfg.dataset.transform
    assert (transform.crop_size, list(transform.crop_scale)) == (224, [0.2, 1.0])
    assert transform.interpolation == "bicubic"
    assert list(transform.mean) == [0.485, 0.456, 0.406]
    assert cfg.data.samples_per_class == (9 if experiment.startswith(("cub", "cars")) else 2)


# A ViT-S step at 32 px is quick, but each checkpoint holds its 22 M weights and Adam's
# moments: the default suite runs one preset, the others run with the slow ones.
VIT_ON_A_TREE = [
    pytest.param(name, marks=[] if name.startswith("cub200") else [pytest.mark.slow])
    for name in sorted(VIT)
]


@pytest.mark.parametrize("experiment", VIT_ON_A_TREE)
def test_vit_preset_runs_one_debug_batch_on_a_generated_tree(
    compose_cfg: Callable[..., DictConfig], experiment: str, tmp_path: Path
) -> None:
    make_tree, extra = VIT[experiment]
    tree = make_tree(tmp_path / "data")
    cfg = compose_cfg(
        f"experiment={experiment}",
        f"dataset.data_dir={tree.root}",
        f"dataset.num_classes={tree.num_classes}",
        *extra,
        "backbone.pretrained=false",
        "trainer=debug",
        "trainer.max_epochs=1",
        "logger=none",
        "backbone.img_size=32",
        "dataset.transform.crop_size=32",
        "dataset.transform.resize_size=36",
        "data.batch_size=4",
        "data.samples_per_class=2",
        "data.eval_batch_size=16",
    )
    assert cfg.trainer.precision == "32-true"  # trainer=debug replaces the preset's gpu
    metrics = train(cfg, tmp_path / "run")
    assert 0.0 <= metrics["test/recall_at_1"] <= 1.0
