"""Messages that must not mislead (issue 20, section 4), through the real `dml` command run
from an empty folder: one line naming the closest option or key, checkpoints offered when
a directory is given, and help that shows a command's own keys first."""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.commands.test_cli import DML, QUICK, dml
from tests.conftest import group_options, subprocess_env


def only_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exactly one line on stderr, `error: ...`, and nothing else."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "loss=tripplet"], "did you mean loss=triplet?"),
        (["train", "miner=hrd"], "did you mean miner=hard?"),
        (["train", "dataset=mnist5"], "did you mean dataset=mnist5k?"),
        (["train", "backbone=resnet5"], "did you mean backbone=resnet50?"),
        (["train", "experiment=cub200_resnet5"], "did you mean experiment=cub200_resnet50?"),
        (
            ["train", "dataset=imagefolder", "dataset/transform=smal"],
            "did you mean dataset/transform=small?",
        ),
        (["train", "-m", "loss=tripplet,contrastive"], "did you mean loss=triplet?"),
        (["eval", "ckpt_path=x.ckpt", "loss=tripplet"], "did you mean loss=triplet?"),
    ],
)
def test_a_mistyped_option_is_one_line_with_the_closest_and_the_options(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    line = only_error_line(dml(*args, cwd=tmp_path))
    assert expected in line
    group = expected.split("mean ")[1].split("=")[0]
    listed = line.split("Options: ")[1].split(", ")
    assert listed == group_options(group)
    assert "search path" not in line
    assert not (tmp_path / "outputs").exists()


def test_a_nested_group_the_dataset_lacks_names_the_datasets_that_have_it(tmp_path: Path) -> None:
    line = only_error_line(dml("train", "dataset=digits", "dataset/transform=small", cwd=tmp_path))
    assert "the chosen dataset has none" in line and "imagefolder" in line


@pytest.mark.parametrize("sweep", [[], ["-m"]])
def test_a_mistyped_key_names_the_keys_that_exist_and_no_plus(
    tmp_path: Path, sweep: list[str]
) -> None:
    """`optimizer.learning_rate` is no argument of Adam, so `+optimizer.learning_rate`
    would fail when Adam is built: the keys that exist are named instead."""
    line = only_error_line(dml("train", *sweep, "optimizer.learning_rate=0.1", cwd=tmp_path))
    assert "did you mean optimizer.lr=0.1?" in line
    assert line.split("closest first: ")[1].split(", ")[0] == "optimizer.lr"
    assert "+optimizer.learning_rate" not in line


def test_plus_is_offered_only_for_an_argument_the_component_takes(tmp_path: Path) -> None:
    line = only_error_line(dml("train", "trainer.gradient_clip_val=1.0", cwd=tmp_path))
    assert "add it with +trainer.gradient_clip_val=1.0" in line
    followed = dml(
        "train",
        *QUICK,
        "logger=none",
        "+trainer.gradient_clip_val=1.0",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert followed.returncode == 0, followed.stderr[-2000:]
    line = only_error_line(dml("train", "loss.margn=0.3", cwd=tmp_path))
    assert "did you mean loss.margin=0.3?" in line and "+loss" not in line
    line = only_error_line(dml("train", "los=triplet", cwd=tmp_path))
    assert "did you mean loss=triplet?" in line


@pytest.mark.parametrize("command", ["eval", "embed", "search", "export", "train"])
def test_a_directory_as_ckpt_path_offers_the_checkpoints_inside(
    tmp_path: Path, command: str
) -> None:
    checkpoints = tmp_path / "runs" / "img64" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"")
    extra = ["query=q.png"] if command == "search" else []
    line = only_error_line(dml(command, "ckpt_path=runs/img64", *extra, cwd=tmp_path))
    assert "ckpt_path=runs/img64 is a directory" in line
    # Only what exists is offered.
    assert line.endswith("pass a checkpoint file in it: ckpt_path=runs/img64/checkpoints/last.ckpt")
    # A failure that measured nothing leaves no run directory behind.
    assert not list((tmp_path / "outputs").glob("*/*"))


def test_the_checkpoints_folder_as_ckpt_path_offers_best_and_last(tmp_path: Path) -> None:
    checkpoints = tmp_path / "runs" / "img64" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt"):
        (checkpoints / name).write_bytes(b"")
    line = only_error_line(dml("eval", "ckpt_path=runs/img64/checkpoints", cwd=tmp_path))
    assert line.endswith(
        "ckpt_path=runs/img64/checkpoints/best.ckpt or ckpt_path=runs/img64/checkpoints/last.ckpt"
    )
    (tmp_path / "empty").mkdir()
    line = only_error_line(dml("eval", "ckpt_path=empty", cwd=tmp_path))
    assert "ckpt_path=empty is a directory with no checkpoint in it" in line


def test_a_required_key_left_out_is_named(tmp_path: Path) -> None:
    line = only_error_line(dml("search", "ckpt_path=x.ckpt", cwd=tmp_path))
    assert "query must be given: dml search query=..." in line
    line = only_error_line(dml("embed", cwd=tmp_path))
    assert "ckpt_path" in line


@pytest.mark.parametrize(
    ("command", "own"),
    [
        ("search", ["ckpt_path", "query", "gallery", "k", "out"]),
        ("export", ["ckpt_path", "format", "out"]),
        ("embed", ["ckpt_path", "out", "split"]),
        ("eval", ["ckpt_path"]),
    ],
)
def test_help_of_a_checkpoint_command_shows_its_own_keys_first(
    tmp_path: Path, command: str, own: list[str]
) -> None:
    result = dml(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = result.stdout
    section = text.split(f"== dml {command}'s own keys ==\n")[1].split("\n\n")[0]
    rows = section.splitlines()
    assert [row.split("=")[0] for row in rows] == own
    # Each key has a one-line description beside its value.
    assert all(len(row.split(None, 1)) == 2 for row in rows), section
    assert text.index("own keys") < text.index("== Config groups ==")
    assert "loss: " in text
    # The training config is the checkpoint's: it is not dumped here.
    assert "_target_" not in text and "labeled_fraction" not in text


@pytest.mark.parametrize("command", ["train", "eval", "embed", "search", "export"])
def test_help_hides_the_groups_dml_composes_itself(tmp_path: Path, command: str) -> None:
    result = dml(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "experiment_loss" not in result.stdout
    assert "experiment: " in result.stdout and "mnist5k_unseen" in result.stdout


def test_trainer_debug_runs_one_epoch_whatever_the_experiment(tmp_path: Path) -> None:
    """digits_contrastive sets 15 epochs; with trainer=debug the run is epoch 0 (the
    validation before training) and one training epoch of one batch."""
    result = dml(
        "train",
        "experiment=digits_contrastive",
        "trainer=debug",
        "logger=none",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]


def test_a_batch_that_is_no_multiple_of_k_gets_fixes_that_work(tmp_path: Path) -> None:
    """Not "make it 0 or 16": the nearest batch sizes and K that form P×K batches."""
    small = ["dataset=digits", "backbone=mlp", "trainer=debug", "logger=none"]
    line = only_error_line(
        dml("train", *small, "data.batch_size=8", "data.samples_per_class=16", cwd=tmp_path)
    )
    assert "data.batch_size=8 is not a multiple of data.samples_per_class=16" in line
    assert line.endswith(
        "set data.batch_size=32 (2 classes of 16), or data.samples_per_class=4 (2 classes of 4)"
    )
    followed = dml(
        "train",
        *small,
        "data.batch_size=8",
        "data.samples_per_class=4",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert followed.returncode == 0, followed.stderr[-2000:]


def test_cv_folds_without_a_class_split_names_cv_folds_and_the_fix(tmp_path: Path) -> None:
    line = only_error_line(dml("train", *QUICK, "logger=none", "cv.folds=3", cwd=tmp_path))
    assert line.startswith("error: cv.folds=3: class folds need dataset.split=classes")
    assert "set dataset.split=classes or drop cv.folds" in line
    assert "dataset.folds" not in line
    assert not list((tmp_path / "outputs").glob("*/*"))


def test_sigterm_saves_a_checkpoint_and_the_printed_command_resumes(tmp_path: Path) -> None:
    """What a cluster scheduler sends: the run saves interrupted.ckpt, says in one line how
    to resume, and that command, run as printed, finishes the run."""
    args = [*QUICK[:2], *QUICK[3:], "trainer.max_epochs=200", "logger=none", "hydra.run.dir=run"]
    proc = subprocess.Popen(
        [DML, "train", *args],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted by SIGTERM; saved "), stderr
    assert (tmp_path / "run" / "checkpoints" / "interrupted.ckpt").is_file()
    command = shlex.split(lines[0].split("Continue from the last finished epoch with: ")[1])
    assert command[:2] == ["dml", "train"] and "resume=true" in command
    # The same run, made short enough to finish here.
    command = [DML, *command[1:]]
    command[command.index("trainer.max_epochs=200")] = "trainer.max_epochs=3"
    resumed = subprocess.run(
        command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
    epochs = [
        row.split(",")[0] for row in (tmp_path / "run" / "metrics.csv").read_text().split()[1:]
    ]
    assert epochs == [str(epoch) for epoch in range(len(epochs))]


def test_routine_runs_print_no_warning_the_user_cannot_act_on(tmp_path: Path) -> None:
    """iris has 3 classes, so the default batch (8 classes × 16) shrinks to 48: that is
    what the default means on small data, not news. Lightning's log_every_n_steps advice
    and its weights_only line ask nothing of the user either."""
    small = ["dataset=iris", "backbone=mlp", "trainer.max_epochs=1", "logger=none"]
    trained = dml("train", *small, "hydra.run.dir=run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    evaluated = dml("eval", "ckpt_path=run/checkpoints/best.ckpt", "logger=none", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    for output in (trained.stdout + trained.stderr, evaluated.stdout + evaluated.stderr):
        for noise in ("data.batch_size", "log_every_n_steps", "weights_only", "WARNING"):
            assert noise not in output, output[-3000:]
    # A batch size the user chose and does not get is said, once.
    chosen = dml("train", *small, "data.batch_size=64", "hydra.run.dir=run64", cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr[-2000:]
    output = chosen.stdout + chosen.stderr
    assert output.count("data.batch_size=64 needs 4 classes") == 1, output[-3000:]
    assert "set data.batch_size=48 to choose this yourself" in output
