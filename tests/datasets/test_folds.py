"""Class-disjoint k-fold cross-validation: every labelled source under split=classes.

Each check reads the folds the way a user would, from splits.json's record of the splits
(:func:`dml.reporting.run_files.split_record`): the K validation folds are disjoint and
cover the training classes, and the test classes are the ones the source tests without
folds, never trained or validated on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import DictConfig

from dml.config.build import build_source
from dml.datasets.base import DatasetSource
from dml.datasets.builtin.cars196 import Cars196
from dml.datasets.builtin.cub200 import CUB200
from dml.datasets.builtin.inshop import InShop
from dml.datasets.builtin.mnist import TorchvisionMNIST
from dml.datasets.builtin.sop import StanfordOnlineProducts
from dml.datasets.builtin.synthetic import GaussianClusters
from dml.datasets.splitting import ClassFolds
from dml.datasets.user_files.image_folder import ImageFolder
from dml.errors import DmlError
from dml.reporting.run_files import split_record
from tests.fixtures.trees import (
    make_cars,
    make_cub,
    make_imagefolder,
    make_inshop,
    make_mnist_raw,
    make_sop,
    small_transform,
)

SHAPE = [3, 32, 32]


def records(make: Callable[[], DatasetSource], folds: int) -> tuple[dict, list[dict]]:
    """splits.json's record without folds, and of each of the ``folds`` folds."""
    plain = split_record(make().load())
    per_fold = []
    for fold in range(folds):
        source = make()
        source.use_folds(ClassFolds(folds, fold))
        per_fold.append(split_record(source.load()))
    return plain, per_fold


def check_folds(plain: dict, per_fold: list[dict]) -> None:
    classes = {name: [set(r[name]["classes"]) for r in per_fold] for name in ("train", "val")}
    pool = set(plain["train"]["classes"]) | set(plain["val"]["classes"])
    test = set(plain["test"]["classes"])
    vals = classes["val"]
    for i, val in enumerate(vals):
        assert val, f"fold {i} validates on no class"
        assert not val & classes["train"][i]
        assert classes["train"][i] | val == pool
        assert all(not val & other for j, other in enumerate(vals) if j != i)
    assert set().union(*vals) == pool
    samples = plain["train"]["samples"] + plain["val"]["samples"]
    for record in per_fold:
        assert record["train"]["samples"] + record["val"]["samples"] == samples
        assert record["test"] == plain["test"]
        assert not test & (set(record["train"]["classes"]) | set(record["val"]["classes"]))
        for name in ("query", "gallery"):
            assert record.get(name) == plain.get(name)
    sizes = sorted(len(v) for v in vals)
    assert sizes[-1] - sizes[0] <= 1  # classes dealt evenly


def test_fold_assignment_deals_every_class_to_exactly_one_fold() -> None:
    labels = np.repeat(np.arange(11), 3)
    seen = np.zeros(11, dtype=int)
    for fold in range(4):
        train, val = ClassFolds(4, fold).split(labels, np.random.default_rng(7))
        assert sorted(np.concatenate([train, val]).tolist()) == list(range(33))
        assert not set(labels[train]) & set(labels[val])
        seen[np.unique(labels[val])] += 1
    assert seen.tolist() == [1] * 11


