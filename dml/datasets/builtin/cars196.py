"""Stanford Cars (Cars196), with the DML split: classes 1–98 train, 99–196 test.

Two layouts are in circulation and both are read:

- the original release: ``cars_annos.mat`` beside ``car_ims/``, one annotation per image
  with its path and 1-based ``class``;
- the devkit release (torchvision's ``StanfordCars`` folder): ``devkit/cars_train_annos.mat``
  with ``cars_train/``, ``cars_test_annos_withlabels.mat`` with ``cars_test/``, and
  ``devkit/cars_meta.mat`` for the class names.

Like CUB, the release's own train/test flag splits images of the same classes; metric
learning pools both halves and splits by class id instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import loadmat

from dml.datasets.images.files import ImageList
from dml.datasets.images.source import ClassRangeSource, require_classes
from dml.errors import DmlError


def read_mat(path: Path, *fields: str) -> dict[str, Any]:
    """The named variables of a MATLAB file, each squeezed to a 1-D array."""
    try:
        content = loadmat(path, squeeze_me=True)
    except (OSError, ValueError, TypeError) as exc:
        raise DmlError(f"cannot read MATLAB file {path}: {exc}") from exc
    missing = [f for f in fields if f not in content]
    if missing:
        raise DmlError(f"{path} has no variable {missing[0]!r}; is it the Stanford Cars devkit?")
    return {f: np.atleast_1d(content[f]) for f in fields}


def struct_column(annotations: np.ndarray, field: str, path: Path) -> list[Any]:
    """One field of a MATLAB struct array, as a Python list."""
    if annotations.dtype.names is None or field not in annotations.dtype.names:
        raise DmlError(
            f"{path}: the annotations have no field {field!r} "
            f"(fields: {list(annotations.dtype.names or [])})"
        )
    return [np.asarray(entry).item() for entry in annotations[field]]


class Cars196(ClassRangeSource):
    """196 car models, 16,185 images."""

    layout = (
        "a Stanford Cars folder with cars_annos.mat (fields relative_im_path, class) and "
        "car_ims/*.jpg, or the devkit layout: devkit/cars_train_annos.mat, devkit/cars_meta.mat, "
        "cars_train/*.jpg, cars_test_annos_withlabels.mat and cars_test/*.jpg"
    )

    def find_root(self) -> Path:
        """``data_dir`` itself, or its ``stanford_cars`` folder (torchvision's root)."""
        return self.root_or_nested("stanford_cars", _has_annotations)

    def read_all(self, root: Path) -> ImageList:
        original = root / "cars_annos.mat"
        if not original.is_file() and (root / "devkit").is_dir():
            return self._read_devkit(root)
        return self._read_original(self.require_file(original))

    def _read_original(self, path: Path) -> ImageList:
        mat = read_mat(path, "annotations", "class_names")
        annotations = mat["annotations"]
        paths = [path.parent / str(p) for p in struct_column(annotations, "relative_im_path", path)]
        images = ImageList(paths, struct_column(annotations, "class", path))
        require_classes(images, _class_names(mat["class_names"]), path, path)
        return images

    def _read_devkit(self, root: Path) -> ImageList:
        meta = self.require_file(root / "devkit" / "cars_meta.mat")
        parts = []
        for annos, folder in (
            (root / "devkit" / "cars_train_annos.mat", "cars_train"),
            (root / "cars_test_annos_withlabels.mat", "cars_test"),
        ):
            annotations = read_mat(self.require_file(annos), "annotations")["annotations"]
            files = struct_column(annotations, "fname", annos)
            parts.append(
                ImageList(
                    [root / folder / str(f) for f in files],
                    struct_column(annotations, "class", annos),
                )
            )
        images = ImageList.concat(parts)
        names = _class_names(read_mat(meta, "class_names")["class_names"])
        require_classes(images, names, root / "devkit" / "cars_train_annos.mat", meta)
        return images


def _has_annotations(folder: Path) -> bool:
    return (folder / "cars_annos.mat").is_file() or (folder / "devkit").is_dir()


def _class_names(names: np.ndarray) -> dict[int, str]:
    return {i: str(name) for i, name in enumerate(names.tolist(), start=1)}
