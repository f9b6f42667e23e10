"""The nca_iris demonstration's callbacks: k-NN accuracy before and after, the L picture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
from omegaconf import DictConfig
from sklearn.neighbors import KNeighborsClassifier

from dml.classic.callbacks import KNNAccuracy, LinearProjectionPlot, raw_inputs
from dml.config.build import build_datamodule, build_module
from dml.instantiate import build
from dml.reporting.history import EpochHistoryLogger


def test_nca_iris_logs_knn_accuracy_before_and_after_and_plots_the_projection(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg("experiment=nca_iris", "logger=none", "trainer.max_epochs=3")
    callbacks = [build(node) for node in cfg.callbacks.values()]
    assert [type(c) for c in callbacks] == [KNNAccuracy, LinearProjectionPlot]
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    history = EpochHistoryLogger(tmp_path / "metrics.csv")
    trainer = pl.Trainer(
        max_epochs=3,
        logger=[history],
        callbacks=callbacks,
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    rows = history.rows
    assert [e for e in sorted(rows) if "val/knn_accuracy" in rows[e]] == [0, 1, 2, 3]
    final = rows[max(rows)]
    assert 0.5 < final["test/knn_accuracy"] <= 1.0

    splits = datamodule.splits
    train_x, train_y = raw_inputs(splits.train, 64)
    test_x, test_y = raw_inputs(splits.test, 64)
    assert train_x.shape == (75, 4) and len(test_y) == 60
    expected = KNeighborsClassifier(3).fit(train_x, train_y).score(test_x, test_y)
    assert final["test/raw_knn_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert (tmp_path / "plots" / "linear_projection.png").stat().st_size > 10_000
    assert np.isfinite(final["train/loss"])