def test_folds_compose_with_an_in_memory_dataset_through_the_config(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    base = ["dataset=digits", "dataset.split=classes", "dataset.train_classes=7"]
    plain = split_record(build_source(compose_cfg(*base)).load())
    per_fold = [
        split_record(
            build_source(compose_cfg(*base, "dataset.folds=3", f"dataset.fold={i}")).load()
        )
        for i in range(3)
    ]
    check_folds(plain, per_fold)
    assert plain["test"]["classes"] == [7, 8, 9]


def class_range(kind: type[CUB200 | Cars196]) -> Callable[[Path], DatasetSource]:
    """CUB or Cars on a fixture tree of 8 classes, ids 1-4 training."""
    return lambda root: kind(
        data_dir=root,
        input_shape=SHAPE,
        num_classes=8,
        train_classes=4,
        transform=small_transform(),
    )


def tree_root(make: Callable[[Path], Any]) -> Callable[[Path], Path]:
    """The generated tree's root folder, the one a source's data_dir names."""
    return lambda tmp: make(tmp).root


# name: (write the data under tmp_path and return its root, the source of it, K)
SOURCES: dict[str, tuple[Callable[[Path], Path], Callable[[Path], DatasetSource], int]] = {
    "synthetic": (
        lambda tmp: tmp,
        lambda _: GaussianClusters(
            num_classes=12, dim=3, samples_per_class=6, split="classes", train_classes=8
        ),
        4,
    ),
    "imagefolder": (
        lambda tmp: make_imagefolder(tmp, num_classes=8).root,
        lambda root: ImageFolder(data_dir=root, input_shape=SHAPE, transform=small_transform()),
        2,
    ),
    "cub": (tree_root(make_cub), class_range(CUB200), 2),
    "cars": (tree_root(make_cars), class_range(Cars196), 2),
    "sop": (
        tree_root(make_sop),
        lambda root: StanfordOnlineProducts(
            data_dir=root, input_shape=SHAPE, num_classes=12, transform=small_transform()
        ),
        3,
    ),
    "inshop": (
        tree_root(make_inshop),
        lambda root: InShop(
            data_dir=root, input_shape=SHAPE, num_classes=10, transform=small_transform()
        ),
        2,
    ),
    "mnist": (
        lambda tmp: make_mnist_raw(tmp, train=100, test=40).parents[1],
        lambda root: TorchvisionMNIST(
            root=root, input_shape=[1, 28, 28], split="classes", train_classes=6
        ),
        3,
    ),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_folds_of_every_class_split_source_are_disjoint_and_leave_test_alone(
    tmp_path: Path, name: str
) -> None:
    make_data, make_source, folds = SOURCES[name]
    root = make_data(tmp_path)
    check_folds(*records(lambda: make_source(root), folds))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.folds=3"], "class folds need dataset.split=classes"),
        (
            ["dataset.split=classes", "dataset.train_classes=3", "dataset.folds=2"],
            "dataset.folds=2 deals the 3 training classes into folds of 2, 1 classes, but a "
            "fold must validate on at least 2 classes, so folds need at least 4 training classes",
        ),
        (
            ["dataset.split=classes", "dataset.train_classes=6", "dataset.folds=4"],
            "dataset.folds=4 deals the 6 training classes into folds of 2, 2, 1, 1 classes; a "
            "fold that validates on fewer than 2 classes scores retrieval 1.0 whatever the "
            "model: use dataset.folds=2 or 3",
        ),
        (
            ["dataset.split=classes", "dataset.folds=4", "dataset.fold=4"],
            "dataset.fold=4 lies outside [0, 4)",
        ),
        (["dataset.split=classes", "dataset.folds=4", "dataset.fold=-1"], "outside [0, 4)"),
        (["dataset.split=classes", "dataset.fold=2"], "dataset.folds is not set"),
        (["dataset.split=classes", "dataset.folds=1"], "dataset.folds=1 must be an integer"),
    ],
)
def test_bad_fold_settings_get_one_line(
    compose_cfg: Callable[..., DictConfig], overrides: list[str], message: str
) -> None:
    with pytest.raises(DmlError) as info:
        build_source(compose_cfg("dataset=digits", *overrides)).load()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_benchmark_with_sample_validation_refuses_folds(tmp_path: Path) -> None:
    make_cub(tmp_path)
    source = CUB200(
        data_dir=tmp_path / "CUB_200_2011",
        input_shape=SHAPE,
        num_classes=8,
        train_classes=4,
        transform=small_transform(),
        val_split="samples",
    )
    with pytest.raises(DmlError, match="class folds need dataset.val_split=classes"):
        source.use_folds(ClassFolds(2, 0))
