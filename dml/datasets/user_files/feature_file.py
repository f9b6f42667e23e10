"""``dataset=features``: the user's own vectors, of any modality, from one file.

Sentence embeddings, speaker vectors or tabular measurements arrive as a ``.npz``, a
``.npy`` pair (:mod:`.array_features`), a ``.csv`` or a ``.parquet`` file
(:mod:`.column_features`), are read into checked rows (:mod:`.feature_rows`) and train
with ``backbone=mlp`` or ``backbone=linear``.

They are split like the built-in data (``samples`` or ``classes``), or by the file's own
``split`` column or array (``file``; ``auto``, the default, uses it where the file has
one). ``input_shape`` and ``num_classes`` are read from the file when the config is
resolved (:func:`file_input_shape`), so the backbone and any per-class loss fit the data
without the user counting columns.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dml.datasets.base import DatasetSource, DataSplits, TensorLabeledDataset
from dml.datasets.splitting import (
    SPLITS,
    check_split_settings,
    marked_split,
    no_folds_reason,
    split_indices,
)
from dml.datasets.user_files.array_features import read_npy_pair, read_npz
from dml.datasets.user_files.column_features import read_columns
from dml.datasets.user_files.feature_rows import LABEL, SPLIT, FeatureRows
from dml.errors import DmlError

log = logging.getLogger(__name__)

SPLIT_MODES = ("auto", *SPLITS, "file")
SUFFIXES = (".npz", ".npy", ".csv", ".parquet")


def read_feature_file(
    path: str | Path,
    labels_path: str | Path | None = None,
    feature_columns: Sequence[str] | None = None,
) -> FeatureRows:
    """The checked contents of ``path``; ``labels_path`` is the labels' .npy for a .npy
    of features, ``feature_columns`` the feature columns of a .csv or .parquet (default: every
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
            f"dataset.feature_columns names columns of a .csv or .parquet, but {path} is a "
            f"{suffix} file; set dataset.feature_columns=null"
        )
    if labels_path is not None and suffix != ".npy":
        raise DmlError(
            f"dataset.labels_path is for a .npy of features; {path} holds its own labels, so "
            "set dataset.labels_path=null"
        )
    if suffix == ".npz":
        return read_npz(path)
    if suffix == ".npy":
        return read_npy_pair(path, labels_path)
    return read_columns(path, feature_columns)


def _stamp(path: str | Path | None) -> tuple[int, int]:
    """A file's modification time and size, so an edited file is read again."""
    if path is None:
        return (0, 0)
    try:
        stat = Path(path).expanduser().stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _read_once(
    path: str,
    labels_path: str | None,
    columns: tuple[str, ...] | None,
    stamps: tuple[tuple[int, int], tuple[int, int]],
) -> FeatureRows:
    return read_feature_file(path, labels_path, columns)


def cached_rows(
    path: str | Path,
    labels_path: str | Path | None = None,
    feature_columns: Sequence[str] | None = None,
) -> FeatureRows:
    """The file's rows, read once per process even though both the config (its shape)
    and the source (its rows) need it."""
    columns = tuple(str(c) for c in feature_columns) if feature_columns is not None else None
    labels = str(labels_path) if labels_path is not None else None
    return _read_once(str(path), labels, columns, (_stamp(path), _stamp(labels_path)))


def _readable(
    path: str | None, labels_path: str | None, feature_columns: Sequence[str] | None
) -> FeatureRows | None:
    """The rows, or None where it cannot be read: the source's ``load`` then says why in
    one line, rather than a config-resolution error wrapped around the message."""
    if path is None:
        return None
    try:
        return cached_rows(path, labels_path, feature_columns)
    except DmlError:
        return None


def file_input_shape(
    path: str | None, labels_path: str | None = None, feature_columns: Sequence[str] | None = None
) -> list[int] | None:
    """``${dml.feature_shape:...}``: the shape of one row of features."""
    rows = _readable(path, labels_path, feature_columns)
    return None if rows is None else [int(n) for n in rows.features.shape[1:]]


def file_num_classes(
    path: str | None, labels_path: str | None = None, feature_columns: Sequence[str] | None = None
) -> int | None:
    """``${dml.feature_classes:...}``: one more than the largest label, since labels index
    the rows of a per-class loss's parameters."""
    rows = _readable(path, labels_path, feature_columns)
    return None if rows is None else int(rows.labels.max()) + 1


