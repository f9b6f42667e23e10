"""``dataset=text``: the user's own texts with class labels, from a .csv or .parquet table.

The table has a ``text`` column, a ``label`` column (integers or class names) and
optionally ``group`` and ``split`` (train, val or test per row) columns: the table of
``dataset=features`` with one text in place of the feature columns. It is read, checked
and split by the same code (:mod:`.column_features`, :class:`.feature_file.FeatureFile`),
so the split, fold and error rules are those of feature files, and a bad cell is named by
its file, column and row.

The texts are tokenized in the data pipeline by the backbone's own tokenizer
(``dataset.tokenizer: ${backbone.name}``, at most ``dataset.max_length`` tokens;
:mod:`dml.datasets.tokens`), for ``backbone=hf_text``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dml.datasets.base import DataSplits
from dml.datasets.tokens import TextDataset, TokenBatches
from dml.datasets.user_files.column_features import listing, read_table, with_labels
from dml.datasets.user_files.feature_file import FeatureFile
from dml.datasets.user_files.feature_rows import FeatureRows
from dml.errors import DmlError

log = logging.getLogger(__name__)

TEXT = "text"
SUFFIXES = (".csv", ".parquet")


def read_text_file(path: str | Path) -> FeatureRows:
    """The checked rows of a text table; their ``features`` are the texts (an object
    array), their labels, groups and split as a feature table's."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in SUFFIXES:
        raise DmlError(
            f"dataset.path={path} is not a text table; use a .csv or .parquet file with "
            f"columns {TEXT} and label"
        )
    if not path.is_file():
        raise DmlError(f"dataset.path={path} does not exist or is not a file")
    frame, probe = read_table(path)
    if TEXT not in frame.columns:
        raise DmlError(
            f"{path} has no column {TEXT!r} (its columns: {listing(frame.columns)}); name "
            "the column of texts 'text'"
        )
    rows = dataclasses.replace(probe, feature_names=(TEXT,))
    texts = checked_texts(frame[TEXT], rows)
    return dataclasses.replace(with_labels(frame, rows), features=texts)


def checked_texts(column: pd.Series, rows: FeatureRows) -> np.ndarray:
    """Every cell as a string; an empty one is named by its row. A number is the text of
    its digits (a CSV reader makes "42" a number)."""
    values = column.to_numpy(dtype=object, na_value=None)
    texts = np.asarray(["" if v is None else str(v).strip() for v in values], dtype=object)
    empty = np.flatnonzero(texts == "")
    if len(empty):
        raise DmlError(
            f"{rows.path}: {rows.field(TEXT)}, {rows.row(int(empty[0]))}: the text is empty "
            f"({len(empty)} rows are); give every row a text or remove the row"
        )
    return texts


def _stamp(path: str) -> tuple[int, int]:
    try:
        stat = Path(path).expanduser().stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _read_once(path: str, stamp: tuple[int, int]) -> FeatureRows:
    return read_text_file(path)


def cached_text_rows(path: str | Path) -> FeatureRows:
    """The table's rows, read once per process though the config (its class count) and
    the source (its rows) both need them; an edited file is read again."""
    return _read_once(str(path), _stamp(str(path)))


def file_num_classes(path: str | None) -> int | None:
    """``${dml.text_classes:PATH}``: one more than the largest label; None where the file
    cannot be read, so that the source's ``load`` says why in one line."""
    if path is None:
        return None
    try:
        rows = cached_text_rows(path)
    except DmlError:
        return None
    return int(rows.labels.max()) + 1


class TextFile(FeatureFile):
    """Rows of a text table, split as a feature file's rows are."""

    def __init__(
        self,
        path: str | None,
        tokenizer: str | None,
        max_length: int | None = None,
        num_classes: int | None = None,
        split: str = "auto",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        train_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            path,
            num_classes=num_classes,
            split=split,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            train_classes=train_classes,
            standardize=False,
            seed=seed,
        )
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._batches: TokenBatches | None = None

    def rows(self) -> FeatureRows:
        if self.path is None:
            raise DmlError(
                "dataset.path is not set: dml train dataset=text dataset.path=FILE (a .csv or "
                "a .parquet with columns text and label) backbone=hf_text"
            )
        return cached_text_rows(self.path)

    def load(self) -> DataSplits:
        rows = self.rows()
        batches = self.collate_fn()
        train, val, test, mode = self.split_rows(rows)
        labels = torch.as_tensor(rows.labels)
        groups = torch.as_tensor(rows.groups) if rows.groups is not None else None
        log.info(
            "%s: %d texts, %d classes: %d train, %d val, %d test (split=%s); tokenized by "
            "the tokenizer of %s, at most %d tokens",
            rows.path,
            len(labels),
            len(np.unique(rows.labels)),
            len(train),
            len(val),
            len(test),
            mode,
            self.tokenizer,
            batches.max_length,
        )

        def part(index: np.ndarray) -> TextDataset:
            taken = torch.as_tensor(index, dtype=torch.long)
            data = TextDataset(
                [str(t) for t in rows.features[index]],
                labels[taken],
                groups[taken] if groups is not None else None,
            )
            data.class_names = rows.class_names
            return data

        return DataSplits(train=part(train), val=part(val), test=part(test))

    def collate_fn(self) -> TokenBatches:
        """The tokenizer of ``dataset.tokenizer`` (the backbone's name), loaded once."""
        if self._batches is None:
            if self.tokenizer is None:
                raise DmlError(
                    "dataset=text is tokenized by the backbone's own tokenizer, but this "
                    "backbone has no name; use backbone=hf_text backbone.name=MODEL_OR_FOLDER "
                    "(or set dataset.tokenizer=MODEL_OR_FOLDER for your own backbone)"
                )
            from dml.backbones.hf_text_files import load_tokenizer

            self._batches = TokenBatches(load_tokenizer(str(self.tokenizer)), self.max_length)
        return self._batches
