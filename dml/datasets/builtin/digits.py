"""scikit-learn's 8×8 handwritten digits: 1,797 images, bundled with scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from dml.datasets.base import ArraySource


class Digits(ArraySource):
    """Pixel intensities 0–16 scaled to [0, 1]."""

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        data = load_digits()
        return data.data.astype(np.float32) / 16.0, data.target.astype(np.int64)
