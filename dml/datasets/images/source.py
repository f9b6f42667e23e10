"""What every image source shares: its settings, the load-time check of its files, and
carving a validation set out of fixed training partitions.

A subclass only knows its layout: it resolves its root folder and returns lists of image
paths with class ids per partition (``train``, ``test``, and for In-Shop ``query`` and
``gallery``; ``all`` for an image folder, which it splits itself). Everything else,
including the errors, is here, so that every source fails the same way on the same kind
of bad input.

Images are checked once, when the dataset loads, and cheaply: the file must exist, be
non-empty, and open as an image (PIL reads the header only); a PNG must pass PIL's
``verify`` (chunk checksums up to the end chunk), and a JPEG must end with its
end-of-image marker, which a truncated download lacks. Full decoding waits until an
image is first read, so loading 120k Stanford Online Products paths takes seconds, not
minutes; damage the cheap check cannot see is reported, by path, at that first read.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from dml.datasets.base import DatasetSource, DataSplits
from dml.datasets.images.files import ImageList, ImageListDataset, image_problem
from dml.datasets.splitting import hold_out_val, no_folds_reason, train_class_count
from dml.errors import DmlError
from dml.transforms import ImageTransforms, Transform

log = logging.getLogger(__name__)

# Threads for the load-time check: the work is file I/O, which releases the GIL.
_CHECK_THREADS = 8


@dataclass(kw_only=True, eq=False)
class ImageSource(DatasetSource):
    """Images read from ``data_dir``; subclasses parse its layout and split it.

    The settings every image source shares are its fields, passed by keyword (as Hydra
    passes ``dataset.*``), so a subclass declares only its own. ``transform`` defaults to
    :class:`dml.transforms.ImageTransforms`, whose crop size ``input_shape`` must match.
    """

    #: The on-disk layout, in one line, for error messages.
    layout: ClassVar[str]
    reads_files: ClassVar[bool] = True

    data_dir: str | Path
    input_shape: Sequence[int]
    num_classes: int | None = None
    transform: ImageTransforms | None = None
    val_fraction: float = 0.1
    skip_corrupt: bool = False
    verify_images: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        if self.transform is None:
            self.transform = ImageTransforms()
        expected = [3, self.transform.crop_size, self.transform.crop_size]
        if list(self.input_shape) != expected:
            raise DmlError(
                f"dataset.input_shape={list(self.input_shape)} but the transform yields "
                f"{expected}; set input_shape to [3, crop_size, crop_size]"
            )
        self.input_shape = expected

    @abstractmethod
    def read(self, root: Path) -> dict[str, ImageList]:
        """The image lists, by partition, parsed from the files under ``root``."""

    @abstractmethod
    def make_splits(self, partitions: dict[str, ImageList]) -> DataSplits:
        """Train, val and test out of the checked partitions."""

    def find_root(self) -> Path:
        """The folder that holds the annotations; subclasses accept a parent folder too."""
        return self.require_dir(self.data_dir)

    def root_or_nested(self, folder: str, has_annotations: Callable[[Path], bool]) -> Path:
        """``data_dir``, or its ``folder`` where that holds the annotations and ``data_dir``
        does not: the folder an archive extracts, given one level up."""
        root = self.require_dir(self.data_dir)
        nested = root / folder
        if not has_annotations(root) and has_annotations(nested):
            return nested
        return root

    def require_dir(self, path: Path) -> Path:
        if not path.is_dir():
            raise DmlError(
                f"dataset.data_dir={path} does not exist or is not a folder; expected {self.layout}"
            )
        return path

    def require_file(self, path: Path) -> Path:
        if not path.is_file():
            raise DmlError(f"annotation file {path} is missing; expected {self.layout}")
        return path

    def load(self) -> DataSplits:
        root = self.find_root()
        partitions = self.read(root)
        found = len(np.unique(np.concatenate([p.labels for p in partitions.values()])))
        if self.num_classes is not None and found != self.num_classes:
            raise DmlError(
                f"{root} holds {found} classes but dataset.num_classes={self.num_classes}; "
                f"point dataset.data_dir at the full dataset ({self.layout}) or set num_classes"
            )
        checked = {name: self.checked(images, name) for name, images in partitions.items()}
        return self.make_splits(checked)

    def dataset(self, images: ImageList, transform: Transform) -> ImageListDataset:
        """A split that decodes on access, under this source's ``skip_corrupt`` rule."""
        return ImageListDataset(images, transform, self.skip_corrupt)

    def checked(self, images: ImageList, partition: str) -> ImageList:
        """``images`` less the unreadable ones when skipping them; otherwise fail on the first."""
        if len(images) == 0:
            raise DmlError(
                f"the {partition} partition under {self.data_dir} lists no images; "
                f"expected {self.layout}"
            )
        if not self.verify_images:
            return images
        with ThreadPoolExecutor(_CHECK_THREADS) as pool:
            problems = list(pool.map(image_problem, images.paths))
        bad = [i for i, problem in enumerate(problems) if problem is not None]
        if not bad:
            return images
        first = images.paths[bad[0]]
        if not self.skip_corrupt:
            raise DmlError(
                f"image {first}: {problems[bad[0]]} ({len(bad)} unreadable in the {partition} "
                f"partition); expected {self.layout}; set dataset.skip_corrupt=true to skip them"
            )
        log.warning(
            "skipped %d unreadable images of the %s partition (dataset.skip_corrupt=true); "
            "first: %s: %s",
            len(bad),
            partition,
            first,
            problems[bad[0]],
        )
        keep = np.setdiff1d(np.arange(len(images)), bad)
        if len(keep) == 0:
            raise DmlError(f"every image of the {partition} partition is unreadable, e.g. {first}")
        return images.subset(keep)


