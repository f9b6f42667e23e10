"""A run whose learned embedding tests below its own raw inputs says so at the end, in one
console line with both numbers, sets ``health/below_raw`` in metrics.json and metrics.csv,
and `dml compare` shows the flag as it shows ``health/collapse``."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.commands.test_cli import QUICK, dml

ROOT = Path(__file__).resolve().parents[2]
# Every input maps to one point: retrieval is chance, far below digits' raw pixels.
CONSTANT = [
    "backbone=linear",
    "backbone._target_=tests.helpers.ConstantBackbone",
    "backbone.embedding_dim=8",
]


def test_a_run_below_its_raw_inputs_warns_and_compare_shows_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test-only backbone is importable where the repository is on the path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    run = tmp_path / "run"
    result = dml("train", *QUICK, *CONSTANT, f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["health/below_raw"] == 1.0 and metrics["health/collapse"] == 0.0
    learned, raw = metrics["test/map_at_r"], metrics["test/raw_map_at_r"]
    assert learned < raw
    lines = [line for line in result.stdout.splitlines() if "below the raw inputs" in line]
    assert len(lines) == 1
    assert f"test/map_at_r {learned:.4f} < test/raw_map_at_r {raw:.4f}" in lines[0]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert float(rows[-1]["health/below_raw"]) == 1.0

    shown = dml(
        "compare", str(run), "--metrics", "test/map_at_r,health/collapse,health/below_raw",
        cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    header = next(line for line in shown.stdout.splitlines() if "below_raw" in line)
    assert "collapse" in header
    (row,) = csv.DictReader((run / "compare.csv").open())
    assert float(row["health/below_raw"]) == 1.0 and float(row["health/collapse"]) == 0.0
