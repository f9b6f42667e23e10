"""`dml eval` and `dml embed` from a real checkpoint, and eval.backend /
eval.exclude_same_group end to end, run as a user runs them: `dml` in a subprocess."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from dml.config.build import build_source
from dml.metrics import retrieval_metrics
from tests.commands.test_cli import QUICK, dml

METRICS = ("precision_at_1", "r_precision", "map_at_r", "recall_at_1", "recall_at_8")
GROUPED = [
    "dataset=synthetic",
    "dataset.groups_per_class=5",
    "backbone=mlp",
    "trainer=debug",
    "data.batch_size=60",
    "data.samples_per_class=6",
    "logger=none",
]


def ok(result: object) -> None:
    assert result.returncode == 0, result.stderr[-2000:]  # type: ignore[attr-defined]


def read_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short digits run (one epoch, the CSV logger) whose checkpoint the tests reuse."""
    base = tmp_path_factory.mktemp("trained")
    ok(dml("train", *QUICK, "trainer.max_epochs=1", "logger=csv", "hydra.run.dir=run", cwd=base))
    return base


def test_eval_writes_metrics_json_in_its_run_dir_and_prints_the_table(trained: Path) -> None:
    ckpt = trained / "run" / "checkpoints" / "last.ckpt"
    result = dml("eval", f"ckpt_path={ckpt}", "hydra.run.dir=eval", cwd=trained)
    ok(result)
    evaluated = read_metrics(trained / "eval")
    assert evaluated["test/map_at_r"] == read_metrics(trained / "run")["test/map_at_r"]
    assert {f"test/{name}" for name in METRICS} <= set(evaluated)
    # Rich's table: its title, header and one row per metric, values to 4 decimals.
    assert "Evaluation of" in result.stdout and "┃ metric" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "test/map_at_r" in line)
    assert f"{evaluated['test/map_at_r']:.4f}" in row
    assert f"Run directory: {trained / 'eval'}" in result.stdout


def test_embed_writes_a_splits_embeddings_labels_and_ids(
    trained: Path, compose_cfg: Callable[..., DictConfig]
) -> None:
    ckpt = trained / "run" / "checkpoints" / "last.ckpt"
    ok(dml("embed", f"ckpt_path={ckpt}", "out=out/test.npz", "split=test", cwd=trained))
    data = np.load(trained / "out" / "test.npz")
    assert set(data.files) == {"embeddings", "labels", "ids"}  # digits has no groups
    test_split = build_source(compose_cfg(*QUICK)).load().test
    assert data["labels"].tolist() == test_split.labels.tolist()
    assert data["ids"].tolist() == list(range(len(test_split)))
    assert data["embeddings"].shape == (len(test_split), 64)
    # They are the embeddings `dml train` tested: the same metrics come out.
    tested = read_metrics(trained / "run")
    again = retrieval_metrics(data["embeddings"], data["labels"])
    assert again["map_at_r"] == pytest.approx(tested["test/map_at_r"], abs=1e-6)

    wrong = dml("embed", f"ckpt_path={ckpt}", "split=query", cwd=trained)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "error: split='query' is not one of train, val, test" in wrong.stderr


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("backbone=linear", "missing: backbone.transform.weight; unexpected: backbone.net."),
        ("backbone.embedding_dim=32", "shape differs: backbone.net.4.bias, backbone.net.4.weight"),
    ],
)
def test_a_checkpoint_of_another_backbone_is_refused_naming_the_keys(
    trained: Path, override: str, named: str
) -> None:
    ckpt = trained / "run" / "checkpoints" / "last.ckpt"
    result = dml("eval", f"ckpt_path={ckpt}", override, "hydra.run.dir=bad", cwd=trained)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: checkpoint {ckpt} does not fit the configured model (")
    assert named in line


def test_exclude_same_group_on_data_without_groups_fails_at_start(tmp_path: Path) -> None:
    result = dml(
        "train",
        *QUICK,
        "logger=none",
        "eval.exclude_same_group=true",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: eval.exclude_same_group=true, but the val split of Digits has no group ids; "
            "set eval.exclude_same_group=false"
        )
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_debug_run_with_faiss_excluding_groups_then_eval_and_embed(tmp_path: Path) -> None:
    """A debug run evaluates with faiss, each query's own group left out. Re-evaluating its
    checkpoint with torch gives the same numbers; without the exclusion they are higher
    (group-mates are near-duplicates); and the embedded test split, with its group ids,
    gives them back."""
    ok(
        dml(
            "train",
            *GROUPED,
            "eval.backend=faiss",
            "eval.exclude_same_group=true",
            "hydra.run.dir=run",
            cwd=tmp_path,
        )
    )
    trained = read_metrics(tmp_path / "run")
    assert all(math.isfinite(trained[f"test/{name}"]) for name in METRICS)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"

    ok(dml("eval", f"ckpt_path={ckpt}", "eval.backend=torch", "hydra.run.dir=ev", cwd=tmp_path))
    with_torch = read_metrics(tmp_path / "ev")
    for name in METRICS:
        assert with_torch[f"test/{name}"] == pytest.approx(trained[f"test/{name}"], abs=1e-9)

    ok(
        dml(
            "eval",
            f"ckpt_path={ckpt}",
            "eval.exclude_same_group=false",
            "hydra.run.dir=all",
            cwd=tmp_path,
        )
    )
    assert read_metrics(tmp_path / "all")["test/map_at_r"] > trained["test/map_at_r"]

    ok(dml("embed", f"ckpt_path={ckpt}", "out=emb.npz", cwd=tmp_path))
    data = np.load(tmp_path / "emb.npz")
    assert set(data.files) == {"embeddings", "labels", "ids", "groups"}
    again = retrieval_metrics(data["embeddings"], data["labels"], query_groups=data["groups"])
    for name in METRICS:
        assert again[name] == pytest.approx(trained[f"test/{name}"], abs=1e-6)
