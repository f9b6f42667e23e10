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
stay in cache. A collapsed set re-scores nearly every pair; there a float64 matmul of the
block sorts them first (``_dense_order``).

The exact distance is Σ(q_i − r_i)² of the float32 inputs in float64: differences and
squares are exact there, and copies of a point score bitwise equal, so they tie and go by
reference index, as in a brute-force float64 ranking.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dml.metrics.neighbours import bound
from dml.metrics.neighbours.problem import Problem, round_up

# Entries re-scored per batch: small enough for their d-vectors to stay in cache, which
# makes the re-scoring several times faster than one large batch.
RESCORE_BATCH = 2048
# Where the re-scored entries are at least 1/DENSE_SHARE of the block × reference matrix,
# a float64 matmul of the whole block costs less than gathering them (_dense_order).
DENSE_SHARE = 16
# References per float64 matmul there (a 1024-query block: 64 MiB).
DENSE_COLUMNS = 8192


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
    local = owner[entries]
    order = rescored_order(p, rows, local, refs, cluster[entries])
    settled = is_pos.clone()
    settled[entries] = is_pos[entries[order]]
    return settled


def rescored_order(
    p: Problem, rows: Tensor, local: Tensor, refs: Tensor, cluster: Tensor
) -> Tensor:
    """The float64 step: the exact order of the uncertain entries (reference ``refs[e]`` of
    query ``rows[local[e]]``, in float32 cluster ``cluster[e]``), clusters kept apart."""
    if len(refs) * DENSE_SHARE >= len(rows) * len(p.reference):
        return _dense_order(p, rows, local, refs, cluster)
    return _exact_order(cluster, _float64_distances(p, rows[local], refs), refs)


def _exact_order(group: Tensor, exact: Tensor, refs: Tensor) -> Tensor:
    """The order by (group, exact distance, reference), through stable sorts of int64
    keys: the bits of a non-negative float64 order like its value, and int64 sorts
    several times faster than float64."""
    order = torch.argsort(refs, stable=True)
    order = order[torch.argsort(exact.view(torch.int64)[order], stable=True)]
    return order[torch.argsort(group[order], stable=True)]


def _float64_distances(p: Problem, queries: Tensor, refs: Tensor) -> Tensor:
    """Σ(q − r)² in float64, in batches that stay in cache."""
    parts = [p.query.new_empty(0, dtype=torch.float64)]
    for q, r in zip(queries.split(RESCORE_BATCH), refs.split(RESCORE_BATCH), strict=True):
        diff = p.reference.index_select(0, r).to(torch.float64)
        diff.sub_(p.query.index_select(0, q).to(torch.float64))
        parts.append(diff.square_().sum(1))
    return torch.cat(parts)


def _dense_order(p: Problem, rows: Tensor, local: Tensor, refs: Tensor, cluster: Tensor) -> Tensor:
    """The exact order of entries that cover much of the block × reference matrix (a
    collapsed set, where float32 resolves almost nothing); ``cluster`` is sorted.

    Gathering 2·d values per entry would cost far more than a float64 matmul of the
    whole block against every reference, so that is what scores them first. Its own
    error bound (bound.float64_margins) is 2²⁹ times tighter than float32's: it
    splits each cluster into sub-clusters in certain order, and only the entries of a
    sub-cluster of two or more (exact copies, in practice) are scored as Σ(q − r)²."""
    queries = p.query.index_select(0, rows)
    wide = queries.to(torch.float64)
    wide_sq = wide.square().sum(1)
    value = wide.new_empty(len(refs))
    for start in range(0, len(p.reference), DENSE_COLUMNS):
        chunk = p.reference[start : start + DENSE_COLUMNS].to(torch.float64)
        dense = torch.mm(wide, chunk.T).mul_(-2.0).add_(wide_sq.unsqueeze(1))
        dense.add_(chunk.square().sum(1).unsqueeze(0))
        inside = ((refs >= start) & (refs < start + len(chunk))).nonzero().squeeze(1)
        flat = local.index_select(0, inside) * len(chunk) + refs.index_select(0, inside) - start
        value[inside] = dense.view(-1).index_select(0, flat)
    value.clamp_min_(0.0)  # below zero only by rounding, within the bound of 0
    # Clusters are already in order; within each, by float64 value.
    order = torch.argsort(value.view(torch.int64), stable=True)
    order = order[torch.argsort(cluster.index_select(0, order), stable=True)]
    ordered = value.index_select(0, order)
    owner = local.index_select(0, order)
    reach = bound.float64_margins(queries, p.reference) * (1 + 2.0**-40)
    same = cluster.index_select(0, order)
    close = (ordered[1:] - ordered[:-1] <= reach.index_select(0, owner[1:])) & (
        same[1:] == same[:-1]
    )
    group = torch.cat([order.new_zeros(1), (~close).cumsum(0)])
    # Sub-clusters of two or more: put in (Σ(q − r)², reference) order where they stand.
    shared = (torch.bincount(group).index_select(0, group) > 1).nonzero().squeeze(1)
    if len(shared):
        members = order.index_select(0, shared)
        exact = _float64_distances(p, rows[local[members]], refs[members])
        order[shared] = members[_exact_order(group[shared], exact, refs[members])]
    return order
