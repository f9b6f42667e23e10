"""Group ids of the datasets that have them (In-Shop series, image-folder subfolders), and
their absence where the data defines none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dml.datasets.base import GroupedDataset
from dml.datasets.builtin.inshop import InShop
from dml.datasets.builtin.sop import StanfordOnlineProducts
from dml.datasets.user_files.image_folder import ImageFolder
from tests.fixtures.trees import Tree, small_transform, write_image

SHAPE = [3, 32, 32]


def make_inshop_series(base: Path) -> Path:
    """Two test items with two series each, split across query and gallery; four training
    items (two to validate on). Series 01 of item 3 has a front (query) and a side
    (gallery) view."""
    root = base / "inshop"
    rows = []
    layout = {
        1: [("01_1_front", "train"), ("01_2_side", "train")],
        2: [("01_1_front", "train"), ("02_1_front", "train")],
        3: [("01_1_front", "query"), ("01_2_side", "gallery"), ("02_1_front", "gallery")],
        4: [("03_1_front", "query"), ("04_1_front", "gallery"), ("04_2_side", "gallery")],
        5: [("01_1_front", "train"), ("01_2_side", "train")],
        6: [("01_1_front", "train"), ("01_2_side", "train")],
    }
    for item, images in layout.items():
        for j, (name, status) in enumerate(images):
            rel = f"img/MEN/Denim/id_{item:08d}/{name}.jpg"
            write_image(root / rel, item, j)
            rows.append(f"{rel} id_{item:08d} {status}")
    (root / "Eval").mkdir(parents=True)
    header = f"{len(rows)}\nimage_name item_id evaluation_status\n"
    (root / "Eval" / "list_eval_partition.txt").write_text(header + "\n".join(rows) + "\n")
    return root


def series_of(dataset: object) -> list[str]:
    return [f"{Path(p).parent.name}/{Path(p).name[:2]}" for p in dataset.paths]  # type: ignore[attr-defined]


def test_inshop_groups_are_an_items_photo_series_shared_by_query_and_gallery(
    tmp_path: Path,
) -> None:
    source = InShop(
        data_dir=make_inshop_series(tmp_path),
        input_shape=SHAPE,
        num_classes=6,
        transform=small_transform(),
        val_fraction=0.5,
    )
    splits = source.load()
    assert splits.query is not None and splits.gallery is not None
    everything = [splits.query, splits.gallery, splits.train, splits.val]
    keys = [key for split in everything for key in series_of(split)]
    ids = torch.cat([split.groups for split in everything]).tolist()  # type: ignore[misc]
    # Equal series (same item, same number), equal group id, and only then.
    assert len(set(zip(keys, ids, strict=True))) == len(set(keys)) == len(set(ids)) == 9
    query_group = dict(zip(series_of(splits.query), splits.query.groups.tolist(), strict=True))
    gallery_group = dict(
        zip(series_of(splits.gallery), splits.gallery.groups.tolist(), strict=True)
    )
    assert query_group["id_00000003/01"] == gallery_group["id_00000003/01"]
    assert "id_00000004/03" not in gallery_group
    # test (query + gallery) keeps its groups too.
    assert splits.test.groups is not None and len(splits.test.groups) == len(splits.test)


def test_imagefolder_subfolders_are_groups_and_a_flat_tree_has_none(
    tmp_path: Path, folder_tree: Tree
) -> None:
    flat = ImageFolder(
        data_dir=folder_tree.root, input_shape=SHAPE, transform=small_transform(), split="samples"
    ).load()
    assert flat.train.groups is None and flat.test.groups is None

    root = tmp_path / "videos"
    for person in range(4):
        for video in range(2):
            for frame in range(3):
                write_image(root / f"p{person}" / f"v{video}" / f"f{frame}.png", person, frame)
        write_image(root / f"p{person}" / "still.png", person, 9)
    source = ImageFolder(
        data_dir=root,
        input_shape=SHAPE,
        transform=small_transform(),
        split="samples",
        val_fraction=0.25,
        test_fraction=0.25,
    )
    splits = source.load()
    for split in (splits.train, splits.val, splits.test):
        assert split.groups is not None
        # A frame's group is its video folder; a still in its class folder is alone.
        paths = [Path(p) for p in split.paths]  # type: ignore[attr-defined]
        keys = [p if p.name == "still.png" else p.parent for p in paths]
        for i in range(len(split)):
            for j in range(len(split)):
                assert bool(split.groups[i] == split.groups[j]) == (keys[i] == keys[j])
    x, label, group = GroupedDataset(splits.test)[0]
    assert x.shape == torch.Size(SHAPE) and int(group) == int(splits.test.groups[0])
    assert int(label) == int(splits.test.labels[0])


def test_sop_defines_no_groups(sop_tree: Tree) -> None:
    """A product's photos come from its one listing: the class is the finest unit."""
    splits = StanfordOnlineProducts(
        data_dir=sop_tree.root, input_shape=SHAPE, num_classes=12, transform=small_transform()
    ).load()
    assert all(split.groups is None for split in (splits.train, splits.val, splits.test))
    assert np.unique(splits.test.labels.numpy()).size > 1
