"""Reading a user's feature file (.npz, a .npy pair, .csv, .parquet) into checked arrays.

Features of any modality (sentence embeddings, speaker vectors, tabular measurements)
arrive as one of four file types. Each is read into one :class:`FeatureTable`, and every
check names the file, the column (or array) and the row, so that the user can fix their
export instead of guessing what a NaN deep inside training came from.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dml.errors import DmlError

log = logging.getLogger(__name__)

#: Values of a file's own split column (or array).
FILE_SPLITS = ("train", "val", "test")
#: Table columns that are not features.
LABEL, GROUP, SPLIT = "label", "group", "split"
SUFFIXES = (".npz", ".npy", ".csv", ".parquet")


@dataclass(frozen=True)
class FeatureTable:
    """A feature file's rows: features, integer labels and, where the file has them,
    class names, group ids and each row's own split (train, val or test)."""

    path: Path
    features: np.ndarray
    labels: np.ndarray
    class_names: list[str] | None = None
    groups: np.ndarray | None = None
    split: np.ndarray | None = None
    #: A table's feature columns, for the messages; None for arrays.
    feature_names: tuple[str, ...] | None = None
    #: Tables are named by column and CSV rows also by line; arrays by array name.
    is_table: bool = False
    is_csv: bool = False

    def field(self, name: str) -> str:
        """How the file names its labels, groups or split: a column or an array."""
        if self.is_table:
            return f"column {name!r}"
        return f"array {({LABEL: 'labels', GROUP: 'groups'}).get(name, name)!r}"

    def row(self, index: int) -> str:
        """Row ``index`` (0-based), and for CSV the line a text editor shows it on."""
        return f"row {index} (line {index + 2})" if self.is_csv else f"row {index}"


def read_feature_file(
    path: str | Path,
    labels_path: str | Path | None = None,
    feature_columns: Sequence[str] | None = None,
) -> FeatureTable:
    """The checked contents of ``path``; ``labels_path`` is the labels' .npy for a .npy
    of features, ``feature_columns`` the feature columns of a table (default: every
    numeric column other than label, group and split)."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DmlError(
            f"dataset.path={path} is not a feature file; use one of {', '.join(SUFFIXES)}"
        )
    if not path.is_file():
        raise DmlError(f"dataset.path={path} does not exist or is not a file")
    if feature_columns is not None and suffix not in (".csv", ".parquet"):
        raise DmlError(
            f"dataset.feature_columns names table columns, but {path} is a {suffix} file; "
            "set dataset.feature_columns=null"
        )
    if labels_path is not None and suffix != ".npy":
        raise DmlError(
            f"dataset.labels_path is for a .npy of features; {path} holds its own labels, so "
            "set dataset.labels_path=null"
        )
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".npy":
        return _read_npy_pair(path, labels_path)
    from dml.datasets.feature_tables import read_table

    return read_table(path, feature_columns)


def _load_array(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DmlError(
            f"{path}: {what} holds Python objects ({exc}); save numbers, or class names as a "
            "fixed-width string array (np.array(names, dtype=str))"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DmlError(f"cannot read {path}: {exc}; it is not a NumPy file") from exc


def _read_npz(path: Path) -> FeatureTable:
    """Arrays ``features`` (or ``embeddings``, as ``dml embed`` writes them) and ``labels``;
    optionally ``groups`` and ``split``."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DmlError(f"cannot read {path}: {exc}; it is not a NumPy .npz file") from exc
    with archive:
        names = list(archive.files)
        key = "features" if "features" in names else "embeddings"
        for required in (key, "labels"):
            if required not in names:
                raise DmlError(
                    f"{path} has no array {'features' if required == key else required!r} "
                    f"(it has {', '.join(names) or 'none'}); save features=..., labels=..."
                )

        def get(name: str) -> np.ndarray | None:
            if name not in names:
                return None
            try:
                return archive[name]
            except ValueError as exc:
                raise DmlError(
                    f"{path}: array {name!r} holds Python objects ({exc}); save numbers, or "
                    "names as a fixed-width string array (np.array(names, dtype=str))"
                ) from exc

        features, labels = get(key), get("labels")
        groups, split = get("groups"), get("split")
    assert features is not None and labels is not None
    return _assemble(path, features, labels, groups, split, feature_name=key)


