"""`dml compare`: ranks runs from their directories alone, and marks the ones that did not end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import wandb
import yaml

from dml.reporting.compare.command import main
from dml.reporting.run_files import write_failure_marker
from tests.conftest import subprocess_env

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMMON = ["dataset=digits", "backbone=mlp"]


def make_run(
    path: Path,
    overrides: list[str],
    val_map: list[float],
    final: dict[str, float] | None = None,
) -> Path:
    """A run directory as `dml train` leaves it: overrides, per-epoch history, final metrics."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    with (path / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "epoch",
                "train/loss",
                "val/dist_neg_mean",
                "val/dist_pos_mean",
                "val/map_at_r",
                "val/recall_at_1",
            ]
        )
        for epoch, value in enumerate(val_map):
            loss = "" if epoch == 0 else 1.0 / epoch
            writer.writerow([epoch, loss, 0.6 + 0.1 * epoch, 0.5 - 0.05 * epoch, value, value])
    if final is not None:
        (path / "metrics.json").write_text(json.dumps({"epoch": len(val_map) - 1, **final}))
    return path


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich folds tables to 80 columns when not on a terminal; tests read whole cells."""
    monkeypatch.setenv("COLUMNS", "250")


def final_metrics(test_map: float, val_map: float, loss: float = 0.2) -> dict[str, float]:
    return {
        "test/map_at_r": test_map,
        "val/map_at_r": val_map,
        "train/loss": loss,
        "test/precision_at_1": 0.9,
        "test/recall_at_1": 0.9,
        "test/recall_at_2": 0.95,
        "val/recall_at_1": 0.8,
    }


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Jobs 0..2 and 10 of a multirun: two finished, one crashed mid-way, one still running."""
    root = tmp_path / "multirun"
    make_run(root / "0", ["loss=triplet", *COMMON], [0.2, 0.5, 0.6], final_metrics(0.55, 0.6, 0.3))
    make_run(root / "1", ["loss=contrastive", *COMMON], [0.2, 0.8, 0.7], final_metrics(0.5, 0.7))
    make_run(root / "2", ["loss=lifted", *COMMON], [0.2, 0.9])
    write_failure_marker(root / "2", RuntimeError("loss became nan"))
    make_run(root / "10", ["loss=npair", *COMMON], [0.3])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / ".submitit").mkdir()
    return root


def read_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_no_group_ranks_finished_runs_first_and_marks_the_rest(
    sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(sweep), "--no-group"]) == 0
    rows = read_rows(sweep / "compare.csv")
    assert [r["run"] for r in rows] == ["1", "0", "2", "10"]
    assert [r["status"] for r in rows] == ["finished", "finished", "failed", "unfinished"]
    assert rows[2]["reason"] == "RuntimeError: loss became nan"
    assert rows[3]["reason"] == "no metrics.json; metrics.csv reaches epoch 0"
    assert [r["best_epoch"] for r in rows] == ["1", "2", "1", "0"]
    assert float(rows[0]["best_val/map_at_r"]) == pytest.approx(0.8)
    assert float(rows[0]["val/map_at_r"]) == pytest.approx(0.7)  # final, not best
    assert float(rows[2]["val/map_at_r"]) == pytest.approx(0.9)  # how far the crash got
    assert rows[0]["overrides"] == "loss=contrastive dataset=digits backbone=mlp"
    assert rows[0]["variant"] == "backbone=mlp dataset=digits loss=contrastive"
    assert rows[0]["test/recall_at_2"] == "0.95" and rows[2]["test/recall_at_2"] == ""

    out = capsys.readouterr().out
    assert "common overrides: dataset=digits backbone=mlp" in out
    header = [line.split() for line in out.splitlines() if "MAP@R" in line]
    assert header == [["#", "run", "status", "overrides", "MAP@R", "MAP@R", "P@1", "R@1", "epoch"]]
    table = [
        line.split()
        for line in out.splitlines()
        if line.split()[:1] in (["1"], ["4"]) and "runs" not in line
    ]
    assert table[0] == [
        "1",
        "1",
        "finished",
        "loss=contrastive",
        "0.7000",
        "0.5000",
        "0.9000",
        "0.9000",
        "1/2",
    ]
    assert table[1] == ["4", "10", "unfinished", "loss=npair", "0.3000", "—", "—", "—", "0/0"]
    assert "2: failed — RuntimeError: loss became nan" in out

    markdown = (sweep / "compare.md").read_text().splitlines()
    assert markdown[0].startswith("| # | run | status | overrides | val/map_at_r | test/map_at_r")
    assert markdown[2].startswith("| 1 | 1 | finished | loss=contrastive | 0.7000 | 0.5000 |")
    assert markdown[5].startswith("| 4 | 10 | unfinished | loss=npair | 0.3000 | — |")
    assert "Common overrides: `dataset=digits backbone=mlp`." in markdown
    assert (sweep / "compare.png").read_bytes()[:8] == PNG_MAGIC
    assert not (sweep / "compare_groups.csv").exists()


