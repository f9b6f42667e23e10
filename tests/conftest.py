"""Shared fixtures: composed configs, and an offline W&B for every test."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "dml" / "conf"

# A fast, real configuration: 8×8 digits, the small MLP, two short epochs.
FAST = [
    "dataset=digits",
    "backbone=mlp",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "data.batch_size=60",
    "data.samples_per_class=6",
]


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the tests downloads, on any machine: the Hugging Face hub client's own
    switch, which dml also applies to torchvision's weights (dml.backbones.downloads)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    def _compose(*overrides: str, config_name: str = "train") -> DictConfig:
        with initialize_config_module("dml.conf", version_base="1.3"):
            return compose(config_name, overrides=list(overrides))

    return _compose


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def subprocess_env() -> dict[str, str]:
    """The environment for `dml` subprocesses: offline W&B, Hydra's short error reports."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    return env
