"""eval.backend and eval.exclude_same_group: metrics, datasets with groups, the data module,
and the time/memory estimate logged before a large evaluation."""

from __future__ import annotations

import logging
import math
import sys

import numpy as np
import pytest
import torch

from dml.datasets.builtin.synthetic import GaussianClusters
from dml.errors import DmlError
from dml.metrics import neighbours, retrieval_metrics
from dml.metrics.baseline import raw_input_baseline
from dml.training.datamodule import EmbeddingDataModule
from tests.metrics.test_metrics import loop_reference

BACKENDS = ["torch", "faiss"]

# Six 1-D points, two classes. Items 0 and 1 (class 0) share group 0, items 3 and 4
# (class 1) share group 2; 2 and 5 are groups of their own.
TOY_X = np.array([[0.0], [0.1], [5.0], [1.0], [1.2], [6.0]], dtype=np.float32)
TOY_Y = np.array([0, 0, 0, 1, 1, 1])
TOY_GROUPS = np.array([0, 0, 1, 2, 2, 3])


def needs(backend: str) -> None:
    if backend == "faiss":
        pytest.importorskip("faiss")


@pytest.mark.parametrize("backend", BACKENDS)
def test_exclude_same_group_on_a_toy_case_worked_by_hand(backend: str) -> None:
    """Without groups each of 0, 1, 3, 4 finds its group-mate first (precision@1 = 4/6).
    With groups that mate is gone: 0 and 1 must find 2 (R = 1), 3 and 4 must find 5, and
    each is nearer to the other class first; only 5 still finds 4 and 3, at ranks 2 and 3."""
    kwargs = {"k_values": (1, 2, 4), "backend": backend}
    needs(backend)
    plain = retrieval_metrics(TOY_X, TOY_Y, **kwargs)
    assert plain["precision_at_1"] == pytest.approx(4 / 6)
    assert plain["r_precision"] == pytest.approx((0.5 * 4 + 0.5) / 6)
    assert plain["map_at_r"] == pytest.approx((0.5 * 4 + 0.25) / 6)

    grouped = retrieval_metrics(TOY_X, TOY_Y, query_groups=TOY_GROUPS, **kwargs)
    assert grouped == pytest.approx(
        {
            "precision_at_1": 0.0,
            "r_precision": 0.5 / 6,
            "map_at_r": 0.25 / 6,
            "recall_at_1": 0.0,
            "recall_at_2": 1 / 6,
            "recall_at_4": 1.0,
        }
    )
    reference = loop_reference(TOY_X, TOY_Y, k_values=(1, 2, 4), query_groups=TOY_GROUPS)
    assert grouped == pytest.approx(reference)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exclude_same_group_equals_the_loop_reference(backend: str) -> None:
    needs(backend)
    source = GaussianClusters(
        num_classes=8, dim=6, samples_per_class=30, seed=3, groups_per_class=5, group_std=1.5
    )
    x, y = source.arrays()
    groups = source.group_ids()
    got = retrieval_metrics(x, y, query_groups=groups, backend=backend)
    assert got == pytest.approx(loop_reference(x, y, query_groups=groups))
    # Near-duplicates in one group make retrieval look easier than it is.
    assert got["map_at_r"] < retrieval_metrics(x, y, backend=backend)["map_at_r"]


