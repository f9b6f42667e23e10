"""``dataset=table``: images listed in a CSV in open-metric-learning's (OML's) format, so
that a dataset prepared for OML trains here unchanged.

Columns, as OML's documentation and ``check_retrieval_dataframe_format`` define them:

- ``label`` (integer class id), ``path`` (relative to ``data_dir``, or absolute), ``split``
  (``train`` or ``validation``), ``is_query`` and ``is_gallery`` (empty on train rows;
  True/False or 1/0 on validation rows, at least one of them true);
- optionally ``category`` (accepted; dml computes no per-category metrics), ``sequence``
  (photos of one sequence never retrieve each other under ``eval.exclude_same_group=true``;
  it becomes the group id), and a crop box ``x_1, x_2, y_1, y_2`` (left, right, top, bottom
  in pixels; empty on rows used whole).

OML's ``validation`` rows are dml's test set, evaluated as OML evaluates them: each query
retrieves among the gallery, as In-Shop does. Where every validation row is both query
and gallery (OML's "1 vs rest", as CUB or SOP tables have it), the test set is evaluated
against itself, each item left out of its own neighbours. dml also needs a validation
split for model selection; it is carved out of the ``train`` rows by ``val_split``
(by default whole classes, so it measures retrieval of unseen classes as the test does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dml.datasets.checks import non_integer_rows
from dml.datasets.images.files import ImageList, group_numbers
from dml.datasets.images.source import PartitionedImageSource
from dml.errors import DmlError

REQUIRED = ("label", "path", "split", "is_query", "is_gallery")
BOX = ("x_1", "x_2", "y_1", "y_2")
TABLE_SPLITS = ("train", "validation")
TRUE, FALSE = ("true", "1", "1.0"), ("false", "0", "0.0")


@dataclass(kw_only=True, eq=False)
class ImageTable(PartitionedImageSource):
    layout = (
        "a CSV in open-metric-learning's format (dataset.dataframe_name under data_dir) with "
        "columns label, path, split (train|validation), is_query, is_gallery and optionally "
        "category, sequence, x_1, x_2, y_1, y_2"
    )

    dataframe_name: str = "df.csv"

    def read(self, root: Path) -> dict[str, ImageList]:
        table = root / self.dataframe_name
        if not table.is_file():
            raise DmlError(f"table {table} does not exist; expected {self.layout}")
        try:
            frame = pd.read_csv(table)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DmlError(f"cannot read {table} as CSV: {exc}") from exc
        return TableRows(table, frame).partitions(root)


class TableRows:
    """The checked rows of one OML table; every error names the file, column and row."""

    def __init__(self, path: Path, frame: pd.DataFrame) -> None:
        self.path = path
        self.frame = frame
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise DmlError(
                f"{path} has no column {missing[0]!r} (its columns: "
                f"{', '.join(map(str, frame.columns))}); OML tables need {', '.join(REQUIRED)}"
            )
        if len(frame) == 0:
            raise DmlError(f"{path} has a header but no rows")

    def where(self, column: str, row: int) -> str:
        return f"{self.path}: column {column!r}, row {row} (line {row + 2})"

    def partitions(self, root: Path) -> dict[str, ImageList]:
        labels = self.labels()
        split = self.splits()
        is_train = split == "train"
        query = self.flags("is_query", is_train)
        gallery = self.flags("is_gallery", is_train)
        paths = self.paths(root)
        groups = self.groups()
        boxes = self.boxes()

        def rows(mask: np.ndarray) -> ImageList:
            index = np.flatnonzero(mask)
            return ImageList(
                [paths[i] for i in index],
                labels[index],
                groups[index] if groups is not None else None,
                boxes[index] if boxes is not None else None,
            )

        if not is_train.any() or is_train.all():
            missing = "train" if not is_train.any() else "validation"
            raise DmlError(f"{self.path}: column 'split' marks no row {missing!r}")
        validation = ~is_train
        neither = np.flatnonzero(validation & ~query & ~gallery)
        if len(neither):
            raise DmlError(
                f"{self.where('is_query', int(neither[0]))}: a validation row must be a query, "
                "a gallery item or both"
            )
        both = validation & query & gallery
        if both[validation].all():
            return {"train": rows(is_train), "test": rows(validation)}
        if both.any():
            raise DmlError(
                f"{self.where('is_gallery', int(np.flatnonzero(both)[0]))}: this row is both "
                "query and gallery but others are not; dml evaluates either every validation "
                "row against the others (all both) or queries against a separate gallery (none "
                "both)"
            )
        self.check_queries_match(labels, validation & query, validation & gallery)
        return {
            "train": rows(is_train),
            "query": rows(validation & query),
            "gallery": rows(validation & gallery),
        }

    def labels(self) -> np.ndarray:
        values = pd.to_numeric(self.frame["label"], errors="coerce").to_numpy(dtype=np.float64)
        bad = non_integer_rows(values)
        if len(bad):
            row = int(bad[0])
            raise DmlError(
                f"{self.where('label', row)}: {self.frame['label'].iloc[row]!r} is not an "
                "integer label; OML tables give every row an integer class id"
            )
        return values.astype(np.int64)

    def splits(self) -> np.ndarray:
        text = self.frame["split"].astype(str).str.strip().to_numpy()
        bad = np.flatnonzero(~np.isin(text, TABLE_SPLITS))
        if len(bad):
            row = int(bad[0])
            raise DmlError(
                f"{self.where('split', row)}: split {self.frame['split'].iloc[row]!r} is not "
                f"one of {', '.join(TABLE_SPLITS)}"
            )
        return text

    def flags(self, column: str, is_train: np.ndarray) -> np.ndarray:
        """True/False (or 1/0) on validation rows; empty on train rows, as OML requires."""
        out = np.zeros(len(self.frame), dtype=bool)
        for row, value in enumerate(self.frame[column].tolist()):
            empty = value is None or (isinstance(value, float) and np.isnan(value))
            text = str(value).strip().lower()
            if is_train[row]:
                if not empty:
                    raise DmlError(
                        f"{self.where(column, row)}: a train row has {column}={value!r}; leave "
                        f"{column} empty on train rows (only validation rows are retrieved)"
                    )
            elif text in TRUE:
                out[row] = True
            elif empty or text not in FALSE:
                raise DmlError(
                    f"{self.where(column, row)}: {value!r} on a validation row; give True or "
                    "False (or 1 or 0)"
                )
        return out

    def paths(self, root: Path) -> list[Path]:
        values = self.frame["path"].tolist()
        for row, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                raise DmlError(f"{self.where('path', row)}: the image path is empty")
        return [root / value for value in values]

    def groups(self) -> np.ndarray | None:
        """OML's ``sequence``: one group per sequence id, and a row without one is alone."""
        if "sequence" not in self.frame.columns:
            return None
        keys = [
            f"row {row}" if pd.isna(value) else f"sequence {value}"
            for row, value in enumerate(self.frame["sequence"].tolist())
        ]
        return group_numbers(keys)

    def boxes(self) -> np.ndarray | None:
        """(left, top, right, bottom) rows; NaN where a row has no box."""
        present = [c for c in BOX if c in self.frame.columns]
        if not present:
            return None
        if len(present) < len(BOX):
            missing = [c for c in BOX if c not in present]
            raise DmlError(
                f"{self.path} has crop columns {', '.join(present)} but not "
                f"{', '.join(missing)}; give all four of x_1, x_2, y_1, y_2 or none"
            )
        values = {c: pd.to_numeric(self.frame[c], errors="coerce").to_numpy(float) for c in BOX}
        for c in BOX:
            text = np.flatnonzero(np.isnan(values[c]) & self.frame[c].notna().to_numpy())
            if len(text):
                raise DmlError(
                    f"{self.where(c, int(text[0]))}: {self.frame[c].iloc[int(text[0])]!r} is "
                    "not a pixel coordinate"
                )
        box = np.column_stack([values["x_1"], values["y_1"], values["x_2"], values["y_2"]])
        filled = np.isfinite(box)
        partial = np.flatnonzero(filled.any(1) & ~filled.all(1))
        if len(partial):
            row = int(partial[0])
            empty = BOX[[0, 2, 1, 3][int(np.flatnonzero(~filled[row])[0])]]
            raise DmlError(
                f"{self.where(empty, row)}: the crop box is incomplete; fill x_1, x_2, y_1 and "
                "y_2, or leave all four empty to use the whole image"
            )
        whole = filled.all(1)
        invalid = np.flatnonzero(
            whole
            & (
                (box < 0).any(1)
                | (box != np.round(box)).any(1)
                | (box[:, 0] >= box[:, 2])
                | (box[:, 1] >= box[:, 3])
            )
        )
        if len(invalid):
            row = int(invalid[0])
            left, top, right, bottom = box[row].tolist()
            raise DmlError(
                f"{self.where('x_1', row)}: crop box x_1={left:g}, x_2={right:g}, y_1={top:g}, "
                f"y_2={bottom:g}; need whole pixels with 0 <= x_1 < x_2 and 0 <= y_1 < y_2"
            )
        return box

    def check_queries_match(
        self, labels: np.ndarray, query: np.ndarray, gallery: np.ndarray
    ) -> None:
        """Every query's label must be in the gallery (OML checks the same)."""
        unmatched = np.flatnonzero(query & ~np.isin(labels, labels[gallery]))
        if len(unmatched):
            row = int(unmatched[0])
            raise DmlError(
                f"{self.where('label', row)}: query label {labels[row]} has no gallery image, "
                "so this query can match nothing; add one or drop the query"
            )
