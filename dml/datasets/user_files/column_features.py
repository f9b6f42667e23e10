"""Feature files with named columns (.csv, .parquet): a ``label`` column, optional ``group``
and ``split`` columns, and the feature columns.

Without ``dataset.feature_columns`` every other column that holds numbers is a feature and
a column of text (file names, ids) is skipped. A column that mixes numbers with text is
almost always one bad cell in a numeric column, so it is an error naming that cell, not a
column silently dropped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dml.datasets.user_files.feature_rows import (
    GROUP,
    LABEL,
    SPLIT,
    FeatureRows,
    class_ids,
    finite_float32,
    group_ids,
    split_values,
)
from dml.errors import DmlError

log = logging.getLogger(__name__)


def read_columns(path: Path, feature_columns: Sequence[str] | None) -> FeatureRows:
    frame, probe = read_table(path)
    named = feature_columns is not None
    columns = (
        [str(c) for c in feature_columns]
        if feature_columns is not None
        else [c for c in frame.columns if c not in (LABEL, GROUP, SPLIT)]
    )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DmlError(
            f"dataset.feature_columns names {missing[0]!r}, which {path} does not have (its "
            f"columns: {listing(frame.columns)})"
        )
    used, values, skipped = [], [], []
    for name in columns:
        numbers = _numbers(frame[name], name, probe, named)
        if numbers is None:
            skipped.append(name)
        else:
            used.append(name)
            values.append(numbers)
    if skipped:
        log.info("%s: skipped the text columns %s (not features)", path, listing(skipped))
    if not used:
        raise DmlError(
            f"{path} has no numeric feature column besides {LABEL}, {GROUP} and {SPLIT} "
            f"(text columns: {listing(skipped) or 'none'}); add feature columns"
        )
    rows = with_labels(frame, dataclasses.replace(probe, feature_names=tuple(used)))
    return dataclasses.replace(rows, features=finite_float32(np.column_stack(values), rows))


def read_table(path: Path) -> tuple[pd.DataFrame, FeatureRows]:
    """A .csv or .parquet file as a frame with text column names, a ``label`` column and at
    least one row, and rows without features or labels yet that name its cells in messages:
    where every reader of a table (features, texts) starts."""
    frame = _read_frame(path)
    frame.columns = [str(c) for c in frame.columns]
    probe = FeatureRows(
        path, np.empty((len(frame), 0)), np.empty(0), by_column=True, is_csv=_is_csv(path)
    )
    if LABEL not in frame.columns:
        raise DmlError(
            f"{path} has no column {LABEL!r} (its columns: {listing(frame.columns)}); name "
            "the column of class labels 'label'"
        )
    if len(frame) == 0:
        raise DmlError(f"{path} has a header but no rows")
    return frame, probe


def with_labels(frame: pd.DataFrame, rows: FeatureRows) -> FeatureRows:
    """``rows`` with the table's labels (text labels as ids and class names), and its
    ``group`` and ``split`` columns where it has them, each checked cell by cell."""
    ids, names = class_ids(_plain(frame[LABEL]), rows)
    return dataclasses.replace(
        rows,
        labels=ids,
        class_names=names,
        groups=group_ids(_plain(frame[GROUP]), rows) if GROUP in frame.columns else None,
        split=split_values(_plain(frame[SPLIT]), rows) if SPLIT in frame.columns else None,
    )


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _read_frame(path: Path) -> pd.DataFrame:
    if _is_csv(path):
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DmlError(f"cannot read {path} as CSV: {exc}") from exc
    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise DmlError(
            f"reading {path} needs pyarrow, which is not installed: pip install 'pyarrow>=15'"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DmlError(f"cannot read {path} as Parquet: {exc}") from exc


def _numbers(column: pd.Series, name: str, rows: FeatureRows, named: bool) -> np.ndarray | None:
    """The column as float64; None for a text column that was not asked for by name."""
    if column.dtype.kind in "iufb":
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    coerced = pd.to_numeric(column, errors="coerce")
    bad = np.flatnonzero((coerced.isna() & column.notna()).to_numpy())
    if len(bad) == 0:
        return coerced.to_numpy(dtype=np.float64, na_value=np.nan)
    if not named and len(bad) == int(column.notna().sum()):
        return None
    row = int(bad[0])
    fix = (
        "fix the value or leave the column out of dataset.feature_columns"
        if named
        else "fix the value, or list the feature columns in dataset.feature_columns"
    )
    raise DmlError(
        f"{rows.path}: column {name!r}, {rows.row(row)}: {column.iloc[row]!r} is not a "
        f"number; {fix}"
    )


def _plain(column: pd.Series) -> np.ndarray:
    """Numbers as a NumPy number array (NaN where missing), anything else as objects with
    None where missing, which is what the label, group and split checks read."""
    if column.dtype.kind in "iub" and not column.isna().any():
        return column.to_numpy()
    if column.dtype.kind in "iuf":
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return column.to_numpy(dtype=object, na_value=None)


def listing(names: Sequence[str], most: int = 8) -> str:
    shown = ", ".join(str(n) for n in list(names)[:most])
    return shown + (f", … ({len(names)} in all)" if len(names) > most else "")
