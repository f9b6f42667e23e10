"""torchvision MNIST from raw files, scikit-learn tables, Gaussian clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets

from dml.datasets.builtin.mnist import RAW_FILES, TorchvisionMNIST
from dml.datasets.builtin.sklearn_sets import SklearnTabular
from dml.datasets.builtin.synthetic import GaussianClusters
from dml.errors import DmlError
from dml.transforms import SmallImageTransforms
from tests.fixtures.trees import make_mnist_raw


def mnist(root: Path, **kwargs: object) -> TorchvisionMNIST:
    return TorchvisionMNIST(root=root, input_shape=[1, 28, 28], **kwargs)


@pytest.mark.parametrize("variant", ["MNIST", "FashionMNIST"])
def test_mnist_reads_torchvisions_raw_files(tmp_path: Path, variant: str) -> None:
    make_mnist_raw(tmp_path, variant, train=60, test=30)
    splits = mnist(tmp_path, variant=variant, val_fraction=0.1).load()
    # Two of the six images of every class are held out: a query and its match.
    assert len(splits.train) == 40 and len(splits.val) == 20 and len(splits.test) == 30
    assert set(splits.val.labels.tolist()) == set(range(10))
    x, y = splits.test[3]
    assert x.shape == torch.Size([1, 28, 28])
    assert int(y) == 3 and x[0, 0, 0].item() == pytest.approx(60 / 255)


def test_mnist_class_split_tests_on_unseen_digits_of_the_test_file(tmp_path: Path) -> None:
    make_mnist_raw(tmp_path, train=60, test=30)
    splits = mnist(tmp_path, split="classes", train_classes=4).load()
    assert set(splits.train.labels.tolist()) | set(splits.val.labels.tolist()) == {0, 1, 2, 3}
    assert set(splits.test.labels.tolist()) == set(range(4, 10))
    assert len(splits.test) == 18


def test_mnist_class_split_needs_classes_on_both_sides(tmp_path: Path) -> None:
    make_mnist_raw(tmp_path)
    for bad in (1, 9):
        with pytest.raises(DmlError, match=f"dataset.train_classes={bad} must lie between 2 and 8"):
            mnist(tmp_path, split="classes", train_classes=bad).load()


def test_mnist_transform_normalises_and_augments_training_only(tmp_path: Path) -> None:
    make_mnist_raw(tmp_path)
    tf = SmallImageTransforms(mean=[0.5], std=[0.25], degrees=30)
    splits = mnist(tmp_path, transform=tf).load()
    raw = splits.test.features[0]
    assert torch.allclose(splits.test[0][0], (raw - 0.5) / 0.25)
    torch.manual_seed(0)
    assert not torch.equal(splits.train[0][0], splits.train[0][0])


def test_missing_mnist_files_name_the_folder_and_the_files(tmp_path: Path) -> None:
    with pytest.raises(DmlError) as info:
        mnist(tmp_path).load()
    message = str(info.value)
    assert f"MNIST not found in {tmp_path / 'MNIST' / 'raw'}" in message
    assert all(name in message for name in RAW_FILES)
    assert "dataset.download=true" in message and "\n" not in message


def test_download_true_is_handed_to_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def fake_download(self: datasets.MNIST) -> None:
        calls.append(self.raw_folder)
        make_mnist_raw(Path(self.root))

    monkeypatch.setattr(datasets.MNIST, "download", fake_download)
    splits = mnist(tmp_path, download=True).load()
    assert calls == [str(tmp_path / "MNIST" / "raw")] * 2
    assert len(splits.test) == 30


def test_damaged_mnist_file_is_named(tmp_path: Path) -> None:
    raw = make_mnist_raw(tmp_path)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(DmlError, match=rf"cannot read MNIST from {raw}"):
        mnist(tmp_path).load()


@pytest.mark.parametrize(
    ("name", "features", "classes"), [("iris", 4, 3), ("wine", 13, 3), ("breast_cancer", 30, 2)]
)
def test_tabular_is_standardised_with_training_statistics(
    name: str, features: int, classes: int
) -> None:
    splits = SklearnTabular(name=name, input_shape=[features], num_classes=classes).load()
    train = splits.train.features
    assert train.shape[1] == features
    assert torch.allclose(train.mean(0), torch.zeros(features), atol=1e-5)
    assert torch.allclose(train.std(0), torch.ones(features), atol=1e-4)
    assert not torch.allclose(splits.test.features.mean(0), torch.zeros(features), atol=1e-3)
    assert set(splits.test.labels.tolist()) == set(range(classes))


def test_tabular_input_shape_is_checked() -> None:
    source = SklearnTabular(name="iris", input_shape=[5], num_classes=3)
    with pytest.raises(DmlError, match=r"iris has 4 features; set input_shape to \[4\]"):
        source.load()
    with pytest.raises(DmlError, match="dataset.name='digits' is not one of"):
        SklearnTabular(name="digits", input_shape=[64], num_classes=10)


def test_synthetic_clusters_have_the_requested_shape_and_are_reproducible() -> None:
    def make(seed: int) -> GaussianClusters:
        return GaussianClusters(
            num_classes=7, dim=5, samples_per_class=20, seed=seed, cluster_std=0.1, center_std=5.0
        )

    x, y = make(3).arrays()
    assert x.shape == (140, 5) and np.bincount(y).tolist() == [20] * 7
    np.testing.assert_array_equal(x, make(3).arrays()[0])
    assert not np.array_equal(x, make(4).arrays()[0])
    centres = np.stack([x[y == c].mean(0) for c in range(7)])
    nearest = np.linalg.norm(x[:, None] - centres[None], axis=2).argmin(1)
    assert (nearest == y).all()  # tight clusters far apart: every point nearest its centre
    splits = make(3).load()
    assert splits.train.features.shape[1:] == torch.Size([5])


def test_synthetic_rejects_inconsistent_settings() -> None:
    with pytest.raises(DmlError, match=r"input_shape=\[4\] must be \[dim\] = \[5\]"):
        GaussianClusters(num_classes=3, dim=5, samples_per_class=4, input_shape=[4])
    with pytest.raises(DmlError, match="need at least 2 classes"):
        GaussianClusters(num_classes=1, dim=5, samples_per_class=4)
