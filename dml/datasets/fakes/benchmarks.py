"""Generated benchmark trees at the real releases' size, or any fraction of it.

:func:`make_benchmark` is what ``scripts/make_fake_benchmark.py`` runs: at ``scale=1.0``
each format gets the real class and image counts of each partition; at a smaller scale
both shrink in proportion (at least four classes per partition, at least two images per
class), so a test can build a tree of the same shape in a second. Per-class counts vary
around the mean as a multinomial draw, seeded like the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dml.datasets.fakes.trees import (
    BenchmarkTree,
    Look,
    write_cars,
    write_cub,
    write_imagefolder,
    write_inshop,
    write_sop,
)
from dml.errors import DmlError


@dataclass(frozen=True)
class Partition:
    """A partition's class and image counts in the real release."""

    classes: int
    images: int


# Train partition first, then test (for In-Shop: query and gallery items together).
FULL_SIZE: dict[str, tuple[Partition, ...]] = {
    "cub200": (Partition(100, 5864), Partition(100, 5924)),
    "cars196": (Partition(98, 8054), Partition(98, 8131)),
    "sop": (Partition(11318, 59551), Partition(11316, 60502)),
    "inshop": (Partition(3997, 25882), Partition(3985, 26830)),
    # No real release: the size of the folder tree the issue measured (800 JPEGs, 500×375).
    "imagefolder": (Partition(20, 800),),
}
# In-Shop's test images: 14,218 queries, the other 12,612 form the gallery.
INSHOP_QUERIES = 14218
# (width, height) and relative jitter; approximations of the releases' typical sizes.
LOOKS: dict[str, tuple[tuple[int, int], float]] = {
    "cub200": ((500, 375), 0.15),
    "cars196": ((700, 470), 0.3),
    "sop": ((480, 480), 0.25),
    "inshop": ((256, 256), 0.0),
    "imagefolder": ((500, 375), 0.0),
}
FORMATS = tuple(FULL_SIZE)
MIN_PER_CLASS = 2
# Two classes to validate on and two to train on: the fewest that a class split scores.
MIN_CLASSES = 4


def class_counts(partition: Partition, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Per-class image counts of ``partition`` at ``scale``: they sum to the scaled total."""
    classes = max(MIN_CLASSES, round(partition.classes * scale))
    total = max(MIN_PER_CLASS * classes, round(partition.images * scale))
    extra = rng.multinomial(total - MIN_PER_CLASS * classes, np.full(classes, 1 / classes))
    return MIN_PER_CLASS + extra


def query_counts(counts: np.ndarray, queries: int, rng: np.random.Generator) -> np.ndarray:
    """How many of each test item's images are queries: at least one, and at least one
    left for the gallery, ``queries`` in all (clipped to what the items allow)."""
    spare = counts - 2
    wanted = int(np.clip(queries - len(counts), 0, spare.sum()))
    owners = np.repeat(np.arange(len(counts)), spare)
    chosen = rng.choice(len(owners), size=wanted, replace=False)
    return 1 + np.bincount(owners[chosen], minlength=len(counts))


def make_benchmark(
    fmt: str, out: Path, scale: float = 1.0, seed: int = 0, workers: int | None = None
) -> BenchmarkTree:
    """Write ``fmt``'s tree under ``out`` (e.g. out/CUB_200_2011) and describe it."""
    if fmt not in FULL_SIZE:
        raise DmlError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if not 0 < scale <= 1:
        raise DmlError(f"--scale {scale} must lie in (0, 1]: 1.0 is the real size")
    rng = np.random.default_rng(seed)
    size, jitter = LOOKS[fmt]
    look = Look(size, jitter, seed, workers)
    parts = [class_counts(p, scale, rng).tolist() for p in FULL_SIZE[fmt]]
    if fmt == "cub200":
        tree = write_cub(out, parts[0] + parts[1], look)
    elif fmt == "cars196":
        tree = write_cars(out, parts[0] + parts[1], look)
    elif fmt == "sop":
        tree = write_sop(out, parts[0], parts[1], look)
    elif fmt == "inshop":
        queries = query_counts(np.asarray(parts[1]), round(INSHOP_QUERIES * scale), rng)
        tree = write_inshop(out, parts[0], parts[1], queries.tolist(), look)
    else:
        tree = write_imagefolder(out, parts[0], look)
    tree.overrides = [f"dataset={fmt}", f"dataset.data_dir={tree.root}"]
    if fmt != "imagefolder":
        tree.overrides.append(f"dataset.num_classes={tree.num_classes}")
    if fmt in ("cub200", "cars196"):
        tree.overrides.append(f"dataset.train_classes={len(parts[0])}")
    return tree