@dataclass(kw_only=True, eq=False)
class PartitionedImageSource(ImageSource):
    """Images that come in fixed partitions: ``train`` and ``test`` (or ``query`` and
    ``gallery``, In-Shop's), as the benchmarks and OML tables fix them.

    Validation is carved out of the training partition (see
    :func:`dml.datasets.splitting.hold_out_val`): by default whole classes
    (``val_split=classes``), so that validation retrieval, like the test, runs on classes
    the model never trained on.
    """

    val_split: str = "classes"

    def folds_problem(self, setting: str = "dataset.folds") -> str | None:
        """The test classes are apart already; folds replace a class hold-out."""
        return no_folds_reason(self.val_split, "dataset.val_split", setting)

    def make_splits(self, partitions: dict[str, ImageList]) -> DataSplits:
        """Train and val from the training partition; the test partition as it is."""
        train = partitions["train"]
        rng = np.random.default_rng(self.seed)
        train_idx, val_idx = hold_out_val(
            train.labels, self.val_split, self.val_fraction, rng, self.class_folds
        )
        train_tf = self.transform.train_transform()
        eval_tf = self.transform.eval_transform()
        query = gallery = None
        if "query" in partitions:
            query = self.dataset(partitions["query"], eval_tf)
            gallery = self.dataset(partitions["gallery"], eval_tf)
            test = ImageList.concat([partitions["query"], partitions["gallery"]])
        else:
            test = partitions["test"]
        log.info(
            "%s: %d train, %d val, %d test images",
            type(self).__name__,
            len(train_idx),
            len(val_idx),
            len(test),
        )
        return DataSplits(
            train=self.dataset(train.subset(train_idx), train_tf),
            val=self.dataset(train.subset(val_idx), eval_tf),
            test=self.dataset(test, eval_tf),
            query=query,
            gallery=gallery,
        )


def require_classes(
    images: ImageList, expected: dict[int, str], annotation: Path, class_list: Path
) -> None:
    """Fail on the first listed class without images: it would silently shrink the benchmark."""
    present = set(np.unique(images.labels).tolist())
    for class_id, name in sorted(expected.items()):
        if class_id not in present:
            raise DmlError(
                f"class {class_id} ({name}) listed in {class_list} has no images in "
                f"{annotation}; every class needs at least one image"
            )
    unknown = present - set(expected)
    if unknown:
        raise DmlError(f"{annotation} uses class {min(unknown)}, which {class_list} does not list")


@dataclass(kw_only=True, eq=False)
class ClassRangeSource(PartitionedImageSource):
    """The CUB and Cars protocol: class ids up to ``train_classes`` train, the rest test."""

    num_classes: int
    train_classes: int

    def __post_init__(self) -> None:
        super().__post_init__()
        self.train_classes = train_class_count(self.num_classes, self.train_classes)

    @abstractmethod
    def read_all(self, root: Path) -> ImageList:
        """Every image of the benchmark, labelled with its 1-based class id."""

    def read(self, root: Path) -> dict[str, ImageList]:
        images = self.read_all(root)
        is_train = images.labels <= self.train_classes
        return {
            "train": images.subset(np.flatnonzero(is_train)),
            "test": images.subset(np.flatnonzero(~is_train)),
        }
