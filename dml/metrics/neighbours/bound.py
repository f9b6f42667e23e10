"""How far a float32 squared distance can be from the exact one.

Both backends compute ‖q‖² + ‖r‖² − 2·q·r in float32, because that form is a matrix
product, hence fast. Its rounding error grows with the norms, not with the distance, so two
references at nearly equal distance can come out of it in the wrong order (the In-Shop
case: 1.20148924 against 1.20148935). The ranking therefore trusts a float32 order only
where two distances differ by more than twice a bound E on each one's error, and re-scores
the rest in float64. E must hold whatever the BLAS does, so it only uses what the order
of operations guarantees (u = 2⁻²⁴, γ_n = n·u/(1 − n·u); Higham, Accuracy and Stability
of Numerical Algorithms, §3.1):

* the product q·r is a sum of d products, in whatever order and blocking the BLAS picks,
  fused or not: its error is at most γ_d·Σ|q_i·r_i| ≤ γ_d·‖q‖·‖r‖ (Cauchy–Schwarz). The
  −2 scaling is exact. This is why the torch backend runs the product on its own and adds
  the norms afterwards: norms fed into the BLAS accumulation would pass through up to
  d roundings each;
* the norms: rounded once from float64 (u·‖q‖², torch) or summed in float32 (γ_d·‖q‖²,
  faiss); adding them to −2·q·r takes two roundings, each under u·(‖q‖ + ‖r‖)². faiss'
  difference form for small batches, Σ(q_i − r_i)², is within the same total.

So E = 2γ_d·‖q‖·‖r‖ + 3u·(‖q‖ + ‖r‖)², plus γ_d·(‖q‖² + ‖r‖²) for float32 norms, with
‖r‖ the largest reference norm: one number per query, which the ranking needs (a uniform
bound is what makes "close" chain along a sorted row). A matmul in reduced precision
(TF32 or bf16, allowed by torch.set_float32_matmul_precision) first rounds its inputs;
that adds to the bound, so it stays true and more candidates get re-scored.

Below float32's normal range the relative model fails: a result under 2⁻¹²⁶ is rounded to
a subnormal, or flushed to zero where the hardware or torch.set_flush_denormal says so, an
absolute error of at most τ = 2⁻¹²⁶ either way. That can happen to each product and each
partial sum of q·r (2d roundings, doubled by the −2), each norm (one rounding from
float64, or 2d when summed in float32), each of the two additions, and each input
coordinate: once where the search's copy was scaled down (scaling.py), once more where a
reduced-precision matmul rounds it. A coordinate moved by at most 2τ moves a squared
distance by at most 8τ·√d·(‖q‖ + ‖r‖) + 16dτ², and the product by half that again. The
search scales the embeddings so that this absolute part stays negligible next to the
relative one (about 10⁻³⁵ at norm 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

UNIT = 2.0**-24
# Relative slack on the bound for second-order terms (γ_n's denominator, u² products).
SAFETY = 1 + 2.0**-16
# Unit roundoff of the inputs of a float32 matmul that may run in TF32 or bf16.
REDUCED_INPUT_UNIT = 2.0**-8
# Absolute error of one rounding below float32's normal range, gradual or flushed to zero.
UNDERFLOW = 2.0**-126


def squared_norms(x: Tensor, chunk: int = 65536) -> Tensor:
    """‖x_i‖² summed in float64 and rounded once to float32."""
    out = x.new_empty(len(x))
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to(torch.float64)
        out[start : start + chunk] = (part * part).sum(1).to(torch.float32)
    return out


def matmul_input_unit() -> float:
    """0 when torch multiplies float32 matrices in full float32, else bf16's unit roundoff
    (the coarsest that torch.set_float32_matmul_precision allows)."""
    try:
        exact = torch.get_float32_matmul_precision() == "highest"
    except RuntimeError:  # the legacy and the per-backend precision APIs were mixed
        exact = False
    return 0.0 if exact else REDUCED_INPUT_UNIT


def margins(
    query: Tensor, reference: Tensor, *, norms_in_float32: bool, input_unit: float = 0.0
) -> Tensor:
    """2·E per query, in float64: two float32 distances of one query that differ by more
    than this are in the same order as their exact values."""
    d = query.shape[1]
    gamma = d * UNIT / (1 - d * UNIT)
    q = squared_norms(query).to(torch.float64).sqrt()
    r = squared_norms(reference).to(torch.float64).sqrt().max()
    # Inputs rounded to ũ change each product by at most (2ũ + ũ²)·|q_i·r_i|, and twice
    # that summed is under 2ũ·(‖q‖ + ‖r‖)².
    error = 2 * gamma * q * r + (3 * UNIT + 2 * input_unit) * (q + r) ** 2
    if norms_in_float32:
        error = error + gamma * (q * q + r * r)
    return 2 * (error + _underflow(d, q, r, norms_in_float32)) * SAFETY


def float64_margins(query: Tensor, reference: Tensor) -> Tensor:
    """2·E per query for ‖q‖² + ‖r‖² − 2·q·r computed in float64 from the float32 inputs,
    norms summed in float64 (the dense re-scoring in nearties.py): the same terms with
    float64's unit roundoff, and no underflow term, since products of float32 values lie
    far inside float64's range."""
    unit = 2.0**-53
    d = query.shape[1]
    gamma = d * unit / (1 - d * unit)
    q = torch.linalg.vector_norm(query, dim=1, dtype=torch.float64)
    r = torch.linalg.vector_norm(reference, dim=1, dtype=torch.float64).max()
    error = 2 * gamma * q * r + 3 * unit * (q + r) ** 2 + gamma * (q * q + r * r)
    return 2 * error * SAFETY


def _underflow(d: int, q: Tensor, r: Tensor, norms_in_float32: bool) -> Tensor:
    """The absolute part of E (module docstring): moved inputs, then rounded operations."""
    tau = UNDERFLOW
    moved_inputs = 12 * tau * d**0.5 * (q + r) + 24 * d * tau * tau
    operations = 4 * d + 4 + (4 * d if norms_in_float32 else 0)
    return moved_inputs + operations * tau


def distances(
    row_x: Tensor, row_sq: Tensor, col_x: Tensor, col_sq: Tensor, out: Tensor | None = None
) -> Tensor:
    """‖x‖² + ‖y‖² − 2·x·y in float32, in the order this module counts on: the product
    alone (no partial sums mixed into the BLAS accumulation), then the norms in two
    roundings."""
    out = torch.mm(row_x, col_x.T, out=out)
    return torch.add(row_sq.unsqueeze(1), out, alpha=-2.0, out=out).add_(col_sq.unsqueeze(0))
