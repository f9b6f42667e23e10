"""The `dml` console script, run as a user runs it: in a subprocess, from another directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import group_options, subprocess_env

DML = str(Path(sys.executable).parent / "dml")
QUICK = [
    "dataset=digits",
    "backbone=mlp",
    "trainer=debug",
    "data.batch_size=60",
    "data.samples_per_class=6",
]


def dml(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DML, *args], cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_commands(tmp_path: Path) -> None:
    result = dml("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "train" in result.stdout and "eval" in result.stdout


def test_train_help_shows_groups_and_options(tmp_path: Path) -> None:
    result = dml("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for group in ("backbone", "loss", "miner", "dataset", "optimizer", "trainer", "logger"):
        (listed,) = [line for line in lines if line.startswith(f"{group}: ")]
        assert set(listed.split(": ")[1].split(", ")) == set(group_options(group))


def test_cfg_job_prints_the_composed_config(tmp_path: Path) -> None:
    result = dml("train", "loss=contrastive", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0
    assert "_target_: dml.losses.contrastive.ContrastiveLoss" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_train_runs_end_to_end_from_any_directory(tmp_path: Path) -> None:
    result = dml("train", *QUICK, "loss=triplet", "miner=hard", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "run"
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "metrics.csv").is_file()
    assert "test/map_at_r" in json.loads((run / "metrics.json").read_text())
    assert list(run.glob("wandb/offline-run-*/run-*.wandb"))
    assert result.stdout.rstrip().splitlines()[-1].startswith("Run directory:")
    assert "test/precision_at_1" in result.stdout


def test_multirun_writes_one_directory_and_wandb_run_per_job(tmp_path: Path) -> None:
    result = dml(
        "train",
        "-m",
        *QUICK,
        "loss=triplet,contrastive",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    runs = [list(job.glob("wandb/offline-run-*/run-*.wandb")) for job in jobs]
    assert [len(r) for r in runs] == [1, 1]
    assert runs[0][0].name != runs[1][0].name
    assert all((job / "metrics.json").is_file() for job in jobs)
    # It ends with what to do next, not with the last job's metrics table.
    assert result.stdout.splitlines()[-2:] == [
        "Sweep directory: sweep (2 jobs)",
        "Compare the runs: dml compare sweep",
    ]


def test_mistyped_option_and_key_fail_before_any_work(tmp_path: Path) -> None:
    bad_option = dml("train", "loss=tripplet", cwd=tmp_path)
    assert bad_option.returncode != 0
    assert "error: loss=tripplet is not an option of loss; did you mean" in bad_option.stderr
    bad_key = dml("train", "loss.margn=0.3", cwd=tmp_path)
    assert bad_key.returncode != 0
    assert "has no key margn; did you mean loss.margin=0.3?" in bad_key.stderr
    assert not (tmp_path / "outputs").exists()


def test_infeasible_batch_fails_with_one_line(tmp_path: Path) -> None:
    result = dml(
        "train",
        "dataset=digits",
        "backbone=mlp",
        "trainer=debug",
        "data.samples_per_class=7",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "data.batch_size=128 is not a multiple of data.samples_per_class=7" in error_lines[0]


def test_a_failed_job_does_not_stop_the_sweep(tmp_path: Path) -> None:
    """Job 0 fails at start (infeasible P×K batch); job 1 still runs; the sweep exits non-zero."""
    result = dml(
        "train",
        "-m",
        *QUICK[:3],
        "data.batch_size=60",
        "data.samples_per_class=7,6",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode != 0
    sweep = tmp_path / "sweep"
    assert (sweep / "0" / "FAILED").is_file()
    assert "not a multiple of data.samples_per_class=7" in (sweep / "0" / "FAILED").read_text()
    assert (sweep / "1" / "metrics.json").is_file()
    # The sweep ends with its directory, one line per failed job and the next command;
    # the job's input error is one line, not a traceback.
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == [
        f"error: job 0 ({Path('sweep') / '0'}) failed: data.batch_size=60 is not a multiple of "
        "data.samples_per_class=7: a P×K batch holds whole classes, at least 2 of them; set "
        "data.batch_size=56 (8 classes of 7) or data.batch_size=63 (9 classes of 7), "
        "or data.samples_per_class=6 (10 classes of 6)"
    ]
    assert result.stdout.splitlines()[-2:] == [
        "Sweep directory: sweep (2 jobs, 1 failed)",
        "Compare the runs: dml compare sweep",
    ]
    table = dml("compare", "sweep", cwd=tmp_path)
    assert "failed" in table.stdout


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path: Path) -> None:
    import signal
    import time

    args = [
        *QUICK[:2],
        "trainer.max_epochs=200",
        "data.batch_size=60",
        "data.samples_per_class=6",
        "hydra.run.dir=run",
    ]
    proc = subprocess.Popen(
        [DML, "train", *args],
        cwd=tmp_path,
        env=subprocess_env(),
        # Nobody reads the progress bar's output until the end: a full pipe would block
        # the run before it ever saw the signal.
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a suite started in the background (`make test &`) inherits an
        # ignored SIGINT, and Python then never turns Ctrl-C into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert (tmp_path / "run" / "checkpoints" / "interrupted.ckpt").is_file()
    assert "resume=true" in stderr and "hydra.run.dir=" in stderr
    assert "Traceback" not in stderr
    from tests.training.test_train import read_wandb_run

    summary, _ = read_wandb_run(tmp_path / "run")
    assert summary["exit_code"] == 130
    assert summary["summary"]["status"] == "interrupted"


def test_eval_and_embed_a_trained_checkpoint(tmp_path: Path) -> None:
    import numpy as np

    trained = dml("train", *QUICK, "logger=none", "hydra.run.dir=run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    evaluated = dml("eval", f"ckpt_path={ckpt}", "logger=none", "hydra.run.dir=eval", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    train_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    eval_metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert eval_metrics["test/map_at_r"] == train_metrics["test/map_at_r"]

    embedded = dml(
        "embed",
        f"ckpt_path={ckpt}",
        "out=emb.npz",
        "split=val",
        "logger=none",
        "hydra.run.dir=embed",
        cwd=tmp_path,
    )
    assert embedded.returncode == 0, embedded.stderr[-2000:]
    data = np.load(tmp_path / "emb.npz")
    assert data["embeddings"].shape == (len(data["labels"]), 64)
    assert np.allclose(np.linalg.norm(data["embeddings"], axis=1), 1.0, atol=1e-5)
    assert data["ids"].tolist() == list(range(len(data["labels"])))

    missing = dml("eval", "ckpt_path=nope.ckpt", "hydra.run.dir=eval2", cwd=tmp_path)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "error: checkpoint nope.ckpt does not exist" in missing.stderr


def test_unwritable_output_directory_fails_at_start_with_the_path(tmp_path: Path) -> None:
    # chmod does not stop root, so use a place where no one can create a directory:
    # sysfs refuses new directories (EPERM).
    for setting, extra in (("hydra.run.dir", ()), ("hydra.sweep.dir", ("-m",))):
        target = "/sys/dml_cannot_write_here"
        result = dml("train", *extra, *QUICK, "logger=none", f"{setting}={target}", cwd=tmp_path)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1, result.stderr
        assert f"cannot write the output directory {target}" in error_lines[0]
        assert f"{setting}=PATH" in error_lines[0]
        assert not (tmp_path / "outputs").exists()
