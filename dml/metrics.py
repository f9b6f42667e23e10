"""Retrieval and clustering metrics for embeddings, exact and in bounded memory.

The retrieval definitions are those of pytorch-metric-learning's ``AccuracyCalculator``
(``precision_at_1``, ``r_precision``, ``mean_average_precision_at_r``), so numbers logged
here can be put next to published PML numbers. The computation is our own: the distance
matrix is built one block of queries at a time, so memory stays bounded for any N and the
same code runs on CPU and GPU.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score
from torch import Tensor

from dml.errors import DmlError

log = logging.getLogger(__name__)

ArrayLike = Tensor | np.ndarray

# Bytes of one float32 distance block; bounds the memory of a chunk whatever N is.
DEFAULT_BLOCK_BYTES = 256 * 2**20


@dataclass
class _Sums:
    """Running sums over queries, so chunks can be reduced one at a time."""

    precision_at_1: float = 0.0
    r_precision: float = 0.0
    map_at_r: float = 0.0
    counted: int = 0


def retrieval_metrics(
    query: ArrayLike,
    query_labels: ArrayLike,
    reference: ArrayLike | None = None,
    reference_labels: ArrayLike | None = None,
    k_values: Sequence[int] = (1, 2, 4, 8),
    *,
    query_groups: ArrayLike | None = None,
    reference_groups: ArrayLike | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> dict[str, float]:
    """Exact Euclidean retrieval metrics, averaged over queries.

    ``reference=None`` evaluates the set against itself; each query is then left out of
    its own neighbours by index, not by distance, so an exact duplicate of a query is
    still a neighbour (as in PML, which drops the query's own index from faiss' answer).

    Neighbours are ordered by squared Euclidean distance, and equal distances by
    reference index. PML's order among equal distances is whatever faiss returns; for
    ``IndexFlatL2`` that is also the reference index, which is why ties (duplicated
    points, integer-grid embeddings) give the same numbers here as in PML.

    ``R`` for a query is the number of reference items with its label (less itself when
    ``reference=None``, and less its own group when groups are given). Queries with
    ``R = 0`` have nothing to retrieve; they are left out of every average, as PML does,
    rather than counted as zeros that would depend on how many singletons a split has.
    ``recall_at_k`` is the usual DML recall: the fraction of queries with at least one
    same-label item among their ``k`` nearest neighbours.

    ``query_groups``/``reference_groups`` (re-identification protocol): reference items
    in the query's own group (same camera track, same photo session) are not neighbours
    and do not count towards ``R``.
    """
    q = _embeddings("query", query)
    ql = _labels("query_labels", query_labels, len(q))
    same_set = reference is None
    if same_set:
        if reference_labels is not None:
            raise DmlError("reference_labels was given without reference; pass both or neither")
        r, rl = q, ql
    else:
        if reference_labels is None:
            raise DmlError("reference was given without reference_labels; pass both or neither")
        r = _embeddings("reference", reference).to(q.device)
        rl = _labels("reference_labels", reference_labels, len(r)).to(q.device)
        if r.shape[1] != q.shape[1]:
            raise DmlError(
                f"query has dimension {q.shape[1]} but reference has dimension {r.shape[1]}"
            )
    ks = _k_values(k_values)
    qg, rg = _groups(query_groups, reference_groups, len(q), len(r), same_set, q.device)

    dtype = torch.promote_types(q.dtype, r.dtype)
    dtype = dtype if dtype == torch.float64 else torch.float32
    q, r = q.to(dtype), r.to(dtype)
    ql, rl = _contiguous_labels(ql, rl)
    relevant = _relevant_counts(ql, rl, qg, rg, same_set)

    n_ref = len(r)
    sums = _Sums()
    recall_hits = {k: 0 for k in ks}
    r_sq = (r * r).sum(1)
    rows_per_block = max(1, block_bytes // (4 * n_ref))
    for start in range(0, len(q), rows_per_block):
        stop = min(start + rows_per_block, len(q))
        dist = _squared_distances(q[start:stop], r, r_sq)
        _exclude(dist, start, same_set, qg, rg)
        rel = relevant[start:stop]
        keep = rel > 0
        if not bool(keep.any()):
            continue
        depth = min(n_ref, max(int(rel.max()), max(ks)))
        is_pos = _ranked_matches(dist[keep], rl, ql[start:stop][keep], depth)
        _accumulate(is_pos, rel[keep], sums, recall_hits)

    if sums.counted == 0:
        log.warning("No query has a relevant reference item; retrieval metrics are NaN.")
        nan = float("nan")
        return {
            "precision_at_1": nan,
            "r_precision": nan,
            "map_at_r": nan,
            **{f"recall_at_{k}": nan for k in ks},
        }
    n = sums.counted
    return {
        "precision_at_1": sums.precision_at_1 / n,
        "r_precision": sums.r_precision / n,
        "map_at_r": sums.map_at_r / n,
        **{f"recall_at_{k}": recall_hits[k] / n for k in ks},
    }


def clustering_metrics(embeddings: ArrayLike, labels: ArrayLike, seed: int = 0) -> dict[str, float]:
    """NMI and AMI of k-means clusters (as many clusters as labels) against the labels.

    AMI is reported next to NMI because NMI rises with the number of clusters even for a
    random assignment, which makes it misleading on datasets with many small classes.
    """
    x = _embeddings("embeddings", embeddings)
    y = _labels("labels", labels, len(x))
    n_clusters = int(torch.unique(y).numel())
    if n_clusters > len(x):
        raise DmlError(f"k-means needs at least {n_clusters} embeddings, got {len(x)}")
    x_np = x.detach().to("cpu", torch.float64).numpy()
    y_np = y.cpu().numpy()
    assigned = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit_predict(x_np)
    return {
        "nmi": float(normalized_mutual_info_score(y_np, assigned)),
        "ami": float(adjusted_mutual_info_score(y_np, assigned)),
    }


def _squared_distances(q: Tensor, r: Tensor, r_sq: Tensor) -> Tensor:
    """||q||² + ||r||² − 2 q·r: one matmul, the same arithmetic as faiss' IndexFlatL2."""
    dist = torch.addmm(r_sq.unsqueeze(0), q, r.T, alpha=-2.0)
    dist += (q * q).sum(1, keepdim=True)
    return dist.clamp_min_(0)