def _read_npy_pair(path: Path, labels_path: str | Path | None) -> FeatureTable:
    if labels_path is None:
        raise DmlError(
            f"{path} is a .npy of features only; give the labels as a second .npy with "
            "dataset.labels_path=LABELS.npy (or save both in one .npz)"
        )
    labels_file = Path(labels_path).expanduser()
    if not labels_file.is_file():
        raise DmlError(f"dataset.labels_path={labels_file} does not exist or is not a file")
    features = _load_array(path, "the features array")
    labels = _load_array(labels_file, "the labels array")
    if labels.ndim != 1:
        raise DmlError(
            f"{labels_file} has shape {labels.shape}; labels must be one value per row of {path}"
        )
    return _assemble(path, features, labels, None, None, feature_name=path.name)


def _assemble(
    path: Path,
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None,
    split: np.ndarray | None,
    feature_name: str,
) -> FeatureTable:
    """Check the arrays' shapes and kinds against each other and build the table."""
    if features.ndim < 2 or features.dtype.kind not in "iufb":
        raise DmlError(
            f"{path}: array {feature_name!r} has shape {features.shape} and dtype "
            f"{features.dtype}; features must be numbers, one row per sample"
        )
    for name, values in (("labels", labels), ("groups", groups), ("split", split)):
        if values is not None and values.shape != (len(features),):
            raise DmlError(
                f"{path}: array {name!r} has shape {values.shape} but there are "
                f"{len(features)} feature rows; give one value per row"
            )
    draft = FeatureTable(path, features, labels)
    ids, names = class_ids(labels, draft)
    return FeatureTable(
        path=path,
        features=finite_float32(features, draft),
        labels=ids,
        class_names=names,
        groups=group_ids(groups, draft) if groups is not None else None,
        split=split_values(split, draft) if split is not None else None,
    )


def class_ids(values: np.ndarray, table: FeatureTable) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels as they are; text labels become ids 0..C-1 in sorted order, and the
    texts the class names. A missing or non-integer number is named by its row."""
    field = table.field(LABEL)
    if values.dtype.kind in "iu":
        return values.astype(np.int64), None
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if len(bad):
            row = int(bad[0])
            problem = (
                "the label is empty"
                if np.isnan(values[row])
                else f"label {values[row].item()!r} is not an integer"
            )
            raise DmlError(
                f"{table.path}: {field}, {table.row(row)}: {problem}; give every row a "
                "whole-number label or a class name"
            )
        return values.astype(np.int64), None
    if values.dtype.kind == "b":
        return values.astype(np.int64), None
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and v != v)]
    if missing:
        raise DmlError(
            f"{table.path}: {field}, {table.row(missing[0])}: the label is empty; give every "
            "row a label"
        )
    names, ids = np.unique(np.asarray([str(v) for v in values]), return_inverse=True)
    return ids.astype(np.int64), [str(n) for n in names]


def group_ids(values: np.ndarray, table: FeatureTable) -> np.ndarray:
    """Integer groups as they are; other values get ids, equal values equal ids. No value
    may be empty."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    as_text = [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in values]
    if None in as_text:
        raise DmlError(
            f"{table.path}: {table.field(GROUP)}, {table.row(as_text.index(None))}: the group "
            "is empty; give every row a group, or drop the column"
        )
    return np.unique(np.asarray(as_text, dtype=str), return_inverse=True)[1].astype(np.int64)


def split_values(values: np.ndarray, table: FeatureTable) -> np.ndarray:
    """Each row's split as text; anything but train, val or test is named by its row."""
    text = np.asarray([str(v).strip() for v in values])
    bad = np.flatnonzero(~np.isin(text, FILE_SPLITS))
    if len(bad):
        row = int(bad[0])
        raise DmlError(
            f"{table.path}: {table.field(SPLIT)}, {table.row(row)}: split {values[row]!r} is "
            f"not one of {', '.join(FILE_SPLITS)}"
        )
    return text


def finite_float32(features: np.ndarray, table: FeatureTable) -> np.ndarray:
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
    names = table.feature_names
    place = f"column {names[position]!r}" if names else f"feature {position}"
    value = np.asarray(features).reshape(len(cast), -1)[row, position]
    raise DmlError(
        f"{table.path}: {place}, {table.row(row)}: the value is {value} (a feature must be a "
        "finite float32 number); remove or impute it"
    )
