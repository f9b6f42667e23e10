from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from dml.commands.train import train
from dml.training.health import CollapseDetector, below_raw_baseline
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


def test_everything_in_one_small_region_warns_though_positives_are_closer() -> None:
    """The 3-epoch batch-hard run of issue 13: negative pairs 0.028 apart, positive pairs
    0.020, on L2-normalised embeddings; the pos/neg test alone never fired."""
    detector = CollapseDetector(collapsed_loss=0.2)
    epochs = [(0.031, 0.045, 0.236), (0.020, 0.029, 0.207), (0.020, 0.028, 0.204)]
    results = [detector.update(pos, neg, loss, 1.0) for pos, neg, loss in epochs]
    assert results[:2] == [None, None]
    assert results[2] is not None and "one small region" in results[2]
    assert "0.028 apart" in results[2] and "under 0.1 of the embeddings' norm (1)" in results[2]


def test_a_healthy_spread_or_an_unknown_scale_does_not_warn() -> None:
    # The default semi-hard run's first epochs (negatives 0.68 and more apart).
    healthy = CollapseDetector(collapsed_loss=0.2)
    for pos, neg in [(0.3, 0.68), (0.4, 1.01), (0.4, 1.26)]:
        assert healthy.update(pos, neg, 0.1, 1.0) is None
    # The same small distances on embeddings a hundred times smaller are no collapse.
    scaled = CollapseDetector()
    assert all(scaled.update(0.0002, 0.0003 * k, None, 0.001) is None for k in (1, 2, 3))
    unknown = CollapseDetector()
    assert all(unknown.update(0.02, 0.028, None) is None for _ in range(4))


def test_the_detector_state_round_trips_through_plain_values() -> None:
    detector = CollapseDetector()
    for _ in range(2):
        detector.update(0.02, 0.028, None, 1.0)
    state = detector.state_dict()
    assert all(isinstance(v, int | bool) for v in state.values())
    restored = CollapseDetector()
    restored.load_state_dict(state)
    assert restored.update(0.02, 0.028, None, 1.0) is not None  # the third epoch in a row


def test_a_collapsing_run_warns_in_the_console_and_in_its_metrics(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """Warned at epoch 3 of 3; a resumed 4th epoch keeps the warning, and metrics.json
    carries it although the tested checkpoint (best.ckpt, epoch 1) predates it."""
    cfg = compose_cfg(*FAST, "logger=none", "trainer.max_epochs=3", "miner=none")
    with open_dict(cfg):
        cfg.backbone = {"_target_": "tests.helpers.ConstantBackbone", "embedding_dim": 8}
    with pytest.warns(UserWarning, match="embedding collapse"):
        train(cfg, tmp_path)
    with open_dict(cfg):
        cfg.trainer.max_epochs = 4
        cfg.resume = True
    metrics = train(cfg, tmp_path)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [float(r["health/collapse"]) for r in rows[1:]] == [0.0, 0.0, 1.0, 1.0]
    assert metrics["test/epoch"] == 1 and metrics["health/collapse"] == 1.0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["health/collapse"] == 1.0


@pytest.mark.parametrize(
    ("final", "below"),
    [
        ({"test/map_at_r": 0.361, "test/raw_map_at_r": 0.606}, True),
        ({"test/map_at_r": 0.606, "test/raw_map_at_r": 0.606}, False),
        ({"test/map_at_r": 0.9, "test/raw_map_at_r": 0.606}, False),
        ({"test/map_at_r": 0.1}, False),  # no raw baseline measured (inputs too large)
        ({"test/map_at_r": float("nan"), "test/raw_map_at_r": 0.606}, False),
    ],
)
def test_a_run_below_its_raw_inputs_is_named_with_both_numbers(
    final: dict[str, float], below: bool
) -> None:
    message = below_raw_baseline(final)
    assert (message is not None) == below
    if message is not None:
        assert "test/map_at_r 0.3610 < test/raw_map_at_r 0.6060" in message
