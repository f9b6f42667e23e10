"""The torch backend: every reference within each query's limit, from tiles of distances.

Where the time goes (N = 50k, d = 128, query = reference; a one-thread CPU-time profile
on a busy AMD EPYC, so proportions only): about 40 % in the matmul (half of the N²·d
multiply-adds, the symmetric schedule), 20 % in one norm addition, one comparison and
one mask scan per distance, and the rest per hit (a few percent of the distances) or per
query: the sampled limits, the sort and float64 step of the ranking, and the queries
searched again.

* Limits instead of a top-k. torch.topk costs ~5 ns per element, a comparison ~0.4 ns. So
  each query gets a limit from a random sample of the references, a few standard
  deviations past where its depth-th neighbour should fall, and each tile is filtered by
  comparing against it. A limit that turns out too tight is caught by the ranking, and
  those few queries are searched again with exact limits taken from whole rows of
  distances (``_exact_pass``), so the answer never depends on what the sample drew.
* Query = reference: the matrix is symmetric, so each tile is computed once and read
  twice (symmetric.py), while the candidate lists that holds at its peak stay under
  SYMMETRIC_BYTES. Otherwise, and whenever query ≠ reference, each block of queries
  meets every reference tile on its own, holding only its own hits.
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
from dml.metrics.neighbours.bound import distances
from dml.metrics.neighbours.collect import CandidateLists, RowOfTiles, TileHits
from dml.metrics.neighbours.problem import (
    EVERYTHING,
    Candidates,
    Problem,
    pack,
    padded,
    round_up,
)
from dml.metrics.neighbours.symmetric import SymmetricSchedule

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
# Hits held between tiles before their per-hit work is done (12 bytes each).
PENDING_HITS = 2**22
# Bound on the whole rows of distances held by the exact pass.
BLOCK_BYTES = 256 * 2**20


def tile_size(requested: int | None, device: torch.device, n: int) -> int:
    """A power of two: the requested size rounded up, or the device's default, and never
    much wider than the problem."""
    if requested is not None and requested < 1:
        raise DmlError(f"tile must be a positive number of rows, got {requested}")
    wanted = requested or (CUDA_TILE if device.type == "cuda" else CPU_TILE)
    return max(8, 1 << (min(wanted, n) - 1).bit_length())


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
        self.ref_blocks = -(-n_ref // self.tile)
        self.out = torch.empty(self.tile, self.tile, device=device)
        generator = torch.Generator().manual_seed(0)
        sample = torch.randperm(n_ref, generator=generator)[: SAMPLE_TILES * self.tile]
        self.sample = sample.sort().values.to(device)

    def candidates(self, rows: Tensor, attempt: int) -> Iterator[Candidates]:
        if attempt == 0 and len(self.sample) < len(self.p.reference):
            limit = self._sampled_limits(rows)
            if self._symmetric_fits(rows):
                schedule = SymmetricSchedule(
                    self.p, self.query_sq, self.hits, self.out, CANDIDATE_BYTES // 12, PENDING_HITS
                )
                return schedule.candidates(rows, limit)
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

    def _groups_differ(self, query: Tensor, ref: Tensor) -> Tensor | None:
        if self.p.query_groups is None or self.p.reference_groups is None:
            return None
        return self.p.query_groups.index_select(0, query) != self.p.reference_groups.index_select(
            0, ref
        )

    def _file_rows(self, lists: CandidateLists, found: RowOfTiles, queries: Tensor) -> None:
        """Pending hits into the one block of the row schedule; ``queries`` by tile row."""
        row, column, dist = found.take()
        other_group = self._groups_differ(queries.index_select(0, row), column)
        if other_group is not None:
            at = other_group.nonzero().squeeze(1)
            row, column, dist = (part.index_select(0, at) for part in (row, column, dist))
        lists.add(0, pack(row, dist), column)

    def _by_rows(self, rows: Tensor, limit: Tensor) -> Iterator[Candidates]:
        t, p = self.tile, self.p
        found = RowOfTiles(t, rows.device)
        ref_x = padded(p.reference, self.ref_blocks * t, 0.0)
        ref_sq = padded(self.ref_sq, self.ref_blocks * t, math.inf)
        for start in range(0, len(rows), t):
            part, part_limit = rows[start : start + t], limit[start : start + t]
            x = padded(p.query[part], t, 0.0)
            sq = padded(self.query_sq[part], t, math.inf)
            padded_limit = padded(part_limit, t, -math.inf)
            padded_rows = padded(part, t, 0)
            first, last = int(part.min()), int(part.max())
            lists = CandidateLists(1, CANDIDATE_BYTES // 12)
            for c in range(self.ref_blocks):
                cols = slice(c * t, (c + 1) * t)
                dist = distances(x, sq, ref_x[cols], ref_sq[cols], self.out)
                if p.same_set and c * t <= last and first < (c + 1) * t:
                    own = ((part >= c * t) & (part < (c + 1) * t)).nonzero().squeeze(1)
                    dist[own, part[own] - c * t] = math.inf
                found.add(c, *self.hits(dist, padded_limit))
                if found.size >= PENDING_HITS:
                    self._file_rows(lists, found, padded_rows)
            self._file_rows(lists, found, padded_rows)
            yield lists.take(0, part, part_limit)

    # Estimate

    def estimate(self, rows: Tensor) -> tuple[float, dict[str, float]]:
        """Seconds and bytes of the search, before it starts: one tile of distances and
        hits is timed (twice; the first also pays page faults and BLAS warm-up) and scaled
        to the number of tiles."""
        t, d, n_ref = self.tile, self.p.query.shape[1], len(self.p.reference)
        hits = self._hits_per_query(rows)
        symmetric = len(self.sample) < n_ref and self._symmetric_fits(rows)
        x = padded(self.p.reference[:t], t, 0.0)
        sq = padded(self.ref_sq[:t], t, math.inf)
        dist = distances(x, sq, x, sq, self.out)
        typical = dist[:64, : min(t, n_ref)].quantile(min(1.0, hits / n_ref))
        limit = dist.new_full((t,), float(typical))
        lists = CandidateLists(1, CANDIDATE_BYTES // 12)
        found = RowOfTiles(t, x.device)
        seconds = math.inf
        for _ in range(2):
            begin = time.perf_counter()
            dist = distances(x, sq, x, sq, self.out)
            found.add(0, *self.hits(dist, limit))
            self._file_rows(lists, found, torch.arange(t, device=dist.device))
            if dist.is_cuda:
                torch.cuda.synchronize(dist.device)
            seconds = min(seconds, time.perf_counter() - begin)
        blocks, ref_blocks = -(-len(rows) // t), self.ref_blocks
        tiles = ref_blocks * (ref_blocks + 1) / 2 if symmetric else blocks * ref_blocks
        held = len(self.p.query) * hits * 3 if symmetric else t * hits * 12
        sizes = {
            "embeddings": ref_blocks * t * (d + 1) * 4.0,
            "candidate lists": held,
            "tiles": t * t * 9.0,
            "whole rows for the exact pass": float(BLOCK_BYTES),
        }
        return tiles * seconds, sizes
