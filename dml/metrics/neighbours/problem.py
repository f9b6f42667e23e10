"""The data that passes between the parts of the neighbour search.

A search backend (tiled torch or faiss) only has to find, for a block of queries, every
reference whose float32 distance lies within that query's ``limit``; the ranking step
turns such a list into exact ranked labels, or hands a query back when its limit turned
out too tight. Keeping that contract this small is what lets both backends share the
ranking, and lets a backend be as rough as it likes about how it chooses limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# A limit that leaves no reference out: every finite distance lies within it, and the
# infinite ones (a query itself, its group, padding) never do.
EVERYTHING = torch.finfo(torch.float32).max
LOW32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Problem:
    """A retrieval evaluation, already validated and on one device.

    ``depth[i]`` is how many ranked neighbours query i needs; 0 skips the query.
    Labels are renumbered 0..C-1 and groups are ``None`` or given for both sides.
    """

    query: Tensor
    query_labels: Tensor
    reference: Tensor
    reference_labels: Tensor
    same_set: bool
    query_groups: Tensor | None
    reference_groups: Tensor | None
    depth: Tensor


RankedBlock = tuple[Tensor, Tensor]
"""(query indices, is_pos): is_pos[i, j] says whether the (j+1)-th neighbour of query
indices[i] shares its label. Columns past a query's depth are not meaningful."""


@dataclass(frozen=True)
class Candidates:
    """Every reference within ``limit[i]`` of query ``rows[i]``, for a block of queries.

    Entry e is reference ``cols[e]`` for query ``rows[keys[e] >> 32]`` at the float32
    distance whose bits are ``keys[e] & LOW32``: one int64 per entry, so that a single
    sort of the keys orders the whole block by (query, distance).
    """

    rows: Tensor
    limit: Tensor
    keys: Tensor
    cols: Tensor


def pack(local_rows: Tensor, dist: Tensor) -> Tensor:
    """Sort keys (row, distance). A non-negative float32's bits order like its value;
    negative distances (rounding near zero) and -0.0 count as 0."""
    bits = dist.contiguous().view(torch.int32).clamp_min(0).to(torch.int64)
    return (local_rows.to(torch.int64) << 32) | bits


def unpack_distances(keys: Tensor) -> Tensor:
    return (keys & LOW32).to(torch.int32).view(torch.float32)


def round_up(x: Tensor) -> Tensor:
    """float64 → the nearest float32 at or above it, so a limit computed in float64 is
    never lowered by the cast."""
    single = x.to(torch.float32)
    below = single.to(torch.float64) < x
    return torch.where(below, torch.nextafter(single, single.new_tensor(torch.inf)), single)


def padded(x: Tensor, length: int, fill: float) -> Tensor:
    """``x`` extended to ``length`` rows of ``fill`` (``x`` itself if long enough)."""
    extra = length - len(x)
    return torch.cat([x, x.new_full((extra, *x.shape[1:]), fill)]) if extra > 0 else x
