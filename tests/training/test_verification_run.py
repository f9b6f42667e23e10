"""eval.verification=true in a real run: the metrics reach metrics.json, metrics.csv and
W&B, equal scikit-learn's on the checkpoint's own test embeddings, and the pictures exist."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig
from sklearn.metrics import roc_auc_score

from dml.commands.embed import embed
from dml.commands.train import train
from tests.conftest import FAST
from tests.training.test_train import read_wandb_run

KEYS = [
    "roc_auc",
    "eer",
    "tar_at_far_1e-2",
    "tar_at_far_1e-3",
    "threshold_at_far_1e-2",
    "threshold_at_far_1e-3",
    "verification_same_pairs",
    "verification_different_pairs",
]


def test_verification_metrics_reach_every_record_and_match_sklearn(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cfg = compose_cfg(*FAST, "trainer.max_epochs=1", "eval.verification=true")
    metrics = train(cfg, run)

    saved = json.loads((run / "metrics.json").read_text())
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    summary, _ = read_wandb_run(run)
    for key in KEYS:
        for prefix in ("val", "test"):
            assert f"{prefix}/{key}" in saved
            assert summary["summary"][f"{prefix}/{key}"] == pytest.approx(saved[f"{prefix}/{key}"])
        assert all(row[f"val/{key}"] != "" for row in rows)  # every epoch, epoch 0 too
    assert 0.5 < saved["test/roc_auc"] <= 1.0 and 0.0 <= saved["test/eer"] < 0.5
    assert {"plots/roc", "plots/retrieval_examples"} <= set(summary["summary"])
    assert (run / "plots" / "roc.png").is_file()
    assert (run / "plots" / "retrieval_examples.png").is_file()

    out = tmp_path / "test.npz"
    embed(
        compose_cfg(
            f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"out={out}", config_name="embed"
        )
    )
    data = np.load(out)
    x, labels = data["embeddings"].astype(np.float64), data["labels"]
    pairs = np.array(list(itertools.combinations(range(len(labels)), 2)))
    distances = np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1)
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert metrics["test/verification_same_pairs"] == same.sum()
    assert metrics["test/verification_different_pairs"] == (~same).sum()
    assert metrics["test/roc_auc"] == pytest.approx(roc_auc_score(same, -distances), abs=1e-6)
    threshold = metrics["test/threshold_at_far_1e-2"]
    assert (distances[~same] <= threshold).mean() <= 1e-2
    assert (distances[same] <= threshold).mean() == pytest.approx(metrics["test/tar_at_far_1e-2"])


def test_a_bad_verification_setting_is_one_line(compose_cfg: Callable[..., DictConfig]) -> None:
    from dml.errors import DmlError

    with pytest.raises(DmlError, match="eval.verification='yes' must be true or false"):
        train(compose_cfg(*FAST, "eval.verification=yes", "logger=none"))
