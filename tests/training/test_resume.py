"""Determinism, resume after a hard kill, atomic checkpoints, and checkpoint refusal."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from dml.commands.train import train
from dml.errors import DmlError
from dml.training.checkpoints import load_checkpoint
from tests.conftest import FAST, subprocess_env

DML = str(Path(sys.executable).parent / "dml")
DETERMINISTIC = [
    *FAST,
    "trainer.deterministic=true",
    "seed=7",
    "miner=random",
    "trainer.max_epochs=3",
]


def test_same_seed_gives_identical_metrics(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    for name in ("a", "b"):
        train(compose_cfg(*DETERMINISTIC, "logger=none"), tmp_path / name)
    first = (tmp_path / "a" / "metrics.json").read_text()
    assert first == (tmp_path / "b" / "metrics.json").read_text()


def test_resume_from_a_checkpoint_reaches_the_uninterrupted_result(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    # A constant learning rate, so stopping after 1 of 3 epochs changes no schedule.
    settings = [*DETERMINISTIC, "scheduler=none"]
    full = train(compose_cfg(*settings, "logger=none"), tmp_path / "full")
    partial_dir = tmp_path / "partial"
    train(compose_cfg(*settings, "trainer.max_epochs=1"), partial_dir)
    first_id = (partial_dir / "wandb_run_id").read_text()
    resumed = train(compose_cfg(*settings, "resume=true"), partial_dir)
    assert (partial_dir / "wandb_run_id").read_text() == first_id
    run_files = list(partial_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 2 and all(first_id.strip() in p.name for p in run_files)
    assert resumed.keys() == full.keys()
    for key, value in full.items():
        assert resumed[key] == pytest.approx(value, abs=1e-6), key
    rows = (partial_dir / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in rows[1:]] == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_hard_kill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    """SIGKILL once the first epoch's checkpoint exists, then `resume=true` in the same dir."""
    args = [*DETERMINISTIC, "trainer.max_epochs=4", "logger=wandb"]
    subprocess.run(
        [DML, "train", *args, "hydra.run.dir=full"],
        cwd=tmp_path,
        env=subprocess_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    proc = subprocess.Popen(
        [DML, "train", *args, "hydra.run.dir=killed"],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists(), "the kill came too late"
    first_id = (tmp_path / "killed" / "wandb_run_id").read_text()
    resumed_run = subprocess.run(
        [DML, "train", *args, "hydra.run.dir=killed", "resume=true"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed_run.returncode == 0, resumed_run.stderr[-3000:]
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    for key, value in full.items():
        assert resumed[key] == pytest.approx(value, abs=1e-6), key
    assert (tmp_path / "killed" / "wandb_run_id").read_text() == first_id
    run_files = list((tmp_path / "killed").glob("wandb/*run-*/run-*.wandb"))
    assert run_files and all(first_id.strip() in p.name for p in run_files)


def test_resume_without_a_checkpoint_names_the_path(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    with pytest.raises(DmlError, match=r"resume=true found no checkpoint at .*last\.ckpt"):
        train(compose_cfg(*FAST, "logger=none", "resume=true"), tmp_path)


def test_checkpoint_save_is_atomic(tmp_path: Path) -> None:
    from dml.training.resume import AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, target)
    assert torch.load(target, weights_only=True)["state_dict"]["w"].tolist() == [1.0, 1.0]
    assert not list(tmp_path.glob("*.tmp"))


class Payload:
    def __reduce__(self) -> tuple:
        return (print, ("code ran",))


def test_bad_checkpoints_are_refused_with_a_reason(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    train(compose_cfg(*FAST, "logger=none", "trainer.max_epochs=1"), tmp_path / "run")
    good = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert "dml_config" in load_checkpoint(good)

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DmlError, match="truncated or not a torch checkpoint"):
        load_checkpoint(truncated)

    evil = tmp_path / "evil.ckpt"
    with evil.open("wb") as handle:
        pickle.dump({"state_dict": Payload()}, handle)
    with pytest.raises(DmlError, match="holds more than tensors and plain data"):
        load_checkpoint(evil)

    with pytest.raises(DmlError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