def test_sort_by_another_metric_and_lowest_first(sweep: Path, tmp_path: Path) -> None:
    assert main([str(sweep), "--sort", "test/map_at_r", "--out", str(tmp_path / "a")]) == 0
    assert [r["run"] for r in read_rows(tmp_path / "a" / "compare.csv")][:2] == ["0", "1"]
    assert (
        main([str(sweep), "--sort", "train/loss", "--ascending", "--out", str(tmp_path / "b")]) == 0
    )
    assert [r["run"] for r in read_rows(tmp_path / "b" / "compare.csv")] == ["1", "0", "2", "10"]


def test_chosen_metrics_become_the_table_columns(sweep: Path) -> None:
    assert main([str(sweep), "--no-group", "--metrics", "test/recall_at_2,val/recall_at_1"]) == 0
    header = (sweep / "compare.md").read_text().splitlines()[0]
    assert header == (
        "| # | run | status | overrides | val/map_at_r | test/recall_at_2 | "
        "val/recall_at_1 | best/last epoch |"
    )
    assert main([str(sweep), "--metrics", "test/recall_at_2,val/recall_at_1"]) == 0
    header = (sweep / "compare.md").read_text().splitlines()[0]
    assert header == (
        "| # | variant | n | val/map_at_r | test/recall_at_2 | val/recall_at_1 | not averaged |"
    )


def test_run_directories_given_one_by_one(tmp_path: Path) -> None:
    a = make_run(tmp_path / "runs" / "a", ["loss=triplet"], [0.1, 0.4], final_metrics(0.4, 0.4))
    b = make_run(tmp_path / "runs" / "b", [], [0.1, 0.3], final_metrics(0.3, 0.3))
    assert main([str(b), str(a)]) == 0
    rows = read_rows(tmp_path / "runs" / "compare.csv")
    assert [r["run"] for r in rows] == ["a", "b"]
    assert [r["path"] for r in rows] == [str(a), str(b)]


def test_a_wandb_exit_code_marks_a_crash_without_a_marker(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "0", ["loss=triplet"], [0.2, 0.3])
    run = wandb.init(project="dml", dir=str(run_dir), mode="offline")
    run.log({"epoch": 1})
    run.finish(exit_code=3)
    assert main([str(run_dir)]) == 0
    (row,) = read_rows(run_dir / "compare.csv")
    assert (row["status"], row["reason"]) == ("failed", "W&B run exited with code 3")


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_directory_without_runs_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str
) -> None:
    target = tmp_path / "nothing"
    if make == "empty":
        target.mkdir()
    assert main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {target}")
    assert not (tmp_path / "nothing" / "compare.csv").exists()


def test_dml_compare_console_script(sweep: Path) -> None:
    env = {**subprocess_env(), "COLUMNS": "250"}
    command = [str(Path(sys.executable).parent / "dml"), "compare"]
    result = subprocess.run(
        [*command, str(sweep), "--sort", "test/map_at_r"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Ranked by the mean of test/map_at_r, highest first" in result.stdout
    assert [r["run"] for r in read_rows(sweep / "compare.csv")] == ["0", "1", "2", "10"]
    missing = subprocess.run(
        [*command, str(sweep / "nope")], env=env, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"error: {sweep / 'nope'}: no such directory")
