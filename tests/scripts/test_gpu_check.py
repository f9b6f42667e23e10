"""scripts/gpu_check.sh: its comparison, and its CPU-skippable parts end to end."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import subprocess_env

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def gpu_check_module():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPTS / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metrics_must_agree_to_1e_5_on_every_test_key() -> None:
    compare = gpu_check_module().compare_metrics
    cpu = {"test/map_at_r": 0.5, "test/recall_at_1": 0.7, "val/map_at_r": 0.1}
    same, detail = compare(cpu, {**cpu, "test/map_at_r": 0.500004, "val/map_at_r": 0.9})
    assert same and "4.00e-06 (test/map_at_r)" in detail
    same, detail = compare(cpu, {**cpu, "test/recall_at_1": 0.70002})
    assert not same and "test/recall_at_1" in detail
    assert not compare(cpu, {"test/map_at_r": 0.5})[0]
    assert not compare({}, {})[0]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA mode")
def test_without_cuda_the_gpu_checks_skip_and_the_cpu_parts_pass(tmp_path: Path) -> None:
    """About a minute: a tiny tree, a two-batch CPU checkpoint and its CPU evaluation."""
    args = ["--scale", "0.05", "--crop", "32", "--batch-size", "16", "--limit-batches", "2"]
    result = subprocess.run(
        ["bash", str(SCRIPTS / "gpu_check.sh"), *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**subprocess_env(), "PYTHON": sys.executable},
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("PASS generated CUB tree:")
    assert "PASS trainer=cpu checkpoint for the evaluation checks" in result.stdout
    assert "PASS dml eval on cpu: test/map_at_r=" in result.stdout
    skipped = [line for line in lines if line.startswith("SKIP")]
    assert len(skipped) == 5 and all("no CUDA device here" in line for line in skipped)
    assert lines[-1].startswith("gpu_check: 3 passed, 0 failed, 5 skipped")
