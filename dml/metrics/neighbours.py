"""Exact ranked neighbours for retrieval metrics, in bounded memory and without a full sort.

What the metrics need from each query is short: whether each of its ``depth`` nearest
references (``depth`` = max(R, largest k)) shares its label, in the order of squared
Euclidean distance, equal distances broken by reference index. Three costs dominate:

* the distances themselves (N²·d multiply-adds). With query = reference the matrix is
  symmetric, so each tile is computed once and read for both its rows and its columns;
* choosing the nearest ``depth`` of N: torch.topk/sort cost 15-60 ns per element on CPU,
  a comparison with a threshold 0.5 ns. So each query gets a threshold from a random
  sample of the references, set a few standard deviations past the expected depth-th
  distance; every tile then only keeps (comparison + nonzero) the few items below it;
* ordering those candidates: one topk of int64 keys (distance bits, then index) per row
  gives exactly the tie order by index, with no second stable sort.

A threshold that turns out too tight (fewer than ``depth`` candidates) or too loose (more
than the buffer holds) is detected afterwards, and only those queries are recomputed
against the whole reference set, so the answer is exact whatever the sample drew.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from dml.errors import DmlError

log = logging.getLogger(__name__)

# Sort key for an empty slot: after every real (distance, index) key.
_PAD = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF
# Standard deviations of slack: in the sampled threshold (more slack = fewer recomputed
# queries but more candidates), and in the candidate buffer's width.
THRESHOLD_Z = 2.5
CAPACITY_Z = 4.0
# Rows and columns per distance tile. CPU tiles this size stay in cache and run the
# matmul about twice as fast as tiles a full row wide; GPUs want bigger launches.
CPU_TILE = 1024
CUDA_TILE = 4096
# The threshold sample is this many tiles.
SAMPLE_TILES = 4
# Query = reference reuses each tile for its columns only when the candidate buffers of all
# rows (which then live at once) fit in this; otherwise rows are done one block at a time.
SYMMETRIC_BUFFER_BYTES = 2 * 2**30
# Bound on one block's candidate buffer, and on the distance rows of recomputed queries.
BLOCK_BYTES = 256 * 2**20
# Below this many distances an evaluation is not worth a log line.
LOG_ABOVE_PAIRS = 10**8


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


def ranked_matches(problem: Problem, backend: str, tile: int | None) -> Iterator[RankedBlock]:
    if backend == "faiss":
        return _faiss_ranked(problem)
    if backend != "torch":
        raise DmlError(f"backend must be 'torch' or 'faiss', got {backend!r}")
    if tile is None:
        tile = CUDA_TILE if problem.query.is_cuda else CPU_TILE
    if tile < 1:
        raise DmlError(f"tile must be a positive number of rows, got {tile}")
    return _TiledSearch(problem, tile).run()


def _keys(dist: Tensor, ref_index: Tensor) -> Tensor:
    """int64 keys ordered like (distance, reference index).

    A non-negative float32's bit pattern orders like its value; negative distances (matmul
    rounding near zero) and -0.0 count as 0, as in faiss.
    """
    bits = dist.contiguous().view(torch.int32).clamp_min(0).to(torch.int64)
    return (bits << 32) | ref_index.to(torch.int64)


def _matches(top_keys: Tensor, ref_labels: Tensor, labels: Tensor) -> Tensor:
    ref_index = (top_keys & _LOW32).clamp_max(len(ref_labels) - 1)
    return (top_keys != _PAD) & (ref_labels[ref_index] == labels.unsqueeze(1))


def _padded(x: Tensor, multiple: int) -> Tensor:
    rows = -len(x) % multiple
    return torch.cat([x, x.new_zeros((rows, *x.shape[1:]))]) if rows else x


class _TiledSearch:
    """The torch backend. Rows are queries and columns references, each in its own order:
    the references are shuffled once, so any slice of them is a random sample.

    Every distance comes from a matmul of one fixed shape (tile × dim × tile, zero-padded
    at the edges): BLAS picks its kernel, hence its rounding, by shape, and two copies of
    a point must get bitwise equal distances to tie exactly wherever they sit."""

    def __init__(self, p: Problem, tile: int) -> None:
        self.p = p
        n_rows, n_ref = len(p.query), len(p.reference)
        self.n_rows, self.n_ref = n_rows, n_ref
        self.tile = min(tile, -(-max(n_rows, n_ref) // 16) * 16)
        device = p.query.device
        generator = torch.Generator().manual_seed(0)
        perm = torch.randperm(n_ref, generator=generator).to(device)
        self.col_ids = perm
        self.col_groups = None if p.reference_groups is None else p.reference_groups[perm]
        col = p.reference[perm]
        self.col_x = _padded(col, self.tile)
        self.col_sq = _padded((col * col).sum(1), self.tile)
        # Query = reference: rows are the same shuffled items, so tile (i, j) is tile (j, i)ᵀ.
        if p.same_set:
            self.row_ids, self.row_groups = perm, self.col_groups
            self.row_labels, self.row_depth = p.reference_labels[perm], p.depth[perm]
            self.row_x, self.row_sq = self.col_x, self.col_sq
        else:
            self.row_ids = torch.arange(n_rows, device=device)
            self.row_groups = p.query_groups
            self.row_labels, self.row_depth = p.query_labels, p.depth
            self.row_x = _padded(p.query, self.tile)
            self.row_sq = _padded((p.query * p.query).sum(1), self.tile)
        self.sample_tiles = min(SAMPLE_TILES, -(-n_ref // self.tile))
        self.sample = min(n_ref, self.sample_tiles * self.tile)
        self.sample_k = self._sample_k(self.row_depth)
        self.capacity = self._capacity()

    def run(self) -> Iterator[RankedBlock]:
        symmetric_bytes = self.n_rows * self.capacity * 8
        symmetric = self.p.same_set and symmetric_bytes <= SYMMETRIC_BUFFER_BYTES
        if self.n_rows * self.n_ref >= LOG_ABOVE_PAIRS:
            self._log_estimate(
                symmetric, symmetric_bytes if symmetric else self.tile * self.capacity * 8
            )
        return self._symmetric() if symmetric else self._by_row_block()

    def _sample_k(self, depth: Tensor) -> Tensor:
        """Which order statistic of the sample to use as each row's threshold.

        Of the sample's items, Binomial(sample, depth/N) fall among a row's ``depth``
        nearest; the threshold sits THRESHOLD_Z standard deviations past that mean, so it
        is too tight for only a few percent of rows."""
        expected = depth.to(torch.float64) * self.sample / self.n_ref
        k = torch.floor(expected + THRESHOLD_Z * expected.sqrt()).to(torch.long) + 2
        return torch.where(depth > 0, k.clamp_min(1), 0)

    def _capacity(self) -> int:
        """Candidate slots per row: the expected count below the threshold plus slack."""
        k = self.sample_k.clamp_min(1).to(torch.float64)
        expected = k * self.n_ref / self.sample
        wanted = expected * (1 + CAPACITY_Z / k.sqrt())
        return int(min(self.n_ref, math.ceil(float(wanted.max())) + 16))

    def _log_estimate(self, symmetric: bool, buffer_bytes: int) -> None:
        start = time.perf_counter()
        probe = self._tile(0, 0)
        (probe <= probe[:, :1]).nonzero()
        if probe.is_cuda:
            torch.cuda.synchronize(probe.device)
        seconds_per_pair = (time.perf_counter() - start) / probe.numel()
        pairs = self.n_rows * self.n_ref / (2 if symmetric else 1)
        log.info(
            "Retrieval metrics for %d queries × %d references: about %.0f MiB of neighbour "
            "buffers and %.0f s (from one timed tile; %s distance matrix).",
            self.n_rows,
            self.n_ref,
            buffer_bytes / 2**20,
            pairs * seconds_per_pair,
            "half of a symmetric" if symmetric else "the full",
        )

    # Distances

    def _tile_into(self, out: Tensor, row_x: Tensor, row_sq: Tensor, c0: int) -> None:
        """(|x|² + |y|²) − 2·x·y, faiss' arithmetic, bitwise symmetric in x and y."""
        t = self.tile
        torch.add(row_sq.unsqueeze(1), self.col_sq[c0 : c0 + t].unsqueeze(0), out=out)
        out.addmm_(row_x, self.col_x[c0 : c0 + t].T, alpha=-2.0)

    def _tile(self, r0: int, c0: int) -> Tensor:
        """Rows [r0, r0 + tile) × columns [c0, c0 + tile), cut to the real items."""
        t = self.tile
        out = self.row_x.new_empty(t, t)
        self._tile_into(out, self.row_x[r0 : r0 + t], self.row_sq[r0 : r0 + t], c0)
        return out[: min(t, self.n_rows - r0), : min(t, self.n_ref - c0)]

    def _strip(self, r0: int, row_tiles: int, c0: int, col_tiles: int) -> Tensor:
        t = self.tile
        out = self.row_x.new_empty(row_tiles * t, col_tiles * t)
        for i in range(row_tiles):
            rows = slice(r0 + i * t, r0 + (i + 1) * t)
            for j in range(col_tiles):
                view = out[i * t : (i + 1) * t, j * t : (j + 1) * t]
                self._tile_into(view, self.row_x[rows], self.row_sq[rows], c0 + j * t)
        return out[: min(row_tiles * t, self.n_rows - r0), : min(col_tiles * t, self.n_ref - c0)]

    # Thresholds and candidates

    def _exclude(self, dist: Tensor, rows: Tensor | slice, cols: slice) -> None:
        """Infinite distance for pairs that are never neighbours: a query and itself, and
        a query and its own group."""
        if self.p.same_set:
            same = self.row_ids[rows].unsqueeze(1) == self.col_ids[cols].unsqueeze(0)
            dist.masked_fill_(same, math.inf)
        if self.row_groups is not None and self.col_groups is not None:
            same = self.row_groups[rows].unsqueeze(1) == self.col_groups[cols].unsqueeze(0)
            dist.masked_fill_(same, math.inf)

    def _thresholds(self, sample_dist: Tensor, rows: slice) -> Tensor:
        k = self.sample_k[rows]
        width = sample_dist.shape[1]
        k_max = min(int(k.max()), width)
        if k_max == 0:
            return sample_dist.new_full((len(k),), -math.inf)
        values = torch.topk(sample_dist, k_max, dim=1, largest=False, sorted=True).values
        picked = values.gather(1, (k.clamp(1, k_max) - 1).unsqueeze(1)).squeeze(1)
        picked = torch.where(k > width, math.inf, picked)
        return torch.where(k > 0, picked, -math.inf)

    def _collect(
        self, buffer: _Buffer, row_start: int, dist: Tensor, threshold: Tensor, col_start: int
    ) -> None:
        """Append every (row, column) of the tile at or below the row's threshold."""
        rows, cols = (dist <= threshold.unsqueeze(1)).nonzero(as_tuple=True)
        global_rows = rows + row_start
        global_cols = cols + col_start
        keep = None
        if self.p.same_set:
            keep = self.row_ids[global_rows] != self.col_ids[global_cols]
        if self.row_groups is not None and self.col_groups is not None:
            other_group = self.row_groups[global_rows] != self.col_groups[global_cols]
            keep = other_group if keep is None else keep & other_group
        if keep is not None:
            rows, cols, global_cols = rows[keep], cols[keep], global_cols[keep]
        buffer.append(rows + row_start, global_cols, dist[rows, cols])

    def _finish(self, buffer: _Buffer, start: int, stop: int) -> Iterator[RankedBlock]:
        """Rank the buffered candidates of rows [start, stop); recompute the rows whose
        threshold missed."""
        depth = self.row_depth[start:stop]
        count = buffer.count[start - buffer.offset : stop - buffer.offset]
        wanted = depth > 0
        complete = wanted & (count >= depth) & (count <= buffer.capacity)
        if bool(complete.any()):
            local = complete.nonzero().squeeze(1)
            slots = local + (start - buffer.offset)
            dist, cols = buffer.dist[slots], buffer.cols[slots]
            filled = torch.arange(buffer.capacity, device=dist.device) < count[local].unsqueeze(1)
            ref_index = self.col_ids[torch.where(filled, cols, 0).long()]
            keys = torch.where(filled, _keys(dist, ref_index), _PAD)
            top = torch.topk(keys, int(depth[local].max()), dim=1, largest=False).values
            rows = local + start
            yield self.row_ids[rows], _matches(top, self.p.reference_labels, self.row_labels[rows])
        missed = (wanted & ~complete).nonzero().squeeze(1) + start
        if len(missed):
            yield from self._exact(missed)

    def _exact(self, rows: Tensor) -> Iterator[RankedBlock]:
        """Whole-row recomputation for the few rows whose sampled threshold missed."""
        t = self.tile
        width = len(self.col_x)
        for part in rows.split(t):
            row_x = self.row_x.new_zeros(t, self.row_x.shape[1])
            row_sq = self.row_sq.new_zeros(t)
            row_x[: len(part)], row_sq[: len(part)] = self.row_x[part], self.row_sq[part]
            dist = self.row_x.new_empty(t, width)
            for c0 in range(0, width, t):
                self._tile_into(dist[:, c0 : c0 + t], row_x, row_sq, c0)
            dist = dist[: len(part), : self.n_ref]
            self._exclude(dist, part, slice(0, self.n_ref))
            depth = self.row_depth[part]
            kth = torch.topk(dist, int(depth.max()), dim=1, largest=False, sorted=True).values
            threshold = kth.gather(1, (depth - 1).unsqueeze(1))
            r, c = ((dist <= threshold) & (dist < math.inf)).nonzero(as_tuple=True)
            counts = torch.bincount(r, minlength=len(part))
            slot = torch.arange(len(r), device=r.device) - (counts.cumsum(0) - counts)[r]
            keys = torch.full((len(part), int(counts.max())), _PAD, device=dist.device)
            keys[r, slot] = _keys(dist[r, c], self.col_ids[c])
            top = torch.topk(keys, min(int(depth.max()), keys.shape[1]), dim=1, largest=False)
            labels = self.row_labels[part]
            yield self.row_ids[part], _matches(top.values, self.p.reference_labels, labels)

    # Tile schedules

    def _symmetric(self) -> Iterator[RankedBlock]:
        """Query = reference: tile (i, j) with i ≤ j serves rows i and, transposed, rows j.

        The first tiles are the threshold sample: their strip against every later block
        gives each later row its sampled distances before any of its other tiles."""
        n, t, h = self.n_rows, self.tile, self.sample_tiles
        buffer = _Buffer(n, self.capacity, 0, self.row_x.device)
        threshold = self.row_x.new_empty(n)
        head = slice(0, self.sample)
        first = self._strip(0, h, 0, h)
        self._exclude(first, head, head)
        threshold[head] = self._thresholds(first, head)
        self._collect(buffer, 0, first, threshold[head], 0)
        for a in range(self.sample, n, t):
            b = min(a + t, n)
            strip = self._strip(0, h, a, 1)
            self._collect(buffer, 0, strip, threshold[head], a)
            transposed = strip.T.contiguous()
            self._exclude(transposed, slice(a, b), head)
            threshold[a:b] = self._thresholds(transposed, slice(a, b))
            self._collect(buffer, a, transposed, threshold[a:b], 0)
        yield from self._finish(buffer, 0, self.sample)
        for a in range(self.sample, n, t):
            for c in range(a, n, t):
                dist = self._tile(a, c)
                self._collect(buffer, a, dist, threshold[a : a + t], c)
                if c != a:
                    self._collect(buffer, c, dist.T.contiguous(), threshold[c : c + t], a)
            yield from self._finish(buffer, a, min(a + t, n))

    def _by_row_block(self) -> Iterator[RankedBlock]:
        t, h = self.tile, self.sample_tiles
        buffer = _Buffer(t, self.capacity, 0, self.row_x.device)
        for a in range(0, self.n_rows, t):
            rows = slice(a, min(a + t, self.n_rows))
            buffer.reset(a)
            first = self._strip(a, 1, 0, h)
            self._exclude(first, rows, slice(0, self.sample))
            threshold = self._thresholds(first, rows)
            self._collect(buffer, a, first, threshold, 0)
            for c in range(self.sample, self.n_ref, t):
                self._collect(buffer, a, self._tile(a, c), threshold, c)
            yield from self._finish(buffer, rows.start, rows.stop)


