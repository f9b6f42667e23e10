"""timm model names, checked, and what each pretrained model expects of its input.

A name is an architecture with an optional pretrained tag (``vit_small_patch16_224.dino``);
without a tag, timm picks the architecture's default weights. The tag decides the input:
a CLIP model was trained on CLIP's mean and std, DINOv2 at 518 pixels, most ViTs with
bicubic resampling. timm records these in the tag's data config, which
:func:`model_input` reads, so the transform can follow the model (the resolver
``${dml.model_input:KEY}`` in ``conf/dataset/transform/imagenet.yaml``).
"""

from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass
from typing import Any

from dml.errors import DmlError


@dataclass(frozen=True)
class ModelInput:
    """The evaluation input a model was pretrained on: resize the short side to
    ``crop_size / crop_pct``, centre-crop ``crop_size``, normalise with mean and std."""

    crop_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    def resize_size(self, crop_size: int) -> int:
        """The short side before the centre crop, as timm computes it for ``crop_size``."""
        return math.floor(crop_size / self.crop_pct)


@functools.cache
def pretrained_config(name: str) -> Any:
    """timm's pretrained config of ``name`` (a ``PretrainedCfg``); a one-line error for
    an unknown architecture or tag, with the nearest names."""
    import timm
    from timm.models import get_pretrained_cfg

    architecture, _, tag = name.partition(".")
    if not timm.is_model(architecture):
        near = difflib.get_close_matches(architecture, timm.list_models(), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise DmlError(
            f"backbone.name={name!r} is not a timm model{hint}; list them with "
            "python -c \"import timm; print(timm.list_models('*vit*'))\""
        )
    try:
        config = get_pretrained_cfg(name)
    except RuntimeError:
        config = None
    if config is None:
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{architecture}.*")]
        raise DmlError(
            f"backbone.name={name!r}: timm's {architecture} has no pretrained tag {tag!r}; "
            f"its tags: {', '.join(tags) or 'none'}"
        )
    return config


@functools.cache
def model_input(name: str, img_size: int | None = None) -> ModelInput:
    """What timm's data config says ``name`` takes; ``img_size`` replaces its input size
    (a ViT fine-tuned at another resolution, its position embeddings resized)."""
    from timm.data import resolve_data_config

    config = pretrained_config(name).to_dict()
    args = {} if img_size is None else {"input_size": (3, img_size, img_size)}
    data = resolve_data_config(args, pretrained_cfg=config)
    return ModelInput(
        crop_size=int(data["input_size"][-1]),
        crop_pct=float(data["crop_pct"]),
        interpolation=str(data["interpolation"]),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        source=f"timm's data config for {name}"
        + ("" if img_size is None else f" at backbone.img_size={img_size}"),
    )
