"""``dataset=features``: the user's own vectors, of any modality, from one file.

Sentence embeddings, speaker vectors or tabular measurements arrive as a ``.npz``, a
``.npy`` pair, a ``.csv`` or a ``.parquet`` file (:mod:`dml.datasets.feature_files` reads
and checks them) and train with ``backbone=mlp`` or ``backbone=linear``.

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
from dml.datasets.feature_files import LABEL, SPLIT, FeatureTable, read_feature_file
from dml.datasets.splitting import SPLITS, check_split_settings, marked_split, split_indices
from dml.errors import DmlError

log = logging.getLogger(__name__)

SPLIT_MODES = ("auto", *SPLITS, "file")


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
) -> FeatureTable:
    return read_feature_file(path, labels_path, columns)


def cached_table(
    path: str | Path,
    labels_path: str | Path | None = None,
    feature_columns: Sequence[str] | None = None,
) -> FeatureTable:
    """The file's table, read once per process even though both the config (its shape)
    and the source (its rows) need it."""
    columns = tuple(str(c) for c in feature_columns) if feature_columns is not None else None
    labels = str(labels_path) if labels_path is not None else None
    return _read_once(str(path), labels, columns, (_stamp(path), _stamp(labels_path)))


def _readable(
    path: str | None, labels_path: str | None, feature_columns: Sequence[str] | None
) -> FeatureTable | None:
    """The table, or None where it cannot be read: the source's ``load`` then says why in
    one line, rather than a config-resolution error wrapped around the message."""
    if path is None:
        return None
    try:
        return cached_table(path, labels_path, feature_columns)
    except DmlError:
        return None


def file_input_shape(
    path: str | None, labels_path: str | None = None, feature_columns: Sequence[str] | None = None
) -> list[int] | None:
    """``${dml.feature_shape:...}``: the shape of one row of features."""
    table = _readable(path, labels_path, feature_columns)
    return None if table is None else [int(n) for n in table.features.shape[1:]]


def file_num_classes(
    path: str | None, labels_path: str | None = None, feature_columns: Sequence[str] | None = None
) -> int | None:
    """``${dml.feature_classes:...}``: one more than the largest label, since labels index
    the rows of a per-class loss's parameters."""
    table = _readable(path, labels_path, feature_columns)
    return None if table is None else int(table.labels.max()) + 1


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

    def table(self) -> FeatureTable:
        if self.path is None:
            raise DmlError(
                "dataset.path is not set: dml train dataset=features dataset.path=FILE "
                "(.npz, .npy with dataset.labels_path, .csv or .parquet)"
            )
        table = cached_table(self.path, self.labels_path, self.feature_columns)
        shape = [int(n) for n in table.features.shape[1:]]
        if self.input_shape is not None and self.input_shape != shape:
            raise DmlError(
                f"dataset.input_shape={self.input_shape} but {table.path} has rows of shape "
                f"{shape}; leave dataset.input_shape at its default (read from the file)"
            )
        return table

    def load(self) -> DataSplits:
        table = self.table()
        self.check_classes(table)
        mode = self.split_mode(table)
        rng = np.random.default_rng(self.seed)
        if mode == "file":
            assert table.split is not None
            where = f"{table.path}: {table.field(SPLIT)}"
            train, val, test = marked_split(
                table.labels, table.split, self.val_fraction, rng, where
            )
        else:
            train, val, test = split_indices(
                table.labels,
                mode,
                self.val_fraction,
                self.test_fraction,
                self.train_classes,
                rng,
            )
        x = torch.as_tensor(table.features)
        if self.standardize:
            x = standardized(x, torch.as_tensor(train))
        y = torch.as_tensor(table.labels)
        g = torch.as_tensor(table.groups) if table.groups is not None else None
        log.info(
            "%s: %d rows of shape %s, %d classes: %d train, %d val, %d test (split=%s)",
            table.path,
            len(y),
            list(x.shape[1:]),
            len(np.unique(table.labels)),
            len(train),
            len(val),
            len(test),
            mode,
        )

        def part(index: np.ndarray) -> TensorLabeledDataset:
            rows = torch.as_tensor(index, dtype=torch.long)
            data = TensorLabeledDataset(x[rows], y[rows], groups=g[rows] if g is not None else None)
            data.class_names = table.class_names
            return data

        return DataSplits(train=part(train), val=part(val), test=part(test))

    def check_classes(self, table: FeatureTable) -> None:
        """A class of one row can neither be trained on (no positive pair) nor retrieved."""
        _, first, counts = np.unique(table.labels, return_index=True, return_counts=True)
        single = np.flatnonzero(counts == 1)
        if len(single) == 0:
            return
        row = int(first[single[0]])
        label = int(table.labels[row])
        name = table.class_names[label] if table.class_names is not None else label
        raise DmlError(
            f"{table.path}: {table.field(LABEL)}, {table.row(row)}: class {name!r} has only "
            f"this row ({len(single)} classes have one); every class needs 2 rows to be "
            "trained on or retrieved: add rows or remove the class"
        )

    def split_mode(self, table: FeatureTable) -> str:
        if self.split == "auto":
            return "file" if table.split is not None else "samples"
        if self.split == "file" and table.split is None:
            raise DmlError(
                f"dataset.split=file, but {table.path} has no {table.field(SPLIT)}; add one "
                "(train, val or test per row) or use dataset.split=samples or classes"
            )
        if self.split != "file" and table.split is not None:
            log.info(
                "%s: dataset.split=%s; the file's own split is not used", table.path, self.split
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
