"""Model selection on validation: best.ckpt, last.ckpt, the tested checkpoint, and the
refusal of test-set selection.

The runs use a backbone whose embeddings get worse with every training step
(:class:`tests.helpers.DegradingBackbone`), so validation peaks after the first epoch on
any machine, and best and last differ.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

from dml.commands.evaluate import evaluate
from dml.commands.train import train
from dml.config.checks import check_config
from dml.errors import DmlError
from dml.training.module import EmbeddingModule
from tests.conftest import FAST, subprocess_env

DML = str(Path(sys.executable).parent / "dml")
DEGRADING = [
    *FAST,
    "logger=none",
    "trainer.max_epochs=3",
    "+trainer.limit_train_batches=5",
    "scheduler=none",
]


def compose_degrading(*overrides: str) -> DictConfig:
    with initialize_config_module("dml.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*DEGRADING, *overrides])
    with open_dict(cfg):
        cfg.backbone = {
            "_target_": "tests.helpers.DegradingBackbone",
            "input_dim": 64,
            "embedding_dim": 16,
            "noise_per_step": 0.03,
        }
    return cfg


def checkpoint(run_dir: Path, name: str) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / f"{name}.ckpt", weights_only=True)


def history(run_dir: Path) -> dict[int, dict[str, str]]:
    return {int(row["epoch"]): row for row in csv.DictReader((run_dir / "metrics.csv").open())}


def count_training_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = EmbeddingModule.training_step

    def counted(self: EmbeddingModule, batch: Any, batch_idx: int) -> Any:
        calls.append(batch_idx)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(EmbeddingModule, "training_step", counted)
    return calls


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two 3-epoch runs of the same degrading model: one tests best.ckpt, one last.ckpt."""
    base = tmp_path_factory.mktemp("selection")
    with pytest.MonkeyPatch.context() as monkeypatch:
        steps = count_training_steps(monkeypatch)
        best = train(compose_degrading(), base / "best")
        steps_per_run = len(steps)
    last = train(compose_degrading("eval.test_checkpoint=last"), base / "last")
    return {"base": base, "best": best, "last": last, "steps": steps_per_run}


def test_validation_peaks_early_in_these_runs(runs: dict[str, Any]) -> None:
    rows = history(runs["base"] / "best")
    scores = [float(rows[epoch]["val/map_at_r"]) for epoch in (1, 2, 3)]
    assert scores[0] > scores[1] > scores[2]


def test_last_ckpt_is_the_last_epoch_when_validation_stops_improving(
    runs: dict[str, Any],
) -> None:
    run_dir = runs["base"] / "best"
    last, best = checkpoint(run_dir, "last"), checkpoint(run_dir, "best")
    assert (last["epoch"], last["global_step"]) == (2, runs["steps"])
    assert (best["epoch"], best["global_step"]) == (0, runs["steps"] // 3)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]


def test_resume_continues_from_last_ckpt_without_retraining_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation peaks at epoch 1 of 2, so a last.ckpt written only on improvement would
    hold epoch 1, and the resumed run would train epoch 2 again."""
    steps = count_training_steps(monkeypatch)
    train(compose_degrading("trainer.max_epochs=2"), tmp_path)
    per_epoch = len(steps) // 2
    assert checkpoint(tmp_path, "best")["epoch"] == 0
    steps.clear()
    train(compose_degrading("trainer.max_epochs=3", "resume=true"), tmp_path)
    assert len(steps) == per_epoch  # epoch 3 only
    last = checkpoint(tmp_path, "last")
    assert (last["epoch"], last["global_step"]) == (2, 3 * per_epoch)
    assert checkpoint(tmp_path, "best")["epoch"] == 0  # the resumed run kept its best
    assert sorted(history(tmp_path)) == [0, 1, 2, 3]


def test_best_and_last_test_different_epochs(runs: dict[str, Any]) -> None:
    best, last = runs["best"], runs["last"]
    assert best["test/epoch"] == 1 and last["test/epoch"] == 3
    assert best["test/map_at_r"] > last["test/map_at_r"]
    # Same training, so the validation history (and the last epoch's values) agree.
    assert best["val/map_at_r"] == last["val/map_at_r"]
    rows = history(runs["base"] / "best")
    assert best["selection/score"] == pytest.approx(float(rows[1]["val/map_at_r"]))
    assert last["selection/score"] == pytest.approx(float(rows[3]["val/map_at_r"]))
    # metrics.csv carries the tested checkpoint's test metrics too.
    assert float(rows[3]["test/map_at_r"]) == pytest.approx(best["test/map_at_r"])


@pytest.mark.parametrize("name", ["best", "last"])
def test_eval_of_the_tested_checkpoint_reproduces_the_runs_test_metrics(
    runs: dict[str, Any], name: str, tmp_path: Path, compose_cfg: Callable[..., DictConfig]
) -> None:
    run_dir = runs["base"] / name
    cfg = compose_cfg(f"ckpt_path={run_dir / 'checkpoints' / f'{name}.ckpt'}", config_name="eval")
    evaluated = evaluate(cfg, tmp_path)
    tested = {k: v for k, v in runs[name].items() if k.startswith("test/") and "raw" not in k}
    assert {k: evaluated[k] for k in tested} == pytest.approx(tested, abs=1e-6)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "optimized_metric=test/map_at_r",
            r"^optimized_metric=test/map_at_r would select checkpoints and tune sweeps on the "
            r"test set.*use optimized_metric=val/map_at_r$",
        ),
        ("optimized_metric=train/loss", r"must be a validation metric \(val/"),
        ("optimized_direction=up", r"optimized_direction='up' must be one of maximize, minimize"),
        ("eval.test_checkpoint=middle", r"eval.test_checkpoint='middle' must be one of best, last"),
    ],
)
def test_bad_selection_settings_are_refused(
    compose_cfg: Callable[..., DictConfig], override: str, message: str
) -> None:
    with pytest.raises(DmlError, match=message):
        check_config(compose_cfg(override))


def test_a_metric_validation_never_logs_stops_before_training(tmp_path: Path) -> None:
    with pytest.raises(
        DmlError,
        match=r"optimized_metric=val/map_at_3 is not a metric .*"
        r"val/map_at_r",
    ):
        train(compose_degrading("optimized_metric=val/map_at_3"), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_a_sweep_that_tunes_on_test_is_refused_before_any_job(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            DML,
            "train",
            "-m",
            *FAST,
            "seed=0,1",
            "optimized_metric=test/map_at_r",
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: optimized_metric=test/map_at_r would select")
    assert "Traceback" not in result.stderr
    assert not [p for p in (tmp_path / "sweep").glob("*") if p.is_dir()]


def test_the_optuna_study_follows_optimized_direction() -> None:
    with initialize_config_module("dml.conf", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["sweep=optuna", "optimized_direction=minimize"],
            return_hydra_config=True,
        )
    assert cfg.hydra.sweeper.direction == "minimize"
