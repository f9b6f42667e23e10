"""The rule that a run which measured nothing does not end as a success.

A test split in which no query has another item of its class gives NaN retrieval metrics;
a run that exits 0 with them looks finished in a sweep and in `dml compare`. The metrics
are still written (a failure loses nothing already measured), then the command fails.
"""

from __future__ import annotations

import math
from pathlib import Path

from dml.errors import DmlError

# Where NaN retrieval metrics come from, and the fix.
NO_RELEVANT_ITEM = (
    "no test query has another item of its own class in the evaluated set, so there is "
    "nothing to retrieve; give the test split at least 2 items per class (raise "
    "dataset.test_fraction, or use dataset.split=classes, which tests on whole classes)"
)

SINGLE_CLASS = (
    "the test split holds a single class, so no different-class pair exists to measure; "
    "give the test split at least 2 classes"
)


def check_final_metrics(final: dict[str, float], run_dir: Path) -> None:
    """Raise a one-line DmlError if any final test metric is NaN, after it was written."""
    missing = sorted(
        key
        for key, value in final.items()
        if key.startswith("test/") and isinstance(value, float) and math.isnan(value)
    )
    if not missing:
        return
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    if "test/map_at_r" in missing:
        reason = NO_RELEVANT_ITEM
    elif "test/dist_neg_mean" in missing:
        reason = SINGLE_CLASS
    else:
        reason = "see the run's log for the warning that names the cause"
    raise DmlError(
        f"{len(missing)} final metric(s) are NaN ({shown}): {reason}. They are kept in "
        f"{run_dir / 'metrics.json'}"
    )