def _exclude(
    dist: Tensor, start: int, same_set: bool, qg: Tensor | None, rg: Tensor | None
) -> None:
    """Push the query itself and its own group to infinity, so they are never neighbours."""
    if qg is not None and rg is not None:
        dist.masked_fill_(qg[start : start + len(dist)].unsqueeze(1) == rg.unsqueeze(0), math.inf)
    if same_set:
        rows = torch.arange(len(dist), device=dist.device)
        dist[rows, rows + start] = math.inf


def _ranked_matches(dist: Tensor, ref_labels: Tensor, labels: Tensor, depth: int) -> Tensor:
    """Whether each of the ``depth`` nearest neighbours shares the query's label.

    torch.topk is free to return any of several equal distances at the boundary, so it
    only supplies the depth-th distance; every item at most that far is then ordered by
    (distance, index) with two stable sorts.
    """
    threshold = torch.topk(dist, depth, dim=1, largest=False, sorted=True).values[:, -1:]
    within = dist <= threshold
    rows, cols = within.nonzero(as_tuple=True)
    counts = within.sum(1)
    offsets = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(rows), device=dist.device) - offsets[rows]
    width = int(counts.max())
    padded = torch.full((len(dist), width), math.inf, dtype=dist.dtype, device=dist.device)
    padded[rows, slot] = dist[rows, cols]
    index = torch.full((len(dist), width), -1, dtype=torch.long, device=dist.device)
    index[rows, slot] = cols
    order = torch.sort(padded, dim=1, stable=True).indices[:, :depth]
    nearest = index.gather(1, order)
    finite = padded.gather(1, order) < math.inf
    return (ref_labels[nearest.clamp_min(0)] == labels.unsqueeze(1)) & finite & (nearest >= 0)


