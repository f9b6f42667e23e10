"""From a block's candidate lists to ranked labels equal to a float64 brute-force ranking.

Per query, the metrics need the labels of its ``depth`` nearest references, in the order
of exact distance, exactly equal distances broken by reference index. The candidates come
with float32 distances, each within E of its exact value (bound.py), so:

* one sort of the block's int64 keys orders every query's candidates by float32 distance;
  after it, each query's candidates, and its window below, are ranges found by binary
  search, so nothing else in this module touches every candidate;
* a list is complete enough if its limit reaches D + 2E, D being the depth-th float32
  distance: whatever the rounding, no reference past that can be among the first depth.
  Otherwise the query goes back to the search (``missed``);
* the window, the candidates up to D + 2E, holds the exact first depth. Its float32 order
  is certain except among near ties, which nearties.py settles in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dml.metrics.neighbours.nearties import settle_near_ties
from dml.metrics.neighbours.problem import (
    EVERYTHING,
    Candidates,
    Problem,
    RankedBlock,
    pack,
    round_up,
    unpack_distances,
)


def rank(p: Problem, c: Candidates, margin: Tensor) -> tuple[RankedBlock | None, Tensor]:
    """(ranked queries of the block, or None; the queries whose limit was too tight).

    ``margin[i]`` is 2E for query i."""
    keys, order = torch.sort(c.keys)
    n = len(c.rows)
    local = torch.arange(n, device=keys.device)
    bounds = torch.searchsorted(keys, torch.arange(n + 1, device=keys.device) << 32)
    start, count = bounds[:-1], bounds[1:] - bounds[:-1]
    depth = p.depth[c.rows]
    enough = count >= depth
    nth = (
        unpack_distances(keys[(start + depth - 1).clamp(0, len(keys) - 1)])
        if len(keys)
        else c.limit
    )
    edge = round_up(nth.to(torch.float64) + margin[c.rows])
    everything = c.limit >= EVERYTHING
    complete = (depth > 0) & ((enough & (edge <= c.limit)) | everything)
    missed = c.rows[(depth > 0) & ~complete]
    if not bool(complete.any()):
        return None, missed

    edge = torch.where(enough, edge, math.inf)
    end = torch.searchsorted(keys, pack(local, edge), right=True)
    size = torch.where(complete, end - start, 0)
    owner = torch.repeat_interleave(local, size)
    first = size.cumsum(0) - size
    at = torch.arange(len(owner), device=keys.device) + (start - first).index_select(0, owner)
    dist = unpack_distances(keys.index_select(0, at))
    cols = c.cols.index_select(0, order.index_select(0, at)).to(torch.int64)
    top = torch.minimum(depth, size)
    labels = p.query_labels.index_select(0, c.rows).index_select(0, owner)
    is_pos = p.reference_labels.index_select(0, cols) == labels
    is_pos = settle_near_ties(p, c.rows, owner, dist, cols, is_pos, margin, first, top)

    done = complete.nonzero().squeeze(1)
    ranks = torch.arange(int(depth[done].max()), device=keys.device)
    positions = (first[done].unsqueeze(1) + ranks).clamp_max(len(is_pos) - 1)
    ranked = is_pos.index_select(0, positions.view(-1)).view(positions.shape)
    return (c.rows[done], ranked & (ranks < top[done].unsqueeze(1))), missed
