"""The rows of a user's feature file, and the checks of their cells that every format shares.

Features of any modality (sentence embeddings, speaker vectors, tabular measurements)
arrive as arrays (:mod:`.array_features`: .npz, a .npy pair) or as named columns
(:mod:`.column_features`: .csv, .parquet). Each is read into one :class:`FeatureRows`, and
every check names the file, the column (or array) and the row, so that the user can fix
their export instead of guessing what a NaN deep inside training came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dml.datasets.checks import non_integer_rows
from dml.datasets.splitting import MARKED_SPLITS
from dml.errors import DmlError

#: Columns (or arrays) that are not features.
LABEL, GROUP, SPLIT = "label", "group", "split"


@dataclass(frozen=True)
class FeatureRows:
    """A feature file's rows: features, integer labels and, where the file has them,
    class names, group ids and each row's own split (train, val or test). A text table
    (:mod:`.text_file`) keeps its texts as the features, an array of strings."""

    path: Path
    features: np.ndarray
    labels: np.ndarray
    class_names: list[str] | None = None
    groups: np.ndarray | None = None
    split: np.ndarray | None = None
    #: The feature columns of a file with columns, for the messages; None for arrays.
    feature_names: tuple[str, ...] | None = None
    #: Columns are named as such, and CSV rows also by line; arrays by array name.
    by_column: bool = False
    is_csv: bool = False

    def field(self, name: str) -> str:
        """How the file names its labels, groups or split: a column or an array."""
        if self.by_column:
            return f"column {name!r}"
        return f"array {({LABEL: 'labels', GROUP: 'groups'}).get(name, name)!r}"

    def row(self, index: int) -> str:
        """Row ``index`` (0-based), and for CSV the line a text editor shows it on."""
        return f"row {index} (line {index + 2})" if self.is_csv else f"row {index}"


def class_ids(values: np.ndarray, rows: FeatureRows) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels as they are; text labels become ids 0..C-1 in sorted order, and the
    texts the class names. A missing or non-integer number is named by its row."""
    field = rows.field(LABEL)
    if values.dtype.kind in "iu":
        return values.astype(np.int64), None
    if values.dtype.kind == "f":
        bad = non_integer_rows(values)
        if len(bad):
            row = int(bad[0])
            problem = (
                "the label is empty"
                if np.isnan(values[row])
                else f"label {values[row].item()!r} is not an integer"
            )
            raise DmlError(
                f"{rows.path}: {field}, {rows.row(row)}: {problem}; give every row a "
                "whole-number label or a class name"
            )
        return values.astype(np.int64), None
    if values.dtype.kind == "b":
        return values.astype(np.int64), None
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and v != v)]
    if missing:
        raise DmlError(
            f"{rows.path}: {field}, {rows.row(missing[0])}: the label is empty; give every "
            "row a label"
        )
    names, ids = np.unique(np.asarray([str(v) for v in values]), return_inverse=True)
    return ids.astype(np.int64), [str(n) for n in names]


def group_ids(values: np.ndarray, rows: FeatureRows) -> np.ndarray:
    """Integer groups as they are; other values get ids, equal values equal ids. No value
    may be empty."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    as_text = [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in values]
    if None in as_text:
        raise DmlError(
            f"{rows.path}: {rows.field(GROUP)}, {rows.row(as_text.index(None))}: the group "
            "is empty; give every row a group, or drop the column"
        )
    return np.unique(np.asarray(as_text, dtype=str), return_inverse=True)[1].astype(np.int64)


def split_values(values: np.ndarray, rows: FeatureRows) -> np.ndarray:
    """Each row's split as text; anything but train, val or test is named by its row."""
    text = np.asarray([str(v).strip() for v in values])
    bad = np.flatnonzero(~np.isin(text, MARKED_SPLITS))
    if len(bad):
        row = int(bad[0])
        raise DmlError(
            f"{rows.path}: {rows.field(SPLIT)}, {rows.row(row)}: split {values[row]!r} is "
            f"not one of {', '.join(MARKED_SPLITS)}"
        )
    return text


def finite_float32(features: np.ndarray, rows: FeatureRows) -> np.ndarray:
    """The features as float32; NaN, inf, or a number too large for float32 is named by
    its row and its column (tables) or position (arrays)."""
    with np.errstate(over="ignore", invalid="ignore"):
        cast = np.asarray(features, dtype=np.float32)
    flat = cast.reshape(len(cast), -1)
    finite = np.isfinite(flat)
    if finite.all():
        return cast
    row = int(np.flatnonzero(~finite.all(axis=1))[0])
    position = int(np.flatnonzero(~finite[row])[0])
    names = rows.feature_names
    place = f"column {names[position]!r}" if names else f"feature {position}"
    value = np.asarray(features).reshape(len(cast), -1)[row, position]
    raise DmlError(
        f"{rows.path}: {place}, {rows.row(row)}: the value is {value} (a feature must be a "
        "finite float32 number); remove or impute it"
    )
