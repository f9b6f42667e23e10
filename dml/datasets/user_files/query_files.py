"""A user's own files as model inputs: the queries of `dml search`.

An image goes through the same evaluation transform as the checkpoint's dataset, so a
photo is resized and centre-cropped exactly as the test images were. In-memory picture
data (MNIST-sized arrays) have no such transform from files, so an image is converted to
their channel count and resized to their height and width, scaled to [0, 1], and then
given their evaluation transform. Feature data take rows of a ``.npy`` or ``.npz`` file.
Text data (``dataset=text``) take texts: the value of ``query`` itself, a list of texts,
or a ``.txt`` file of one query per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import v2

from dml.datasets.images.files import IMAGE_SUFFIXES, read_image
from dml.errors import DmlError
from dml.transforms import ImageTransforms, TransformPair

FEATURE_SUFFIXES = (".npy", ".npz")
TEXT_SUFFIX = ".txt"


@dataclass(frozen=True)
class QueryInputs:
    """Model inputs (a tensor, or texts for the data's tokenizer), one name per row (a file
    path, ``row i`` of a feature file, the text), and the rows' labels where the file
    gives them."""

    inputs: Tensor | list[str]
    names: list[str]
    labels: np.ndarray | None
    pictures: bool


def read_queries(
    path: Path, transform: TransformPair | None, item_shape: tuple[int, ...]
) -> QueryInputs:
    """``path``: an image, a folder of images (searched recursively), or a feature file.

    ``item_shape`` is the shape of one evaluation input of the checkpoint's data; images
    need picture data ([1 or 3, H, W]) and feature rows must have exactly that shape.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DmlError(
            f"query={path} does not exist; give an image, a folder of images, or .npy/.npz"
        )
    if path.is_file() and path.suffix.lower() in FEATURE_SUFFIXES:
        return feature_queries(path, item_shape)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise DmlError(
                f"query={path} holds no images (suffixes {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        files = [path]
    else:
        raise DmlError(
            f"query={path} is neither an image ({', '.join(sorted(IMAGE_SUFFIXES))}), "
            "a folder of images, nor a .npy/.npz feature file"
        )
    if not is_picture_shape(item_shape):
        raise DmlError(
            f"query={path} is an image, but the checkpoint's data are features of shape "
            f"{list(item_shape)}; give the query rows as a .npy or .npz (array 'features')"
        )
    inputs = torch.stack([image_input(f, transform, item_shape) for f in files])
    return QueryInputs(inputs, [str(f) for f in files], None, pictures=True)


def image_input(path: Path, transform: TransformPair | None, item_shape: tuple[int, ...]) -> Tensor:
    """One image file as the model's evaluation input."""
    image = read_image(path)
    if isinstance(transform, ImageTransforms):
        return transform.eval_transform()(image)
    channels, height, width = item_shape
    image = image.convert("L" if channels == 1 else "RGB").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    pixels = v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True)
    return transform.eval_transform()(pixels) if transform is not None else pixels


def feature_queries(path: Path, item_shape: tuple[int, ...]) -> QueryInputs:
    """Rows of a ``.npy`` array, or of the ``features`` array of a ``.npz`` (with its
    ``labels`` where present), each shaped like one input of the checkpoint's data."""
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DmlError(f"query={path} cannot be read as NumPy data: {exc}") from None
    labels = None
    if isinstance(stored, np.lib.npyio.NpzFile):
        if "features" not in stored:
            raise DmlError(
                f"query={path} has arrays {', '.join(stored.files)} but no 'features'; "
                "save the query rows as features=..."
            )
        rows = stored["features"]
        labels = stored["labels"] if "labels" in stored else None
    else:
        rows = stored
    if rows.shape == item_shape:
        rows = rows[None]
    if rows.shape[1:] != item_shape or rows.dtype.kind not in "biuf":
        raise DmlError(
            f"query={path} holds {rows.dtype} rows of shape {list(rows.shape[1:])}, but the "
            f"model takes numeric inputs of shape {list(item_shape)}"
        )
    if labels is not None and len(labels) != len(rows):
        raise DmlError(f"query={path} has {len(labels)} labels for {len(rows)} rows")
    names = [f"{path.name} row {i}" for i in range(len(rows))]
    inputs = torch.as_tensor(rows, dtype=torch.float32)
    return QueryInputs(inputs, names, labels, pictures=is_picture_shape(item_shape))


def text_queries(query: Any) -> QueryInputs:
    """``query``: a text, a list of texts, or a ``.txt`` file of one text per line (blank
    lines skipped)."""
    if isinstance(query, str) and query.strip().lower().endswith(TEXT_SUFFIX):
        path = Path(query.strip()).expanduser()
        if not path.is_file():
            raise DmlError(
                f"query={path} does not exist; give a .txt file of one query per line, or "
                'the query itself: query="some text"'
            )
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DmlError(f"query={path} cannot be read as UTF-8 text: {exc}") from None
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            raise DmlError(f"query={path} holds no text; write one query per line")
        return QueryInputs(texts, texts, None, pictures=False)
    given = list(query) if isinstance(query, Sequence) and not isinstance(query, str) else [query]
    texts = [str(text).strip() for text in given]
    if not texts or any(not text for text in texts):
        raise DmlError(
            f"query={query!r} holds an empty text; give the query itself "
            '(query="some text"), a list (query=["first","second"]) or a .txt file'
        )
    return QueryInputs(texts, texts, None, pictures=False)


def is_picture_shape(shape: tuple[int, ...]) -> bool:
    """[1 or 3, H, W]: a grey or colour picture, not a feature vector."""
    return len(shape) == 3 and shape[0] in (1, 3)
