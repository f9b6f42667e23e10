from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from dml.commands.train import train
from dml.training.health import CollapseDetector
from tests.conftest import FAST


def test_distances_that_meet_for_three_epochs_warn_once() -> None:
    detector = CollapseDetector()
    assert detector.update(0.5, 1.0, None) is None
    assert detector.update(0.50, 0.503, None) is None
    assert detector.update(0.40, 0.402, None) is None
    message = detector.update(0.30, 0.301, None)
    assert message is not None and "within 1% for 3 epochs" in message
    assert "optimizer.lr" in message
    assert detector.update(0.3, 0.3, None) is None  # once only


def test_a_streak_is_broken_by_a_healthy_epoch() -> None:
    detector = CollapseDetector()
    for pos, neg in [(1.0, 1.0), (1.0, 1.0), (0.5, 1.0), (1.0, 1.0), (1.0, 1.0)]:
        assert detector.update(pos, neg, None) is None


def test_loss_stuck_at_the_margin_warns() -> None:
    detector = CollapseDetector(collapsed_loss=0.2)
    results = [detector.update(0.1, 0.5, loss) for loss in (0.2001, 0.1999, 0.2)]
    assert results[:2] == [None, None]
    assert results[2] is not None
    assert "stayed at 0.2, its value when every embedding is the same point" in results[2]


def test_a_collapsing_run_warns_in_the_console_and_in_its_metrics(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg(*FAST, "logger=none", "trainer.max_epochs=4", "miner=none")
    with open_dict(cfg):
        cfg.backbone = {"_target_": "tests.helpers.ConstantBackbone", "embedding_dim": 8}
    with pytest.warns(UserWarning, match="embedding collapse"):
        train(cfg, tmp_path)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [float(r["health/collapse"]) for r in rows[1:]] == [0.0, 0.0, 1.0, 1.0]
