"""What a new user meets in the first hour: one-line errors for bad values, help per
command, run directories that hold only runs, and no run that "succeeds" with NaN."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from dml.commands.final_metrics import check_final_metrics
from dml.errors import DmlError
from tests.commands.test_cli import DML, QUICK, dml
from tests.conftest import subprocess_env


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["scheduler.T_max=abc"],
            "scheduler CosineAnnealingLR fails on a trial step (unsupported operand",
        ),
        (
            ["dataset=imagefolder", "dataset.transform=small"],
            "pick an option of the group with dataset/transform=small (options: imagenet, small)",
        ),
    ],
)
def test_bad_values_fail_at_start_in_one_line_and_leave_no_run(
    tmp_path: Path, overrides: list[str], expected: str
) -> None:
    result = dml("train", *QUICK, *overrides, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert expected in line
    # A run that measured nothing is removed: `dml compare outputs/runs/*` lists no stubs.
    assert not any((tmp_path / "outputs" / "runs").glob("*"))


def test_each_command_has_its_own_help(tmp_path: Path) -> None:
    for command, first_line in (
        ("train", "dml train: train an embedding"),
        ("eval", "dml eval: test a trained checkpoint"),
        ("embed", "dml embed: write a split's embeddings"),
    ):
        result = dml(command, "--help", cwd=tmp_path)
        assert result.returncode == 0
        assert result.stdout.startswith(first_line), (command, result.stdout[:200])


def test_eval_and_embed_have_their_own_folders_and_record_what_they_ran(tmp_path: Path) -> None:
    trained = dml("train", *QUICK, "logger=none", "hydra.run.dir=run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    evaluated = dml("eval", f"ckpt_path={ckpt}", "logger=none", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    embedded = dml("embed", f"ckpt_path={ckpt}", "out=emb.npz", "logger=none", cwd=tmp_path)
    assert embedded.returncode == 0, embedded.stderr[-2000:]
    assert not (tmp_path / "outputs" / "runs").exists()
    (eval_dir,) = (tmp_path / "outputs" / "eval").iterdir()
    (embed_dir,) = (tmp_path / "outputs" / "embed").iterdir()
    for folder in (eval_dir, embed_dir):
        recorded = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        # The checkpoint's data and model (digits, MLP), not train.yaml's defaults.
        assert recorded["dataset"]["_target_"].endswith("Digits")
        assert recorded["backbone"]["_target_"].endswith("MLP")


def test_a_run_prints_no_wandb_warning_and_counts_epochs_from_one(tmp_path: Path) -> None:
    env = {k: v for k, v in subprocess_env().items() if k != "WANDB_SILENT"}
    result = subprocess.run(
        [DML, "train", *QUICK, "trainer.enable_progress_bar=true", "hydra.run.dir=run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wandb: Tracking run" in result.stderr + result.stdout
    # A one-batch run retrieves worse than digits' raw pixels and says so, in one line
    # (tests/commands/test_below_raw.py); nothing else warns.
    lines = (result.stderr + result.stdout).splitlines()
    assert [
        line for line in lines if "WARNING" in line and "below the raw inputs" not in line
    ] == []
    # Epoch 0 is the validation before training (metrics.csv); the bar starts at 1.
    assert "Epoch 1/1" in result.stdout and "Epoch 0" not in result.stdout


def test_a_test_split_of_one_class_is_refused_before_training(tmp_path: Path) -> None:
    """A file whose test split holds one class: no different-class test pair exists and
    every retrieval metric would be 1.0, so the run stops at start and leaves nothing."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 12)
    split = np.where(labels == 3, "test", np.where(np.arange(48) % 12 < 3, "val", "train"))
    features = rng.normal(size=(48, 5)) + labels[:, None] * 3.0
    np.savez(tmp_path / "one_test_class.npz", features=features, labels=labels, split=split)
    result = dml(
        "train",
        *QUICK,
        "logger=none",
        "dataset=features",
        "dataset.path=one_test_class.npz",
        "data.batch_size=12",
        "data.samples_per_class=4",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    (line,) = error_lines(result.stderr)
    assert "the test split holds a single class (3)" in line
    assert "one_test_class.npz" in line
    assert not (tmp_path / "run").exists()


def test_check_final_metrics_names_only_nan_test_metrics(tmp_path: Path) -> None:
    check_final_metrics({"test/map_at_r": 0.5, "train/loss": float("nan")}, tmp_path)
    with pytest.raises(DmlError, match=r"1 final metric\(s\) are NaN \(test/nmi\)"):
        check_final_metrics({"test/map_at_r": 0.5, "test/nmi": float("nan")}, tmp_path)
    with pytest.raises(DmlError, match="no test query has another item of its own class"):
        check_final_metrics({"test/map_at_r": float("nan")}, tmp_path)
