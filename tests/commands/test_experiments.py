"""Every experiment preset composes and runs one batch of each loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from dml.commands.train import train
from tests.conftest import group_options


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_experiment_runs_one_debug_batch(
    compose_cfg: Callable[..., DictConfig], experiment: str, tmp_path: Path
) -> None:
    cfg = compose_cfg(
        f"experiment={experiment}", "trainer=debug", "trainer.max_epochs=1", "logger=none"
    )
    metrics = train(cfg, tmp_path)
    assert 0.0 <= metrics["test/map_at_r"] <= 1.0
    assert (tmp_path / "metrics.json").is_file()
