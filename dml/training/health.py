"""Detecting a collapsed embedding while it trains, so the user hears of it early.

A collapse shows in two places: the mean distance of same-class pairs and of
different-class pairs become equal (everything maps to one region), or the training loss
sits at the value it has when every embedding is the same point (a triplet loss at its
margin: d(a,p) ≈ d(a,n) for every triplet).
"""

from __future__ import annotations

import math

COLLAPSE_EPOCHS = 3
RELATIVE_TOLERANCE = 0.01

LIKELY_CAUSES = (
    "likely causes: a learning rate too high (lower optimizer.lr), batch-hard mining from "
    "the start (try miner=semihard), or too few classes per batch (lower "
    "data.samples_per_class)"
)


def close(a: float, b: float, tolerance: float = RELATIVE_TOLERANCE) -> bool:
    return abs(a - b) <= tolerance * max(abs(a), abs(b), 1e-12) or (a == b)


class CollapseDetector:
    """Counts consecutive collapsed epochs; :meth:`update` returns a warning once."""

    def __init__(self, collapsed_loss: float | None = None, epochs: int = COLLAPSE_EPOCHS) -> None:
        self.collapsed_loss = collapsed_loss
        self.epochs = epochs
        self.distance_streak = 0
        self.loss_streak = 0
        self.warned = False

    def update(
        self, dist_pos_mean: float, dist_neg_mean: float, train_loss: float | None
    ) -> str | None:
        """Feed one epoch's numbers; the first time a collapse is confirmed, the warning."""
        distances_met = not any(map(math.isnan, (dist_pos_mean, dist_neg_mean))) and close(
            dist_pos_mean, dist_neg_mean
        )
        self.distance_streak = self.distance_streak + 1 if distances_met else 0
        at_margin = (
            self.collapsed_loss is not None
            and self.collapsed_loss > 0
            and train_loss is not None
            and close(train_loss, self.collapsed_loss)
        )
        self.loss_streak = self.loss_streak + 1 if at_margin else 0
        if self.warned:
            return None
        if self.distance_streak >= self.epochs:
            self.warned = True
            return (
                f"embedding collapse: mean positive ({dist_pos_mean:.4g}) and negative "
                f"({dist_neg_mean:.4g}) pair distances within 1% for {self.epochs} epochs; "
                + LIKELY_CAUSES
            )
        if self.loss_streak >= self.epochs:
            self.warned = True
            return (
                f"embedding collapse: train/loss has stayed at {self.collapsed_loss:.4g}, its "
                f"value when every embedding is the same point, for {self.epochs} epochs; "
                + LIKELY_CAUSES
            )
        return None