class _Buffer:
    """Fixed-width candidate slots per row: (distance, column). A row that overflows keeps
    counting, so _finish can tell it from a complete one and recompute it."""

    def __init__(self, rows: int, capacity: int, offset: int, device: torch.device) -> None:
        self.capacity = capacity
        self.offset = offset
        self.dist = torch.empty(rows, capacity, device=device)
        self.cols = torch.empty(rows, capacity, dtype=torch.int32, device=device)
        self.count = torch.zeros(rows, dtype=torch.long, device=device)

    def reset(self, offset: int) -> None:
        self.offset = offset
        self.count.zero_()

    def append(self, rows: Tensor, cols: Tensor, dist: Tensor) -> None:
        """Rows must come in non-decreasing order (as nonzero() returns them)."""
        local = rows - self.offset
        per_row = torch.bincount(local, minlength=len(self.count))
        first_of_row = per_row.cumsum(0) - per_row
        rank = torch.arange(len(local), device=local.device) - first_of_row[local]
        slot = self.count[local] + rank
        fits = slot < self.capacity
        self.dist[local[fits], slot[fits]] = dist[fits]
        self.cols[local[fits], slot[fits]] = cols[fits].to(torch.int32)
        self.count += per_row


def _faiss_ranked(p: Problem) -> Iterator[RankedBlock]:
    """faiss IndexFlatL2 (what PML uses) for the search; the ranking is then the same keys.

    faiss cannot skip a query's own group, so it asks for as many extra neighbours as the
    largest reference group and drops them afterwards; the answer stays exact."""
    try:
        import faiss
    except ModuleNotFoundError as error:
        raise DmlError("backend='faiss' needs the faiss package: pip install faiss-cpu") from error
    device = p.query.device
    index = faiss.IndexFlatL2(p.reference.shape[1])
    index.add(p.reference.cpu().contiguous().numpy())
    extra = 1 if p.same_set else 0
    if p.reference_groups is not None:
        extra = int(torch.unique(p.reference_groups, return_counts=True)[1].max())
    n_ref = len(p.reference)
    wanted = (p.depth > 0).nonzero().squeeze(1)
    k_max = min(n_ref, int(p.depth.max()) + extra) if len(wanted) else 1
    for part in wanted.split(max(1, BLOCK_BYTES // (12 * k_max))):
        k = min(n_ref, int(p.depth[part].max()) + extra)
        dist, index_ = index.search(p.query[part].cpu().contiguous().numpy(), k)
        dist = torch.from_numpy(dist).to(device)
        found = torch.from_numpy(index_).to(device)
        drop = found < 0
        if p.same_set:
            drop |= found == part.unsqueeze(1)
        if p.query_groups is not None and p.reference_groups is not None:
            drop |= p.reference_groups[found.clamp_min(0)] == p.query_groups[part].unsqueeze(1)
        keys = torch.where(drop, _PAD, _keys(dist, found.clamp_min(0)))
        top = torch.topk(keys, min(int(p.depth[part].max()), k), dim=1, largest=False).values
        yield part, _matches(top, p.reference_labels, p.query_labels[part])
