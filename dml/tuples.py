"""Mined tuples: what miners return and tuple losses consume.

Listed tuples are plain NamedTuples of index tensors laid out as in pytorch-metric-learning
(3 tensors for triplets, 4 for pairs), so PML losses accept them unchanged. Miners that
select triplets by a rule on the distance matrix (all, semi-hard, easy) return a
:class:`TripletSelection` instead: at B = 1024 the listed form holds millions of triplets,
while the rule lets a loss count and sum them in fused passes. It still unpacks like a
3-tuple (``a, p, n = selection``), listing its triplets on first use, so code that expects
index tensors, PML's included, keeps working.

Indices count the batch rows first, then any extra references (cross-batch memory), as
laid out by :func:`dml.distances.compare`. Anchors are always batch rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from dml.distances import positive_negative_masks

# Elements per fused anchors × positives × references block. Bounds the memory of every
# chunked triplet pass (about 32 MiB of float32 per temporary) whatever the batch size.
CHUNK_ELEMENTS = 1 << 23


class Triplets(NamedTuple):
    anchor: Tensor
    positive: Tensor
    negative: Tensor


class Pairs(NamedTuple):
    anchor_pos: Tensor
    positive: Tensor
    anchor_neg: Tensor
    negative: Tensor


class PositiveSlots(NamedTuple):
    """Each anchor's positive columns packed to the left of a B×K table (K = most positives).

    ``cols[a, j]`` is the j-th positive of anchor ``a`` in column order where ``valid[a, j]``;
    padding slots point at column 0 and are masked out. Fused triplet passes broadcast over
    this table, so their cost follows B·K·R rather than B·R·R.
    """

    cols: Tensor
    valid: Tensor


def positive_slots(pos: Tensor) -> PositiveSlots:
    """Pack the positive mask into a :class:`PositiveSlots` table without a loop."""
    counts = pos.sum(1)
    k = int(counts.max()) if pos.numel() else 0
    a, p = pos.nonzero(as_tuple=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(a), device=pos.device) - starts[a]
    cols = torch.zeros(pos.shape[0], k, dtype=torch.long, device=pos.device)
    valid = torch.zeros(pos.shape[0], k, dtype=torch.bool, device=pos.device)
    cols[a, rank] = p
    valid[a, rank] = True
    return PositiveSlots(cols, valid)


def anchor_chunks(num_anchors: int, per_anchor: int) -> Iterator[slice]:
    """Row ranges whose fused blocks (rows × ``per_anchor`` elements) fit CHUNK_ELEMENTS."""
    step = max(1, CHUNK_ELEMENTS // max(per_anchor, 1))
    for start in range(0, num_anchors, step):
        yield slice(start, min(start + step, num_anchors))


def sort_rows(values: Tensor) -> tuple[Tensor, Tensor]:
    """Each row ascending, with the columns the values came from, like ``torch.sort(dim=1)``.

    LMNN ranks each anchor's positives with it to pick target neighbours. On CPU
    torch.sort is about 4× slower than numpy's SIMD sort of 64-bit integers, so float32
    rows on CPU are sorted as integer keys: the float's bit pattern, remapped so that
    integer order is float order, shifted above the column index. Equal values then
    come out by column, as in a stable sort (except that -0.0 sorts before +0.0).
    """
    num_cols = values.shape[1]
    if values.device.type != "cpu" or values.dtype != torch.float32 or num_cols > 1 << 31:
        return values.sort(dim=1, stable=True)
    bits = values.contiguous().numpy().view(np.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats count down: flip them
    shift = max(1, (num_cols - 1).bit_length())
    keys = ordered.astype(np.int64)
    keys <<= shift
    keys |= np.arange(num_cols)
    keys.sort(axis=1)
    keys &= (1 << shift) - 1
    cols = torch.from_numpy(keys)
    return torch.gather(values, 1, cols), cols


# Up to this many thresholds per row, counting them column by column beats a binary search.
FEW_THRESHOLDS = 32


def bucket_of(values: Tensor, bounds: Tensor) -> Tensor:
    """#{bounds[i, :] <= values[i, j]} for every entry (int64), like searchsorted(right=True).

    With few sorted bounds per row, one vectorised comparison per bound column, summed in
    uint8, runs about twice as fast as torch.searchsorted, whose binary search mispredicts
    on distances clustered around the bounds. The loop is over bound columns (at most
    FEW_THRESHOLDS), each step covering every entry; more bounds use the binary search.
    """
    if bounds.shape[1] > FEW_THRESHOLDS:
        return torch.searchsorted(bounds, values, right=True)
    count = torch.zeros(values.shape, dtype=torch.uint8, device=values.device)
    for column in bounds.T:
        count += column.unsqueeze(1) <= values
    return count.long()


class Windows(NamedTuple):
    """Per positive slot, the selected negatives it forms triplets with, in aggregate.

    ``count``/``total`` (B×K): how many, and the sum of their distances (float64);
    ``coverage`` (B×R): for each negative pair, how many of its anchor's slots select it;
    ``num_selected``: the selection's own triplet count, before any activity bound.
    """

    count: Tensor
    total: Tensor
    coverage: Tensor
    num_selected: int


class TripletSelection:
    """Every valid triplet whose margin d(a,n) − d(a,p) lies in the interval (low, high].

    ``pos``/``neg`` are the B×R masks of :func:`dml.distances.compare`; ``dist`` is the
    miner's matrix oriented as a distance (similarities negated), needed only when the
    interval is bounded. The inequalities are PML's TripletMarginMiner ones, evaluated
    on the same values, so the selected set is the same triplet for triplet.
    """

    def __init__(
        self,
        pos: Tensor,
        neg: Tensor,
        dist: Tensor | None = None,
        low: float = -math.inf,
        high: float = math.inf,
    ) -> None:
        if dist is None and (low > -math.inf or high < math.inf):
            raise ValueError("a bounded TripletSelection needs the distance matrix")
        self.pos = pos
        self.neg = neg
        self.dist = None if dist is None else dist.detach()
        self.low = low
        self.high = high

    def measured_on(self, dist: Tensor) -> bool:
        """Whether the selection's rule was evaluated on exactly these distances.

        Only then can a loss fold the rule into its own windowed pass; the check is one
        B×R comparison, cheap beside any triplet work.
        """
        return self.dist is None or torch.equal(self.dist, dist.detach())

    @cached_property
    def slots(self) -> PositiveSlots:
        return positive_slots(self.pos)

    def chunks(self) -> Iterator[slice]:
        """Anchor ranges for fused passes over this selection."""
        return anchor_chunks(self.pos.shape[0], self.slots.cols.shape[1] * self.pos.shape[1])

    def mask(self, rows: slice) -> Tensor:
        """Selected triplets of anchors ``rows``: bool [anchors, positive slot, reference]."""
        cols, valid = self.slots
        selected = valid[rows].unsqueeze(2) & self.neg[rows].unsqueeze(1)
        if self.dist is not None:
            d = self.dist[rows]
            margin = d.unsqueeze(1) - torch.gather(d, 1, cols[rows]).unsqueeze(2)
            if self.low > -math.inf:
                selected &= margin > self.low
            if self.high < math.inf:
                selected &= margin <= self.high
        return selected

    @cached_property
    def triplets(self) -> Triplets:
        """The selection listed in PML's order: by anchor, then positive, then negative."""
        parts: list[Tensor] = []
        for rows in self.chunks():
            r, j, n = self.mask(rows).nonzero(as_tuple=True)
            a = r + rows.start
            parts.append(torch.stack([a, self.slots.cols[a, j], n]))
        if not parts:
            empty = torch.empty(0, dtype=torch.long, device=self.pos.device)
            return Triplets(empty, empty.clone(), empty.clone())
        return Triplets(*torch.cat(parts, dim=1))

    def windows(
        self, dist: Tensor, below: float = math.inf, dtype: torch.dtype | None = None
    ) -> Windows:
        """Count and sum each slot's selected negatives without touching a triplet.

        For a fixed (a, p) every condition on the negative is a threshold on d(a,n): the
        selection's bounds and, from a loss, ``d(a,n) < d(a,p) + below``. Each anchor's
        K slots give at most 3K thresholds; one binary search puts every negative in a
        bucket between them, and per-bucket histograms (counts and distance sums) answer
        every slot's window as a difference of prefix sums. Cost O(B·R·log K), no sort,
        no B×K×R tensor. ``dist`` must be the matrix a bounded selection was made on.

        Bounds are compared as d(a,n) against d(a,p) + bound, where PML tests
        d(a,n) − d(a,p) against the bound: a triplet within one rounding error of a bound
        may land on the other side, which moves a mean over N triplets by at most 1/N.
        """
        dist = dist.detach().contiguous()
        dtype = dist.dtype if dtype is None else dtype
        cols, valid = self.slots
        rows = dist.shape[0]
        ap = torch.gather(dist, 1, cols)
        inf = ap.new_tensor(math.inf)
        # Every condition as "d < bound" or "d >= bound", with bound among the thresholds.
        upper_sel = torch.nextafter(ap + self.high, inf) if self.high < math.inf else ap + inf
        upper = upper_sel.minimum(ap + below) if below < math.inf else upper_sel
        # An unbounded selection needs no threshold of its own (d < inf always holds), and
        # one whose bound is the loss's margin differs from it only at d = d(a,p) + margin
        # exactly: such a triplet has zero loss, and leaving it out of num_selected (a
        # health count) saves K thresholds per anchor.
        if below == self.high:
            upper_sel = upper
        separate = below < math.inf and self.high < math.inf and self.high != below
        thresholds = [upper, upper_sel] if separate else [upper]
        if self.low > -math.inf:
            lower = torch.nextafter(ap + self.low, inf)  # d > ap + low  <=>  d >= lower
            thresholds.append(lower)
        bounds = torch.cat(thresholds, 1).sort(1).values.contiguous()
        # bucket(d) = 1 + #{bounds <= d}, and a last bucket for non-negatives. Then
        # d < u <=> bucket <= 1 + #{bounds < u}, d >= l <=> bucket > 1 + #{bounds < l}:
        # slot j selects exactly the buckets (start_j, end_j].
        num_buckets = bounds.shape[1] + 3
        bucket = bucket_of(dist, bounds).add_(1)
        bucket.masked_fill_(~self.neg, num_buckets - 1)
        start = torch.zeros_like(cols)
        if self.low > -math.inf:
            start = torch.searchsorted(bounds, lower) + 1
        end_sel = torch.where(valid, torch.searchsorted(bounds, upper_sel) + 1, start)
        end = torch.where(valid, torch.searchsorted(bounds, upper) + 1, start).maximum(start)
        end_sel = end_sel.maximum(start)

        flat = bucket + torch.arange(rows, device=dist.device).unsqueeze(1) * num_buckets
        flat = flat.view(-1)
        size = rows * num_buckets
        counts = torch.bincount(flat, minlength=size).view(rows, num_buckets).cumsum(1)
        sums = torch.bincount(flat, dist.view(-1), minlength=size).view(rows, num_buckets)
        sums = sums.double().cumsum(1)
        steps = torch.zeros(rows, num_buckets + 1, dtype=dtype, device=dist.device)
        steps.scatter_add_(1, start + 1, torch.ones_like(ap, dtype=dtype))
        steps.scatter_add_(1, end + 1, torch.full_like(ap, -1, dtype=dtype))

        def between(table: Tensor, first: Tensor, last: Tensor) -> Tensor:
            return torch.gather(table, 1, last) - torch.gather(table, 1, first)

        return Windows(
            count=between(counts, start, end),
            total=between(sums, start, end),
            coverage=torch.gather(steps.cumsum(1), 1, bucket),
            num_selected=int(between(counts, start, end_sel).sum()),
        )

    def pair_counts(self) -> tuple[Tensor, Tensor]:
        """How many selected triplets each (a, p) and each (a, n) pair belongs to (B×R)."""
        if self.dist is None:
            num_pos = self.pos.sum(1, keepdim=True)
            num_neg = self.neg.sum(1, keepdim=True)
            return self.pos.long() * num_neg, self.neg.long() * num_pos
        windows = self.windows(self.dist, dtype=torch.long)
        pos_count = torch.zeros(self.pos.shape, dtype=torch.long, device=self.pos.device)
        pos_count.scatter_add_(1, self.slots.cols, windows.count)
        return pos_count, windows.coverage

    def __len__(self) -> int:
        return 3

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.triplets)

    def __getitem__(self, index: int) -> Tensor:
        return self.triplets[index]


