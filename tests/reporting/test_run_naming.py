from __future__ import annotations

import pytest

from dml.reporting.run_naming import override_label


@pytest.mark.parametrize(
    ("override", "label"),
    [
        ("loss=triplet", "triplet"),
        ("loss.margin=0.2", "m0.2"),
        ("optimizer.lr=1e-3", "lr1e-3"),
        ("backbone.embedding_dim=64", "ed64"),
        # What Optuna draws: full float precision, shortened to 3 significant digits.
        ("optimizer.lr=0.0012345678912345", "lr0.00123"),
        ("loss.margin=0.27318846215", "m0.273"),
        ("seed=123456789", "123456789"),
    ],
)
def test_labels_are_short_and_readable(override: str, label: str) -> None:
    assert override_label(override) == label