def test_missing_faiss_is_one_line_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now fails
    with pytest.raises(DmlError, match="pip install faiss-cpu") as caught:
        neighbours.check_backend("faiss", "eval.backend")
    assert str(caught.value).startswith("eval.backend=faiss") and "\n" not in str(caught.value)
    with pytest.raises(DmlError, match="^backend=faiss needs the faiss package"):
        retrieval_metrics(TOY_X, TOY_Y, backend="faiss")
    with pytest.raises(DmlError, match="eval.backend='annoy' is not one of torch, faiss"):
        neighbours.check_backend("annoy", "eval.backend")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_large_evaluation_logs_its_time_and_memory_first(
    backend: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    needs(backend)
    x, y = GaussianClusters(num_classes=10, dim=8, samples_per_class=60, seed=0).arrays()
    caplog.set_level(logging.INFO, logger="dml.metrics.neighbours")
    retrieval_metrics(x, y, backend=backend)
    assert not [r for r in caplog.records if "about" in r.getMessage()]

    monkeypatch.setattr(neighbours, "LOG_ABOVE_PAIRS", len(x) ** 2)
    retrieval_metrics(x, y, backend=backend)
    messages = [r.getMessage() for r in caplog.records if "about" in r.getMessage()]
    assert len(messages) == 1
    message = messages[0]
    assert message.startswith(f"Retrieval metrics for {len(x)} queries × {len(x)} references")
    seconds = float(message.split("about ")[1].split(" s and ")[0])
    mib = float(message.split(" s and ")[1].split(" MiB")[0])
    assert seconds >= 0 and math.isfinite(seconds) and mib >= 0


def test_synthetic_groups_split_with_their_items_and_leave_the_data_alone() -> None:
    plain = GaussianClusters(num_classes=5, dim=4, samples_per_class=12, seed=0)
    grouped = GaussianClusters(
        num_classes=5, dim=4, samples_per_class=12, seed=0, groups_per_class=3, group_std=0.0
    )
    assert np.array_equal(plain.arrays()[0], grouped.arrays()[0])
    assert plain.group_ids() is None and plain.load().test.groups is None
    groups, labels = grouped.group_ids(), grouped.arrays()[1]
    assert np.array_equal(groups // 3, labels)  # a group never spans two classes
    assert len(np.unique(groups)) == 15
    splits = grouped.load()
    for split in (splits.train, splits.val, splits.test):
        assert split.groups is not None and len(split.groups) == len(split.labels)
        assert torch.equal(split.groups // 3, split.labels)
    with pytest.raises(DmlError, match="groups_per_class=13 must lie between 1 and"):
        GaussianClusters(num_classes=5, dim=4, samples_per_class=12, groups_per_class=13)


def test_the_data_module_carries_groups_only_when_asked() -> None:
    source = GaussianClusters(
        num_classes=5, dim=4, samples_per_class=12, seed=0, groups_per_class=3
    )
    plain = EmbeddingDataModule(source, batch_size=10, samples_per_class=2)
    plain.setup("fit")
    assert len(next(iter(plain.val_dataloader()))) == 2
    grouped = EmbeddingDataModule(source, batch_size=10, samples_per_class=2, eval_groups=True)
    grouped.setup("fit")
    x, labels, groups = next(iter(grouped.test_dataloader()))
    assert torch.equal(groups, grouped.splits.test.groups[: len(groups)])
    assert torch.equal(labels, grouped.splits.test.labels[: len(labels)])


def test_exclude_same_group_without_groups_fails_at_setup() -> None:
    source = GaussianClusters(num_classes=5, dim=4, samples_per_class=12, seed=0)
    module = EmbeddingDataModule(source, batch_size=10, samples_per_class=2, eval_groups=True)
    with pytest.raises(DmlError) as caught:
        module.setup("fit")
    message = str(caught.value)
    assert message.startswith("eval.exclude_same_group=true, but the val split of GaussianClusters")
    assert "eval.exclude_same_group=false" in message and "\n" not in message


def test_the_raw_input_baseline_follows_the_runs_protocol() -> None:
    splits = GaussianClusters(
        num_classes=8, dim=6, samples_per_class=30, seed=3, groups_per_class=5, group_std=1.5
    ).load()
    inputs = torch.nn.functional.normalize(splits.test.features, dim=1)
    grouped = raw_input_baseline(splits, True, (1, 2), exclude_same_group=True)
    expected = retrieval_metrics(
        inputs, splits.test.labels, k_values=(1, 2), query_groups=splits.test.groups
    )
    assert grouped == pytest.approx({f"test/raw_{k}": v for k, v in expected.items()})
    plain = raw_input_baseline(splits, True, (1, 2))
    assert grouped["test/raw_map_at_r"] < plain["test/raw_map_at_r"]
