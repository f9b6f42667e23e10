"""Crop boxes of images listed in a table: the object, not the whole photograph.

Boxes are ``(left, top, right, bottom)`` pixel rows, as open-metric-learning's ``x_1, y_1,
x_2, y_2``; a NaN row means the whole image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from dml.errors import DmlError


def boxes_or_whole(boxes: np.ndarray | None, count: int) -> np.ndarray:
    """``boxes``, or ``count`` NaN rows (whole images) where there are none."""
    return boxes if boxes is not None else np.full((count, 4), np.nan)


def crop(image: Image.Image, box: np.ndarray, path: str) -> Image.Image:
    """The ``(left, top, right, bottom)`` part of the image, clipped to it as NumPy slicing
    clips (open-metric-learning crops ``image[y_1:y_2, x_1:x_2]``, so a box that overhangs
    the border by a pixel is valid data there); a box wholly outside is an error."""
    left, top = max(0, int(box[0])), max(0, int(box[1]))
    right, bottom = min(image.width, int(box[2])), min(image.height, int(box[3]))
    if right <= left or bottom <= top:
        raise DmlError(
            f"crop box x_1={int(box[0])}, x_2={int(box[2])}, y_1={int(box[1])}, "
            f"y_2={int(box[3])} of {path} lies outside the {image.width}×{image.height} image"
        )
    return image.crop((left, top, right, bottom))
