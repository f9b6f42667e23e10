"""Picking the entries of a distance tile that fall within their query's limit, and keeping
them until their block of queries is complete.

Per distance, the search does one comparison and scans one bit of the resulting mask; only
the hits (about 1.5 % of a tile) cost more. The hits are appended as they come, in
whatever order, one (key, column) chunk per tile: no per-query slots to maintain, so the
transposed read of a query = reference tile needs no transposed copy. One sort per block
orders them when the block is done (see ranking.py).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from dml.metrics.neighbours.problem import Candidates, pack


def flat_nonzero(mask: Tensor) -> Tensor:
    """Flat indices of True in a contiguous bool tensor whose size is a multiple of 8.

    Few entries are True, so scanning it as int64 words, then only the words holding a
    True, reads it about twice as fast as nonzero() on the bools themselves."""
    words = mask.view(torch.int64).view(-1).nonzero().squeeze(1)
    word, bit = mask.view(-1, 8).index_select(0, words).nonzero(as_tuple=True)
    return words.index_select(0, word) * 8 + bit


class Hits(NamedTuple):
    """Entries of a tile: row, column and distance."""

    rows: Tensor
    cols: Tensor
    dist: Tensor

    def within(self, limit: Tensor, per_row: bool) -> Hits:
        """The hits within ``limit`` of their row (or of their column)."""
        keep = self.dist <= limit.index_select(0, self.rows if per_row else self.cols)
        at = keep.nonzero().squeeze(1)
        return Hits(*(part.index_select(0, at) for part in self))


class TileHits:
    """Hits of a square ``tile`` × ``tile`` distance matrix, with reusable buffers (a fresh
    allocation per tile costs page faults comparable to the comparison)."""

    def __init__(self, tile: int, device: torch.device) -> None:
        if tile & (tile - 1) or tile < 8:
            raise ValueError(f"tile must be a power of two of at least 8, got {tile}")
        self.tile = tile
        self.shift = tile.bit_length() - 1
        self.mask = torch.empty(tile, tile, dtype=torch.bool, device=device)
        self.bound = torch.empty(tile, tile, device=device)

    def __call__(self, dist: Tensor, row_limit: Tensor, col_limit: Tensor | None = None) -> Hits:
        """Every entry within its row's limit or, given ``col_limit``, its column's.

        Query = reference reads each tile for its rows and, transposed, for its columns.
        One comparison against the larger of the two limits costs about half of two
        (a comparison that writes a mask costs ~5 times an addition; finding the Trues
        costs as much again), and splitting the ~3 % of hits afterwards is cheap."""
        if col_limit is None:
            bound = row_limit.unsqueeze(1)
        else:
            bound = torch.maximum(row_limit.unsqueeze(1), col_limit.unsqueeze(0), out=self.bound)
        flat = flat_nonzero(torch.le(dist, bound, out=self.mask))
        return Hits(flat >> self.shift, flat & (self.tile - 1), dist.view(-1).index_select(0, flat))


class CandidateLists:
    """Hits per block of queries, gathered until the block has met every reference.

    At most ``cap`` entries are held: limits far too loose (degenerate data, say every
    embedding equal, where every distance ties) would otherwise fill memory. Past the cap
    the block holding the most is dropped; its queries come out with no limit, so the
    ranking hands them to the exact pass, which works through whole rows in bounded
    chunks."""

    def __init__(self, blocks: int, cap: int) -> None:
        self.cap = cap
        self.held = 0
        self.keys: list[list[Tensor]] = [[] for _ in range(blocks)]
        self.cols: list[list[Tensor]] = [[] for _ in range(blocks)]
        self.sizes = [0] * blocks
        self.dropped = [False] * blocks

    def add(self, block: int, local_rows: Tensor, cols: Tensor, dist: Tensor) -> None:
        """``local_rows`` count from the block's first query."""
        if self.dropped[block]:
            return
        self.keys[block].append(pack(local_rows, dist))
        self.cols[block].append(cols.to(torch.int32))
        self.sizes[block] += len(cols)
        self.held += len(cols)
        while self.held > self.cap:
            largest = max(range(len(self.sizes)), key=self.sizes.__getitem__)
            self.held -= self.sizes[largest]
            self.keys[largest], self.cols[largest], self.sizes[largest] = [], [], 0
            self.dropped[largest] = True

    def take(self, block: int, rows: Tensor, limit: Tensor) -> Candidates:
        keys, cols = self.keys[block], self.cols[block]
        self.held -= self.sizes[block]
        self.keys[block], self.cols[block], self.sizes[block] = [], [], 0
        if self.dropped[block]:
            limit = torch.full_like(limit, -torch.inf)
        device = rows.device
        return Candidates(
            rows=rows,
            limit=limit,
            keys=torch.cat(keys) if keys else torch.empty(0, dtype=torch.int64, device=device),
            cols=torch.cat(cols) if cols else torch.empty(0, dtype=torch.int32, device=device),
        )
