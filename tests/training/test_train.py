"""train(cfg) end to end, in process: the run directory, the curves, W&B, NaN handling."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from dml.commands.train import train
from dml.errors import DmlError
from tests.conftest import FAST

WANDB = str(Path(sys.executable).parent / "wandb")


def read_wandb_run(run_dir: Path) -> tuple[dict, list[dict]]:
    """The summary and the history records of the run's offline W&B file, via `wandb leet`."""
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    summary = subprocess.run(
        [WANDB, "leet", "inspect", "--summary", "--json", str(run_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    records = subprocess.run(
        [WANDB, "leet", "inspect", "--json", str(run_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    history = [
        rec["history"]["item"]
        for rec in map(json.loads, records.stdout.splitlines())
        if rec.get("type") == "history"
    ]
    return json.loads(summary.stdout), history


def test_train_writes_the_run_directory_and_wandb_run(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg(*FAST, "loss=triplet", "miner=hard")
    metrics = train(cfg, tmp_path)

    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    for key in (
        "test/precision_at_1",
        "test/map_at_r",
        "test/r_precision",
        "test/nmi",
        "test/recall_at_8",
        "val/map_at_r",
    ):
        assert 0.0 <= saved[key] <= 1.0, key

    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert rows[0]["train/loss"] == ""  # epoch 0 is the untrained embedding
    for row in rows:
        for key in (
            "val/dist_pos_mean",
            "val/dist_neg_mean",
            "val/dist_pos_std",
            "val/recall_at_1",
        ):
            assert float(row[key]) >= 0.0
    for row in rows[1:]:
        assert float(row["train/loss"]) >= 0.0
        assert 0.0 <= float(row["train/active_fraction"]) <= 1.0

    splits = json.loads((tmp_path / "splits.json").read_text())
    assert sorted(splits) == ["test", "train", "val"]
    assert all(splits[name]["classes"] == list(range(10)) for name in splits)  # split=samples
    assert sum(splits[name]["samples"] for name in splits) == 1797  # every digit, once

    summary, history = read_wandb_run(tmp_path)
    assert summary["state"] == "finished" and summary["exit_code"] == 0
    assert summary["config"]["loss._target_"] == "dml.losses.triplet.TripletLoss"
    # Without Hydra's command line, the variant names the components.
    assert summary["config"]["variant"] == (
        "backbone=mlp dataset=digits loss=tripletloss miner=batchhardminer"
    )
    assert summary["summary"]["test/map_at_r"] == pytest.approx(saved["test/map_at_r"])
    curve = [(h["epoch"], h["val/dist_pos_mean"]) for h in history if "val/dist_pos_mean" in h]
    assert [epoch for epoch, _ in curve] == [0, 1, 2]
    assert [value for _, value in curve] == pytest.approx(
        [float(r["val/dist_pos_mean"]) for r in rows]
    )
    assert sum("val/recall_at_4" in h for h in history) == 3


def test_learning_separates_the_distance_curves(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg(*FAST, "logger=none", "trainer.max_epochs=4")
    train(cfg, tmp_path)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    gap = [float(r["val/dist_neg_mean"]) - float(r["val/dist_pos_mean"]) for r in rows]
    assert gap[-1] > gap[0]
    assert float(rows[-1]["val/map_at_r"]) > float(rows[0]["val/map_at_r"])


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg(*FAST, "logger=none", "trainer.max_epochs=3", "miner=none")
    steps_per_epoch = int(0.7 * 1797) // cfg.data.batch_size
    with open_dict(cfg):
        cfg.loss = {
            "_target_": "tests.helpers.NaNAfterStepsLoss",
            "good_steps": steps_per_epoch + 2,
        }
    with pytest.raises(DmlError, match=r"train/loss became nan at epoch 1, step \d+") as info:
        train(cfg, tmp_path)
    assert "\n" not in str(info.value)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]


def test_pml_loss_and_miner_plug_in_through_target(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg(*FAST, "logger=none", "trainer.max_epochs=1")
    with open_dict(cfg):
        cfg.loss = {"_target_": "pytorch_metric_learning.losses.TripletMarginLoss", "margin": 0.2}
        cfg.miner = {"_target_": "pytorch_metric_learning.miners.BatchHardMiner"}
    metrics = train(cfg, tmp_path)
    assert 0.0 < metrics["test/map_at_r"] <= 1.0


@pytest.mark.slow
def test_unreachable_wandb_falls_back_to_offline(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Online mode with a server that refuses connections: warn once, log offline, finish."""
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "5")
    cfg = compose_cfg(*FAST, "trainer.max_epochs=1", "logger.mode=online")
    with pytest.warns(UserWarning, match="W&B could not start online .*logging offline"):
        metrics = train(cfg, tmp_path)
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "metrics.csv").is_file()
    summary, _ = read_wandb_run(tmp_path)
    assert summary["state"] == "finished"
    assert summary["summary"]["test/map_at_r"] == pytest.approx(metrics["test/map_at_r"])
