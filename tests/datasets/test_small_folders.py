"""A home-made image folder of a few classes and images trains, or stops at start, clearly."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from dml.commands.embed import embed
from dml.commands.train import train
from dml.datasets.user_files.image_folder import ImageFolder
from dml.errors import DmlError
from dml.reporting import run_plots
from dml.training.datamodule import EmbeddingDataModule
from tests.fixtures.trees import make_imagefolder, small_transform

SMALL_CROP = ["dataset.transform.crop_size=32", "dataset.transform.resize_size=36"]


def folder(root: Path, **kwargs: object) -> ImageFolder:
    return ImageFolder(
        data_dir=root, input_shape=[3, 32, 32], transform=small_transform(), **kwargs
    )


def per_class(dataset: object) -> dict[int, int]:
    labels, counts = torch.unique(dataset.labels, return_counts=True)  # type: ignore[attr-defined]
    return dict(zip(labels.tolist(), counts.tolist(), strict=True))


def test_six_classes_of_eight_give_splits_every_query_can_match(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path, per_class=8).root
    splits = folder(root).load()
    assert per_class(splits.train) == {0: 6, 1: 6, 2: 6}
    assert per_class(splits.val) == {0: 2, 1: 2, 2: 2}
    assert per_class(splits.test) == {3: 8, 4: 8, 5: 8}
    splits = folder(root, split="samples").load()
    assert per_class(splits.val) == per_class(splits.test) == {c: 2 for c in range(6)}
    assert per_class(splits.train) == {c: 4 for c in range(6)}
    assert splits.train.class_names == [f"class_{c:03d}" for c in range(6)]


def test_classes_too_small_to_hold_out_stay_whole_in_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_imagefolder(tmp_path, per_class=8).root
    for extra in (root / "class_001").glob("img_[3-7].*"):
        extra.unlink()
    with caplog.at_level(logging.WARNING):
        splits = folder(root).load()
    assert per_class(splits.train) == {0: 6, 1: 3, 2: 6}
    assert per_class(splits.val) == {0: 2, 2: 2}
    assert (
        "dataset.split=classes: 1 of 3 classes have fewer than the 4 items that val need "
        "(e.g. class 1 with 3); they stay whole in training" in caplog.text
    )


@pytest.mark.parametrize(
    ("per", "split", "message"),
    [
        (
            3,
            "classes",
            r"dataset.split=classes: no class has the 4 items that val need \(2 held out per "
            r"split, 2 kept for training\); the largest has 3: add items to the classes",
        ),
        (
            5,
            "samples",
            r"dataset.split=samples: no class has the 6 items that val and test need .* the "
            r"largest has 5: add items to the classes, or use dataset.split=classes",
        ),
    ],
)
def test_a_split_no_query_could_match_stops_at_start(
    tmp_path: Path, per: int, split: str, message: str
) -> None:
    root = make_imagefolder(tmp_path, per_class=per).root
    with pytest.raises(DmlError, match=message):
        folder(root, split=split).load()


def test_single_image_test_classes_stop_at_start(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path, per_class=6).root
    for name in ("class_003", "class_004", "class_005"):
        for extra in (root / name).glob("img_[1-5].*"):
            extra.unlink()
    with pytest.raises(DmlError, match=r"the test split has no class with 2 items"):
        folder(root).load()


def test_default_batch_shrinks_to_the_classes_a_small_split_has(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = folder(make_imagefolder(tmp_path, per_class=8).root)
    data = EmbeddingDataModule(source, batch_size=128, samples_per_class=16)
    with caplog.at_level(logging.WARNING):
        sampler = data.train_sampler()
    assert sampler.batch_size == 48 and len(next(iter(sampler))) == 48
    assert "set data.batch_size=48" in caplog.text


def test_small_folder_trains_to_finite_metrics_and_embed_names_classes_and_files(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13's folder, 6 classes × 8 images, with the batch the old message suggested."""
    legends: list[object] = []
    drawn = run_plots.projection_figure

    def recording(*args: object, **kwargs: object) -> object:
        legends.append(kwargs.get("class_names"))
        return drawn(*args, **kwargs)

    monkeypatch.setattr(run_plots, "projection_figure", recording)
    root = make_imagefolder(tmp_path, per_class=8).root
    common = ["dataset=imagefolder", f"dataset.data_dir={root}", *SMALL_CROP]
    cfg = compose_cfg(
        *common,
        "data.batch_size=12",
        "data.samples_per_class=4",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=csv",
    )
    metrics = train(cfg, tmp_path / "run")
    nan = [key for key, value in metrics.items() if not math.isfinite(value)]
    assert not nan, nan
    assert legends == [[f"class_{c:03d}" for c in range(6)]]
    out = tmp_path / "emb.npz"
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    embed(compose_cfg(*common, f"ckpt_path={ckpt}", f"out={out}", config_name="embed"))
    data = np.load(out)
    assert data["class_names"].tolist() == [f"class_{c:03d}" for c in range(6)]
    assert len(data["paths"]) == len(data["labels"]) == 24
    for path, label in zip(data["paths"], data["labels"], strict=True):
        assert Path(path).parent.name == data["class_names"][label]
