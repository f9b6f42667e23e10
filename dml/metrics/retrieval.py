"""Retrieval metrics with pytorch-metric-learning's definitions, computed exactly."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from dml.errors import DmlError
from dml.metrics import _inputs
from dml.metrics._inputs import ArrayLike
from dml.metrics.neighbours import Problem, ranked_matches

log = logging.getLogger(__name__)


def retrieval_metrics(
    query: ArrayLike,
    query_labels: ArrayLike,
    reference: ArrayLike | None = None,
    reference_labels: ArrayLike | None = None,
    k_values: Sequence[int] = (1, 2, 4, 8),
    *,
    query_groups: ArrayLike | None = None,
    reference_groups: ArrayLike | None = None,
    backend: Literal["torch", "faiss"] = "torch",
    tile: int | None = None,
) -> dict[str, float]:
    """Exact Euclidean retrieval metrics, averaged over queries.

    The definitions are PML AccuracyCalculator's (``precision_at_1``, ``r_precision``,
    ``mean_average_precision_at_r`` as ``map_at_r``), so numbers can sit next to
    published ones. ``recall_at_k`` is the usual DML recall: the fraction of queries with
    at least one same-label item among their k nearest.

    ``reference=None`` evaluates the set against itself; each query is left out of its own
    neighbours by index, not by distance, so an exact duplicate of a query is still a
    neighbour (PML likewise drops the query's own index from faiss' answer).

    Neighbours are ordered by exact squared Euclidean distance (of the float32
    embeddings, as a float64 brute force computes it), equal distances by reference
    index. The search runs in float32 and re-scores in float64 only the near ties whose
    order float32 cannot guarantee (see :mod:`dml.metrics.neighbours`). PML orders by
    faiss' float32 distances, so it can differ where two references are within float32
    rounding of each other; otherwise, ties included (faiss' IndexFlatL2 breaks them by
    index too), the numbers are PML's.

    R for a query is the number of reference items with its label (less itself when
    ``reference=None``, less its own group when groups are given). Queries with R = 0
    have nothing to retrieve: they are left out of every average, as PML does, rather
    than counted as zeros that would depend on how many singletons a split has. If no
    query has R > 0, every value is NaN.

    ``query_groups``/``reference_groups`` implement the re-identification protocol:
    references in the query's own group (same video, same photo session) are neither
    neighbours nor counted in R. With ``reference=None`` pass only ``query_groups``.

    ``backend="faiss"`` searches with faiss' IndexFlatL2 instead of torch (same numbers);
    ``tile`` sets the rows per distance tile, which only changes speed and memory.
    """
    q = _inputs.finite_embeddings("query", query)
    ql = _inputs.integer_ids("query_labels", query_labels, len(q)).to(q.device)
    same_set = reference is None
    if same_set:
        if reference_labels is not None:
            raise DmlError("reference_labels was given without reference; pass both or neither")
        r, rl = q, ql
    else:
        if reference_labels is None:
            raise DmlError("reference was given without reference_labels; pass both or neither")
        r = _inputs.finite_embeddings("reference", reference).to(q.device)
        rl = _inputs.integer_ids("reference_labels", reference_labels, len(r)).to(q.device)
        if r.shape[1] != q.shape[1]:
            raise DmlError(
                f"query has dimension {q.shape[1]} but reference has dimension {r.shape[1]}"
            )
    ks = _inputs.k_values(k_values)
    qg, rg = _groups(query_groups, reference_groups, len(q), len(r), same_set, q.device)
    ql, rl = _renumber(ql, rl)
    relevant = _relevant_counts(ql, rl, qg, rg, same_set)
    most = len(r) - 1 if same_set else len(r)
    depth = torch.where(relevant > 0, relevant.clamp_min(max(ks)).clamp_max(most), 0)
    problem = Problem(q, ql, r, rl, same_set, qg, rg, depth)

    totals = torch.zeros(3 + len(ks), dtype=torch.float64, device=q.device)
    for rows, is_pos in ranked_matches(problem, backend, tile):
        totals += _per_query_sums(is_pos, relevant[rows], ks)
    counted = int((relevant > 0).sum())
    names = ["precision_at_1", "r_precision", "map_at_r", *(f"recall_at_{k}" for k in ks)]
    if counted == 0:
        log.warning("No query has a relevant reference item; retrieval metrics are NaN.")
        return dict.fromkeys(names, float("nan"))
    return dict(zip(names, (totals / counted).tolist(), strict=True))


def _per_query_sums(is_pos: Tensor, relevant: Tensor, ks: list[int]) -> Tensor:
    """Sums over a block of queries of each metric, in float64 so blocks add up exactly.

    The m-th relevant item found at rank r_m contributes precision m / r_m to AP@R, if
    r_m ≤ R; dividing by R (not by the number found) is what makes it MAP@R."""
    ranks = torch.arange(1, is_pos.shape[1] + 1, device=is_pos.device, dtype=torch.float64)
    r = relevant.to(torch.float64)
    hits = (is_pos & (ranks <= r.unsqueeze(1))).to(torch.float64)
    found = hits.cumsum(1)
    sums = [
        is_pos[:, 0].sum(dtype=torch.float64),
        (hits.sum(1) / r).sum(),
        ((found / ranks * hits).sum(1) / r).sum(),
        *(is_pos[:, :k].any(1).sum(dtype=torch.float64) for k in ks),
    ]
    return torch.stack(sums)


def _relevant_counts(
    ql: Tensor, rl: Tensor, qg: Tensor | None, rg: Tensor | None, same_set: bool
) -> Tensor:
    """R per query: same-label references that are allowed as its neighbours."""
    n_labels = int(torch.maximum(ql.max(), rl.max())) + 1
    relevant = torch.bincount(rl, minlength=n_labels)[ql]
    if qg is not None and rg is not None:
        pairs = torch.cat([torch.stack([rl, rg], 1), torch.stack([ql, qg], 1)])
        unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
        own_group = torch.bincount(inverse[: len(rl)], minlength=len(unique))
        return relevant - own_group[inverse[len(rl) :]]
    return relevant - 1 if same_set else relevant


def _renumber(ql: Tensor, rl: Tensor) -> tuple[Tensor, Tensor]:
    """Labels as 0..C-1, so counting them is a bincount whatever values they had."""
    _, inverse = torch.unique(torch.cat([ql, rl]), return_inverse=True)
    return inverse[: len(ql)], inverse[len(ql) :]


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
    qg = _inputs.integer_ids("query_groups", query_groups, n_query).to(device)
    if same_set:
        if reference_groups is not None:
            raise DmlError(
                "reference_groups needs reference; with reference=None query_groups "
                "serves both sides"
            )
        return qg, qg
    if reference_groups is None:
        raise DmlError("query_groups was given without reference_groups; pass both or neither")
    return qg, _inputs.integer_ids("reference_groups", reference_groups, n_ref).to(device)
