import numpy as np
import pytest

from dml.datasets.checks import check_arrays
from dml.errors import DmlError


def test_integer_and_integral_float_labels_pass() -> None:
    x = np.zeros((3, 2))
    assert check_arrays(x, np.array([0, 1, 2]), "src").dtype == np.int64
    assert check_arrays(x, np.array([0.0, 1.0, 2.0]), "src").tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0.0, 1.5, 2.0]), "label 1.5 at index 1 is not an integer"),
        (np.array([0.0, 1.0, np.nan]), "label nan at index 2 is not an integer"),
        (np.array(["cat", "dog", "cat"]), "labels have dtype <U3"),
    ],
)
def test_non_integer_labels_name_the_index(labels: np.ndarray, message: str) -> None:
    with pytest.raises(DmlError, match=message):
        check_arrays(np.zeros((3, 2)), labels, "src")


def test_nan_features_name_the_item() -> None:
    x = np.zeros((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(DmlError, match=r"src: the features of item 2 hold nan \(at position 1\)"):
        check_arrays(x, np.arange(4), "src")
