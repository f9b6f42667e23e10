"""The embedding-distance curves: how far apart same-class and different-class pairs lie.

Logged every epoch as ``dist_pos_mean``/``dist_neg_mean`` (and their std). A model that
learns pulls the first down and pushes the second up; when they meet, the embedding has
collapsed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dml.distances import safe_sqrt


def pair_distance_stats(
    embeddings: Tensor, labels: Tensor, max_samples: int = 4096, chunk: int = 1024, seed: int = 0
) -> dict[str, float]:
    """Mean and std of Euclidean distances over all positive and all negative pairs.

    Above ``max_samples`` items a fixed random subset is used, so the cost stays bounded;
    sums are accumulated over row chunks, so memory stays at ``chunk × N``.
    """
    emb = embeddings.detach().double()
    labels = labels.detach()
    if len(emb) > max_samples:
        keep = torch.randperm(len(emb), generator=torch.Generator().manual_seed(seed))
        keep = keep[:max_samples].to(emb.device)
        emb, labels = emb[keep], labels[keep]
    sums = torch.zeros(2, 3, dtype=torch.float64, device=emb.device)
    sq_norms = (emb * emb).sum(1)
    for start in range(0, len(emb), chunk):
        rows = slice(start, start + chunk)
        sq = sq_norms[rows, None] - 2 * emb[rows] @ emb.T + sq_norms[None, :]
        dist = safe_sqrt(sq.clamp_min(0))
        same = labels[rows, None] == labels[None, :]
        idx = torch.arange(start, start + len(dist), device=emb.device)
        not_self = torch.ones_like(same)
        not_self[torch.arange(len(dist)), idx] = False
        for row, mask in enumerate((same & not_self, ~same)):
            values = dist[mask]
            sums[row] += torch.stack(
                [values.new_tensor(len(values)), values.sum(), (values**2).sum()]
            )
    stats: dict[str, float] = {}
    for row, kind in enumerate(("pos", "neg")):
        count, total, total_sq = sums[row].tolist()
        mean = total / count if count else float("nan")
        var = total_sq / count - mean**2 if count else float("nan")
        stats[f"dist_{kind}_mean"] = mean
        stats[f"dist_{kind}_std"] = max(var, 0.0) ** 0.5 if count else float("nan")
    return stats
