"""Input transforms: the DML-standard crops for photographs, and light augmentation for
small in-memory images.

A dataset config holds one ``transform`` node; the source asks it for the training
transform (random) and the evaluation transform (deterministic), so the two can never
drift apart in size or normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode, v2

from dml.errors import DmlError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The resampling filters a model's data config may name (timm's names).
INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

Transform = Callable[[Any], Tensor]


class TransformPair(Protocol):
    """What a source needs: one transform for training batches, one for evaluation."""

    def train_transform(self) -> Transform: ...

    def eval_transform(self) -> Transform: ...


@runtime_checkable
class NormalisesPixels(Protocol):
    """A transform pair whose evaluation transform ends by normalising [0, 1] pixel values
    with a per-channel ``mean`` and ``std``. Pictures undo it to show what the model saw,
    and an exported model repeats it, so that a service feeds it plain pixels."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


def pixel_statistics(transform: object | None, channels: int) -> tuple[Tensor, Tensor]:
    """``(mean, std)`` as [channels, 1, 1] tensors: the transform's normalisation, or
    (0, 1) for a transform that leaves pixel values as they are (or no transform)."""
    if isinstance(transform, NormalisesPixels):
        mean, std = transform.mean, transform.std
        if len(mean) == 1:
            mean, std = mean * channels, std * channels
    else:
        mean, std = (0.0,) * channels, (1.0,) * channels
    shape = (channels, 1, 1)
    return torch.tensor(mean).reshape(shape), torch.tensor(std).reshape(shape)


def to_pixels(x: Tensor, transform: object | None) -> Tensor:
    """An evaluation input ([C, H, W], normalised) back as [0, 1] pixels for display."""
    mean, std = pixel_statistics(transform, x.shape[0])
    return (x.float().cpu() * std + mean).clamp(0.0, 1.0)


def _floats(name: str, values: Sequence[float], length: int | None = None) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if length is not None and len(out) != length:
        raise DmlError(f"dataset.transform.{name}={list(out)} must have {length} numbers")
    return out


