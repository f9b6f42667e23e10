"""Input checks shared by the metric functions: every problem becomes a one-line DmlError."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from dml.errors import DmlError

ArrayLike = Tensor | np.ndarray


def as_tensor(name: str, value: ArrayLike) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise DmlError(f"{name} must be numeric, got a NumPy array of dtype {value.dtype}")
        return torch.from_numpy(value)
    raise DmlError(f"{name} must be a torch tensor or a NumPy array, got {type(value).__name__}")


def finite_embeddings(name: str, value: ArrayLike) -> Tensor:
    """A finite float32 (samples × dim) matrix, of any magnitude.

    float32, whatever came in: PML and faiss evaluate in float32 too, and the neighbour
    order (hence the metrics) must not depend on the caller's dtype. The retrieval metrics
    take these as they are (their search rescales by a power of two, which is exact);
    functions that square raw values in float32 use :func:`embeddings`.
    """
    x = as_tensor(name, value)
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DmlError(
            f"{name} must be a non-empty 2-D (samples × dim) array, got shape {tuple(x.shape)}"
        )
    if x.is_complex():
        raise DmlError(f"{name} must be real, got dtype {x.dtype}")
    x = x.to(torch.float32)
    bad = ~torch.isfinite(x).all(1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        raise DmlError(
            f"{name} has NaN or infinite values in {int(bad.sum())} rows (first: row {first})"
        )
    return x


def embeddings(name: str, value: ArrayLike) -> Tensor:
    """A finite float32 (samples × dim) matrix whose squared distances fit float32."""
    x = finite_embeddings(name, value)
    # Beyond this magnitude a squared distance overflows float32 to infinity.
    limit = (torch.finfo(torch.float32).max / (4 * x.shape[1])) ** 0.5
    largest = float(x.abs().max())
    if largest > limit:
        raise DmlError(
            f"{name} has values up to {largest:.3g}; squared distances would overflow float32 "
            f"(limit {limit:.3g} at dimension {x.shape[1]}); rescale the embeddings"
        )
    return x


def integer_ids(name: str, value: ArrayLike, n: int) -> Tensor:
    """Labels or group ids: a 1-D integer vector with one entry per embedding."""
    y = as_tensor(name, value)
    if y.dim() != 1:
        raise DmlError(f"{name} must be 1-D, got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex():
        raise DmlError(f"{name} must hold integers, got dtype {y.dtype}; cast them with .long()")
    if len(y) != n:
        raise DmlError(f"{name} has {len(y)} entries but there are {n} embeddings")
    return y.to(torch.long)


def k_values(values: Sequence[int]) -> list[int]:
    ks = list(values)
    if not ks or any(
        isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1 for k in ks
    ):
        raise DmlError(f"k_values must be positive integers, got {values!r}")
    return sorted({int(k) for k in ks})
