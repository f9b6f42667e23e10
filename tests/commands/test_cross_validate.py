"""cv.folds=K: one job trains the K class-disjoint folds and returns their mean."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import DictConfig

from dml.commands.cross_validate import cross_validate, cv_folds
from dml.errors import DmlError
from tests.commands.test_sweeps import QUICK, dml_train, job_dirs

# Digits 0–5 train (and validate, fold by fold), 6–9 test.
CLASS_SPLIT = ["dataset.split=classes", "dataset.train_classes=6"]
SMALL_BATCHES = ["data.batch_size=24", "data.samples_per_class=6"]
FOLDS = 3


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float], DictConfig]:
    from hydra import compose, initialize_config_module

    with initialize_config_module("dml.conf", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *QUICK,
                *CLASS_SPLIT,
                *SMALL_BATCHES,
                "logger=none",
                f"cv.folds={FOLDS}",
            ],
        )
    run_dir = tmp_path_factory.mktemp("cv")
    return run_dir, cross_validate(cfg, run_dir), cfg


def test_every_fold_trains_in_its_own_directory_and_the_job_returns_the_mean(
    cv_run: tuple[Path, dict[str, float], DictConfig],
) -> None:
    run_dir, returned, _ = cv_run
    per_fold = [json.loads((run_dir / f"fold_{i}" / "metrics.json").read_text()) for i in range(3)]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == pytest.approx(returned)
    for key in ("val/map_at_r", "test/map_at_r", "val/recall_at_1"):
        values = [m[key] for m in per_fold]
        assert saved[key] == pytest.approx(np.mean(values), rel=1e-12)
    record = json.loads((run_dir / "cv.json").read_text())
    assert record["folds"] == FOLDS and record["per_fold"] == per_fold
    values = [m["val/map_at_r"] for m in per_fold]
    assert record["std"]["val/map_at_r"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)


def test_the_folds_splits_json_show_disjoint_folds_and_untouched_test_classes(
    cv_run: tuple[Path, dict[str, float], DictConfig],
) -> None:
    run_dir = cv_run[0]
    splits = [json.loads((run_dir / f"fold_{i}" / "splits.json").read_text()) for i in range(3)]
    vals = [set(s["val"]["classes"]) for s in splits]
    assert set().union(*vals) == set(range(6)) and sum(len(v) for v in vals) == 6
    for split, val in zip(splits, vals, strict=True):
        assert set(split["train"]["classes"]) == set(range(6)) - val
        assert split["test"]["classes"] == [6, 7, 8, 9]
        assert split["test"] == splits[0]["test"]


def test_resume_reuses_finished_folds(cv_run: tuple[Path, dict[str, float], DictConfig]) -> None:
    run_dir, returned, cfg = cv_run
    stamps = [(run_dir / f"fold_{i}" / "metrics.json").stat().st_mtime_ns for i in range(3)]
    cfg = cfg.copy()
    cfg.resume = True
    assert cross_validate(cfg, run_dir) == pytest.approx(returned)
    assert [(run_dir / f"fold_{i}" / "metrics.json").stat().st_mtime_ns for i in range(3)] == (
        stamps
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["cv.folds=1"], "cv.folds=1 must be an integer of at least 2, or null"),
        (["cv.folds=3", "dataset.fold=1"], "cv.folds=3 trains every fold itself"),
        (["cv.folds=3", "dataset.folds=4"], "cv.folds=3 trains every fold itself"),
        (["cv.folds=3", "trainer=ddp"], "run the folds as a multirun instead"),
    ],
)
def test_bad_cv_settings_get_one_line(
    compose_cfg: Callable[..., DictConfig], overrides: list[str], message: str
) -> None:
    with pytest.raises(DmlError) as info:
        cv_folds(compose_cfg(*overrides))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_optuna_scores_each_trial_by_its_mean_over_the_folds(tmp_path: Path) -> None:
    result = dml_train(
        "-m",
        "sweep=optuna",
        "hydra.sweeper.n_trials=2",
        "cv.folds=2",
        *QUICK,
        *CLASS_SPLIT,
        # Two folds of six classes leave three to train on.
        "data.batch_size=12",
        "data.samples_per_class=6",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    means = []
    for job in job_dirs(sweep):
        folds = [json.loads((job / f"fold_{i}" / "metrics.json").read_text()) for i in (0, 1)]
        mean = np.mean([fold["val/map_at_r"] for fold in folds])
        assert json.loads((job / "metrics.json").read_text())["val/map_at_r"] == pytest.approx(mean)
        means.append(mean)
    found = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert found["best_value"] == pytest.approx(max(means))
