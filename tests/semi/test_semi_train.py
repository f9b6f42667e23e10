"""`dml train` with held-back labels: semi=none against semi=pseudo_label, end to end."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf

from dml.plots import read_history
from dml.run import train
from tests.conftest import FAST

WIRED = "semi" in {
    next(iter(entry))
    for entry in OmegaConf.load(files("dml.conf") / "train.yaml").defaults
    if isinstance(entry, DictConfig)
}

pytestmark = pytest.mark.skipif(
    not WIRED, reason="train.yaml does not list the semi group, so `semi=` is not composed"
)


@pytest.mark.parametrize("semi", ["none", "pseudo_label"])
def test_labeled_fraction_run(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, semi: str
) -> None:
    cfg = compose_cfg(
        *FAST,
        "trainer.max_epochs=3",
        "dataset.labeled_fraction=0.2",
        f"semi={semi}",
        "semi.start_epoch=1" if semi == "pseudo_label" else "seed=0",
        "logger=none",
    )
    metrics = train(cfg, tmp_path)
    assert metrics["test/map_at_r"] > 0.3
    history = read_history(tmp_path / "metrics.csv")
    if semi == "none":
        assert "train/pseudo_label_accuracy" not in history
        return
    accuracy = history["train/pseudo_label_accuracy"]
    logged = history["epoch"][~np.isnan(accuracy)]
    assert list(logged) == [1, 2, 3]
    assert np.nanmin(accuracy) > 0.8
    assert np.nanmin(history["train/pseudo_label_fraction"]) > 0.1
