"""Picking the entries of distance tiles that fall within their query's limit, and keeping
them until their block of queries is complete.

Per distance, the search does one comparison and scans one bit of the resulting mask; only
the hits (a few percent of a tile) cost more. A tile yields just their positions and
distances; the per-hit work (which query and reference each is, the sort keys) waits until
a whole row of tiles is done, so it runs as a few operations over ~50 tiles' hits rather
than a few dozen per tile: fewer calls, and large enough for torch to spread over its
threads. The hits are appended as they come, in whatever order, one (key, column) chunk
per row of tiles and block: no per-query slots to maintain, so the transposed read of a
query = reference tile needs no transposed copy. One sort per block orders them when the
block is done (see ranking.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dml.metrics.neighbours.problem import Candidates


def flat_nonzero(mask: Tensor) -> Tensor:
    """Flat indices of True in a contiguous bool tensor whose size is a multiple of 8.

    Few entries are True, so scanning it as int64 words, then only the words holding a
    True, reads it about twice as fast as nonzero() on the bools themselves."""
    words = mask.view(torch.int64).view(-1).nonzero().squeeze(1)
    found = mask.view(-1, 8).index_select(0, words).view(-1).nonzero().squeeze(1)
    return (words.index_select(0, found >> 3) << 3) | (found & 7)


class TileHits:
    """Hits of a square ``tile`` × ``tile`` distance matrix, with reusable buffers (a fresh
    allocation per tile costs page faults comparable to the comparison)."""

    def __init__(self, tile: int, device: torch.device) -> None:
        if tile & (tile - 1) or tile < 8:
            raise ValueError(f"tile must be a power of two of at least 8, got {tile}")
        self.tile = tile
        self.shift = tile.bit_length() - 1
        self.mask = torch.empty(tile, tile, dtype=torch.bool, device=device)

    def __call__(self, dist: Tensor, row_limit: Tensor) -> tuple[Tensor, Tensor]:
        """(flat index row·tile + column, distance) of every entry within its row's limit."""
        flat = flat_nonzero(torch.le(dist, row_limit.unsqueeze(1), out=self.mask))
        return flat, dist.view(-1).index_select(0, flat)


class RowOfTiles:
    """The hits of the tiles one block of rows meets, column tile by column tile.

    A hit is kept as one int64, (column tile << 2·shift) | row·tile + column, so that
    appending a tile's hits is one addition and the row and global column come back by
    shifts and masks."""

    def __init__(self, tile: int, device: torch.device) -> None:
        self.tile = tile
        self.shift = tile.bit_length() - 1
        self.codes: list[Tensor] = [torch.empty(0, dtype=torch.int64, device=device)]
        self.dists: list[Tensor] = [torch.empty(0, device=device)]
        self.size = 0

    def add(self, column_tile: int, flat: Tensor, dist: Tensor) -> None:
        self.codes.append(flat.add_(column_tile << (2 * self.shift)))
        self.dists.append(dist)
        self.size += len(flat)

    def take(self) -> tuple[Tensor, Tensor, Tensor]:
        """(row within the block, global column, distance) of every hit, in tile order."""
        codes, dist = torch.cat(self.codes), torch.cat(self.dists)
        self.codes, self.dists, self.size = self.codes[:1], self.dists[:1], 0
        low = self.tile - 1
        row = (codes >> self.shift) & low
        column = ((codes >> (2 * self.shift)) << self.shift) | (codes & low)
        return row, column, dist


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

    def add(self, block: int, keys: Tensor, cols: Tensor) -> None:
        """``keys`` as :func:`pack` makes them, rows counted from the block's first query;
        ``cols`` the references."""
        if self.dropped[block]:
            return
        self.keys[block].append(keys)
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
