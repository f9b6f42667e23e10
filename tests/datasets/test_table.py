"""dataset=table: an image tree listed in a CSV in open-metric-learning's format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from dml.commands.train import train
from dml.datasets.user_files.oml_csv import ImageTable
from dml.errors import DmlError
from tests.fixtures.trees import make_oml_table, small_transform

SHAPE = [3, 32, 32]


def table(root: Path, **kwargs: object) -> ImageTable:
    return ImageTable(data_dir=root, input_shape=SHAPE, transform=small_transform(), **kwargs)


def labels_of(dataset: object) -> list[int]:
    return dataset.labels.tolist()  # type: ignore[attr-defined]


def test_validation_rows_become_query_and_gallery_and_val_comes_from_train(
    tmp_path: Path,
) -> None:
    tree = make_oml_table(tmp_path)
    splits = table(tree.root).load()
    assert splits.query is not None and splits.gallery is not None
    assert sorted(labels_of(splits.query)) == [6, 7, 8]
    assert sorted(labels_of(splits.gallery)) == [6] * 3 + [7] * 3 + [8] * 3
    assert all(p.endswith("_0.jpg") for p in splits.query.paths)  # type: ignore[union-attr]
    assert len(splits.test) == 12
    # Validation: two whole training classes, never seen in training.
    train, val = set(labels_of(splits.train)), set(labels_of(splits.val))
    assert len(val) == 2 and not train & val and train | val == set(range(6))
    assert len(splits.train) + len(splits.val) == 36


def test_every_row_both_query_and_gallery_is_evaluated_one_against_the_rest(
    tmp_path: Path,
) -> None:
    splits = table(make_oml_table(tmp_path, both=True).root).load()
    assert splits.query is None and splits.gallery is None
    assert sorted(labels_of(splits.test)) == [6] * 4 + [7] * 4 + [8] * 4


def test_crop_boxes_cut_the_image_and_empty_boxes_keep_it_whole(tmp_path: Path) -> None:
    tree = make_oml_table(tmp_path)
    splits = table(tree.root).load()
    train = splits.train
    train.transform = None  # type: ignore[attr-defined]
    for index, path in enumerate(train.paths):  # type: ignore[union-attr]
        image = train[index][0]
        with Image.open(path) as original:
            pixels = np.asarray(original.convert("RGB"))
        if int(Path(path).stem.split("_")[1]) % 2:
            assert image.size == (30, 20)
            assert np.array_equal(np.asarray(image), pixels[5:25, 10:40])
        else:
            assert image.size == (60, 50)
    x, _ = splits.val[0]
    assert x.shape == torch.Size(SHAPE)


def test_sequence_ids_are_groups(tmp_path: Path) -> None:
    splits = table(make_oml_table(tmp_path).root).load()
    for split in (splits.train, splits.gallery):
        assert split is not None and split.groups is not None
        stems = [Path(p).stem for p in split.paths]  # type: ignore[union-attr]
        sequence = [s.split("_")[0] + "-" + str(int(s.split("_")[1]) // 2) for s in stems]
        same_group = split.groups[:, None] == split.groups[None, :]
        same_sequence = torch.tensor([[a == b for b in sequence] for a in sequence])
        assert torch.equal(same_group, same_sequence)


def test_table_trains_end_to_end(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    tree = make_oml_table(tmp_path)
    cfg = compose_cfg(
        "dataset=table",
        f"dataset.data_dir={tree.root}",
        "dataset.transform.crop_size=32",
        "dataset.transform.resize_size=36",
        "logger=csv",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "data.batch_size=16",
        "data.samples_per_class=4",
    )
    metrics = train(cfg, tmp_path / "run")
    # One query per class: the test distances come from queries and gallery together.
    for key in ("test/map_at_r", "test/dist_pos_mean", "test/nmi", "val/map_at_r"):
        assert np.isfinite(metrics[key]), key


def rewrite(root: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    frame = pd.read_csv(root / "df.csv", dtype=object)
    edit(frame).to_csv(root / "df.csv", index=False)


def put(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return edit


# Rows 0-35 are train (class c at rows 6c..6c+5), rows 36-47 validation; row 36 is the
# query of class 6, rows 37-39 its gallery.
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop(columns=["is_gallery"]), r"df.csv has no column 'is_gallery'"),
        (put("split", 3, "val"), r"column 'split', row 3 \(line 5\): split 'val' is not one of"),
        (put("label", 7, "cat"), r"column 'label', row 7 \(line 9\): 'cat' is not an integer"),
        (put("is_query", 2, "True"), r"column 'is_query', row 2 \(line 4\): a train row has"),
        (put("is_query", 38, "maybe"), r"column 'is_query', row 38 \(line 40\): 'maybe' on a"),
        (
            put("is_gallery", 37, "False"),
            r"column 'is_query', row 37 \(line 39\): a validation row must be a query",
        ),
        (put("is_gallery", 36, "True"), r"row 36 \(line 38\): this row is both query and"),
        (
            lambda f: put("label", 36, "9")(f),
            r"column 'label', row 36 \(line 38\): query label 9 has no gallery image",
        ),
        (put("x_2", 1, None), r"column 'x_2', row 1 \(line 3\): the crop box is incomplete"),
        (put("x_1", 3, "50"), r"row 3 \(line 5\): crop box x_1=50, x_2=40, y_1=5, y_2=25"),
        (put("y_1", 5, "-1"), r"row 5 \(line 7\): crop box x_1=10, x_2=40, y_1=-1, y_2=25"),
        (lambda f: f.drop(columns=["y_2"]), r"has crop columns x_1, x_2, y_1 but not y_2"),
        (put("path", 4, None), r"column 'path', row 4 \(line 6\): the image path is empty"),
        (
            lambda f: f.assign(split="validation", is_query="True", is_gallery="True"),
            r"column 'split' marks no row 'train'",
        ),
    ],
    ids=[
        "missing-column",
        "unknown-split",
        "text-label",
        "train-row-flag",
        "bad-flag",
        "neither",
        "mixed-both",
        "unmatched-query",
        "partial-box",
        "empty-box",
        "negative-box",
        "missing-box-column",
        "empty-path",
        "no-train-rows",
    ],
)
def test_bad_table_gets_one_line_naming_file_column_and_row(
    tmp_path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    tree = make_oml_table(tmp_path)
    rewrite(tree.root, edit)
    with pytest.raises(DmlError, match=message) as info:
        table(tree.root).load()
    assert "\n" not in str(info.value) and "df.csv" in str(info.value)


def test_missing_table_and_missing_image_are_named(tmp_path: Path) -> None:
    tree = make_oml_table(tmp_path)
    with pytest.raises(DmlError, match=r"table .*other.csv does not exist; expected a CSV"):
        table(tree.root, dataframe_name="other.csv").load()
    tree.images[4].unlink()
    with pytest.raises(DmlError, match=rf"image {tree.images[4]}: file is missing"):
        table(tree.root).load()


def test_box_outside_the_image_is_named_when_read(tmp_path: Path) -> None:
    tree = make_oml_table(tmp_path)
    rewrite(tree.root, lambda f: put("x_1", 1, "70")(put("x_2", 1, "90")(f)))
    splits = table(tree.root, val_split="samples", val_fraction=0.34).load()
    everything = [(d, i) for d in (splits.train, splits.val) for i in range(len(d))]
    (dataset, index) = next(
        (d, i)
        for d, i in everything
        if d.paths[i].endswith("0_1.jpg")  # type: ignore[union-attr]
    )
    with pytest.raises(DmlError, match=r"crop box x_1=70, x_2=90, y_1=5, y_2=25 of .*0_1.jpg lies"):
        dataset[index]
