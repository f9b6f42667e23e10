"""The faiss backend: IndexFlatL2 (what PML uses) finds the candidates, the shared ranking
orders them, so both backends give the same numbers.

faiss returns each query's k smallest float32 distances, so every reference below the
k-th is present: that k-th distance (just under it) is the limit the ranking checks. faiss
cannot skip a query's own group, so k covers the largest group on top of the depth, plus
a little room for the ranking's margin; a query whose list still falls short is searched
again with twice the k, up to the whole reference set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
from torch import Tensor

from dml.metrics.neighbours import bound
from dml.metrics.neighbours.problem import EVERYTHING, Candidates, Problem, pack

# Neighbours asked for past depth and exclusions, for the ranking's margin.
ROOM = 16
# Bound on the results of one block of queries (distances and ids, 12 bytes each).
BLOCK_BYTES = 256 * 2**20
# Queries searched, once more, to time the search before it starts.
PROBE_QUERIES = 256


class FaissSearch:
    def __init__(self, p: Problem) -> None:
        import faiss

        self.p = p
        self.margin = bound.margins(p.query, p.reference, norms_in_float32=True)
        self.index = faiss.IndexFlatL2(p.reference.shape[1])
        self.index.add(p.reference.cpu().contiguous().numpy())
        self.excluded = 1 if p.same_set else 0
        if p.reference_groups is not None:
            self.excluded = int(torch.unique(p.reference_groups, return_counts=True)[1].max())

    def _k(self, depth: Tensor, attempt: int) -> int:
        return min(len(self.p.reference), (int(depth.max()) + self.excluded + ROOM) << attempt)

    def candidates(self, rows: Tensor, attempt: int) -> Iterator[Candidates]:
        block = max(1, BLOCK_BYTES // (12 * self._k(self.p.depth[rows], attempt)))
        for part in rows.split(block):
            yield self._search(part, self._k(self.p.depth[part], attempt))

    def _search(self, rows: Tensor, k: int) -> Candidates:
        p, device = self.p, rows.device
        found_dist, found = self.index.search(p.query[rows].cpu().contiguous().numpy(), k)
        dist = torch.from_numpy(found_dist).to(device)
        found = torch.from_numpy(found).to(device)
        if k == len(p.reference):
            limit = dist.new_full((len(rows),), EVERYTHING)
        else:
            limit = torch.nextafter(dist[:, -1], dist.new_tensor(-torch.inf))
        keep = found >= 0
        if p.same_set:
            keep &= found != rows.unsqueeze(1)
        if p.query_groups is not None and p.reference_groups is not None:
            own_group = p.reference_groups[found.clamp_min(0)] == p.query_groups[rows].unsqueeze(1)
            keep &= ~own_group
        local, slot = keep.nonzero(as_tuple=True)
        keys = pack(local, dist[local, slot])
        return Candidates(rows, limit, keys, found[local, slot].to(torch.int32))

    def estimate(self, rows: Tensor) -> tuple[float, dict[str, float]]:
        """Seconds and bytes: a few queries are searched and their time scaled to all,
        since faiss' cost, like the tiled search's, is mostly choosing the nearest."""
        probe = rows[:PROBE_QUERIES]
        k = self._k(self.p.depth[rows], 0)
        begin = time.perf_counter()
        self.index.search(self.p.query[probe].cpu().contiguous().numpy(), k)
        seconds = (time.perf_counter() - begin) * len(rows) / max(1, len(probe))
        block = min(len(rows), max(1, BLOCK_BYTES // (12 * k)))
        sizes = {
            "index": len(self.p.reference) * self.p.reference.shape[1] * 4.0,
            "results of one block of queries": block * k * 12.0,
        }
        return seconds, sizes