def _check_normalisation(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    if len(mean) != len(std):
        raise DmlError(
            f"dataset.transform.mean has {len(mean)} channels but std has {len(std)}; "
            "give one value per channel in each"
        )
    if any(s <= 0 for s in std):
        raise DmlError(f"dataset.transform.std={list(std)} must be positive")


class ImageTransforms:
    """PIL images to normalised tensors, as nearly every DML paper since 2016 does it.

    Training takes a random resized crop and a horizontal flip; evaluation resizes the
    short side to ``resize_size`` and takes the centre ``crop_size`` square, so train and
    eval inputs have the same size. Both resample with ``interpolation``: the filter the
    backbone was pretrained with (bicubic for most timm models), since a network's
    features shift with the blur of another filter. The input is an RGB PIL image: the
    benchmarks mix greyscale and CMYK files among RGB ones, and the reader
    (:func:`dml.datasets.images.files.read_image`) converts every file once as it decodes it,
    so no step here copies the image again.
    """

    def __init__(
        self,
        crop_size: int = 224,
        resize_size: int = 256,
        crop_scale: Sequence[float] = (0.08, 1.0),
        horizontal_flip: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        interpolation: str = "bilinear",
    ) -> None:
        if crop_size < 1 or resize_size < crop_size:
            raise DmlError(
                f"dataset.transform.crop_size={crop_size} and resize_size={resize_size}: "
                "need 1 <= crop_size <= resize_size"
            )
        self.crop_size = crop_size
        self.resize_size = resize_size
        self.crop_scale = _floats("crop_scale", crop_scale, 2)
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise DmlError(
                f"dataset.transform.crop_scale={list(self.crop_scale)} must satisfy "
                "0 < low <= high <= 1"
            )
        self.horizontal_flip = horizontal_flip
        self.mean = _floats("mean", mean, 3)
        self.std = _floats("std", std, 3)
        _check_normalisation(self.mean, self.std)
        if interpolation not in INTERPOLATIONS:
            raise DmlError(
                f"dataset.transform.interpolation={interpolation!r} is not one of "
                f"{', '.join(INTERPOLATIONS)}"
            )
        self.interpolation = interpolation

    def preprocessing(self) -> dict[str, Any]:
        """What the evaluation transform does, as plain values: the record a run keeps and
        an exported model's user needs to feed it the same pixels."""
        return {
            "resize_size": self.resize_size,
            "crop_size": self.crop_size,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @staticmethod
    def _to_pixels() -> list[Any]:
        return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]

    def train_transform(self) -> Transform:
        steps: list[Any] = [
            v2.RandomResizedCrop(
                self.crop_size,
                scale=self.crop_scale,
                interpolation=INTERPOLATIONS[self.interpolation],
                antialias=True,
            ),
        ]
        if self.horizontal_flip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose([*steps, *self._to_pixels(), v2.Normalize(self.mean, self.std)])

    def eval_transform(self) -> Transform:
        return v2.Compose([self.pixel_transform(), v2.Normalize(self.mean, self.std)])

    def pixel_transform(self) -> Transform:
        """The evaluation transform up to [0, 1] RGB pixels, without the normalisation: what
        a model exported by `dml export` (which normalises inside) takes."""
        return v2.Compose(
            [
                v2.Resize(
                    self.resize_size,
                    interpolation=INTERPOLATIONS[self.interpolation],
                    antialias=True,
                ),
                v2.CenterCrop(self.crop_size),
                *self._to_pixels(),
            ]
        )


def preprocessing(transform: object | None) -> dict[str, Any] | None:
    """A dataset transform's evaluation preprocessing as plain values, for the metadata of
    an exported model: all of it for photographs (:meth:`ImageTransforms.preprocessing`),
    the normalisation alone for another transform that normalises, None otherwise."""
    if isinstance(transform, ImageTransforms):
        return transform.preprocessing()
    if isinstance(transform, NormalisesPixels):
        return {"mean": list(transform.mean), "std": list(transform.std)}
    return None


class SmallImageTransforms:
    """Augmentation for small images already held as [C, H, W] tensors in [0, 1] (MNIST).

    Random crops would cut strokes off a 28×28 digit and flips change its meaning, so
    training uses a small random affine warp (rotation, shift, scale) instead; it teaches
    invariances that transfer to classes never trained on. Evaluation only normalises.
    The default mean 0 and std 1 leave pixel values as they are.
    """

    def __init__(
        self,
        augment: bool = True,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: Sequence[float] = (0.9, 1.1),
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
    ) -> None:
        if degrees < 0 or not 0 <= translate < 1:
            raise DmlError(
                f"dataset.transform.degrees={degrees} and translate={translate}: "
                "need degrees >= 0 and 0 <= translate < 1"
            )
        self.augment = augment
        self.degrees = float(degrees)
        self.translate = float(translate)
        self.scale = _floats("scale", scale, 2)
        if not 0 < self.scale[0] <= self.scale[1]:
            raise DmlError(
                f"dataset.transform.scale={list(self.scale)} must satisfy 0 < low <= high"
            )
        self.mean = _floats("mean", mean)
        self.std = _floats("std", std)
        _check_normalisation(self.mean, self.std)

    def train_transform(self) -> Transform:
        steps: list[Any] = []
        if self.augment:
            steps.append(
                v2.RandomAffine(
                    degrees=self.degrees,
                    translate=(self.translate, self.translate),
                    scale=self.scale,
                )
            )
        return v2.Compose([*steps, *self._normalise()])

    def eval_transform(self) -> Transform:
        return v2.Compose(self._normalise())

    def _normalise(self) -> list[Any]:
        if all(m == 0 for m in self.mean) and all(s == 1 for s in self.std):
            return [v2.Identity()]
        return [v2.Normalize(self.mean, self.std)]
