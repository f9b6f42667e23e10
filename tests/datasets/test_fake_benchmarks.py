"""The generated benchmark trees: real counts at full scale, loadable by the real readers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig
from PIL import Image

from dml.config.build import build_source
from dml.datasets.fakes.benchmarks import (
    FORMATS,
    FULL_SIZE,
    INSHOP_QUERIES,
    class_counts,
    make_benchmark,
    query_counts,
)
from dml.datasets.fakes.images import render
from dml.errors import DmlError
from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
# Real totals of each release, as the issue and the papers state them.
REAL = {
    "cub200": (200, 11788),
    "cars196": (196, 16185),
    "sop": (22634, 120053),
    "inshop": (7982, 52712),
}


@pytest.mark.parametrize("fmt", sorted(REAL))
def test_full_scale_counts_are_the_real_releases(fmt: str) -> None:
    """Computed without writing 100k files: the counts a full-size run would write."""
    rng = np.random.default_rng(0)
    counts = [class_counts(p, 1.0, rng) for p in FULL_SIZE[fmt]]
    assert sum(len(c) for c in counts) == REAL[fmt][0]
    assert sum(int(c.sum()) for c in counts) == REAL[fmt][1]
    for partition, drawn in zip(FULL_SIZE[fmt], counts, strict=True):
        assert len(drawn) == partition.classes and drawn.sum() == partition.images
        assert drawn.min() >= 2
    if fmt == "inshop":
        queries = query_counts(counts[1], INSHOP_QUERIES, rng)
        assert queries.sum() == INSHOP_QUERIES
        assert (queries >= 1).all() and (queries < counts[1]).all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_small_tree_loads_with_its_own_overrides(
    fmt: str, tmp_path: Path, compose_cfg: Callable[..., DictConfig]
) -> None:
    scale = {"sop": 0.0005, "inshop": 0.001, "cars196": 0.015, "imagefolder": 0.1}.get(fmt, 0.02)
    tree = make_benchmark(fmt, tmp_path, scale=scale, seed=3, workers=1)
    cfg = compose_cfg(
        *tree.overrides,
        "dataset.transform.crop_size=32",
        "dataset.transform.resize_size=36",
        "dataset.val_fraction=0.3",
    )
    splits = build_source(cfg).load()
    parts = [splits.train, splits.val, splits.test]
    loaded = sorted(str(p) for part in parts for p in part.paths)  # type: ignore[attr-defined]
    assert loaded == sorted(str(p) for p in tree.images)
    labels = {int(y) for part in parts for y in part.labels}
    assert len(labels) == tree.num_classes == len(set(tree.labels))
    x, _ = splits.train[0]
    assert tuple(x.shape) == (3, 32, 32)
    if fmt == "inshop":
        assert splits.query is not None and splits.gallery is not None
        assert labels_of(splits.query) == labels_of(splits.gallery)


def labels_of(dataset: object) -> set[int]:
    return set(dataset.labels.tolist())  # type: ignore[attr-defined]


def test_jpeg_sizes_follow_the_release(tmp_path: Path) -> None:
    tree = make_benchmark("cub200", tmp_path, scale=0.02, workers=1)
    sizes = [Image.open(path).size for path in tree.images[:20]]
    assert all(425 <= w <= 575 and 318 <= h <= 432 for w, h in sizes)
    assert len(set(sizes)) > 1
    assert all(Image.open(path).format == "JPEG" for path in tree.images[:5])


def test_images_are_seeded_and_class_dependent(tmp_path: Path) -> None:
    first = make_benchmark("imagefolder", tmp_path / "a", scale=0.1, seed=1, workers=1)
    again = make_benchmark("imagefolder", tmp_path / "b", scale=0.1, seed=1, workers=1)
    other = make_benchmark("imagefolder", tmp_path / "c", scale=0.1, seed=2, workers=1)
    assert [p.read_bytes() for p in first.images] == [p.read_bytes() for p in again.images]
    assert first.images[0].read_bytes() != other.images[0].read_bytes()


def test_a_nearest_neighbour_on_raw_pixels_finds_the_class() -> None:
    """Retrieval is learnable: even raw 24×18 pixels put most images next to their class
    (chance is 1 in 10)."""
    labels = np.repeat(np.arange(10), 6)
    pixels = np.stack(
        [render(int(c), i, 24, 18).astype(np.float32).ravel() for i, c in enumerate(labels)]
    )
    dist = ((pixels[:, None] - pixels[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    accuracy = (labels[dist.argmin(1)] == labels).mean()
    assert accuracy > 0.5


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DmlError, match="--scale 2.0 must lie in"):
        make_benchmark("cub200", tmp_path, scale=2.0)
    with pytest.raises(DmlError, match="--format 'mnist' is not one of"):
        make_benchmark("mnist", tmp_path)


def test_the_script_writes_a_tree_and_prints_its_table(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "make_fake_benchmark.py"
    args = ["--format", "sop", "--out", str(tmp_path), "--scale", "0.0003", "--workers", "1"]
    result = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| sop | " in result.stdout
    assert f"dataset.data_dir={tmp_path / 'Stanford_Online_Products'}" in result.stdout
    assert (tmp_path / "Stanford_Online_Products" / "Ebay_train.txt").is_file()