Mined = Triplets | Pairs | TripletSelection


def all_pairs(labels: Tensor) -> Pairs:
    """Every positive pair (i != j, same label) and every negative pair in the batch."""
    pos, neg = positive_negative_masks(labels)
    a1, p = pos.nonzero(as_tuple=True)
    a2, n = neg.nonzero(as_tuple=True)
    return Pairs(a1, p, a2, n)


def all_triplets(labels: Tensor) -> Triplets:
    """Every valid (anchor, positive, negative) triplet, listed anchor by anchor.

    Built in anchor chunks from the positive slots, so memory follows the number of
    triplets rather than B³.
    """
    return TripletSelection(*positive_negative_masks(labels)).triplets


def siamese_pairs(same: Tensor) -> Pairs:
    """The pairs of a Siamese batch: embeddings stacked as [first members; second members].

    Pair i joins row i with row N + i; ``same[i]`` says whether it is a similar pair. A
    pair loss given these (and any labels of length 2N: it reads none) scores exactly the
    stream's pairs, as in Hadsell et al., rather than every pair of the stacked batch.
    """
    index = torch.arange(len(same), device=same.device)
    same = same.bool()
    return Pairs(index[same], index[same] + len(same), index[~same], index[~same] + len(same))


def to_pairs(mined: Mined) -> Pairs:
    """Pairs from triplets, as PML converts them: (a, p) and (a, n) once per triplet.

    Repeats are kept on purpose: a pair in many mined triplets weighs that much more in
    the pair loss, exactly as in PML, so the two stay equal with any triplet miner.
    """
    if isinstance(mined, Pairs) or len(mined) == 4:
        return Pairs(*mined)
    a, p, n = mined
    return Pairs(a, p, a, n)


