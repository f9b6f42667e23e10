"""Feature files that hold arrays: a ``.npz``, or a ``.npy`` of features with a ``.npy`` of
labels.

A ``.npz`` holds ``features`` (or ``embeddings``, as ``dml embed`` writes them) and
``labels``, and optionally ``groups`` and ``split``; every array gets one value per row.
Arrays are named in the messages by their name in the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dml.datasets.user_files.feature_rows import (
    FeatureRows,
    class_ids,
    finite_float32,
    group_ids,
    split_values,
)
from dml.errors import DmlError


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


def read_npz(path: Path) -> FeatureRows:
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


def read_npy_pair(path: Path, labels_path: str | Path | None) -> FeatureRows:
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
) -> FeatureRows:
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
    draft = FeatureRows(path, features, labels)
    ids, names = class_ids(labels, draft)
    return FeatureRows(
        path=path,
        features=finite_float32(features, draft),
        labels=ids,
        class_names=names,
        groups=group_ids(groups, draft) if groups is not None else None,
        split=split_values(split, draft) if split is not None else None,
    )
