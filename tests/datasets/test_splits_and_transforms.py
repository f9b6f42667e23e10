"""Validation hold-outs, query/gallery splits, and the transform pairs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from dml.config.build import build_source
from dml.datasets.base import DataSplits, TensorLabeledDataset
from dml.datasets.builtin.mnist5k import MNIST5k
from dml.datasets.splitting import hold_out_val
from dml.errors import DmlError
from dml.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransforms, SmallImageTransforms


def test_class_hold_out_takes_whole_classes() -> None:
    labels = np.repeat(np.arange(10), 5)
    train, val = hold_out_val(labels, "classes", 0.2, np.random.default_rng(0))
    assert len(set(labels[val])) == 2
    assert not set(labels[train]) & set(labels[val])
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(50))


def test_sample_hold_out_keeps_classes_too_small_for_two_and_two_in_training() -> None:
    # A class in val needs two items (a query and its match) and two left to train on.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 3])
    train, val = hold_out_val(labels, "samples", 0.25, np.random.default_rng(0))
    assert sorted(labels[val].tolist()) == [0, 0, 1, 1]
    assert {9, 10, 11, 12} <= set(train.tolist())
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(13))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("folds", 0.1), "dataset.val_split='folds' is not one of"),
        (("classes", 0.0), "dataset.val_fraction=0.0 must lie strictly between 0 and 1"),
        (("classes", 0.9), "leaves fewer than 2 to train on"),
    ],
)
def test_bad_hold_out_settings_fail_clearly(args: tuple[str, float], message: str) -> None:
    with pytest.raises(DmlError, match=message):
        hold_out_val(np.repeat(np.arange(6), 4), *args, np.random.default_rng(0))


def test_query_without_gallery_is_rejected() -> None:
    data = TensorLabeledDataset(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(DmlError, match="set only one of query and gallery"):
        DataSplits(train=data, val=data, test=data, query=data)


def test_image_transforms_give_the_configured_size_and_normalisation() -> None:
    tf = ImageTransforms(crop_size=40, resize_size=48)
    grey = Image.new("L", (100, 60), color=128)
    for transform in (tf.train_transform(), tf.eval_transform()):
        out = transform(grey)
        assert out.shape == torch.Size([3, 40, 40]) and out.dtype == torch.float32
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(tf.eval_transform()(grey)[:, 20, 20], expected, atol=1e-5)


def test_eval_transform_is_the_centre_crop_of_the_resized_image() -> None:
    image = Image.new("RGB", (80, 40))
    image.paste((255, 0, 0), (0, 0, 12, 40))  # a red band at the left edge
    out = ImageTransforms(crop_size=20, resize_size=20, mean=[0, 0, 0], std=[1, 1, 1])
    crop = out.eval_transform()(image)  # resized to 40×20, centre 20×20 misses the band
    assert crop[0].max() < 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_size": 300}, "need 1 <= crop_size <= resize_size"),
        ({"crop_scale": [0.5, 0.2]}, "crop_scale"),
        ({"mean": [0.5]}, "must have 3 numbers"),
        ({"std": [1.0, 0.0, 1.0]}, "must be positive"),
    ],
)
def test_bad_image_transform_settings_fail_clearly(kwargs: dict, message: str) -> None:
    with pytest.raises(DmlError, match=message):
        ImageTransforms(**kwargs)


def test_small_transforms_leave_eval_pixels_untouched_by_default() -> None:
    x = torch.rand(1, 28, 28)
    tf = SmallImageTransforms()
    assert torch.equal(tf.eval_transform()(x), x)
    torch.manual_seed(0)
    assert not torch.equal(tf.train_transform()(x), x)
    assert torch.equal(SmallImageTransforms(augment=False).train_transform()(x), x)


def test_array_source_applies_the_transform_pair_per_split() -> None:
    tf = SmallImageTransforms(degrees=30.0)
    splits = MNIST5k(input_shape=[1, 28, 28], num_classes=10, transform=tf).load()
    assert torch.equal(splits.test[0][0], splits.test.features[0])
    torch.manual_seed(0)
    assert not torch.equal(splits.train[0][0], splits.train.features[0])


@pytest.mark.parametrize("dataset", ["digits", "iris", "synthetic"])
def test_training_seed_leaves_the_split_alone_and_dataset_seed_moves_it(
    compose_cfg: Callable[..., DictConfig], dataset: str
) -> None:
    """`seed` varies the training only; runs across seeds share one test set."""

    def test_labels_and_inputs(*overrides: str) -> tuple[list[int], torch.Tensor]:
        test = build_source(compose_cfg(f"dataset={dataset}", *overrides)).load().test
        return test.labels.tolist(), torch.stack([test[i][0] for i in range(len(test))])

    labels, inputs = test_labels_and_inputs("seed=0")
    labels_other_seed, inputs_other_seed = test_labels_and_inputs("seed=1")
    assert labels == labels_other_seed and torch.equal(inputs, inputs_other_seed)
    _, inputs_other_split = test_labels_and_inputs("dataset.seed=1")
    assert inputs_other_split.shape != inputs.shape or not torch.equal(inputs, inputs_other_split)
