"""Generated trees in each image benchmark's exact on-disk format, at any scale.

``scale=1.0`` writes the real releases' counts: CUB-200-2011 11,788 images of 200
classes, Cars196 16,185 of 196, Stanford Online Products 120,053 of 22,634 products,
In-Shop 52,712 of 7,982 items (each in its real train/test partition sizes), so the
loaders, the P×K sampler and the input pipeline can be measured at full size offline.
Annotation files copy the real formats line for line (headers, id columns, MATLAB
struct fields); image sizes approximate the releases' (about 500×375 for CUB, 256×256
for In-Shop). Images come from :mod:`dml.datasets.fakes.images`: class-dependent, seeded.

Every writer takes the per-class image counts itself, so tests build tiny trees of the
same format with the same code (``tests/fixtures/trees.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.io import savemat

from dml.datasets.fakes.images import ImageJob, jittered_size, write_images
from dml.errors import DmlError

SOP_CATEGORIES = (
    "bicycle",
    "cabinet",
    "chair",
    "coffee_maker",
    "fan",
    "kettle",
    "lamp",
    "mug",
    "sofa",
    "stapler",
    "table",
    "toaster",
)
INSHOP_VIEWS = ("front", "side", "back", "full")
INSHOP_KINDS = ("WOMEN/Dresses", "MEN/Denim", "WOMEN/Blouses_Shirts", "MEN/Jackets_Vests")


@dataclass(frozen=True)
class Look:
    """How the files look: base (width, height), a relative size jitter, the seed."""

    size: tuple[int, int]
    jitter: float = 0.0
    seed: int = 0
    workers: int | None = None


@dataclass
class BenchmarkTree:
    """A generated dataset folder and what a correct reader must find in it.

    ``root`` is what ``dataset.data_dir`` points at; ``overrides`` are the ``dml train``
    settings that fit this tree's class counts.
    """

    root: Path
    num_classes: int
    images: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


class _Jobs:
    """Collects the images of a tree, each with its seeded size, then writes them at once."""

    def __init__(self, tree: BenchmarkTree, look: Look) -> None:
        self.tree = tree
        self.look = look
        self.jobs: list[ImageJob] = []

    def add(self, path: Path, label: int, index: int) -> tuple[int, int]:
        rng = np.random.default_rng([self.look.seed, label, index, 2])
        width, height = jittered_size(self.look.size, self.look.jitter, rng)
        self.jobs.append(ImageJob(path, label, index, width, height))
        self.tree.images.append(path)
        self.tree.labels.append(label)
        return width, height

    def write(self) -> BenchmarkTree:
        write_images(self.jobs, self.look.seed, self.look.workers)
        return self.tree


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_cub(base: Path, counts: Sequence[int], look: Look) -> BenchmarkTree:
    """CUB_200_2011/ with images.txt, image_class_labels.txt, classes.txt,
    train_test_split.txt and images/<NNN.Name>/<file>.jpg; class c has counts[c-1]."""
    root = base / "CUB_200_2011"
    tree = BenchmarkTree(root, len(counts))
    jobs = _Jobs(tree, look)
    images, labels, classes, split = [], [], [], []
    image_id = 0
    for c, count in enumerate(counts, start=1):
        folder = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {folder}")
        for j in range(count):
            image_id += 1
            name = f"{folder}/Bird_{c}_{j:04d}_{image_id}.jpg"
            jobs.add(root / "images" / name, c, j)
            images.append(f"{image_id} {name}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {j % 2}")
    for filename, lines in (
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("classes.txt", classes),
        ("train_test_split.txt", split),
    ):
        _write_lines(root / filename, lines)
    return jobs.write()


def _struct_array(rows: list[dict[str, object]]) -> np.ndarray:
    """A 1×N MATLAB struct array, as savemat writes it and the Cars release ships it."""
    names = list(rows[0])
    out = np.empty((1, len(rows)), dtype=[(n, "O") for n in names])
    for i, row in enumerate(rows):
        for n in names:
            out[0, i][n] = row[n]
    return out


def _car_row(width: int, height: int, label: int) -> dict[str, object]:
    return {
        "bbox_x1": np.uint16(1),
        "bbox_y1": np.uint16(1),
        "bbox_x2": np.uint16(width - 1),
        "bbox_y2": np.uint16(height - 1),
        "class": np.uint16(label),
    }


def _car_names(count: int) -> np.ndarray:
    names = np.empty((1, count), dtype=object)
    names[0, :] = [f"Maker Model {c} 2012" for c in range(1, count + 1)]
    return names


def write_cars(
    base: Path, counts: Sequence[int], look: Look, devkit: bool = False
) -> BenchmarkTree:
    """The original release (cars196/cars_annos.mat beside car_ims/), or with ``devkit``
    the devkit release as torchvision unpacks it (stanford_cars/devkit/..., cars_train/,
    cars_test/, cars_test_annos_withlabels.mat); images alternate between its halves."""
    root = base / ("stanford_cars" if devkit else "cars196")
    tree = BenchmarkTree(root, len(counts))
    jobs = _Jobs(tree, look)
    rows: list[dict[str, object]] = []
    halves: dict[str, list[dict[str, object]]] = {"cars_train": [], "cars_test": []}
    for c, count in enumerate(counts, start=1):
        for j in range(count):
            if devkit:
                folder = "cars_train" if j % 2 == 0 else "cars_test"
                fname = f"{len(halves[folder]) + 1:05d}.jpg"
                width, height = jobs.add(root / folder / fname, c, j)
                halves[folder].append({**_car_row(width, height, c), "fname": fname})
            else:
                rel = f"car_ims/{len(rows) + 1:06d}.jpg"
                width, height = jobs.add(root / rel, c, j)
                rows.append(
                    {"relative_im_path": rel, **_car_row(width, height, c), "test": np.uint8(j % 2)}
                )
    root.mkdir(parents=True, exist_ok=True)
    if devkit:
        (root / "devkit").mkdir(exist_ok=True)
        savemat(
            root / "devkit" / "cars_train_annos.mat",
            {"annotations": _struct_array(halves["cars_train"])},
        )
        savemat(
            root / "cars_test_annos_withlabels.mat",
            {"annotations": _struct_array(halves["cars_test"])},
        )
        savemat(root / "devkit" / "cars_meta.mat", {"class_names": _car_names(len(counts))})
    else:
        annotations = {"annotations": _struct_array(rows), "class_names": _car_names(len(counts))}
        savemat(root / "cars_annos.mat", annotations)
    return jobs.write()


def write_sop(
    base: Path, train_counts: Sequence[int], test_counts: Sequence[int], look: Look
) -> BenchmarkTree:
    """Stanford_Online_Products/ with Ebay_train.txt, Ebay_test.txt and
    <category>_final/<product>_<n>.JPG; products 1.. train, the following ones test."""
    root = base / "Stanford_Online_Products"
    tree = BenchmarkTree(root, len(train_counts) + len(test_counts))
    jobs = _Jobs(tree, look)
    image_id = 0
    product = 0
    for name, counts in (("train", train_counts), ("test", test_counts)):
        lines = ["image_id class_id super_class_id path"]
        for count in counts:
            product += 1
            super_class = product % len(SOP_CATEGORIES)
            for j in range(count):
                image_id += 1
                rel = f"{SOP_CATEGORIES[super_class]}_final/{111085122800 + product}_{j}.JPG"
                jobs.add(root / rel, product, j)
                lines.append(f"{image_id} {product} {super_class + 1} {rel}")
        _write_lines(root / f"Ebay_{name}.txt", lines)
    return jobs.write()


def write_inshop(
    base: Path,
    train_counts: Sequence[int],
    test_counts: Sequence[int],
    query_counts: Sequence[int],
    look: Look,
) -> BenchmarkTree:
    """inshop/Eval/list_eval_partition.txt and img/<kind>/id_<item>/<series>_<n>_<view>.jpg.

    Training items come first; test item i marks its first ``query_counts[i]`` images
    ``query`` and the rest ``gallery``. An item's images form shoots (series) of up to
    four views (front, side, back, full), as in the release.
    """
    if len(query_counts) != len(test_counts) or any(
        not 0 < q < n for q, n in zip(query_counts, test_counts, strict=True)
    ):
        raise DmlError("every In-Shop test item needs at least one query and one gallery image")
    root = base / "inshop"
    tree = BenchmarkTree(root, len(train_counts) + len(test_counts))
    jobs = _Jobs(tree, look)
    rows = []
    queries = [0] * len(train_counts) + list(query_counts)
    for item, count in enumerate([*train_counts, *test_counts], start=1):
        kind = INSHOP_KINDS[item % len(INSHOP_KINDS)]
        for j in range(count):
            series, view = divmod(j, len(INSHOP_VIEWS))
            name = f"{series + 1:02d}_{view + 1}_{INSHOP_VIEWS[view]}.jpg"
            rel = f"img/{kind}/id_{item:08d}/{name}"
            jobs.add(root / rel, item, j)
            status = "train" if item <= len(train_counts) else "query"
            if status == "query" and j >= queries[item - 1]:
                status = "gallery"
            rows.append(f"{rel:<60} id_{item:08d} {status}")
    header = [str(len(rows)), "image_name item_id evaluation_status"]
    _write_lines(root / "Eval" / "list_eval_partition.txt", header + rows)
    return jobs.write()


def write_imagefolder(
    base: Path, counts: Sequence[int], look: Look, suffixes: Sequence[str] = (".jpg",)
) -> BenchmarkTree:
    """images/class_<k>/img_<n><suffix>, suffixes taken in turn (e.g. JPEG and PNG).

    Folder numbers are zero-padded, so sorted folder order (the loader's label order)
    is class order."""
    root = base / "images"
    tree = BenchmarkTree(root, len(counts))
    jobs = _Jobs(tree, look)
    digits = max(3, len(str(len(counts))))
    for c, count in enumerate(counts):
        folder = root / f"class_{c:0{digits}d}"
        for j in range(count):
            jobs.add(folder / f"img_{j}{suffixes[j % len(suffixes)]}", c, j)
    return jobs.write()
