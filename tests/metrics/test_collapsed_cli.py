"""Issue 20's user path: a random-init ResNet-18 debug run on a CUB-format tree, through `dml`.

After its one training step, the network maps the 150 test images (the first evaluation
batch) to unit vectors a few 1e-3 apart: their float32 distances are rounding, and on the
CPU this was written on 24 of the 150 queries had a negative 8th-nearest float32 distance
(434 negative distances in all). That is what made the search raise "58 queries
incomplete after the exact pass" on the whole 300-image test split. Smaller crops or
batches collapse less and no longer reach it, so the run keeps the user's defaults and
only shortens the evaluation batch. Whether a given CPU's rounding goes negative there
varies; tests/metrics/test_degenerate_layouts.py pins the layouts themselves.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.commands.test_cli import dml
from tests.fixtures.trees import make_cub


def test_random_init_resnet_debug_run_on_a_cub_tree_evaluates(tmp_path: Path) -> None:
    tree = make_cub(tmp_path / "data", num_classes=200, per_class=3)
    result = dml(
        "train",
        "dataset=cub200",
        "backbone=resnet18",
        "backbone.weights=null",
        "trainer=debug",
        f"dataset.data_dir={tree.root}",
        "data.eval_batch_size=150",
        "hydra.run.dir=run",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for split in ("val", "test"):
        for name in ("precision_at_1", "r_precision", "map_at_r", "recall_at_1"):
            value = metrics[f"{split}/{name}"]
            assert math.isfinite(value) and 0 <= value <= 1, (split, name, value)
