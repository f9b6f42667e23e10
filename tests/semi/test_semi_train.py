"""`dml train` with held-back labels: semi=none against semi=pseudo_label, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from dml.commands.train import train
from dml.errors import DmlError
from dml.reporting.run_files import read_history
from tests.conftest import FAST, subprocess_env
from tests.training.test_train import read_wandb_run

DML = str(Path(sys.executable).parent / "dml")


def dml(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DML, *args], cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=600
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


def test_pseudo_label_accuracy_goes_to_wandb_and_metrics_csv(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg(
        *FAST,
        "dataset.labeled_fraction=0.1",
        "semi=pseudo_label",
        "semi.start_epoch=1",
        "logger=wandb",
    )
    train(cfg, tmp_path)
    csv_accuracy = read_history(tmp_path / "metrics.csv")["train/pseudo_label_accuracy"]
    csv_accuracy = csv_accuracy[~np.isnan(csv_accuracy)]
    _, history = read_wandb_run(tmp_path)
    logged = [
        (h["epoch"], h["train/pseudo_label_accuracy"])
        for h in history
        if "train/pseudo_label_accuracy" in h
    ]
    assert [epoch for epoch, _ in logged] == [1, 2]
    assert [value for _, value in logged] == pytest.approx(list(csv_accuracy))
    assert all(0.5 < value <= 1.0 for _, value in logged)
    assert sum("train/pseudo_label_fraction" in h for h in history) == 2


def test_cli_trains_with_a_tenth_of_the_labels_and_pseudo_labels(tmp_path: Path) -> None:
    """The issue's command as a user types it (mnist5k, the default dataset)."""
    run_dir = tmp_path / "run"
    result = dml(
        "train",
        "semi=pseudo_label",
        "dataset.labeled_fraction=0.1",
        "trainer=debug",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test/map_at_r"] <= 1.0
    composed = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "labeled_fraction: 0.1" in composed and "dml.semi.PseudoLabeler" in composed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.labeled_fraction=1.5"], "dataset.labeled_fraction=1.5 must lie in (0, 1]"),
        (["dataset.labeled_fraction=0"], "dataset.labeled_fraction=0 must lie in (0, 1]"),
        (
            ["dataset=iris", "backbone=mlp", "dataset.labeled_fraction=0.01"],
            "raise dataset.labeled_fraction to at least",
        ),
        (
            ["semi=pseudo_label"],
            "set dataset.labeled_fraction below 1 (e.g. 0.1) or use semi=none",
        ),
    ],
)
def test_bad_labeled_fraction_fails_at_start_with_one_line(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg = compose_cfg(*overrides, "trainer=debug", "logger=none")
    with pytest.raises(DmlError) as error:
        train(cfg, tmp_path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "checkpoints").exists()


def test_cli_prints_a_bad_labeled_fraction_as_one_line(tmp_path: Path) -> None:
    result = dml(
        "train", "dataset=iris", "backbone=mlp", "dataset.labeled_fraction=0.01", cwd=tmp_path
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "dataset.labeled_fraction=0.01" in errors[0]
    assert "raise dataset.labeled_fraction to at least 0.058" in errors[0]


def test_knn_accuracy_of_a_semi_supervised_run_fits_on_the_labelled_items_only(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    from dml.classic.callbacks import known_labels
    from dml.config.build import build_datamodule
    from dml.semi import PseudoLabeledDataset

    overrides = ["experiment=nca_iris", "dataset.labeled_fraction=0.5", "trainer.max_epochs=2"]
    cfg = compose_cfg(*overrides, "logger=none")
    metrics = train(cfg, tmp_path)
    assert 0.5 < metrics["test/knn_accuracy"] <= 1.0
    train_split = build_datamodule(cfg).splits.train
    assert isinstance(train_split, PseudoLabeledDataset)
    labelled = known_labels(train_split)
    assert len(labelled) == int(train_split.labeled.sum()) < len(train_split)
    x, label = labelled[0]
    assert int(label) == int(train_split.hidden_labels[train_split.labeled][0])


def test_resumed_pseudo_label_run_reaches_the_uninterrupted_result(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """The checkpoint holds the pseudo-labels (the data module's state), so the epochs
    after a resume train on the same pseudo-labelled batches as an uninterrupted run."""
    from tests.training.test_resume import DETERMINISTIC

    settings = [
        *DETERMINISTIC,
        "scheduler=none",
        "logger=none",
        "dataset.labeled_fraction=0.2",
        "semi=pseudo_label",
        "semi.start_epoch=1",
    ]
    full = train(compose_cfg(*settings), tmp_path / "full")
    partial = tmp_path / "partial"
    train(compose_cfg(*settings, "trainer.max_epochs=1"), partial)
    resumed = train(compose_cfg(*settings, "resume=true"), partial)
    for key, value in full.items():
        assert resumed[key] == pytest.approx(value, abs=1e-6), key
    accuracy = read_history(partial / "metrics.csv")["train/pseudo_label_accuracy"]
    assert np.count_nonzero(~np.isnan(accuracy)) == 3
