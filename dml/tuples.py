"""Mined tuples: the index tensors that miners return and tuple losses consume.

They are plain NamedTuples of index tensors, laid out as in pytorch-metric-learning
(3 tensors for triplets, 4 for pairs), so PML losses accept them unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from dml.distances import positive_negative_masks


class Triplets(NamedTuple):
    anchor: Tensor
    positive: Tensor
    negative: Tensor


class Pairs(NamedTuple):
    anchor_pos: Tensor
    positive: Tensor
    anchor_neg: Tensor
    negative: Tensor


Mined = Triplets | Pairs


def all_pairs(labels: Tensor) -> Pairs:
    """Every positive pair (i != j, same label) and every negative pair in the batch."""
    pos, neg = positive_negative_masks(labels)
    a1, p = pos.nonzero(as_tuple=True)
    a2, n = neg.nonzero(as_tuple=True)
    return Pairs(a1, p, a2, n)


def all_triplets(labels: Tensor) -> Triplets:
    """Every valid (anchor, positive, negative) triplet in the batch."""
    pos, neg = positive_negative_masks(labels)
    valid = pos.unsqueeze(2) & neg.unsqueeze(1)
    a, p, n = valid.nonzero(as_tuple=True)
    return Triplets(a, p, n)


def to_pairs(mined: Mined) -> Pairs:
    """Pairs from triplets: each triplet gives its (a, p) and its (a, n) pair, without repeats."""
    if isinstance(mined, Pairs) or len(mined) == 4:
        return Pairs(*mined)
    a, p, n = mined
    ap = torch.unique(torch.stack([a, p]), dim=1)
    an = torch.unique(torch.stack([a, n]), dim=1)
    return Pairs(ap[0], ap[1], an[0], an[1])


def to_triplets(mined: Mined) -> Triplets:
    """Triplets from pairs: every positive pair joined with every negative pair of its anchor."""
    if isinstance(mined, Triplets) or len(mined) == 3:
        return Triplets(*mined)
    a1, p, a2, n = mined
    match = a1.unsqueeze(1) == a2.unsqueeze(0)
    i, j = match.nonzero(as_tuple=True)
    return Triplets(a1[i], p[i], n[j])
