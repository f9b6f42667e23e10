"""The search's copy of the embeddings, scaled by a power of two into float32's safe range.

The float32 search computes ‖q‖² + ‖r‖² − 2·q·r, which overflows to infinity once norms
reach about 1e19 and sinks into float32's subnormals below about 1e-19: finite embeddings
that a float64 brute force ranks without trouble. Multiplying every coordinate of both
sides by one power of two changes no ranking: each exact squared distance is multiplied
by its square, ties included, and float32 rounding scales along with it, except where a
value falls below float32's normal range (bound.py counts that). So the backends search a
copy whose largest norm lies in [1/2, 1) whenever the embeddings' largest norm lies
outside [2⁻¹⁶, 2¹⁶), and the float64 re-scoring (nearties.py) reads the embeddings as
given. Inside that range the copy would change nothing but the cost.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from dml.metrics.neighbours.problem import Problem

# Largest norms in [2**-SAFE_EXPONENT, 2**SAFE_EXPONENT) are searched as they are.
SAFE_EXPONENT = 16
ROWS_PER_CHUNK = 65536


def for_search(p: Problem) -> Problem:
    """``p`` itself, or ``p`` with both embeddings scaled so the largest norm is in [½, 1)."""
    largest = max(_largest_norm(p.query), 0.0 if p.same_set else _largest_norm(p.reference))
    if largest == 0.0:
        return p
    exponent = math.frexp(largest)[1]
    if -SAFE_EXPONENT < exponent <= SAFE_EXPONENT:
        return p
    query = _times_power_of_two(p.query, -exponent)
    reference = query if p.same_set else _times_power_of_two(p.reference, -exponent)
    return replace(p, query=query, reference=reference)


def _largest_norm(x: Tensor) -> float:
    norms = [
        torch.linalg.vector_norm(part, dim=1, dtype=torch.float64).max()
        for part in x.split(ROWS_PER_CHUNK)
    ]
    return float(torch.stack(norms).max())


def _times_power_of_two(x: Tensor, exponent: int) -> Tensor:
    """x·2^exponent rounded once to float32 (the factor itself may lie outside float32's
    range, so the product is formed in float64, where it is exact)."""
    out = torch.empty_like(x)
    factor = 2.0**exponent
    for rows, part in zip(out.split(ROWS_PER_CHUNK), x.split(ROWS_PER_CHUNK), strict=True):
        rows.copy_(part.to(torch.float64) * factor)
    return out
