"""Input checks that name the offending item, run once when a dataset is read."""

from __future__ import annotations

import numpy as np

from dml.errors import DmlError


def non_integer_rows(values: np.ndarray) -> np.ndarray:
    """Positions of float labels that are not whole numbers (NaN and inf included): a label
    of 3.0 is class 3 (CSV readers write them), but truncating 3.5 would merge two classes."""
    return np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))


def check_arrays(features: np.ndarray, labels: np.ndarray, source: str) -> np.ndarray:
    """Labels must be integers and features finite; returns the labels as int64.

    A float label like 3.0 is accepted (CSV readers produce them); 3.5 or NaN is not, since
    silently truncating it would merge two classes.
    """
    labels = np.asarray(labels)
    if len(features) != len(labels):
        raise DmlError(f"{source}: {len(features)} feature rows but {len(labels)} labels")
    if labels.dtype.kind in "iu":
        integer_labels = labels.astype(np.int64)
    elif labels.dtype.kind == "f":
        bad = non_integer_rows(labels)
        if len(bad):
            first = int(bad[0])
            raise DmlError(
                f"{source}: label {labels[first].item()!r} at index {first} is not an integer; "
                "class labels must be integers"
            )
        integer_labels = labels.astype(np.int64)
    else:
        raise DmlError(
            f"{source}: labels have dtype {labels.dtype} (first: {labels[0]!r}); class labels "
            "must be integers, so map class names to 0..C-1 first"
        )
    flat = np.asarray(features).reshape(len(features), -1)
    finite_rows = np.isfinite(flat).all(axis=1)
    if not finite_rows.all():
        row = int(np.flatnonzero(~finite_rows)[0])
        col = int(np.flatnonzero(~np.isfinite(flat[row]))[0])
        raise DmlError(
            f"{source}: the features of item {row} hold {flat[row, col]} (at position {col}); "
            "remove or impute non-finite values"
        )
    return integer_labels
