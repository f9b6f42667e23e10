"""Query = reference: each tile of the symmetric distance matrix computed once, read twice.

Tile (a, c), a < c, holds the distances between query blocks a and c: its rows are block
a's candidates, its columns (read transposed) block c's. That halves the matmul, which
matters most where the matmul is slow. Block c's hits then arrive from many tiles before
it is complete, so the candidate lists of later blocks stay in memory: about
N·(candidates per query)·3 bytes at the peak (``SYMMETRIC_BYTES`` in tiled.py decides
when that is too much).

The queries are searched in order of decreasing limit. Then in tile (a, c), a ≤ c, every
row's limit is at least every column's, so an entry within its column's limit is within
its row's too: one comparison with the row limits finds every hit of both reads, each
hit belongs to its row's query without a further test, and only the hits are tested
against their column's limit for the transposed read. (In the order the queries come
in, a tile would be compared with the larger of its row's and column's limits, an extra
pass over the tile to form, and every hit tested against both.) The order stays inside
this module: the lists hold query and reference indices.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from dml.metrics.neighbours.bound import distances
from dml.metrics.neighbours.collect import CandidateLists, RowOfTiles, TileHits
from dml.metrics.neighbours.problem import Candidates, Problem, pack, padded


class SymmetricSchedule:
    def __init__(
        self,
        p: Problem,
        squared_norms: Tensor,
        hits: TileHits,
        out: Tensor,
        candidate_cap: int,
        pending_hits: int,
    ) -> None:
        self.p, self.sq, self.hits, self.out = p, squared_norms, hits, out
        self.tile = hits.tile
        self.candidate_cap = candidate_cap
        self.pending_hits = pending_hits

    def candidates(self, rows: Tensor, sampled: Tensor) -> Iterator[Candidates]:
        """Candidate lists of every block of ``rows`` (queries), whose limits are
        ``sampled``; queries not in ``rows`` are neither searched nor found."""
        t, n = self.tile, len(self.p.query)
        blocks = -(-n // t)
        limit = self.sq.new_full((n,), -math.inf)
        limit[rows] = sampled
        order = torch.argsort(limit, descending=True, stable=True)
        x = padded(self.p.query.index_select(0, order), blocks * t, 0.0)
        sq = padded(self.sq.index_select(0, order), blocks * t, math.inf)
        limit = padded(limit.index_select(0, order), blocks * t, -math.inf)
        lists = CandidateLists(blocks, self.candidate_cap)
        found = RowOfTiles(t, x.device)
        for a in range(blocks):
            r = slice(a * t, (a + 1) * t)
            for c in range(a, blocks):
                cols = slice(c * t, (c + 1) * t)
                dist = distances(x[r], sq[r], x[cols], sq[cols], self.out)
                if c == a:
                    dist.diagonal().fill_(math.inf)
                found.add(c, *self.hits(dist, limit[r]))
                if found.size >= self.pending_hits:
                    self._file(lists, a, found, limit, order)
            self._file(lists, a, found, limit, order)
            block = torch.arange(a * t, min((a + 1) * t, n), device=x.device)
            yield lists.take(a, order.index_select(0, block), limit.index_select(0, block))

    def _file(
        self, lists: CandidateLists, a: int, found: RowOfTiles, limit: Tensor, order: Tensor
    ) -> None:
        """Block a's pending hits into the lists: every one for its row's query, and those
        off the diagonal tile within their column's limit for the column's query.
        Positions are in search order; ``order`` maps them to query indices."""
        t = self.tile
        row, position, dist = found.take()
        query = order.index_select(0, row + a * t)
        ref = order.index_select(0, position)
        theirs = (dist <= limit.index_select(0, position)) & (position >= (a + 1) * t)
        if self.p.query_groups is not None and self.p.reference_groups is not None:
            # Query = reference: one test serves both reads.
            other_group = self.p.query_groups[query] != self.p.reference_groups[ref]
            theirs &= other_group
            at = other_group.nonzero().squeeze(1)
            lists.add(a, pack(row[at], dist[at]), ref[at])
        else:
            lists.add(a, pack(row, dist), ref)
        at = theirs.nonzero().squeeze(1)
        position, dist, query = position[at], dist[at], query[at]
        # Tiles were added in column order, so each column block's hits are one run.
        counts = torch.bincount(position >> found.shift, minlength=len(lists.sizes))
        keys = pack(position & (t - 1), dist)
        sizes = counts[a + 1 :].tolist()
        for c, (block_keys, refs) in enumerate(
            zip(keys.split(sizes), query.split(sizes), strict=True), start=a + 1
        ):
            if len(refs):
                lists.add(c, block_keys, refs)
