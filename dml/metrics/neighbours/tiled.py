"""The torch backend: every reference within each query's limit, from tiles of distances.

Where the time goes (N = 50k, d = 128): the N²·d matmul, then one comparison and one
mask scan per distance; everything else is per hit (~1.5 % of the distances).

* Limits instead of a top-k. torch.topk costs ~5 ns per element, a comparison ~0.4 ns. So
  each query gets a limit from a random sample of the references, a few standard
  deviations past where its depth-th neighbour should fall, and each tile is filtered by
  comparing against it. A limit that turns out too tight is caught by the ranking, and
  those few queries are searched again with exact limits taken from whole rows of
  distances (``_exact_pass``), so the answer never depends on what the sample drew.
* Query = reference: the matrix is symmetric, so tile (a, c), a < c, is computed once and
  read twice, its rows against block a's limits and its columns against block c's. That
  halves the matmul, which matters most where the matmul is slow. Block c's hits then
  arrive from many tiles before it is complete, so the candidate lists of later blocks
  stay in memory: about N·(candidates per query)·3 bytes at the peak. Past
  SYMMETRIC_BYTES, and whenever query ≠ reference, each block of queries meets every
  reference tile on its own, holding only its own hits.
* Tiles are square and a power of two wide, so a hit's row and column are a shift and a
  mask; the reference side is padded to whole tiles with infinite norms, whose distances
  are infinite and never within a (finite) limit. Exclusions (a query itself, its group)
  are infinite distances too, or, for groups in tiles, hits dropped afterwards.
* Threads: torch's setting as the caller left it, so the search does the same work
  whatever else runs on the machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import torch
from torch import Tensor

from dml.errors import DmlError
from dml.metrics.neighbours import bound
from dml.metrics.neighbours.collect import CandidateLists, Hits, TileHits
from dml.metrics.neighbours.problem import EVERYTHING, Candidates, Problem, pack, round_up

CPU_TILE = 1024
CUDA_TILE = 4096
# Tiles' worth of references in the sample that sets the limits, and the standard
# deviations of slack: more slack means fewer queries searched again but more candidates.
SAMPLE_TILES = 2
THRESHOLD_Z = 2.5
# Query = reference keeps the symmetric schedule while its candidate lists are expected to
# peak below SYMMETRIC_BYTES; CANDIDATE_BYTES caps what they may hold (12 bytes an entry).
SYMMETRIC_BYTES = 2**29
CANDIDATE_BYTES = 2**30
# Bound on the whole rows of distances held by the exact pass.
BLOCK_BYTES = 256 * 2**20


def tile_size(requested: int | None, device: torch.device, n: int) -> int:
    """A power of two: the requested size rounded up, or the device's default, and never
    much wider than the problem."""
    if requested is not None and requested < 1:
        raise DmlError(f"tile must be a positive number of rows, got {requested}")
    wanted = requested or (CUDA_TILE if device.type == "cuda" else CPU_TILE)
    return max(8, 1 << (min(wanted, n) - 1).bit_length())


def _padded(x: Tensor, length: int, fill: float) -> Tensor:
    extra = length - len(x)
    return torch.cat([x, x.new_full((extra, *x.shape[1:]), fill)]) if extra > 0 else x


def distances(
    row_x: Tensor, row_sq: Tensor, col_x: Tensor, col_sq: Tensor, out: Tensor | None = None
) -> Tensor:
    """‖x‖² + ‖y‖² − 2·x·y in float32, in the order bound.py counts on: the product alone
    (no partial sums mixed into the BLAS accumulation), then the norms in two roundings."""
    out = torch.mm(row_x, col_x.T, out=out)
    return torch.add(row_sq.unsqueeze(1), out, alpha=-2.0, out=out).add_(col_sq.unsqueeze(0))


class TiledSearch:
    def __init__(self, p: Problem, tile: int | None) -> None:
        self.p = p
        device = p.query.device
        n_ref = len(p.reference)
        self.tile = tile_size(tile, device, max(len(p.query), n_ref))
        self.hits = TileHits(self.tile, device)
        self.margin = bound.margins(
            p.query, p.reference, norms_in_float32=False, input_unit=bound.matmul_input_unit()
        )
        self.query_sq = bound.squared_norms(p.query)
        self.ref_sq = self.query_sq if p.same_set else bound.squared_norms(p.reference)
        padded = -(-n_ref // self.tile) * self.tile
        self.tile_x = _padded(p.reference, padded, 0.0)
        self.tile_sq = _padded(self.ref_sq, padded, math.inf)
        self.out = torch.empty(self.tile, self.tile, device=device)
        generator = torch.Generator().manual_seed(0)
        sample = torch.randperm(n_ref, generator=generator)[: SAMPLE_TILES * self.tile]
        self.sample = sample.sort().values.to(device)

    def candidates(self, rows: Tensor, attempt: int) -> Iterator[Candidates]:
        if attempt == 0 and len(self.sample) < len(self.p.reference):
            limit = self._sampled_limits(rows)
            if self._symmetric_fits(rows):
                return self._symmetric(rows, limit)
            return self._by_rows(rows, limit)
        if attempt <= 1:
            return self._exact_pass(rows)
        raise RuntimeError(f"{len(rows)} queries incomplete after the exact pass")

    # Limits

    def _sample_rank(self, depth: Tensor) -> Tensor:
        """Which order statistic of the sample to use as each query's limit: of the sample,
        Binomial(S, depth/N) items fall among its depth nearest; THRESHOLD_Z standard
        deviations past that mean is too tight for only a few percent of queries.

        (torch.topk selects in linear time while k ≤ S/64 and sorts a heap past that, at
        twice the cost: at depth = 1 % of N, the default two tiles of sample stay below.)"""
        expected = depth.to(torch.float64) * len(self.sample) / len(self.p.reference)
        rank = torch.floor(expected + THRESHOLD_Z * expected.sqrt()).to(torch.long) + 1
        return rank.clamp_min(1)

    def _hits_per_query(self, rows: Tensor) -> float:
        mean_rank = float(self._sample_rank(self.p.depth[rows]).to(torch.float64).mean())
        return min(len(self.p.reference), mean_rank * len(self.p.reference) / len(self.sample))

    def _symmetric_fits(self, rows: Tensor) -> bool:
        peak = len(self.p.query) * self._hits_per_query(rows) * 3
        return self.p.same_set and peak <= SYMMETRIC_BYTES

    def _exclude(self, dist: Tensor, rows: Tensor, cols: Tensor) -> None:
        """Infinite distance from a query to itself and to its group; ``cols`` sorted."""
        if self.p.same_set:
            at = torch.searchsorted(cols, rows).clamp_max(len(cols) - 1)
            own = (cols[at] == rows).nonzero().squeeze(1)
            dist[own, at[own]] = math.inf
        if self.p.query_groups is not None and self.p.reference_groups is not None:
            same = self.p.query_groups[rows].unsqueeze(1) == self.p.reference_groups[cols]
            dist.masked_fill_(same, math.inf)

    def _limits(self, dist: Tensor, k: Tensor, rows: Tensor) -> Tensor:
        """The k-th smallest distance of each row plus the margin the ranking needs past
        it, or EVERYTHING when the row has fewer than k finite distances."""
        k_max = min(int(k.max()), dist.shape[1])
        values = torch.topk(dist, k_max, dim=1, largest=False).values
        # Rounding near zero makes float32 distances negative; the sort keys (pack) count
        # them as 0, and so must the limit, or the ranking's edge, read off the keys, would
        # lie past it and the query would never be complete.
        kth = values.gather(1, (k.clamp_max(k_max) - 1).unsqueeze(1)).squeeze(1).clamp_min(0.0)
        limit = round_up(kth.to(torch.float64) + self.margin[rows]).clamp_max(EVERYTHING)
        return torch.where((k > dist.shape[1]) | (kth == math.inf), EVERYTHING, limit)

    def _sampled_limits(self, rows: Tensor) -> Tensor:
        x, sq = self.p.reference[self.sample], self.ref_sq[self.sample]
        k = self._sample_rank(self.p.depth[rows])
        limit = torch.empty(len(rows), device=rows.device)
        for start in range(0, len(rows), self.tile):
            part = slice(start, start + self.tile)
            ids = rows[part]
            dist = distances(self.p.query[ids], self.query_sq[ids], x, sq)
            self._exclude(dist, ids, self.sample)
            limit[part] = self._limits(dist, k[part], ids)
        return limit

    # Passes

    def _exact_pass(self, rows: Tensor) -> Iterator[Candidates]:
        """Whole rows of distances: each query's limit is its exact depth-th distance plus
        the margin, read off the same values it then selects from, so it always holds."""
        p = self.p
        everyone = torch.arange(len(p.reference), device=rows.device)
        chunk = max(1, BLOCK_BYTES // (16 * len(p.reference)))
        for part in rows.split(chunk):
            dist = distances(p.query[part], self.query_sq[part], p.reference, self.ref_sq)
            self._exclude(dist, part, everyone)
            limit = self._limits(dist, p.depth[part], part)
            local, cols = (dist <= limit.unsqueeze(1)).nonzero(as_tuple=True)
            keys = pack(local, dist[local, cols])
            yield Candidates(part, limit, keys, cols.to(torch.int32))

    def _add(
        self,
        lists: CandidateLists,
        block: int,
        hits: Hits,
        r0: Tensor | int,
        c0: int,
        per_row: bool,
    ) -> None:
        """Append one tile's hits. The tile's rows are queries ``r0`` (their indices, or the
        first of a run) and its columns references c0, c0 + 1, ...; with ``per_row=False``
        the hits are for the queries of the columns (the transposed read)."""
        high, low, dist = hits
        if per_row:
            query = r0.index_select(0, high) if isinstance(r0, Tensor) else high + r0
            ref = low + c0
        else:
            query, ref = low + c0, high + r0
        if self.p.query_groups is not None and self.p.reference_groups is not None:
            keep = self.p.query_groups[query] != self.p.reference_groups[ref]
            high, low, dist, ref = high[keep], low[keep], dist[keep], ref[keep]
        lists.add(block, high if per_row else low, ref, dist)

    def _symmetric(self, rows: Tensor, sampled: Tensor) -> Iterator[Candidates]:
        t, n, x, sq = self.tile, len(self.p.query), self.tile_x, self.tile_sq
        blocks = len(x) // t
        limit = sq.new_full((blocks * t,), -math.inf)
        limit[rows] = sampled
        lists = CandidateLists(blocks, CANDIDATE_BYTES // 12)
        for a in range(blocks):
            r = slice(a * t, (a + 1) * t)
            for c in range(a, blocks):
                cols = slice(c * t, (c + 1) * t)
                dist = distances(x[r], sq[r], x[cols], sq[cols], self.out)
                if c == a:
                    dist.diagonal().fill_(math.inf)
                    self._add(lists, a, self.hits(dist, limit[r]), a * t, c * t, True)
                    continue
                hits = self.hits(dist, limit[r], limit[cols])
                self._add(lists, a, hits.within(limit[r], True), a * t, c * t, True)
                self._add(lists, c, hits.within(limit[cols], False), a * t, c * t, False)
            block_rows = torch.arange(a * t, min((a + 1) * t, n), device=rows.device)
            yield lists.take(a, block_rows, limit[block_rows])

    def _by_rows(self, rows: Tensor, limit: Tensor) -> Iterator[Candidates]:
        t, p = self.tile, self.p
        for start in range(0, len(rows), t):
            part, part_limit = rows[start : start + t], limit[start : start + t]
            x = _padded(p.query[part], t, 0.0)
            sq = _padded(self.query_sq[part], t, math.inf)
            padded_limit = _padded(part_limit, t, -math.inf)
            padded_rows = _padded(part, t, 0)
            first, last = int(part.min()), int(part.max())
            lists = CandidateLists(1, CANDIDATE_BYTES // 12)
            for c0 in range(0, len(self.tile_x), t):
                cols = slice(c0, c0 + t)
                dist = distances(x, sq, self.tile_x[cols], self.tile_sq[cols], self.out)
                if p.same_set and c0 <= last and first < c0 + t:
                    own = ((part >= c0) & (part < c0 + t)).nonzero().squeeze(1)
                    dist[own, part[own] - c0] = math.inf
                self._add(lists, 0, self.hits(dist, padded_limit), padded_rows, c0, True)
            yield lists.take(0, part, part_limit)

    # Estimate

    def estimate(self, rows: Tensor) -> tuple[float, dict[str, float]]:
        """Seconds and bytes of the search, before it starts: one tile of distances and
        hits is timed (twice; the first also pays page faults and BLAS warm-up) and scaled
        to the number of tiles."""
        t, d, n_ref = self.tile, self.p.query.shape[1], len(self.p.reference)
        hits = self._hits_per_query(rows)
        symmetric = len(self.sample) < n_ref and self._symmetric_fits(rows)
        x, sq = self.tile_x[:t], self.tile_sq[:t]
        dist = distances(x, sq, x, sq, self.out)
        typical = dist[:64, : min(t, n_ref)].quantile(min(1.0, hits / n_ref))
        limit = dist.new_full((t,), float(typical))
        lists = CandidateLists(1, CANDIDATE_BYTES // 12)
        seconds = math.inf
        for _ in range(2):
            begin = time.perf_counter()
            dist = distances(x, sq, x, sq, self.out)
            found = self.hits(dist, limit, limit if symmetric else None)
            for per_row in (True, False) if symmetric else (True,):
                self._add(lists, 0, found.within(limit, per_row), 0, 0, per_row)
            if dist.is_cuda:
                torch.cuda.synchronize(dist.device)
            seconds = min(seconds, time.perf_counter() - begin)
        blocks, ref_blocks = -(-len(rows) // t), len(self.tile_x) // t
        tiles = ref_blocks * (ref_blocks + 1) / 2 if symmetric else blocks * ref_blocks
        held = len(self.p.query) * hits * 3 if symmetric else t * hits * 12
        sizes = {
            "embeddings": len(self.tile_x) * (d + 1) * 4.0,
            "candidate lists": held,
            "tiles": t * t * 9.0,
            "whole rows for the exact pass": float(BLOCK_BYTES),
        }
        return tiles * seconds, sizes
