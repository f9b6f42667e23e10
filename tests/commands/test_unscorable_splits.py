"""Splits that cannot score retrieval are refused at start, through the `dml` command.

A validation or test split of one class scores MAP@R 1.0 whatever the model, and one with
no class of two items scores NaN; class folds that give a fold fewer than 2 classes are
the README's old recipe. Each is one `error:` line, a non-zero exit, no traceback and no
run directory left behind. The README's fair-tuning recipe itself runs at debug size.
The split rules' other refusals are checked in-process against one table
(``tests/datasets/test_splitting.py``); the data module's check, under every source, here.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from dml.datasets.base import DatasetSource, DataSplits, TensorLabeledDataset
from dml.errors import DmlError
from dml.training.datamodule import EmbeddingDataModule
from tests.commands.test_cli import dml
from tests.commands.test_sweeps import job_dirs

ROOT = Path(__file__).resolve().parents[2]
FIX_FOLDS = "use dataset.folds=2 or 3, or train on more classes (dataset.train_classes)"
CLASS_SPLIT = ["dataset=mnist5k", "dataset.split=classes", "dataset.train_classes=6"]


def feature_csv(path: Path, marks: list[str], labels: list[int]) -> Path:
    """A feature file with a ``split`` column: two numeric features per row."""
    rng = np.random.default_rng(0)
    lines = ["f1,f2,label,split"]
    for mark, label in zip(marks, labels, strict=True):
        lines.append(f"{rng.normal():.4f},{rng.normal():.4f},{label},{mark}")
    path.write_text("\n".join(lines) + "\n")
    return path


def one_class_val(tmp: Path) -> list[str]:
    """Validation rows all of class 3."""
    marks = ["train"] * 12 + ["val"] * 4 + ["test"] * 8
    labels = [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2] + [3] * 4 + [0, 0, 1, 1, 2, 2, 3, 3]
    return [f"dataset.path={feature_csv(tmp / 'one_class_val.csv', marks, labels)}"]


def single_test_items(tmp: Path) -> list[str]:
    """Every test row is the only test row of its class."""
    marks = ["train"] * 12 + ["val"] * 4 + ["test"] * 3
    labels = [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2] + [0, 0, 1, 1] + [0, 1, 2]
    return [f"dataset.path={feature_csv(tmp / 'single_test.csv', marks, labels)}"]


FEATURES = ["dataset=features", "backbone=mlp", "data.batch_size=4", "data.samples_per_class=2"]

# name: (overrides, or a function of tmp_path giving them; the whole error line)
CASES = {
    "a fold of one class (the issue's reproduction)": (
        [*CLASS_SPLIT, "dataset.folds=4", "dataset.fold=3", "trainer=debug"],
        "error: dataset.folds=4 deals the 6 training classes into folds of 2, 2, 1, 1 "
        "classes; a fold that validates on fewer than 2 classes scores retrieval 1.0 whatever "
        f"the model: {FIX_FOLDS}",
    ),
    "cv.folds with a fold of one class": (
        ["cv.folds=4", *CLASS_SPLIT, "trainer=debug"],
        "error: cv.folds=4 deals the 6 training classes into folds of 2, 2, 1, 1 classes; a "
        "fold that validates on fewer than 2 classes scores retrieval 1.0 whatever the model: "
        "use cv.folds=2 or 3, or train on more classes (dataset.train_classes)",
    ),
    "a val split of one class in a feature file": (
        lambda tmp: [*FEATURES, *one_class_val(tmp), "trainer=debug"],
        "error: the val split holds a single class (3), so every neighbour of a query is of "
        "its class and every retrieval metric would be 1.0 whatever the model; mark rows of "
        "two or more classes 'val' in {tmp}/one_class_val.csv: column 'split', two of some "
        "class",
    ),
    "a test split with no class of two items": (
        lambda tmp: [*FEATURES, *single_test_items(tmp), "trainer=debug"],
        "error: the test split has no class with 2 items, so no query has a match and every "
        "retrieval metric would be NaN; mark rows of two or more classes 'test' in "
        "{tmp}/single_test.csv: column 'split', two of some class",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_split_that_cannot_score_is_refused_at_start_in_one_line(
    name: str, tmp_path: Path
) -> None:
    overrides, line = CASES[name]
    args = overrides(tmp_path) if callable(overrides) else overrides
    result = dml("train", *args, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert errors == [line.format(tmp=tmp_path)], result.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def readme_recipe() -> list[str]:
    """Stage 1 of the README's "fair protocol in two stages": its `dml train` arguments."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("The fair protocol in two stages") :]
    command = re.search(r"^dml train -m sweep=optuna .*?cv\.folds.*?(?<!\\)$", block, re.M | re.S)
    assert command is not None, "the README no longer shows stage 1 of the recipe"
    return shlex.split(command.group(0).replace("\\\n", " "))[2:]


def test_the_readmes_fair_tuning_recipe_runs_at_debug_size(tmp_path: Path) -> None:
    """One trial instead of the README's thirty (the sweeper's choice among trials is
    tested apart), one batch per loop and no W&B: every fold validates on 2 classes."""
    args = [
        "hydra.sweeper.n_trials=1" if arg.startswith("hydra.sweeper.n_trials=") else arg
        for arg in readme_recipe()
    ]
    assert "hydra.sweeper.n_trials=1" in args and any(a.startswith("cv.folds=") for a in args)
    result = dml(
        "train",
        *args,
        "trainer=debug",
        "logger=none",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = job_dirs(tmp_path / "sweep")
    folds = sorted(job.glob("fold_*"))
    assert len(folds) >= 2
    for fold in folds:
        val = json.loads((fold / "splits.json").read_text())["val"]
        assert len(val["classes"]) >= 2
    assert 0 < json.loads((job / "metrics.json").read_text())["val/map_at_r"] < 1


class OneClassTest(DatasetSource):
    """A user's own source whose test split holds one class (it bypasses dml's rules)."""

    def load(self) -> DataSplits:
        def part(labels: list[int]) -> TensorLabeledDataset:
            return TensorLabeledDataset(torch.zeros(len(labels), 2), torch.tensor(labels))

        return DataSplits(part([0, 0, 1, 1]), part([0, 0, 1, 1]), part([2, 2, 2]))


def test_the_data_module_refuses_any_sources_unscorable_split_before_training() -> None:
    module = EmbeddingDataModule(OneClassTest(), batch_size=4, samples_per_class=2)
    with pytest.raises(DmlError) as info:
        module.setup("fit")
    assert str(info.value) == (
        "the test split holds a single class (2), so every neighbour of a query is of its "
        "class and every retrieval metric would be 1.0 whatever the model; OneClassTest must "
        "give it 2 classes or more, one of them with 2 items"
    )
