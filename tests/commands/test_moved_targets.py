"""Checkpoints written before a class moved still evaluate: their stored `_target_` strings
are read at the class's new path (:mod:`dml.moved_targets`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from dml.config.build import build_source
from dml.moved_targets import MOVED_TARGETS, moved_to_current
from tests.commands.test_cli import QUICK, dml
from tests.conftest import CONF_DIR
from tests.fixtures.checkpoints import untrained_checkpoint


@pytest.mark.parametrize("old", sorted(MOVED_TARGETS))
def test_every_moved_class_is_found_at_its_new_path_and_not_at_its_old_one(old: str) -> None:
    assert isinstance(get_class(MOVED_TARGETS[old]), type)
    with pytest.raises(ImportError):
        get_class(old)


def test_no_shipped_yaml_names_an_old_path() -> None:
    for path in CONF_DIR.rglob("*.yaml"):
        assert not set(MOVED_TARGETS) & set(path.read_text().split()), path


def test_only_moved_targets_are_rewritten_at_any_depth() -> None:
    stored = {
        "dataset": {"_target_": "dml.datasets.digits.Digits", "seed": 0},
        "loss": {"_target_": "dml.losses.triplet.TripletLoss"},
        "callbacks": [{"_target_": "dml.datasets.table.ImageTable"}, 3],
        "note": "dml.datasets.digits.Digits",
    }
    assert moved_to_current(stored) == {
        "dataset": {"_target_": "dml.datasets.builtin.digits.Digits", "seed": 0},
        "loss": {"_target_": "dml.losses.triplet.TripletLoss"},
        "callbacks": [{"_target_": "dml.datasets.user_files.oml_csv.ImageTable"}, 3],
        "note": "dml.datasets.digits.Digits",
    }


def test_dml_eval_reads_a_checkpoint_that_names_the_old_module(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    ckpt = untrained_checkpoint(compose_cfg(*QUICK), tmp_path / "old.ckpt")
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["dml_config"]["dataset"]["_target_"] = "dml.datasets.digits.Digits"
    torch.save(checkpoint, ckpt)
    result = dml("eval", f"ckpt_path={ckpt}", "hydra.run.dir=eval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test/map_at_r" in json.loads((tmp_path / "eval" / "metrics.json").read_text())
    stored = OmegaConf.load(tmp_path / "eval" / ".hydra" / "config.yaml")
    assert stored.dataset._target_ == "dml.datasets.builtin.digits.Digits"


def test_a_users_yaml_with_the_old_path_still_builds_and_is_told_to_update(
    compose_cfg: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_cfg("dataset=digits", "dataset._target_=dml.datasets.digits.Digits")
    with caplog.at_level(logging.WARNING, logger="dml.config.build"):
        source = build_source(cfg)
    assert type(source).__module__ == "dml.datasets.builtin.digits"
    assert "_target_: dml.datasets.digits.Digits has moved to dml.datasets.builtin.digits" in (
        caplog.text
    )
