"""Image files on disk: the list of a split's paths, lazy decoding, and the cheap check.

Images are checked once, when the dataset loads, and cheaply: the file must exist, be
non-empty, and open as an image (PIL reads the header only); a PNG must pass PIL's
``verify`` (chunk checksums up to the end chunk), and a JPEG must end with its
end-of-image marker, which a truncated download lacks. Full decoding waits until an
image is first read, in whichever process reads it (a DataLoader worker, usually).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dml.datasets.base import LabeledDataset
from dml.datasets.images.crop_boxes import boxes_or_whole, crop
from dml.errors import DmlError
from dml.transforms import Transform

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
# How far from the end of a JPEG file its end-of-image marker may sit; some cameras and
# editors pad files with a few hundred bytes after it.
_JPEG_TAIL_BYTES = 4096


@dataclass
class ImageList:
    """Image files and their class ids, in annotation order; group ids where the
    benchmark has them (see :class:`dml.datasets.base.LabeledDataset`), and crop boxes
    where the annotation gives them: one ``(left, top, right, bottom)`` row in pixels per
    image, NaN for an image used whole."""

    paths: list[Path]
    labels: np.ndarray
    groups: np.ndarray | None = None
    boxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.paths) != len(self.labels):
            raise DmlError(f"{len(self.paths)} image paths but {len(self.labels)} labels")
        if self.groups is not None:
            self.groups = np.asarray(self.groups, dtype=np.int64)
            if len(self.groups) != len(self.labels):
                raise DmlError(f"{len(self.groups)} group ids but {len(self.labels)} labels")
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
            if len(self.boxes) != len(self.labels):
                raise DmlError(f"{len(self.boxes)} crop boxes but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: np.ndarray | Sequence[int]) -> ImageList:
        index = np.asarray(index, int)
        groups = self.groups[index] if self.groups is not None else None
        boxes = self.boxes[index] if self.boxes is not None else None
        return ImageList([self.paths[i] for i in index], self.labels[index], groups, boxes)

    @staticmethod
    def concat(lists: Sequence[ImageList]) -> ImageList:
        grouped = all(lst.groups is not None for lst in lists)
        boxed = any(lst.boxes is not None for lst in lists)
        boxes = [boxes_or_whole(lst.boxes, len(lst)) for lst in lists]
        return ImageList(
            [p for lst in lists for p in lst.paths],
            np.concatenate([lst.labels for lst in lists]),
            np.concatenate([lst.groups for lst in lists]) if grouped else None,
            np.concatenate(boxes) if boxed else None,
        )


def group_numbers(keys: Sequence[str]) -> np.ndarray:
    """Integer ids of string group keys: equal keys, equal ids."""
    return np.unique(np.asarray(keys, dtype=str), return_inverse=True)[1].astype(np.int64)


class ImageListDataset(LabeledDataset):
    """Decodes each image on access, so only the paths sit in memory (and in each worker).

    Damage the load-time check could not see surfaces here, in whichever process reads
    the file (a DataLoader worker, usually). Without ``skip_corrupt`` it stops the run
    with the file's path. With it, the item is replaced by the next readable image of the
    same class, so a P×K batch keeps its composition, and one warning names the file.
    """

    def __init__(
        self, images: ImageList, transform: Transform | None = None, skip_corrupt: bool = False
    ) -> None:
        self.paths = [str(p) for p in images.paths]
        self.labels = torch.as_tensor(images.labels, dtype=torch.long)
        if images.groups is not None:
            self.groups = torch.as_tensor(images.groups, dtype=torch.long)
        self.boxes = images.boxes
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        # Items this process found unreadable: warned about once, then replaced silently.
        self.unreadable: set[int] = set()

    def __getitem__(self, index: int) -> tuple[Tensor | Image.Image, Tensor]:
        image = self.read(index)
        out = self.transform(image) if self.transform is not None else image
        return out, self.labels[index]

    def decode(self, index: int) -> Image.Image:
        """The item's image, cut to its crop box where the data gives one."""
        image = read_image(self.paths[index])
        if self.boxes is not None and np.isfinite(self.boxes[index]).all():
            image = crop(image, self.boxes[index], self.paths[index])
        return image

    def read(self, index: int) -> Image.Image:
        if index not in self.unreadable:
            try:
                return self.decode(index)
            except DmlError:
                if not self.skip_corrupt:
                    raise
                self.unreadable.add(index)
                log.warning(
                    "skipped unreadable image %s (dataset.skip_corrupt=true); a readable image "
                    "of its class is used in its place",
                    self.paths[index],
                )
        return self.replacement(index)

    def replacement(self, index: int) -> Image.Image:
        """The first readable image of the same class after ``index`` (wrapping around)."""
        same = torch.nonzero(self.labels == self.labels[index]).flatten().tolist()
        start = same.index(index)
        for other in same[start + 1 :] + same[:start]:
            if other in self.unreadable:
                continue
            try:
                return self.decode(other)
            except DmlError:
                self.unreadable.add(other)
                log.warning(
                    "skipped unreadable image %s (dataset.skip_corrupt=true)", self.paths[other]
                )
        raise DmlError(
            f"every image of class {int(self.labels[index])} is unreadable (e.g. "
            f"{self.paths[index]}); replace the files or remove the class from the annotations"
        )


def read_image(path: str | Path) -> Image.Image:
    """The decoded RGB image; damage found only now is a DmlError naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise DmlError(
            f"cannot decode image {path}: {exc}; it passed the load-time check, so it is "
            "damaged inside: replace or delete it, or set dataset.skip_corrupt=true"
        ) from exc


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not an intact image file, or None if the cheap checks pass."""
    try:
        size = path.stat().st_size
    except OSError:
        return "file is missing"
    if size == 0:
        return "file is empty"
    try:
        with Image.open(path) as image:
            kind = image.format
            if kind == "PNG":
                image.verify()
    except Exception as exc:  # PIL signals damaged files with many exception types
        return f"not a readable image ({type(exc).__name__}: {exc})"
    if kind == "JPEG" and not _jpeg_has_end(path, size):
        return "truncated JPEG (no end-of-image marker)"
    return None


def _jpeg_has_end(path: Path, size: int) -> bool:
    with path.open("rb") as f:
        f.seek(max(0, size - _JPEG_TAIL_BYTES))
        return b"\xff\xd9" in f.read()
