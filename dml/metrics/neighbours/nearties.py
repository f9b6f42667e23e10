"""Exact order where float32 cannot tell: the float64 re-scoring of near ties.

The window entries arrive sorted by (query, float32 distance). Consecutive entries of one
query less than its margin 2E apart may be in either exact order; a run of such entries
is a cluster, and clusters are in certain order among themselves (every gap between them
exceeds 2E, and the bound is one number per query, so "more than 2E apart" holds for
every pair across the gap). A cluster is re-scored only if the order inside it can change
a metric: it holds both a same-label and an other-label reference, and it starts within
the query's first ``top`` positions. A cluster of one kind gives the same label sequence
in any order, even where it straddles the depth boundary.

How many entries that is depends on the data: the bound grows with d, and the gaps
shrink as N grows (on 128-dimensional Gaussians, 3.5 % of the ranked neighbours at
N = 20k, 8 % at 50k). Each costs a gather and d multiply-adds, in small batches that
stay in cache.

The exact distance is Σ(q_i − r_i)² of the float32 inputs in float64: differences and
squares are exact there, and copies of a point score bitwise equal, so they tie and go by
reference index, as in a brute-force float64 ranking.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dml.metrics.neighbours.problem import Problem, round_up

# Entries re-scored per batch: small enough for their d-vectors to stay in cache, which
# makes the re-scoring several times faster than one large batch.
RESCORE_BATCH = 2048


def settle_near_ties(
    p: Problem,
    rows: Tensor,
    owner: Tensor,
    dist: Tensor,
    cols: Tensor,
    is_pos: Tensor,
    margin: Tensor,
    first: Tensor,
    top: Tensor,
) -> Tensor:
    """``is_pos`` with every uncertain cluster put in exact order.

    Entry e is reference ``cols[e]`` of query ``rows[owner[e]]``, at float32 distance
    ``dist[e]``; query i's entries start at ``first[i]``, and its first ``top[i]`` count."""
    if len(owner) < 2:
        return is_pos
    # A float32 gap within the margin rounded up: never misses an exact gap within it.
    reach = round_up(margin.index_select(0, rows)).index_select(0, owner[1:])
    close = (dist[1:] - dist[:-1] <= reach) & (owner[1:] == owner[:-1])
    cluster = torch.cat([owner.new_zeros(1), (~close).cumsum(0)])
    last = torch.where(top > 0, cluster[(first + top - 1).clamp(0, len(owner) - 1)], -1)
    pairs = (close & (is_pos[1:] != is_pos[:-1])).nonzero().squeeze(1)
    pairs = pairs[cluster[pairs] <= last[owner[pairs]]]
    if len(pairs) == 0:
        return is_pos
    uncertain = torch.zeros(int(cluster[-1]) + 1, dtype=torch.bool, device=owner.device)
    uncertain[cluster[pairs]] = True
    entries = uncertain.index_select(0, cluster).nonzero().squeeze(1)
    refs = cols[entries]
    queries = rows[owner[entries]]
    exact = torch.cat(
        [
            _float64_distances(p, q, r)
            for q, r in zip(queries.split(RESCORE_BATCH), refs.split(RESCORE_BATCH), strict=True)
        ]
    )
    # Sorted by (cluster, distance, reference) through stable sorts of int64 keys: the
    # bits of a non-negative float64 order like its value, and int64 sorts several
    # times faster than float64.
    order = torch.argsort(refs, stable=True)
    order = order[torch.argsort(exact.view(torch.int64)[order], stable=True)]
    order = order[torch.argsort(cluster[entries][order], stable=True)]
    settled = is_pos.clone()
    settled[entries] = is_pos[entries[order]]
    return settled


def _float64_distances(p: Problem, queries: Tensor, refs: Tensor) -> Tensor:
    diff = p.reference.index_select(0, refs).to(torch.float64)
    diff.sub_(p.query.index_select(0, queries).to(torch.float64))
    return diff.square_().sum(1)
