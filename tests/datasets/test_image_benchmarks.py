"""CUB-200-2011, Cars196, Stanford Online Products and In-Shop, read from fixture trees."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dml.datasets.base import DataSplits
from dml.datasets.builtin.cars196 import Cars196
from dml.datasets.builtin.cub200 import CUB200
from dml.datasets.builtin.inshop import InShop
from dml.datasets.builtin.sop import StanfordOnlineProducts
from dml.datasets.images.source import ImageSource
from dml.errors import DmlError
from tests.fixtures.trees import Tree, make_cars_devkit, small_transform, truncate

SHAPE = [3, 32, 32]


def labels_of(dataset: object) -> set[int]:
    return set(dataset.labels.tolist())  # type: ignore[attr-defined]


def cub(root: Path, **kwargs: object) -> CUB200:
    options = {"num_classes": 8, "train_classes": 4, "val_fraction": 0.5, **kwargs}
    return CUB200(data_dir=root, input_shape=SHAPE, transform=small_transform(), **options)


def cars(root: Path, **kwargs: object) -> Cars196:
    options = {"num_classes": 8, "train_classes": 4, "val_fraction": 0.5, **kwargs}
    return Cars196(data_dir=root, input_shape=SHAPE, transform=small_transform(), **options)


def check_class_split(splits: DataSplits, tree: Tree, train_ids: set[int]) -> None:
    """Every image lands in exactly one split, and test classes never appear in training."""
    train, val, test = labels_of(splits.train), labels_of(splits.val), labels_of(splits.test)
    assert train | val == train_ids
    assert test == set(tree.labels) - train_ids
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(tree.images)
    paths = [p for s in (splits.train, splits.val, splits.test) for p in s.paths]  # type: ignore[attr-defined]
    assert sorted(paths) == sorted(str(p) for p in tree.images)


def test_cub_parses_the_release_and_splits_by_class_id(cub_tree: Tree) -> None:
    splits = cub(cub_tree.root).load()
    check_class_split(splits, cub_tree, {1, 2, 3, 4})
    assert len(labels_of(splits.val)) == 2  # 0.5 of 4 training classes
    x, y = splits.test[0]
    assert x.shape == torch.Size(SHAPE) and x.dtype == torch.float32
    assert int(y) in {5, 6, 7, 8}
    assert splits.query is None and splits.gallery is None


def test_cub_labels_follow_image_class_labels_not_folder_order(cub_tree: Tree) -> None:
    splits = cub(cub_tree.root).load()
    for dataset in (splits.train, splits.val, splits.test):
        for path, label in zip(dataset.paths, dataset.labels.tolist(), strict=True):  # type: ignore[attr-defined]
            assert Path(path).parent.name.startswith(f"{label:03d}.")


def test_cub_accepts_the_folder_the_archive_was_extracted_into(cub_tree: Tree) -> None:
    splits = cub(cub_tree.root.parent).load()
    assert len(splits.test) == 16


def test_sample_validation_keeps_every_training_class(cub_tree: Tree) -> None:
    splits = cub(cub_tree.root, val_split="samples", val_fraction=0.25).load()
    assert labels_of(splits.train) == labels_of(splits.val) == {1, 2, 3, 4}
    assert len(splits.val) == 8  # two per class, so each has a match
    assert not set(splits.train.paths) & set(splits.val.paths)  # type: ignore[attr-defined]


def test_train_transform_is_random_and_eval_transform_is_not(cub_tree: Tree) -> None:
    splits = cub(cub_tree.root, val_split="samples", val_fraction=0.25).load()
    torch.manual_seed(0)
    first, second = splits.train[0][0], splits.train[0][0]
    assert not torch.equal(first, second)
    assert torch.equal(splits.val[0][0], splits.val[0][0])


def test_cars_reads_cars_annos_mat(cars_tree: Tree) -> None:
    splits = cars(cars_tree.root).load()
    check_class_split(splits, cars_tree, {1, 2, 3, 4})


def test_cars_reads_the_devkit_layout_from_torchvisions_root(tmp_path: Path) -> None:
    tree = make_cars_devkit(tmp_path)
    splits = cars(tmp_path).load()
    check_class_split(splits, tree, {1, 2, 3, 4})
    assert {Path(p).parent.name for p in splits.test.paths} == {"cars_train", "cars_test"}  # type: ignore[attr-defined]


def test_sop_uses_the_releases_own_product_split(sop_tree: Tree) -> None:
    source = StanfordOnlineProducts(
        data_dir=sop_tree.root.parent,
        input_shape=SHAPE,
        num_classes=12,
        transform=small_transform(),
        val_fraction=0.34,
    )
    splits = source.load()
    check_class_split(splits, sop_tree, set(range(1, 7)))
    assert len(labels_of(splits.val)) == 2


def test_inshop_query_and_gallery_are_separate_and_share_item_labels(inshop_tree: Tree) -> None:
    source = InShop(
        data_dir=inshop_tree.root, input_shape=SHAPE, num_classes=10, transform=small_transform()
    )
    splits = source.load()
    assert splits.query is not None and splits.gallery is not None
    assert len(splits.query) == 5 and len(splits.gallery) == 10
    assert labels_of(splits.query) == labels_of(splits.gallery) == set(range(6, 11))
    assert not set(splits.query.paths) & set(splits.gallery.paths)  # type: ignore[attr-defined]
    assert all("front" in p for p in splits.query.paths)  # type: ignore[attr-defined]
    assert len(splits.test) == 15 and labels_of(splits.test) == set(range(6, 11))
    assert labels_of(splits.train) | labels_of(splits.val) == set(range(1, 6))
    x, y = splits.query[0]
    assert x.shape == torch.Size(SHAPE) and int(y) == 6


def test_inshop_truncated_listing_is_reported(inshop_tree: Tree) -> None:
    listing = inshop_tree.root / "Eval" / "list_eval_partition.txt"
    listing.write_text("\n".join(listing.read_text().splitlines()[:-3]) + "\n")
    source = InShop(
        data_dir=inshop_tree.root, input_shape=SHAPE, num_classes=10, transform=small_transform()
    )
    with pytest.raises(DmlError, match=r"announces 30 images on its first line but lists 27"):
        source.load()


# Bad input: each a one-line error naming the path and the expected layout.

SOURCES = {
    "cub": lambda root: cub(root),
    "cars": lambda root: cars(root),
    "sop": lambda root: StanfordOnlineProducts(
        data_dir=root, input_shape=SHAPE, num_classes=12, transform=small_transform()
    ),
    "inshop": lambda root: InShop(
        data_dir=root, input_shape=SHAPE, num_classes=10, transform=small_transform()
    ),
}
ANNOTATIONS = {
    "cub": "image_class_labels.txt",
    "cars": "cars_annos.mat",
    "sop": "Ebay_test.txt",
    "inshop": "Eval/list_eval_partition.txt",
}


@pytest.fixture(params=sorted(SOURCES))
def benchmark(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Tree, ImageSource]:
    name = request.param
    tree = request.getfixturevalue(f"{name}_tree")
    return name, tree, SOURCES[name](tree.root)


def one_line_error(source: ImageSource) -> str:
    with pytest.raises(DmlError) as info:
        source.load()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_data_dir_names_it_and_the_layout(
    benchmark: tuple[str, Tree, ImageSource], tmp_path: Path
) -> None:
    name, _, _ = benchmark
    missing = tmp_path / "nowhere"
    message = one_line_error(SOURCES[name](missing))
    assert f"dataset.data_dir={missing} does not exist" in message
    assert "expected" in message and type(SOURCES[name](missing)).layout in message


def test_missing_annotation_file_names_it(benchmark: tuple[str, Tree, ImageSource]) -> None:
    name, tree, source = benchmark
    (tree.root / ANNOTATIONS[name]).unlink()
    message = one_line_error(source)
    assert (
        f"annotation file {tree.root / ANNOTATIONS[name].removeprefix('Eval/')} is missing"
        in message
    )
    assert str(tree.root / ANNOTATIONS[name]) in message
    assert source.layout in message


def test_truncated_image_is_named_and_can_be_skipped(
    benchmark: tuple[str, Tree, ImageSource], caplog: pytest.LogCaptureFixture
) -> None:
    name, tree, source = benchmark
    victim = tree.images[-1]
    truncate(victim)
    message = one_line_error(source)
    assert f"image {victim}: truncated JPEG" in message
    assert "dataset.skip_corrupt=true" in message

    source.skip_corrupt = True
    with caplog.at_level(logging.WARNING, logger="dml.datasets.images.source"):
        splits = source.load()
    assert "skipped 1 unreadable images" in caplog.text and str(victim) in caplog.text
    loaded = [p for s in (splits.train, splits.val, splits.test) for p in s.paths]  # type: ignore[attr-defined]
    assert len(loaded) == len(tree.images) - 1 and str(victim) not in loaded


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: p.write_bytes(b"this is not an image"), "not a readable image"),
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: p.unlink(), "file is missing"),
    ],
)
def test_other_unreadable_files_are_named(cub_tree: Tree, damage, problem: str) -> None:  # noqa: ANN001
    victim = cub_tree.images[5]
    damage(victim)
    message = one_line_error(cub(cub_tree.root))
    assert f"image {victim}: {problem}" in message


def test_jpeg_cut_inside_its_header_is_named(cub_tree: Tree) -> None:
    truncate(cub_tree.images[0], keep=0.3)
    message = one_line_error(cub(cub_tree.root))
    assert f"image {cub_tree.images[0]}: not a readable image" in message


def test_truncated_png_is_caught_by_its_checksums(cub_tree: Tree) -> None:
    from tests.fixtures.trees import write_image

    victim = cub_tree.images[2].with_suffix(".png")
    write_image(victim, 1)
    lines = (cub_tree.root / "images.txt").read_text().replace(cub_tree.images[2].name, victim.name)
    (cub_tree.root / "images.txt").write_text(lines)
    truncate(victim, 0.7)
    assert f"image {victim}: not a readable image" in one_line_error(cub(cub_tree.root))


def test_damage_the_cheap_check_misses_is_named_at_first_read(cub_tree: Tree) -> None:
    splits = cub(cub_tree.root).load()
    victim = Path(splits.test.paths[0])  # type: ignore[attr-defined]
    data = bytearray(victim.read_bytes())
    table = data.index(b"\xff\xc4")  # a Huffman table: PIL's header parse does not read it
    data[table + 5 : table + 21] = b"\xff" * 16
    victim.write_bytes(bytes(data))
    with pytest.raises(DmlError, match=rf"cannot decode image {victim}"):
        splits.test[0]


def test_class_with_no_images_is_named(cub_tree: Tree) -> None:
    images = cub_tree.root / "images.txt"
    labels = cub_tree.root / "image_class_labels.txt"
    keep = [i for i, c in enumerate(cub_tree.labels) if c != 4]
    images.write_text("\n".join(images.read_text().splitlines()[i] for i in keep) + "\n")
    labels.write_text("\n".join(labels.read_text().splitlines()[i] for i in keep) + "\n")
    message = one_line_error(cub(cub_tree.root))
    assert (
        f"class 4 (004.Bird_4) listed in {cub_tree.root / 'classes.txt'} has no images" in message
    )


def test_cars_class_with_no_images_is_named(cars_tree: Tree, tmp_path: Path) -> None:
    from scipy.io import loadmat, savemat

    path = cars_tree.root / "cars_annos.mat"
    mat = loadmat(path)
    annotations = mat["annotations"]
    keep = [i for i in range(annotations.shape[1]) if annotations[0, i]["class"].item() != 5]
    savemat(path, {"annotations": annotations[:, keep], "class_names": mat["class_names"]})
    assert "class 5 (Maker Model 5 2012)" in one_line_error(cars(cars_tree.root))


def test_wrong_num_classes_points_at_the_data_dir(cub_tree: Tree) -> None:
    message = one_line_error(cub(cub_tree.root, num_classes=200, train_classes=100))
    assert f"{cub_tree.root} holds 8 classes but dataset.num_classes=200" in message


def test_malformed_annotation_line_is_named(sop_tree: Tree) -> None:
    listing = sop_tree.root / "Ebay_train.txt"
    listing.write_text(listing.read_text() + "oops\n")
    message = one_line_error(SOURCES["sop"](sop_tree.root))
    assert f"{listing}, line" in message and "'oops'" in message


def test_products_in_both_lists_are_rejected(sop_tree: Tree) -> None:
    test_list = sop_tree.root / "Ebay_test.txt"
    first_train = (sop_tree.root / "Ebay_train.txt").read_text().splitlines()[1]
    test_list.write_text(test_list.read_text() + first_train.replace("1 1", "999 1", 1) + "\n")
    assert "product 1 appears in both" in one_line_error(SOURCES["sop"](sop_tree.root))


def test_constructor_checks_input_shape_against_the_transform(cub_tree: Tree) -> None:
    with pytest.raises(DmlError, match=r"input_shape=\[3, 224, 224\] but the transform yields"):
        CUB200(
            data_dir=cub_tree.root,
            input_shape=[3, 224, 224],
            num_classes=6,
            train_classes=3,
            transform=small_transform(),
        )


def test_verify_images_false_defers_damage_to_first_read(cub_tree: Tree) -> None:
    truncate(cub_tree.images[-1])
    splits = cub(cub_tree.root, verify_images=False).load()
    index = splits.test.paths.index(str(cub_tree.images[-1]))  # type: ignore[attr-defined]
    with pytest.raises(DmlError, match="cannot decode image"):
        splits.test[index]
    assert np.isfinite(splits.test[0][0].numpy()).all()


def test_image_benchmark_trains_end_to_end_through_the_cli_config(
    cub_tree: Tree,
    compose_cfg,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    from dml.commands.train import train

    cfg = compose_cfg(
        "dataset=cub200",
        f"dataset.data_dir={cub_tree.root}",
        "dataset.num_classes=8",
        "dataset.train_classes=4",
        "dataset.val_split=samples",
        "dataset.val_fraction=0.5",
        "dataset.transform.crop_size=32",
        "dataset.transform.resize_size=36",
        "backbone=resnet18",
        "backbone.weights=null",
        "backbone.embedding_dim=16",
        "trainer=debug",
        "logger=none",
        "data.batch_size=6",
        "data.samples_per_class=2",
        "data.eval_batch_size=8",
    )
    metrics = train(cfg, tmp_path / "run")
    assert 0 <= metrics["test/map_at_r"] <= 1 and 0 <= metrics["val/map_at_r"] <= 1