def to_triplets(mined: Mined) -> Triplets:
    """Triplets from pairs: every positive pair joined with every negative pair of its anchor.

    The negative pairs are grouped by anchor with one stable sort, so the cost follows the
    number of triplets produced instead of (positive pairs × negative pairs); the order
    matches PML's ``convert_to_triplets``.
    """
    if isinstance(mined, Triplets):
        return mined
    if len(mined) == 3:
        return Triplets(*mined)
    a1, p, a2, n = mined
    if len(a1) == 0 or len(a2) == 0:
        empty = torch.empty(0, dtype=torch.long, device=a1.device)
        return Triplets(empty, empty.clone(), empty.clone())
    size = int(torch.maximum(a1.max(), a2.max())) + 1
    order = torch.argsort(a2, stable=True)
    per_anchor = torch.bincount(a2, minlength=size)
    starts = torch.cumsum(per_anchor, 0) - per_anchor
    per_pos = per_anchor[a1]
    pos_index = torch.repeat_interleave(torch.arange(len(a1), device=a1.device), per_pos)
    first = torch.repeat_interleave(torch.cumsum(per_pos, 0) - per_pos, per_pos)
    offset = torch.arange(len(pos_index), device=a1.device) - first
    neg_index = order[starts[a1[pos_index]] + offset]
    return Triplets(a1[pos_index], p[pos_index], n[neg_index])


def pair_counts(
    mined: Mined | None, pos: Tensor, neg: Tensor, dtype: torch.dtype = torch.long
) -> tuple[Tensor, Tensor]:
    """Multiplicity of each positive and each negative pair in ``mined`` (B×R, ``dtype``).

    ``None`` means every pair of the batch. Pair losses reduce over these counts instead
    of index lists, which keeps PML's weighting of repeated pairs and costs O(B·R); they
    ask for their float dtype directly, which saves converting B×R integer matrices.
    """
    if mined is None:
        return pos.to(dtype), neg.to(dtype)
    if isinstance(mined, TripletSelection):
        return tuple(c.to(dtype) for c in mined.pair_counts())  # type: ignore[return-value]
    a1, p, a2, n = to_pairs(mined)
    pos_count = torch.zeros(pos.shape, dtype=dtype, device=pos.device)
    neg_count = torch.zeros_like(pos_count)
    pos_count.index_put_((a1, p), torch.ones(len(a1), dtype=dtype, device=pos.device), True)
    neg_count.index_put_((a2, n), torch.ones(len(a2), dtype=dtype, device=pos.device), True)
    return pos_count, neg_count
