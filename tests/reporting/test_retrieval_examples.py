"""The retrieval examples of a run: which queries, which neighbours, which frames."""

from __future__ import annotations

import numpy as np
import torch

from dml.datasets.base import DataSplits, TensorLabeledDataset
from dml.reporting.retrieval_examples import (
    example_rows,
    pick_retrieval_examples,
    write_retrieval_examples,
)
from dml.transforms import SmallImageTransforms


def labelled_points(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.repeat(np.arange(10), 5), 10, 11]  # two classes of one item
    points = rng.normal(size=(len(labels), 4)) + 3 * np.eye(12, 4)[labels]
    return torch.as_tensor(points, dtype=torch.float32), torch.as_tensor(labels)


def test_queries_are_fixed_distinct_classes_with_something_to_find() -> None:
    x, y = labelled_points()
    first = pick_retrieval_examples(x, y, count=6, k=4)
    again = pick_retrieval_examples(x, y, count=6, k=4)
    assert first.queries.tolist() == again.queries.tolist()
    assert len(set(first.query_labels.tolist())) == 6
    assert not set(first.query_labels.tolist()) & {10, 11}  # nothing to find: never picked
    for q, query in enumerate(first.queries):
        assert query not in first.neighbours[q]  # a query does not retrieve itself
        d = torch.linalg.vector_norm(x - x[query], dim=1)
        d[query] = float("inf")
        assert first.neighbours[q].tolist() == torch.argsort(d, stable=True)[:4].tolist()
        np.testing.assert_allclose(first.distances[q], d[first.neighbours[q]].numpy(), atol=1e-6)
    assert (first.neighbour_labels == y.numpy()[first.neighbours]).all()


def test_query_gallery_data_search_the_gallery() -> None:
    x, y = labelled_points(1)
    query, gallery = slice(0, 50, 2), slice(1, 50, 2)  # one item of classes 10, 11: neither
    examples = pick_retrieval_examples(x[query], y[query], x[gallery], y[gallery], count=3, k=2)
    assert examples.query_split == "query" and examples.reference_split == "gallery"
    assert len(set(examples.query_labels.tolist())) == 3
    d = torch.cdist(x[query][examples.queries], x[gallery])
    assert examples.neighbours.tolist() == d.argsort(dim=1)[:, :2].tolist()


def test_rows_show_the_pixels_the_model_saw_framed_by_label(tmp_path) -> None:
    transform = SmallImageTransforms(augment=False, mean=[0.5], std=[0.25])
    rng = np.random.default_rng(2)
    pixels = torch.as_tensor(rng.random((30, 1, 6, 6)), dtype=torch.float32)
    labels = torch.arange(30) % 3
    test = TensorLabeledDataset(pixels, labels, transform.eval_transform())
    splits = DataSplits(train=test, val=test, test=test)
    embeddings = torch.stack([test[i][0].flatten() for i in range(30)])
    examples = pick_retrieval_examples(embeddings, labels, count=3, k=5)

    rows = example_rows(examples, splits, transform)
    assert len(rows) == 3 and all(len(row) == 6 for row in rows)
    for q, row in enumerate(rows):
        np.testing.assert_allclose(row[0].image, pixels[examples.queries[q], 0], atol=1e-6)
        assert row[0].correct is None
        expected = examples.neighbour_labels[q] == examples.query_labels[q]
        assert [tile.correct for tile in row[1:]] == expected.tolist()
        np.testing.assert_allclose(row[1].image, pixels[examples.neighbours[q, 0], 0], atol=1e-6)
    path = write_retrieval_examples(tmp_path / "examples.png", examples, splits, transform)
    assert path is not None and path.stat().st_size > 0


def test_feature_data_get_no_picture(tmp_path) -> None:
    x, y = labelled_points()
    test = TensorLabeledDataset(x, y)
    splits = DataSplits(train=test, val=test, test=test)
    examples = pick_retrieval_examples(x, y)
    assert write_retrieval_examples(tmp_path / "x.png", examples, splits, None) is None
    assert not (tmp_path / "x.png").exists()
