"""Every option of every config group composes and instantiates; typos fail early."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig

from dml.config.build import (
    build_backbone,
    build_datamodule,
    build_loss,
    build_module,
    build_source,
)
from dml.errors import DmlError
from dml.instantiate import build
from dml.training.trainer import check_accelerator
from tests.conftest import group_options
from tests.fixtures.text import make_tiny_encoder

COMPONENT_GROUPS = [
    "backbone",
    "loss",
    "miner",
    "memory",
    "dataset",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
]
CASES = [(group, option) for group in COMPONENT_GROUPS for option in group_options(group)]


def test_spine_options_exist() -> None:
    assert {"mlp", "convnet"} <= set(group_options("backbone"))
    assert {"triplet", "contrastive"} <= set(group_options("loss"))
    assert {"none", "all", "hard", "semihard", "random"} <= set(group_options("miner"))
    assert {"mnist5k", "digits"} <= set(group_options("dataset"))
    assert {"adam", "sgd"} <= set(group_options("optimizer"))
    assert {"none", "cosine"} <= set(group_options("scheduler"))
    assert {"cpu", "gpu", "debug"} <= set(group_options("trainer"))
    assert {"wandb", "csv", "none"} <= set(group_options("logger"))
    assert group_options("experiment")


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_instantiates(
    compose_cfg: Callable[..., DictConfig], group: str, option: str, tmp_path
) -> None:
    # ImageNet networks need RGB inputs; no pretrained weights can be downloaded here.
    extra = []
    if option.startswith("resnet"):
        extra = ["backbone.input_shape=[3,64,64]", "backbone.weights=null"]
    elif option == "timm":
        extra = ["backbone.input_shape=[3,64,64]", "backbone.pretrained=false"]
    elif option == "hf_text":
        extra = [f"backbone.name={make_tiny_encoder(tmp_path / 'encoder', ['a tiny text'])}"]
    cfg = compose_cfg(f"{group}={option}", *extra)
    node = cfg[group]
    param = torch.nn.Parameter(torch.zeros(1))
    if group == "logger":
        built = build(node, save_dir=str(tmp_path))
    elif group == "optimizer":
        built = build(node)([param])
    elif group == "scheduler":
        factory = build(node)
        built = factory(torch.optim.SGD([param], lr=0.1)) if factory else None
    elif group == "trainer" and option == "gpu" and not torch.cuda.is_available():
        with pytest.raises(DmlError, match="trainer=gpu needs a CUDA GPU.*use trainer=cpu"):
            check_accelerator(node)
        return
    elif group == "trainer":
        built = build(node, logger=False)
    elif group == "dataset":
        built = build_source(cfg)
    elif group == "loss":
        built, _ = build_loss(cfg)
    elif group == "backbone":
        built = build_backbone(cfg)
    else:
        built = build(node)
    if "_target_" in node:
        assert type(built).__name__ == node._target_.rsplit(".", 1)[1]
    else:
        assert built is None and option == "none"


def test_default_config_builds_module_and_data(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg()
    module = build_module(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (cfg.data.batch_size, 1, 28, 28)
    emb = module(x)
    assert emb.shape == (cfg.data.batch_size, cfg.backbone.embedding_dim)
    assert module.compute_loss(emb, y)[0].ndim == 0


def test_unknown_group_option_lists_what_exists(compose_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(MissingConfigException, match="Available options in 'loss'") as info:
        compose_cfg("loss=tripplet")
    assert "triplet" in str(info.value)


def test_unknown_key_fails(compose_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigCompositionException, match="Could not override 'loss.margn'"):
        compose_cfg("loss.margn=0.3")
