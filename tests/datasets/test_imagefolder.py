"""A folder-per-class tree, split by classes or by samples."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from dml.datasets.user_files.image_folder import ImageFolder
from dml.errors import DmlError
from tests.fixtures.trees import Tree, small_transform, truncate

SHAPE = [3, 32, 32]


def folder(root: Path, **kwargs: object) -> ImageFolder:
    return ImageFolder(data_dir=root, input_shape=SHAPE, transform=small_transform(), **kwargs)


def test_class_split_trains_on_the_first_folders(folder_tree: Tree) -> None:
    splits = folder(folder_tree.root, split="classes", train_classes=4, val_fraction=0.2).load()
    train = set(splits.train.labels.tolist())
    assert train == set(splits.val.labels.tolist()) == {0, 1, 2, 3}
    assert set(splits.test.labels.tolist()) == {4, 5}
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(folder_tree.images) == 36
    assert all("class_004" in p or "class_005" in p for p in splits.test.paths)


def test_sample_split_is_stratified_and_disjoint(folder_tree: Tree) -> None:
    splits = folder(folder_tree.root, split="samples", val_fraction=0.2, test_fraction=0.2).load()
    for part in (splits.train, splits.val, splits.test):
        assert set(part.labels.tolist()) == set(range(6))
    assert len(splits.val) == len(splits.test) == 12
    paths = [set(p.paths) for p in (splits.train, splits.val, splits.test)]
    assert not (paths[0] & paths[1]) and not (paths[0] & paths[2]) and not (paths[1] & paths[2])


def test_non_image_files_are_ignored_and_png_and_jpeg_both_load(folder_tree: Tree) -> None:
    splits = folder(folder_tree.root, split="samples").load()
    everything = [p for s in (splits.train, splits.val, splits.test) for p in s.paths]
    assert not any(p.endswith(".txt") for p in everything)
    assert {Path(p).suffix for p in everything} == {".png", ".jpg"}
    for dataset in (splits.train, splits.test):
        x, _ = dataset[0]
        assert x.shape == torch.Size(SHAPE)


def test_empty_class_folder_is_named(folder_tree: Tree) -> None:
    empty = folder_tree.root / "class_9"
    empty.mkdir()
    (empty / "readme.md").write_text("no images here")
    with pytest.raises(DmlError, match=rf"class folder {empty} has no images; expected"):
        folder(folder_tree.root).load()


def test_missing_data_dir_and_empty_data_dir_are_named(tmp_path: Path) -> None:
    with pytest.raises(DmlError, match=rf"dataset.data_dir={tmp_path / 'none'} does not exist"):
        folder(tmp_path / "none").load()
    with pytest.raises(DmlError, match=rf"{tmp_path} has no class folders"):
        folder(tmp_path).load()


def test_corrupt_image_fails_or_is_skipped(
    folder_tree: Tree, caplog: pytest.LogCaptureFixture
) -> None:
    truncate(folder_tree.images[0])
    with pytest.raises(DmlError, match=rf"image {folder_tree.images[0]}: truncated JPEG"):
        folder(folder_tree.root).load()
    with caplog.at_level(logging.WARNING):
        splits = folder(folder_tree.root, skip_corrupt=True, split="samples").load()
    assert "skipped 1 unreadable images" in caplog.text
    assert len(splits.train) + len(splits.val) + len(splits.test) == 35


def test_num_classes_is_checked_when_given(folder_tree: Tree) -> None:
    with pytest.raises(DmlError, match="holds 6 classes but dataset.num_classes=10"):
        folder(folder_tree.root, num_classes=10).load()
    assert len(folder(folder_tree.root, num_classes=6).load().test) > 0


def test_bad_split_name_fails_at_construction(folder_tree: Tree) -> None:
    with pytest.raises(DmlError, match="dataset.split='random' is not one of"):
        folder(folder_tree.root, split="random")
