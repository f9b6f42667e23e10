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
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
# Tiles per strip: the selection works on a strip of tiles at once, which divides the
# number of small torch calls (each a possible stall when other processes hold the cores)
# while the strip still fits in cache. The threshold sample is the first strip of columns.
STRIP_TILES = 4
# Query = reference reuses each tile for its columns only when the candidate buffers of all
# rows (which then live at once) fit in this; otherwise rows are done one block at a time.
SYMMETRIC_BUFFER_BYTES = 2 * 2**30
# Bound on one block's candidate buffer, and on the distance rows of recomputed queries.
BLOCK_BYTES = 256 * 2**20
# From this many distances on (10k × 10k), an evaluation logs its time and memory first.
LOG_ABOVE_PAIRS = 10**8
# Queries faiss searches, once more, to time the search before it starts.
FAISS_PROBE_QUERIES = 256


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


BACKENDS = ("torch", "faiss")


def check_backend(backend: str, setting: str = "backend") -> None:
    """Fail before any work on a backend that cannot run here; ``setting`` is the name the
    user knows it by (``eval.backend`` in a config)."""
    if backend not in BACKENDS:
        raise DmlError(f"{setting}={backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "faiss":
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise DmlError(
                f"{setting}=faiss needs the faiss package, which is not installed: "
                "pip install faiss-cpu (or use torch, which gives the same numbers)"
            ) from None


def ranked_matches(problem: Problem, backend: str, tile: int | None) -> Iterator[RankedBlock]:
    check_backend(backend)
    if backend == "faiss":
        return _faiss_ranked(problem)
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


def _search_threads(device: torch.device) -> int:
    """torch's thread count, or 1 when more processes want the CPU than it has cores.

    The search is thousands of mid-sized torch calls, and a multi-threaded call waits for
    its slowest thread; when the cores are oversubscribed (load average above the cores
    this process may use), each call can stall for a scheduler slice. Measured at N=50k
    on a shared 2-core machine (load 3-5): 140 s with 2 threads, 28 s with 1; on 2 idle
    cores: 11.6 s with 2 threads, 17.7 s with 1."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        return threads
    try:
        busy = os.getloadavg()[0] > len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        busy = False
    log.debug("Retrieval neighbour search on %d thread(s).", 1 if busy else threads)
    return 1 if busy else threads


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block, then restored."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


def _padded(x: Tensor, length: int, fill: float) -> Tensor:
    extra = length - len(x)
    return torch.cat([x, x.new_full((extra, *x.shape[1:]), fill)]) if extra else x


def _flat_nonzero(mask: Tensor) -> Tensor:
    """Flat indices of True in a contiguous bool tensor whose size is a multiple of 8.

    Few entries are True, so scanning it as int64 words, then only the words holding a
    True, reads it about 8 times faster than nonzero() on the bools themselves."""
    words = mask.view(torch.int64).view(-1).nonzero().squeeze(1)
    word, bit = mask.view(-1, 8).index_select(0, words).nonzero(as_tuple=True)
    return words.index_select(0, word) * 8 + bit


class _TiledSearch:
    """The torch backend. Rows are queries and columns references, each in its own order:
    the references are shuffled once, so their first columns are a random sample.

    Every distance comes from a matmul of one fixed shape (tile × dim × tile): BLAS picks
    its kernel, hence its rounding, by shape, and copies of a point must get bitwise equal
    distances to tie exactly wherever they sit. So both sides are padded to whole tiles;
    padding has infinite norm, hence infinite distance, and thresholds stay finite, so
    padding is never a candidate. Strip-sized work buffers are allocated once: a fresh
    allocation per strip costs page faults comparable to the comparison itself."""

    def __init__(self, p: Problem, tile: int) -> None:
        self.p = p
        n_rows, n_ref = len(p.query), len(p.reference)
        self.n_rows, self.n_ref = n_rows, n_ref
        t = min(-(-tile // 16) * 16, -(-max(n_rows, n_ref) // 16) * 16)
        self.tile = t
        device = p.query.device
        generator = torch.Generator().manual_seed(0)
        perm = torch.randperm(n_ref, generator=generator).to(device)
        ref_pad = -(-n_ref // t) * t
        # Padding ids and groups (-1, -2) match no real item and no padding of the other side.
        self.col_ids = _padded(perm, ref_pad, -1)
        self.col_groups = None
        if p.reference_groups is not None:
            self.col_groups = _padded(p.reference_groups[perm], ref_pad, -1)
        col = p.reference[perm]
        self.col_x = _padded(col, ref_pad, 0.0)
        self.col_sq = _padded((col * col).sum(1), ref_pad, math.inf)
        # Query = reference: rows are the same shuffled items, so tile (i, j) is tile (j, i)ᵀ.
        if p.same_set:
            self.row_ids, self.row_groups = self.col_ids, self.col_groups
            self.row_labels = p.reference_labels[perm]
            self.row_x, self.row_sq = self.col_x, self.col_sq
            depth = p.depth[perm]
        else:
            row_pad = -(-n_rows // t) * t
            self.row_ids = _padded(torch.arange(n_rows, device=device), row_pad, -2)
            self.row_groups = None
            if p.query_groups is not None:
                self.row_groups = _padded(p.query_groups, row_pad, -2)
            self.row_labels = p.query_labels
            self.row_x = _padded(p.query, row_pad, 0.0)
            self.row_sq = _padded((p.query * p.query).sum(1), row_pad, math.inf)
            depth = p.depth
        self.row_depth = _padded(depth, len(self.row_x), 0)
        self.strip_tiles = min(STRIP_TILES, ref_pad // t)
        self.sample = min(n_ref, self.strip_tiles * t)
        self.sample_k = self._sample_k(self.row_depth)
        self.capacity = self._capacity()
        self.symmetric = (
            p.same_set and len(self.row_x) * self.capacity * 8 <= SYMMETRIC_BUFFER_BYTES
        )
        self.strip = torch.empty(t * self.strip_tiles * t, device=device)
        self.row_mask = torch.empty(t * self.strip_tiles * t, dtype=torch.bool, device=device)
        self.col_mask = torch.empty_like(self.row_mask)

    def run(self) -> Iterator[RankedBlock]:
        with _threads(_search_threads(self.row_x.device)):
            if self.n_rows * self.n_ref >= LOG_ABOVE_PAIRS:
                self._log_estimate()
            yield from self._symmetric() if self.symmetric else self._by_row_block()

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

    def _log_estimate(self) -> None:
        """Time and peak memory of the search, logged before it starts, so that a user who
        asked for more than the machine gives sees it at once, not hours later.

        Time: one strip of distances and selection against the first row block's real
        thresholds is timed (twice: the first also pays page faults and BLAS warm-up) and
        scaled to the number of distances computed. Memory: the sizes of what the search
        allocates; the recomputation block is only used if a sampled threshold misses,
        which at large N some always do."""
        t, d = self.tile, self.row_x.shape[1]
        threshold = self._thresholds(self._sample_strip(0), 0)
        wanted = threshold[threshold > -math.inf]
        typical = wanted.median() if len(wanted) else threshold.new_tensor(-math.inf)
        seconds = math.inf
        for _ in range(2):
            start = time.perf_counter()
            strip = self._strip(0, 0, self.strip_tiles)
            rows = self._mask(self.row_mask, *strip.shape)
            _flat_nonzero(torch.le(strip, threshold.unsqueeze(1), out=rows))
            if self.symmetric:
                # Query = reference also reads every strip for its columns, transposed.
                columns = self._mask(self.col_mask, strip.shape[1], strip.shape[0])
                _flat_nonzero(columns.copy_(torch.le(strip, typical, out=rows).T))
            if strip.is_cuda:
                torch.cuda.synchronize(strip.device)
            seconds = min(seconds, time.perf_counter() - start)
        pairs = len(self.row_x) * len(self.col_x) / (2 if self.symmetric else 1)
        copies = len(self.col_x) + (0 if self.p.same_set else len(self.row_x))
        mib = {
            "embeddings": copies * (d + 1) * 4,
            "candidate buffers": (len(self.row_x) if self.symmetric else t) * self.capacity * 8,
            "distance strips": self.strip.numel() * 6,
            # Distances (4 bytes) and three masks (1 byte each) of one block of rows.
            "recomputation": t * len(self.col_x) * 7,
        }
        log.info(
            "Retrieval metrics for %d queries × %d references (dimension %d): about %.0f s "
            "and %.0f MiB (%s). Time from one timed strip of %d×%d distances (%.1f ns per "
            "distance, %.1e distances; the matmuls alone are %.1e FLOP).",
            self.n_rows,
            self.n_ref,
            d,
            pairs * seconds / strip.numel(),
            sum(mib.values()) / 2**20,
            ", ".join(f"{name} {size / 2**20:.0f}" for name, size in mib.items()),
            *strip.shape,
            seconds / strip.numel() * 1e9,
            pairs,
            2 * pairs * d,
        )

    # Distances

    def _distances_into(self, out: Tensor, row_x: Tensor, row_sq: Tensor, c0: int) -> None:
        """(|x|² + |y|²) − 2·x·y against columns [c0, c0 + width), faiss' arithmetic and
        bitwise symmetric in x and y; one fixed-shape matmul per tile."""
        t, width = self.tile, out.shape[1]
        torch.add(row_sq.unsqueeze(1), self.col_sq[c0 : c0 + width].unsqueeze(0), out=out)
        for j in range(0, width, t):
            cols = slice(c0 + j, c0 + j + t)
            out[:, j : j + t].addmm_(row_x, self.col_x[cols].T, alpha=-2.0)

    def _strip(self, r0: int, c0: int, tiles: int) -> Tensor:
        """Rows [r0, r0 + tile) × columns [c0, c0 + tiles·tile).

        The selection then works on the whole strip: fewer, larger torch calls, each of
        which can stall when other processes hold the cores its threads wait on."""
        t = self.tile
        out = self.strip[: t * tiles * t].view(t, tiles * t)
        self._distances_into(out, self.row_x[r0 : r0 + t], self.row_sq[r0 : r0 + t], c0)
        return out

    def _sample_strip(self, r0: int) -> Tensor:
        """Rows [r0, r0 + tile) against the sample columns, never-neighbours at infinity."""
        strip = self._strip(r0, 0, self.strip_tiles)
        rows = slice(r0, r0 + self.tile)
        cols = slice(0, strip.shape[1])
        self._exclude(strip, rows, cols, self_possible=not self.symmetric or r0 < self.sample)
        return strip

    def _mask(self, buffer: Tensor, rows: int, cols: int) -> Tensor:
        return buffer[: rows * cols].view(rows, cols)

    # Thresholds and candidates

    def _exclude(
        self, dist: Tensor, rows: slice | Tensor, cols: slice, self_possible: bool
    ) -> None:
        """Infinite distance for pairs that are never neighbours: a query and itself, and
        a query and its own group."""
        if self.p.same_set and self_possible:
            same = self.row_ids[rows].unsqueeze(1) == self.col_ids[cols].unsqueeze(0)
            dist.masked_fill_(same, math.inf)
        if self.row_groups is not None and self.col_groups is not None:
            same = self.row_groups[rows].unsqueeze(1) == self.col_groups[cols].unsqueeze(0)
            dist.masked_fill_(same, math.inf)

    def _thresholds(self, sample_dist: Tensor, r0: int) -> Tensor:
        """Each row's sampled threshold; finite, so infinite distances never pass it."""
        k = self.sample_k[r0 : r0 + self.tile]
        k_max = min(int(k.max()), self.sample)
        if k_max == 0:
            return sample_dist.new_full((len(k),), -math.inf)
        values = torch.topk(sample_dist, k_max, dim=1, largest=False, sorted=True).values
        picked = values.gather(1, (k.clamp(1, k_max) - 1).unsqueeze(1)).squeeze(1)
        everything = torch.finfo(picked.dtype).max
        picked = torch.where((k > self.sample) | (picked == math.inf), everything, picked)
        return torch.where(k > 0, picked, -math.inf)

    def _collect(
        self,
        buffer: _Buffer,
        dist: Tensor,
        r0: int,
        threshold: Tensor,
        c0: int,
        transposed: bool = False,
        self_possible: bool = False,
    ) -> None:
        """Append every pair of ``dist`` within its row's threshold to the buffer.

        ``transposed``: the columns of ``dist`` are the rows being collected (query =
        reference reads each strip twice). The comparison then runs in ``dist``'s own
        layout and only the bool mask is transposed, which is several times cheaper than
        comparing through a transposed view; hits arrive grouped by row either way."""
        n_rows, n_cols = dist.shape
        if transposed:
            compared = torch.le(dist, threshold, out=self._mask(self.row_mask, n_rows, n_cols))
            mask = self._mask(self.col_mask, n_cols, n_rows).copy_(compared.T)
        else:
            mask = torch.le(
                dist, threshold.unsqueeze(1), out=self._mask(self.row_mask, n_rows, n_cols)
            )
        flat = _flat_nonzero(mask)
        width = mask.shape[1]
        rows, cols = flat // width, flat % width
        values = dist[cols, rows] if transposed else dist.reshape(-1).index_select(0, flat)
        global_cols = cols + c0
        keep = None
        if self.p.same_set and self_possible:
            keep = self.row_ids[rows + r0] != self.col_ids[global_cols]
        if self.row_groups is not None and self.col_groups is not None:
            other_group = self.row_groups[rows + r0] != self.col_groups[global_cols]
            keep = other_group if keep is None else keep & other_group
        if keep is not None:
            rows, global_cols, values = rows[keep], global_cols[keep], values[keep]
        buffer.append(r0, rows, global_cols, values)

    def _finish(self, buffer: _Buffer, r0: int, missed: list[Tensor]) -> Iterator[RankedBlock]:
        """Rank the buffered candidates of rows [r0, r0 + tile); set aside, in ``missed``,
        the rows whose threshold let through too few or too many."""
        depth = self.row_depth[r0 : r0 + self.tile]
        count = buffer.count_of(r0, self.tile)
        wanted = depth > 0
        complete = wanted & (count >= depth) & (count <= buffer.capacity)
        missed.append((wanted & ~complete).nonzero().squeeze(1) + r0)
        if not bool(complete.any()):
            return
        local = complete.nonzero().squeeze(1)
        width = int(count[local].max())
        dist, cols = buffer.rows(r0 + local, width)
        filled = torch.arange(width, device=dist.device) < count[local].unsqueeze(1)
        ref_index = self.col_ids[torch.where(filled, cols, 0).long()]
        keys = torch.where(filled, _keys(dist, ref_index), _PAD)
        top = torch.topk(keys, int(depth[local].max()), dim=1, largest=False).values
        rows = local + r0
        yield self.row_ids[rows], _matches(top, self.p.reference_labels, self.row_labels[rows])

    def _exact(self, rows: Tensor) -> Iterator[RankedBlock]:
        """Whole-row recomputation for the few rows whose sampled threshold missed."""
        t = self.tile
        for part in rows.split(t) if len(rows) else ():
            row_x = _padded(self.row_x[part], t, 0.0)
            row_sq = _padded(self.row_sq[part], t, math.inf)
            dist = self.row_x.new_empty(t, len(self.col_x))
            self._distances_into(dist, row_x, row_sq, 0)
            dist = dist[: len(part), : self.n_ref]
            self._exclude(dist, part, slice(0, self.n_ref), self_possible=True)
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

        First every row block meets the sample (the first columns), which sets its
        threshold; the sample rows' own thresholds come first, so those strips also serve
        the sample rows, transposed. Then the remaining tiles, one row block at a time."""
        n, t, s = len(self.row_x), self.tile, self.strip_tiles * self.tile
        buffer = _Buffer(n, self.capacity, self.row_x.device)
        threshold = self.row_x.new_empty(n)
        missed: list[Tensor] = []
        for a in range(0, n, t):
            strip = self._sample_strip(a)
            threshold[a : a + t] = self._thresholds(strip, a)
            self._collect(buffer, strip, a, threshold[a : a + t], 0)
            if a >= s:
                self._collect(buffer, strip, 0, threshold[:s], a, transposed=True)
        for a in range(0, s, t):
            yield from self._finish(buffer, a, missed)
        for a in range(s, n, t):
            for c in range(a, n, self.strip_tiles * t):
                tiles = min(self.strip_tiles, (n - c) // t)
                strip = self._strip(a, c, tiles)
                first = c
                if c == a:
                    # Tile (a, a) is symmetric: the row pass alone covers it, less the diagonal.
                    strip[:, :t].diagonal().fill_(math.inf)
                    first = c + t
                if first < c + tiles * t:
                    others = strip[:, first - c :]
                    column_threshold = threshold[first : c + tiles * t]
                    self._collect(buffer, others, first, column_threshold, a, transposed=True)
                self._collect(buffer, strip, a, threshold[a : a + t], c)
            yield from self._finish(buffer, a, missed)
        yield from self._exact(torch.cat(missed))

    def _by_row_block(self) -> Iterator[RankedBlock]:
        t, s = self.tile, self.strip_tiles * self.tile
        buffer = _Buffer(t, self.capacity, self.row_x.device)
        missed: list[Tensor] = []
        for a in range(0, len(self.row_x), t):
            buffer.reset(a)
            strip = self._sample_strip(a)
            threshold = self._thresholds(strip, a)
            self._collect(buffer, strip, a, threshold, 0)
            for c in range(s, len(self.col_x), self.strip_tiles * t):
                tiles = min(self.strip_tiles, (len(self.col_x) - c) // t)
                strip = self._strip(a, c, tiles)
                self._collect(buffer, strip, a, threshold, c, self_possible=True)
            yield from self._finish(buffer, a, missed)
        yield from self._exact(torch.cat(missed))


class _Buffer:
    """Fixed-width candidate slots per row: (distance, column). A row that overflows keeps
    counting, so _finish can tell it from a complete one and have it recomputed."""

    def __init__(self, rows: int, capacity: int, device: torch.device) -> None:
        self.capacity = capacity
        self.offset = 0
        self.dist = torch.empty(rows, capacity, device=device)
        self.cols = torch.empty(rows, capacity, dtype=torch.int32, device=device)
        self.count = torch.zeros(rows, dtype=torch.long, device=device)

    def reset(self, offset: int) -> None:
        self.offset = offset
        self.count.zero_()

    def count_of(self, r0: int, n: int) -> Tensor:
        return self.count[r0 - self.offset : r0 - self.offset + n]

    def rows(self, rows: Tensor, width: int) -> tuple[Tensor, Tensor]:
        local = rows - self.offset
        return self.dist[local, :width], self.cols[local, :width]

    def append(self, r0: int, rows: Tensor, cols: Tensor, dist: Tensor) -> None:
        """``rows`` are relative to ``r0`` and must come in non-decreasing order."""
        if len(rows) == 0:
            return
        base = r0 - self.offset
        per_row = torch.bincount(rows)
        local = rows + base
        rank = torch.arange(len(rows), device=rows.device) - (per_row.cumsum(0) - per_row)[rows]
        # An overflowing row writes its excess over its last slot: it is recomputed anyway.
        slot = (self.count[local] + rank).clamp_max_(self.capacity - 1)
        flat = local * self.capacity + slot
        self.dist.view(-1).index_copy_(0, flat, dist)
        self.cols.view(-1).index_copy_(0, flat, cols.to(torch.int32))
        self.count[base : base + len(per_row)] += per_row


def _faiss_ranked(p: Problem) -> Iterator[RankedBlock]:
    """faiss IndexFlatL2 (what PML uses) for the search; the ranking is then the same keys.

    faiss cannot skip a query's own group, so it asks for as many extra neighbours as the
    largest reference group and drops them afterwards; the answer stays exact."""
    import faiss

    device = p.query.device
    index = faiss.IndexFlatL2(p.reference.shape[1])
    index.add(p.reference.cpu().contiguous().numpy())
    extra = 1 if p.same_set else 0
    if p.reference_groups is not None:
        extra = int(torch.unique(p.reference_groups, return_counts=True)[1].max())
    n_ref = len(p.reference)
    wanted = (p.depth > 0).nonzero().squeeze(1)
    k_max = min(n_ref, int(p.depth.max()) + extra) if len(wanted) else 1
    block = max(1, BLOCK_BYTES // (12 * k_max))
    if len(wanted) * n_ref >= LOG_ABOVE_PAIRS:
        _log_faiss_estimate(index, p, wanted, k_max, block)
    for part in wanted.split(block) if len(wanted) else ():
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


def _log_faiss_estimate(index: object, p: Problem, wanted: Tensor, k: int, block: int) -> None:
    """Time and memory of a faiss search, logged before it starts: a few queries are
    searched (an extra 256 of the N) and their time scaled to all of them, since faiss'
    cost, like this module's, is mostly its selection of the nearest, not the matmul."""
    probe = wanted[:FAISS_PROBE_QUERIES]
    start = time.perf_counter()
    index.search(p.query[probe].cpu().contiguous().numpy(), k)  # type: ignore[attr-defined]
    seconds = (time.perf_counter() - start) * len(wanted) / len(probe)
    d = p.reference.shape[1]
    mib = {
        "index": len(p.reference) * d * 4,
        "results of one block of queries": min(block, len(wanted)) * k * 12,
    }
    log.info(
        "Retrieval metrics for %d queries × %d references (dimension %d, faiss): about "
        "%.0f s and %.0f MiB (%s). Time from one timed search of %d queries.",
        len(wanted),
        len(p.reference),
        d,
        seconds,
        sum(mib.values()) / 2**20,
        ", ".join(f"{name} {size / 2**20:.0f}" for name, size in mib.items()),
        len(probe),
    )
