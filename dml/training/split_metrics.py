"""The metrics of one evaluated split, from the embeddings an evaluation pass collected.

Kept apart from the Lightning module: these are plain functions of tensors, which the
module calls at the end of every validation and test pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dml.metrics import clustering_metrics, retrieval_metrics
from dml.metrics.pair_distances import pair_distance_stats

# (embeddings, labels, group ids or None) of one loader: the split, or queries / gallery.
Part = tuple[Tensor, Tensor, Tensor | None]
# What an evaluation step keeps of a batch: embeddings, labels, groups and its loader.
CollectedBatch = tuple[Tensor, Tensor, Tensor | None, int]


def parts_by_loader(batches: Sequence[CollectedBatch]) -> list[Part]:
    """The collected batches joined per loader: loader 0 is the evaluated set (or the
    queries), loader 1, if any, the gallery."""
    parts = []
    for loader in sorted({i for *_, i in batches}):
        mine = [b for b in batches if b[3] == loader]
        groups = [g for _, _, g, _ in mine if g is not None]
        parts.append(
            (
                torch.cat([e for e, _, _, _ in mine]),
                torch.cat([y for _, y, _, _ in mine]),
                torch.cat(groups) if len(groups) == len(mine) else None,
            )
        )
    return parts


def split_metrics(
    parts: Sequence[Part], k_values: Sequence[int], backend: str, clustering: bool
) -> tuple[dict[str, float], Tensor, Tensor]:
    """Retrieval, pair-distance (and with ``clustering``, NMI) metrics of the split, with
    the embeddings and labels the distances and clusters describe."""
    embeddings, labels, groups = parts[0]
    if len(parts) == 2:
        # Query against gallery (In-Shop): the gallery is the reference set.
        gallery, gallery_labels, gallery_groups = parts[1]
        metrics = retrieval_metrics(
            embeddings,
            labels,
            gallery,
            gallery_labels,
            k_values=k_values,
            query_groups=groups,
            reference_groups=gallery_groups,
            backend=backend,
        )
        # The distances, clusters and snapshot describe the whole test set: the queries
        # alone may hold a single image per class, and so no positive pair.
        embeddings = torch.cat([embeddings, gallery])
        labels = torch.cat([labels, gallery_labels])
    else:
        metrics = retrieval_metrics(
            embeddings, labels, k_values=k_values, query_groups=groups, backend=backend
        )
    metrics.update(pair_distance_stats(embeddings, labels))
    if clustering:
        metrics.update(clustering_metrics(embeddings, labels))
    return metrics, embeddings, labels
