"""``plots/retrieval_examples.png``: a few fixed test queries and what the model retrieves.

The module picks the queries and their neighbours from the test evaluation's embeddings
(no extra pass over the data); the picture is drawn from the split's own items, through
its evaluation transform and back to pixels, so it shows exactly what the model saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dml.datasets.base import DataSplits, LabeledDataset
from dml.datasets.user_files.query_files import is_picture_shape
from dml.metrics.topk import nearest_neighbours
from dml.reporting.figures import save_figure
from dml.reporting.retrieval_figure import Tile, retrieval_figure, tile_image
from dml.transforms import to_pixels

EXAMPLE_QUERIES = 6
EXAMPLE_NEIGHBOURS = 8


@dataclass(frozen=True)
class RetrievalExamples:
    """Queries and their nearest references, as indices into the named splits.

    ``query_split`` is "test" (which then also holds the references, each query left out
    of its own neighbours) or "query" with ``reference_split`` "gallery" (In-Shop).
    """

    query_split: str
    reference_split: str
    queries: np.ndarray
    query_labels: np.ndarray
    neighbours: np.ndarray
    neighbour_labels: np.ndarray
    distances: np.ndarray


def pick_retrieval_examples(
    query: Tensor,
    query_labels: Tensor,
    reference: Tensor | None = None,
    reference_labels: Tensor | None = None,
    count: int = EXAMPLE_QUERIES,
    k: int = EXAMPLE_NEIGHBOURS,
    seed: int = 0,
) -> RetrievalExamples | None:
    """``count`` queries drawn with ``seed`` (the same ones every run of the data), from
    as many different classes as there are, among the queries with something to find.
    ``reference=None``: the queries' own set is the reference set."""
    same_set = reference is None
    reference = query if reference is None else reference
    reference_labels = query_labels if reference_labels is None else reference_labels
    query_labels, reference_labels = query_labels.cpu(), reference_labels.cpu()
    classes, counts = torch.unique(reference_labels, return_counts=True)
    matches = torch.zeros(len(query_labels), dtype=torch.long)
    known = torch.isin(query_labels, classes)
    matches[known] = counts[torch.searchsorted(classes, query_labels[known])]
    findable = torch.nonzero(matches > (1 if same_set else 0)).flatten().numpy()
    if len(findable) == 0:
        return None
    order = np.random.default_rng(seed).permutation(findable)
    labels = query_labels.numpy()[order]
    _, first = np.unique(labels, return_index=True)  # one query per class first
    rest = np.setdiff1d(np.arange(len(order)), first)
    chosen = order[np.r_[np.sort(first), rest][:count]]
    exclude = torch.as_tensor(chosen) if same_set else None
    found = nearest_neighbours(query[chosen], reference, k, exclude=exclude)
    neighbours = found.indices.cpu().numpy()
    return RetrievalExamples(
        query_split="test" if same_set else "query",
        reference_split="test" if same_set else "gallery",
        queries=chosen,
        query_labels=query_labels.numpy()[chosen],
        neighbours=neighbours,
        neighbour_labels=reference_labels.numpy()[neighbours],
        distances=found.distances.cpu().numpy(),
    )


def item_pixels(dataset: LabeledDataset, index: int, transform: object | None) -> np.ndarray | None:
    """The item as [C, H, W] pixels in [0, 1], or None when the data are not pictures."""
    x = dataset[int(index)][0]
    if not isinstance(x, Tensor) or not is_picture_shape(tuple(x.shape)):
        return None
    return to_pixels(x, transform).numpy()


def is_picture_data(dataset: LabeledDataset) -> bool:
    """Items shaped [1 or 3, H, W]: grey or colour pictures, not feature vectors."""
    if len(dataset) == 0:
        return False
    x = dataset[0][0]
    return isinstance(x, Tensor) and is_picture_shape(tuple(x.shape))


def example_rows(
    examples: RetrievalExamples, splits: DataSplits, transform: object | None
) -> list[list[Tile]] | None:
    """The picture's rows (query, then neighbours); None for feature data."""
    query_set = getattr(splits, examples.query_split)
    reference_set = getattr(splits, examples.reference_split)
    if not is_picture_data(query_set):
        return None
    rows = []
    for q, query in enumerate(examples.queries):
        row = [
            Tile(
                tile_image(item_pixels(query_set, query, transform)),
                f"query #{query}\nlabel {examples.query_labels[q]}",
            )
        ]
        for n, neighbour in enumerate(examples.neighbours[q]):
            label = examples.neighbour_labels[q, n]
            row.append(
                Tile(
                    tile_image(item_pixels(reference_set, neighbour, transform)),
                    f"#{neighbour} label {label}\nd={examples.distances[q, n]:.3f}",
                    correct=bool(label == examples.query_labels[q]),
                )
            )
        rows.append(row)
    return rows


def write_retrieval_examples(
    path: Path, examples: RetrievalExamples, splits: DataSplits, transform: object | None
) -> Path | None:
    """Draw the examples from the splits' items; None (nothing written) for feature data."""
    rows = example_rows(examples, splits, transform)
    if rows is None:
        return None
    queries = "" if examples.query_split == "query" else f"{examples.query_split} "
    title = (
        f"Nearest {examples.reference_split} items of {len(rows)} fixed {queries}queries "
        "(green: same label, red: different)"
    )
    return save_figure(retrieval_figure(rows, title), path)
