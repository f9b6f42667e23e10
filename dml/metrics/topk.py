"""The k nearest gallery items of a few queries: what `dml search` and the retrieval
pictures show.

The retrieval metrics (:mod:`dml.metrics.neighbours`) are tuned for every item of a split
querying all the others; here a handful of queries (a folder of photos, a picture's rows)
search a gallery that may be large, so a plain tiled search is enough: squared Euclidean
distances in float32 from matrix products, as the metrics rank them, one bounded tile at a
time, with a running top-k merged by a stable sort so that equal distances keep gallery
order. The distances returned are recomputed from the differences of the chosen pairs, so
an exact duplicate of a query shows distance 0, not the rounding of a matrix product.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from dml.errors import DmlError
from dml.metrics import _inputs
from dml.metrics._inputs import ArrayLike

# Distances held at once: a query block times a gallery chunk (float32, 64 MiB).
TILE_ELEMENTS = 2**24
GALLERY_CHUNK = 8192


class Neighbours(NamedTuple):
    """Per query, its ``k`` nearest gallery items, nearest first."""

    distances: Tensor  # float32 [queries, k], Euclidean
    indices: Tensor  # int64 [queries, k], rows of the gallery


def nearest_neighbours(
    query: ArrayLike,
    gallery: ArrayLike,
    k: int,
    exclude: ArrayLike | None = None,
    gallery_chunk: int = GALLERY_CHUNK,
) -> Neighbours:
    """The ``k`` nearest gallery rows of every query row (fewer if the gallery is smaller).

    ``exclude[i]`` is a gallery row that query i must not retrieve (its own row when the
    queries are gallery items), or -1 for none.
    """
    q = _inputs.embeddings("query", query)
    g = _inputs.embeddings("gallery", gallery).to(q.device)
    if g.shape[1] != q.shape[1]:
        raise DmlError(
            f"the queries have dimension {q.shape[1]} but the gallery has {g.shape[1]}; "
            "embed both with the same model"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DmlError(f"k={k!r} must be a positive integer")
    skip = None
    if exclude is not None:
        skip = _inputs.integer_ids("exclude", exclude, len(q)).to(q.device)
    available = len(g) - (1 if skip is not None and bool((skip >= 0).any()) else 0)
    k = min(k, available)
    if k < 1:
        raise DmlError("the gallery holds no item a query may retrieve")
    rows = max(1, TILE_ELEMENTS // min(gallery_chunk, len(g)))
    found_d, found_i = [], []
    for start in range(0, len(q), rows):
        block = q[start : start + rows]
        block_skip = skip[start : start + rows] if skip is not None else None
        order = _block_topk(block, g, k, block_skip, gallery_chunk)
        found_i.append(order)
        found_d.append((block.unsqueeze(1) - g[order]).norm(dim=2))
    distances, indices = torch.cat(found_d), torch.cat(found_i)
    # Re-rank by the exact distances, keeping the search's order where they are equal.
    resort = distances.sort(dim=1, stable=True).indices
    return Neighbours(distances.gather(1, resort), indices.gather(1, resort))


def _block_topk(block: Tensor, gallery: Tensor, k: int, skip: Tensor | None, chunk: int) -> Tensor:
    """Gallery indices of each block row's k nearest, equal distances in gallery order."""
    block_sq = (block * block).sum(1, keepdim=True)
    best_d = block.new_empty(len(block), 0)
    best_i = torch.empty(len(block), 0, dtype=torch.long, device=block.device)
    for start in range(0, len(gallery), chunk):
        part = gallery[start : start + chunk]
        sq = (block_sq - 2 * block @ part.T + (part * part).sum(1)).clamp_min(0)
        index = torch.arange(start, start + len(part), device=block.device).expand(len(block), -1)
        if skip is not None:
            sq = sq.masked_fill(index == skip.unsqueeze(1), float("inf"))
        # Earlier chunks come first, so a stable sort keeps ties in gallery order.
        candidates_d = torch.cat([best_d, sq], dim=1)
        candidates_i = torch.cat([best_i, index], dim=1)
        keep = candidates_d.sort(dim=1, stable=True).indices[:, :k]
        best_d, best_i = candidates_d.gather(1, keep), candidates_i.gather(1, keep)
    return best_i