def _accumulate(is_pos: Tensor, rel: Tensor, sums: _Sums, recall_hits: dict[int, int]) -> None:
    """Add one block's per-query metrics to the running sums (in float64, for exactness)."""
    ranks = torch.arange(1, is_pos.shape[1] + 1, device=is_pos.device, dtype=torch.float64)
    rel64 = rel.to(torch.float64)
    hits = is_pos & (ranks.unsqueeze(0) <= rel64.unsqueeze(1))
    hits64 = hits.to(torch.float64)
    found = torch.cumsum(hits64, 1)
    sums.precision_at_1 += float(is_pos[:, 0].sum())
    sums.r_precision += float((hits64.sum(1) / rel64).sum())
    sums.map_at_r += float(((found / ranks * hits64).sum(1) / rel64).sum())
    sums.counted += len(is_pos)
    for k in recall_hits:
        recall_hits[k] += int(is_pos[:, :k].any(1).sum())


def _relevant_counts(
    ql: Tensor, rl: Tensor, qg: Tensor | None, rg: Tensor | None, same_set: bool
) -> Tensor:
    """R per query: same-label reference items that are allowed as neighbours."""
    n_labels = int(torch.maximum(ql.max(), rl.max())) + 1
    per_label = torch.bincount(rl, minlength=n_labels)
    relevant = per_label[ql]
    if qg is not None and rg is not None:
        pairs = torch.stack([rl, rg], 1)
        uniq, inverse = torch.unique(
            torch.cat([pairs, torch.stack([ql, qg], 1)]), dim=0, return_inverse=True
        )
        per_pair = torch.bincount(inverse[: len(rl)], minlength=len(uniq))
        relevant = relevant - per_pair[inverse[len(rl) :]]
    elif same_set:
        relevant = relevant - 1
    return relevant


def _contiguous_labels(ql: Tensor, rl: Tensor) -> tuple[Tensor, Tensor]:
    """Labels renumbered 0..C-1, so counts can use bincount whatever the label values."""
    _, inverse = torch.unique(torch.cat([ql, rl]), return_inverse=True)
    return inverse[: len(ql)], inverse[len(ql) :]


def _to_tensor(name: str, value: ArrayLike) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise DmlError(f"{name} must be numeric, got a NumPy array of dtype {value.dtype}")
        return torch.from_numpy(value)
    raise DmlError(f"{name} must be a torch tensor or a NumPy array, got {type(value).__name__}")


def _embeddings(name: str, value: ArrayLike) -> Tensor:
    x = _to_tensor(name, value)
    if x.dim() != 2 or len(x) == 0:
        raise DmlError(
            f"{name} must be a non-empty 2-D (samples × dim) array, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        x = x.to(torch.float32)
    bad = ~torch.isfinite(x).all(1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        raise DmlError(
            f"{name} has NaN or infinite values ({int(bad.sum())} rows, first row {row})"
        )
    return x


def _labels(name: str, value: ArrayLike, n: int) -> Tensor:
    y = _to_tensor(name, value)
    if y.dim() != 1:
        raise DmlError(f"{name} must be 1-D, got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex():
        raise DmlError(f"{name} must hold integers, got dtype {y.dtype}; cast them with .long()")
    if len(y) != n:
        raise DmlError(f"{name} has {len(y)} entries but there are {n} embeddings")
    return y.to(torch.long)


def _groups(
    query_groups: ArrayLike | None,
    reference_groups: ArrayLike | None,
    n_query: int,
    n_ref: int,
    same_set: bool,
    device: torch.device,
) -> tuple[Tensor | None, Tensor | None]:
    if query_groups is None and reference_groups is None:
        return None, None
    if query_groups is None:
        raise DmlError("reference_groups was given without query_groups; pass both or neither")
    qg = _labels("query_groups", query_groups, n_query).to(device)
    if same_set:
        if reference_groups is not None:
            raise DmlError(
                "reference_groups needs reference; with reference=None the query "
                "groups are used for both sides"
            )
        return qg, qg
    if reference_groups is None:
        raise DmlError("query_groups was given without reference_groups; pass both or neither")
    return qg, _labels("reference_groups", reference_groups, n_ref).to(device)


def _k_values(k_values: Sequence[int]) -> list[int]:
    ks = list(k_values)
    if not ks or any(
        isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1 for k in ks
    ):
        raise DmlError(f"k_values must be positive integers, got {k_values!r}")
    return sorted({int(k) for k in ks})