class FeatureFile(DatasetSource):
    """Rows of a feature file; ``standardize`` shifts and scales every feature by the
    training split's mean and std (never the whole file's, which would leak test rows)."""

    def __init__(
        self,
        path: str | None,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        labels_path: str | None = None,
        feature_columns: Sequence[str] | None = None,
        split: str = "auto",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        train_classes: int | None = None,
        standardize: bool = True,
        seed: int = 0,
    ) -> None:
        check_split_settings(split, val_fraction, test_fraction, SPLIT_MODES)
        if isinstance(feature_columns, str):
            feature_columns = [feature_columns]
        self.path = path
        self.input_shape = list(input_shape) if input_shape is not None else None
        self.num_classes = num_classes
        self.labels_path = labels_path
        self.feature_columns = list(feature_columns) if feature_columns is not None else None
        self.split = split
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.train_classes = train_classes
        self.standardize = standardize
        self.seed = seed

    def rows(self) -> FeatureRows:
        if self.path is None:
            raise DmlError(
                "dataset.path is not set: dml train dataset=features dataset.path=FILE "
                "(.npz, .npy with dataset.labels_path, .csv or .parquet)"
            )
        rows = cached_rows(self.path, self.labels_path, self.feature_columns)
        shape = [int(n) for n in rows.features.shape[1:]]
        if self.input_shape is not None and self.input_shape != shape:
            raise DmlError(
                f"dataset.input_shape={self.input_shape} but {rows.path} has rows of shape "
                f"{shape}; leave dataset.input_shape at its default (read from the file)"
            )
        return rows

    def load(self) -> DataSplits:
        rows = self.rows()
        train, val, test, mode = self.split_rows(rows)
        x = torch.as_tensor(rows.features)
        if self.standardize:
            x = standardized(x, torch.as_tensor(train))
        y = torch.as_tensor(rows.labels)
        g = torch.as_tensor(rows.groups) if rows.groups is not None else None
        log.info(
            "%s: %d rows of shape %s, %d classes: %d train, %d val, %d test (split=%s)",
            rows.path,
            len(y),
            list(x.shape[1:]),
            len(np.unique(rows.labels)),
            len(train),
            len(val),
            len(test),
            mode,
        )

        def part(index: np.ndarray) -> TensorLabeledDataset:
            taken = torch.as_tensor(index, dtype=torch.long)
            data = TensorLabeledDataset(
                x[taken], y[taken], groups=g[taken] if g is not None else None
            )
            data.class_names = rows.class_names
            return data

        return DataSplits(train=part(train), val=part(val), test=part(test))

    def split_rows(self, rows: FeatureRows) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """Train, val and test row indices under ``dataset.split``, and the split used:
        the rules of :mod:`dml.datasets.splitting`, class folds included."""
        self.check_classes(rows)
        mode = self.split_mode(rows)
        rng = np.random.default_rng(self.seed)
        if mode == "file":
            assert rows.split is not None
            where = f"{rows.path}: {rows.field(SPLIT)}"
            train, val, test = marked_split(rows.labels, rows.split, self.val_fraction, rng, where)
        else:
            train, val, test = split_indices(
                rows.labels,
                mode,
                self.val_fraction,
                self.test_fraction,
                self.train_classes,
                rng,
                self.class_folds,
            )
        return train, val, test, mode

    def folds_problem(self, setting: str = "dataset.folds") -> str | None:
        return no_folds_reason(self.split, setting=setting)

    def check_classes(self, rows: FeatureRows) -> None:
        """A class of one row can neither be trained on (no positive pair) nor retrieved."""
        _, first, counts = np.unique(rows.labels, return_index=True, return_counts=True)
        single = np.flatnonzero(counts == 1)
        if len(single) == 0:
            return
        row = int(first[single[0]])
        label = int(rows.labels[row])
        name = rows.class_names[label] if rows.class_names is not None else label
        raise DmlError(
            f"{rows.path}: {rows.field(LABEL)}, {rows.row(row)}: class {name!r} has only "
            f"this row ({len(single)} classes have one); every class needs 2 rows to be "
            "trained on or retrieved: add rows or remove the class"
        )

    def split_mode(self, rows: FeatureRows) -> str:
        if self.split == "auto":
            return "file" if rows.split is not None else "samples"
        if self.split == "file" and rows.split is None:
            raise DmlError(
                f"dataset.split=file, but {rows.path} has no {rows.field(SPLIT)}; add one "
                "(train, val or test per row) or use dataset.split=samples or classes"
            )
        if self.split != "file" and rows.split is not None:
            log.info(
                "%s: dataset.split=%s; the file's own split is not used", rows.path, self.split
            )
        return self.split


def standardized(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Features shifted and scaled by the training rows' statistics; a constant feature is
    only shifted."""
    rows = x[train].double()
    mean = rows.mean(dim=0)
    std = rows.std(dim=0) if len(rows) > 1 else torch.ones_like(mean)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return ((x.double() - mean) / std).float()
