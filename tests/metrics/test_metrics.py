"""retrieval_metrics against PML's AccuracyCalculator and against a slow, obvious loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dml.errors import DmlError
from dml.metrics import clustering_metrics, retrieval_metrics
from dml.metrics.neighbours import tiled

K_VALUES = (1, 2, 4, 8)


def loop_reference(
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
    k_values: tuple[int, ...] = K_VALUES,
    query_groups: np.ndarray | None = None,
    reference_groups: np.ndarray | None = None,
) -> dict[str, float]:
    """The definitions written out one query at a time, in float64."""
    same_set = reference is None
    if same_set:
        reference, reference_labels, reference_groups = query, query_labels, query_groups
    totals = {"precision_at_1": 0.0, "r_precision": 0.0, "map_at_r": 0.0}
    totals.update({f"recall_at_{k}": 0.0 for k in k_values})
    counted = 0
    for i in range(len(query)):
        candidates = []
        for j in range(len(reference)):
            if same_set and i == j:
                continue
            if query_groups is not None and query_groups[i] == reference_groups[j]:
                continue
            diff = query[i].astype(np.float64) - reference[j].astype(np.float64)
            candidates.append((float(diff @ diff), j))
        candidates.sort()
        matches = [reference_labels[j] == query_labels[i] for _, j in candidates]
        r = sum(matches)
        if r == 0:
            continue
        counted += 1
        totals["precision_at_1"] += matches[0]
        totals["r_precision"] += sum(matches[:r]) / r
        found, precision_sum = 0, 0.0
        for rank, match in enumerate(matches[:r], start=1):
            if match:
                found += 1
                precision_sum += found / rank
        totals["map_at_r"] += precision_sum / r
        for k in k_values:
            totals[f"recall_at_{k}"] += any(matches[:k])
    return {name: value / counted for name, value in totals.items()}


def pml_metrics(query, query_labels, reference=None, reference_labels=None) -> dict[str, float]:
    calculators = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    calculator = calculators.AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    got = calculator.get_accuracy(query, query_labels, reference, reference_labels)
    return {
        "precision_at_1": got["precision_at_1"],
        "r_precision": got["r_precision"],
        "map_at_r": got["mean_average_precision_at_r"],
    }


def gaussian(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centers = rng.normal(size=(classes, d))
    return (centers[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def grid(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Small integer coordinates: many exactly equal distances, exact in float32."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, (n, d)).astype(np.float32), rng.integers(0, classes, n)


def duplicated(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every point appears three times, once under a random label."""
    x, y = gaussian(n // 3, d, classes, seed)
    rng = np.random.default_rng(seed + 1)
    x = np.concatenate([x, x, x])
    y = np.concatenate([y, y, rng.integers(0, classes, len(y))])
    order = rng.permutation(len(x))
    return x[order], y[order]


def with_singletons(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = gaussian(n, d, classes, seed)
    y[: n // 5] = np.arange(1000, 1000 + n // 5)
    return x, y


DATASETS = {
    "gaussian": gaussian,
    "grid": grid,
    "duplicated": duplicated,
    "singletons": with_singletons,
}


def assert_close(got: dict[str, float], expected: dict[str, float]) -> None:
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.parametrize("make", DATASETS.values(), ids=DATASETS.keys())
def test_same_set_matches_pml_and_loop(make) -> None:
    x, y = make(240, 6, 12, seed=3)
    got = retrieval_metrics(x, y)
    assert_close(got, pml_metrics(x, y))
    assert_close(got, loop_reference(x, y))


@pytest.mark.parametrize("make", DATASETS.values(), ids=DATASETS.keys())
def test_query_against_other_reference_matches_pml_and_loop(make) -> None:
    x, y = make(300, 6, 12, seed=5)
    query, query_labels = x[:90], y[:90].copy()
    query_labels[:7] = 5000  # labels absent from the reference: excluded queries
    reference, reference_labels = x[90:], y[90:]
    got = retrieval_metrics(query, query_labels, reference, reference_labels)
    assert_close(got, pml_metrics(query, query_labels, reference, reference_labels))
    assert_close(got, loop_reference(query, query_labels, reference, reference_labels))


@pytest.mark.parametrize(
    "settings",
    [{}, {"SYMMETRIC_BYTES": 0}, {"THRESHOLD_Z": -3.0}, {"CANDIDATE_BYTES": 12 * 3000}],
    ids=["symmetric", "row-blocks", "limits-too-tight", "candidates-over-the-cap"],
)
@pytest.mark.parametrize("make", DATASETS.values(), ids=DATASETS.keys())
def test_small_tiles_take_every_path_to_the_same_numbers(monkeypatch, make, settings) -> None:
    """Tiles of 32 make the sampled limits real (a sample of 64 of 240 references); the
    settings force each schedule, and the exact pass for queries whose limit fell short
    or whose candidates were dropped at the memory cap."""
    for name, value in settings.items():
        monkeypatch.setattr(tiled, name, value)
    x, y = make(240, 5, 10, seed=11)
    groups = np.random.default_rng(1).integers(0, 80, len(x))
    expected = retrieval_metrics(x, y, tile=10_000)
    assert_close(retrieval_metrics(x, y, tile=32), expected)
    assert_close(
        retrieval_metrics(x[:90], y[:90], x[90:], y[90:], tile=32),
        retrieval_metrics(x[:90], y[:90], x[90:], y[90:], tile=10_000),
    )
    assert_close(
        retrieval_metrics(x, y, query_groups=groups, tile=32),
        retrieval_metrics(x, y, query_groups=groups, tile=10_000),
    )


@pytest.mark.parametrize("make", DATASETS.values(), ids=DATASETS.keys())
def test_faiss_backend_gives_the_same_numbers(make) -> None:
    pytest.importorskip("faiss")
    x, y = make(300, 6, 12, seed=13)
    groups = np.random.default_rng(2).integers(0, 60, len(x))
    assert_close(retrieval_metrics(x, y, backend="faiss"), retrieval_metrics(x, y))
    assert_close(
        retrieval_metrics(x, y, query_groups=groups, backend="faiss"),
        retrieval_metrics(x, y, query_groups=groups),
    )
    assert_close(
        retrieval_metrics(x[:100], y[:100], x[100:], y[100:], backend="faiss"),
        retrieval_metrics(x[:100], y[:100], x[100:], y[100:]),
    )


def test_torch_and_numpy_inputs_agree() -> None:
    x, y = gaussian(150, 8, 6, seed=2)
    assert retrieval_metrics(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
        retrieval_metrics(x, y), abs=1e-12
    )


def test_duplicate_of_the_query_is_still_a_neighbour() -> None:
    x = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 5.0]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    got = retrieval_metrics(x, y, k_values=(1,))
    assert got == {"precision_at_1": 1.0, "r_precision": 1.0, "map_at_r": 1.0, "recall_at_1": 1.0}


def test_recall_at_k_counts_any_hit_in_the_first_k() -> None:
    # Query 0's neighbours in order: 1 (other), 2 (other), 3 (same label), 4 (same label).
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    y = np.array([0, 1, 2, 0, 0])
    q_got = retrieval_metrics(x[:1], y[:1], x[1:], y[1:], k_values=(1, 2, 3, 4))
    assert [q_got[f"recall_at_{k}"] for k in (1, 2, 3, 4)] == [0.0, 0.0, 1.0, 1.0]
    assert q_got["r_precision"] == 0.0
    assert q_got["map_at_r"] == 0.0


def test_groups_exclude_the_query_group() -> None:
    x, y = gaussian(160, 6, 8, seed=7)
    groups = np.random.default_rng(0).integers(0, 40, len(x))
    got = retrieval_metrics(x, y, query_groups=groups)
    assert_close(got, loop_reference(x, y, query_groups=groups))
    query_groups, reference_groups = groups[:50], groups[50:]
    got = retrieval_metrics(
        x[:50], y[:50], x[50:], y[50:], query_groups=query_groups, reference_groups=reference_groups
    )
    expected = loop_reference(
        x[:50], y[:50], x[50:], y[50:], query_groups=query_groups, reference_groups=reference_groups
    )
    assert_close(got, expected)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_no_relevant_item_anywhere_gives_nan(backend: str) -> None:
    if backend == "faiss":
        pytest.importorskip("faiss")
    x, _ = gaussian(10, 3, 2, seed=0)
    got = retrieval_metrics(x, np.arange(10), backend=backend)
    assert all(math.isnan(v) for v in got.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_labels": np.zeros(9, dtype=int)}, "query_labels has 9 entries"),
        ({"query_labels": np.zeros(10)}, "must hold integers"),
        ({"query": np.full((10, 3), np.nan)}, "NaN or infinite"),
        ({"query": np.zeros(10)}, "2-D"),
        ({"k_values": (0,)}, "k_values"),
        ({"reference_labels": np.zeros(10, dtype=int)}, "without reference"),
        (
            {"reference": np.zeros((10, 4)), "reference_labels": np.zeros(10, dtype=int)},
            "dimension",
        ),
    ],
)
def test_bad_input_raises_one_line_dml_error(kwargs: dict, message: str) -> None:
    args = {"query": np.zeros((10, 3), dtype=np.float32), "query_labels": np.zeros(10, dtype=int)}
    args.update(kwargs)
    with pytest.raises(DmlError, match=message) as caught:
        retrieval_metrics(**args)
    assert "\n" not in str(caught.value)


def test_clustering_metrics_separate_clusters_and_noise() -> None:
    x, y = gaussian(300, 8, 5, seed=1)
    separated = clustering_metrics(np.eye(5, 8, dtype=np.float32)[y] * 20 + x * 0.1, y)
    assert separated["nmi"] == pytest.approx(1.0)
    assert separated["ami"] == pytest.approx(1.0)
    noise = clustering_metrics(np.random.default_rng(0).normal(size=(300, 8)), y)
    assert noise["ami"] < 0.1
    assert set(noise) == {"nmi", "ami"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("make", [grid, duplicated], ids=["grid", "duplicated"])
def test_cuda_gives_the_cpu_numbers(make) -> None:
    x, y = make(3000, 8, 30, seed=17)
    groups = np.random.default_rng(3).integers(0, 500, len(x))
    on_gpu = torch.from_numpy(x).cuda(), torch.from_numpy(y)  # labels may stay on the CPU
    assert_close(retrieval_metrics(*on_gpu, tile=256), retrieval_metrics(x, y, tile=256))
    gpu_groups = torch.from_numpy(groups).cuda()
    assert_close(
        retrieval_metrics(*on_gpu, query_groups=gpu_groups, tile=256),
        retrieval_metrics(x, y, query_groups=groups, tile=256),
    )
