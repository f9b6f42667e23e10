"""Any folder-per-class image tree: ``data_dir/<class name>/**/<image>``.

Unlike the benchmarks it has no split of its own, so it is split the way in-memory
datasets are (:func:`dml.datasets.splitting.split_indices`): ``split=classes`` trains on the
first ``train_classes`` class folders in sorted order and tests on the rest;
``split=samples`` holds out a stratified fraction of every class.

Subfolders of a class folder are groups: ``person_3/video_07/frame_0001.jpg`` is in
group ``person_3/video_07``, so ``eval.exclude_same_group=true`` never lets a frame
retrieve the frames of its own video. An image directly in its class folder is a group
of its own. A tree without subfolders defines no groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dml.datasets.base import DataSplits
from dml.datasets.images.files import IMAGE_SUFFIXES, ImageList, group_numbers
from dml.datasets.images.source import ImageSource
from dml.datasets.splitting import check_split_settings, no_folds_reason, split_indices
from dml.errors import DmlError


@dataclass(kw_only=True, eq=False)
class ImageFolder(ImageSource):
    """Labels are the indices of the class folders in sorted order."""

    layout = (
        "data_dir/<class name>/<image> (one folder per class, images with suffix "
        f"{', '.join(sorted(IMAGE_SUFFIXES))}, nested folders allowed)"
    )

    split: str = "classes"
    test_fraction: float = 0.2
    train_classes: int | None = None
    #: The class folders' names, label by label; known once the folder is read.
    class_names: list[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_split_settings(self.split, self.val_fraction, self.test_fraction)

    def folds_problem(self, setting: str = "dataset.folds") -> str | None:
        return no_folds_reason(self.split, setting=setting)

    def read(self, root: Path) -> dict[str, ImageList]:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DmlError(f"{root} has no class folders; expected {self.layout}")
        paths: list[Path] = []
        labels: list[int] = []
        for label, folder in enumerate(folders):
            files = sorted(
                p
                for p in folder.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
            )
            if not files:
                raise DmlError(f"class folder {folder} has no images; expected {self.layout}")
            paths += files
            labels += [label] * len(files)
        # Label i is the i-th folder; the names label plots and `dml embed`'s output.
        self.class_names = [folder.name for folder in folders]
        nested = [p.parent.parent != root for p in paths]
        if not any(nested):
            return {"all": ImageList(paths, labels)}
        keys = [str(p.parent if deep else p) for p, deep in zip(paths, nested, strict=True)]
        return {"all": ImageList(paths, labels, group_numbers(keys))}

    def make_splits(self, partitions: dict[str, ImageList]) -> DataSplits:
        images = partitions["all"]
        rng = np.random.default_rng(self.seed)
        train, val, test = split_indices(
            images.labels,
            self.split,
            self.val_fraction,
            self.test_fraction,
            self.train_classes,
            rng,
            self.class_folds,
        )
        eval_tf = self.transform.eval_transform()
        parts = [
            self.dataset(images.subset(train), self.transform.train_transform()),
            self.dataset(images.subset(val), eval_tf),
            self.dataset(images.subset(test), eval_tf),
        ]
        for part in parts:
            part.class_names = self.class_names
        return DataSplits(*parts)
