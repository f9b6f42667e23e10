"""Detecting an unhealthy run, so the user hears of it: a collapsed embedding while it
trains, and a learned embedding that tests below the raw inputs at the end.

A collapse shows in three places: the mean distance of same-class pairs and of
different-class pairs become equal; the different-class pairs lie a tiny fraction of the
embeddings' norm apart (everything maps to one small region, even if same-class pairs are
closer still); or the training loss sits at the value it has when every embedding is the
same point (a triplet loss at its margin: d(a,p) ≈ d(a,n) for every triplet).

A run can also end without collapsing and still retrieve worse than its own inputs
(:mod:`dml.metrics.baseline`): training then cost more than it gave, which a sweep's best
trial can hide. :func:`below_raw_baseline` names both numbers.
"""

from __future__ import annotations

import math
from typing import Any

COLLAPSE_EPOCHS = 3
RELATIVE_TOLERANCE = 0.01
# Different-class pairs closer than this fraction of the mean embedding norm: the whole
# embedding sits in one small region. On the unit sphere, random directions lie about
# 1.4 apart, and a triplet loss that separates classes by its margin (0.2) keeps them
# well above 0.1; a collapsed batch-hard run on mnist5k measured 0.03.
SMALL_REGION = 0.1

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
        self.region_streak = 0
        self.loss_streak = 0
        self.warned = False

    def update(
        self,
        dist_pos_mean: float,
        dist_neg_mean: float,
        train_loss: float | None,
        embedding_norm: float | None = None,
    ) -> str | None:
        """Feed one epoch's numbers; the first time a collapse is confirmed, the warning.

        ``embedding_norm`` is the mean norm of the evaluated embeddings (1 when they are
        L2-normalised); without it the small-region test is skipped.
        """
        finite = not any(map(math.isnan, (dist_pos_mean, dist_neg_mean)))
        distances_met = finite and close(dist_pos_mean, dist_neg_mean)
        self.distance_streak = self.distance_streak + 1 if distances_met else 0
        small_region = (
            finite
            and embedding_norm is not None
            and embedding_norm > 0
            and dist_neg_mean < SMALL_REGION * embedding_norm
        )
        self.region_streak = self.region_streak + 1 if small_region else 0
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
        if self.region_streak >= self.epochs:
            self.warned = True
            return (
                f"embedding collapse: different-class pairs lie {dist_neg_mean:.4g} apart on "
                f"average, under {SMALL_REGION:g} of the embeddings' norm ({embedding_norm:.4g}), "
                f"for {self.epochs} epochs: everything sits in one small region; " + LIKELY_CAUSES
            )
        if self.loss_streak >= self.epochs:
            self.warned = True
            return (
                f"embedding collapse: train/loss has stayed at {self.collapsed_loss:.4g}, its "
                f"value when every embedding is the same point, for {self.epochs} epochs; "
                + LIKELY_CAUSES
            )
        return None

    def state_dict(self) -> dict[str, Any]:
        """Plain ints and a bool, so a checkpoint keeps loading with ``weights_only=True``."""
        return {
            "distance_streak": self.distance_streak,
            "region_streak": self.region_streak,
            "loss_streak": self.loss_streak,
            "warned": self.warned,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A resumed run keeps its streaks, and a warning once given stays given."""
        self.distance_streak = int(state.get("distance_streak", 0))
        self.region_streak = int(state.get("region_streak", 0))
        self.loss_streak = int(state.get("loss_streak", 0))
        self.warned = bool(state.get("warned", False))


#: The test metric compared with the raw inputs', and the flag metrics.json carries.
COMPARED = "map_at_r"
BELOW_RAW = "health/below_raw"


def below_raw_baseline(final: dict[str, float]) -> str | None:
    """The warning when the learned embedding's test MAP@R is below the raw inputs', or
    None (also when the run measured no raw baseline: inputs too large to be one)."""
    learned = final.get(f"test/{COMPARED}")
    raw = final.get(f"test/raw_{COMPARED}")
    if learned is None or raw is None or math.isnan(learned) or math.isnan(raw):
        return None
    if learned >= raw:
        return None
    return (
        f"the learned embedding tests below the raw inputs: test/{COMPARED} {learned:.4f} < "
        f"test/raw_{COMPARED} {raw:.4f}; training made retrieval worse (check optimizer.lr, "
        "trainer.max_epochs and train/tuples_per_step in metrics.csv)"
    )
