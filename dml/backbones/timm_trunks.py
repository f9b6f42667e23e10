"""A timm model as a trunk without classifier, with its pretrained weights loaded strictly.

The weights file comes from timm's own source for the name (the Hugging Face hub, or a
URL for a few old models), through :mod:`dml.backbones.downloads`, or from the user's
``backbone.weights`` file. timm then loads it as it loads its own downloads, through the
model's checkpoint filter, which converts original releases (DINO's, OpenAI CLIP's) and
resizes a ViT's position embeddings to ``img_size``.

timm loads loosely when the classifier changes (``num_classes=0``), so a file of another
model would leave the trunk random without a word. Here the model is first built with
the classifier the weights have and loaded strictly, then the classifier is dropped
(``reset_classifier``); a file without a classifier loads strictly into a model without
one. A file that fits neither is named, with timm's first complaint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from dml.backbones.downloads import HubFile, download_from_hub, download_to_torch_hub
from dml.backbones.timm_names import pretrained_config
from dml.errors import DmlError

SCRATCH = "backbone.pretrained=false"
# The hub client's default weights file, and timm's safetensors alternatives to it.
HUB_DEFAULT = "pytorch_model.bin"
SAFE_ALTERNATIVES = {
    "pytorch_model.bin": "model.safetensors",
    "open_clip_pytorch_model.bin": "open_clip_model.safetensors",
}


def hub_filenames(filename: str | None) -> tuple[str, ...]:
    """The files timm would try in a hub repository, safetensors first."""
    name = filename or HUB_DEFAULT
    if name in SAFE_ALTERNATIVES:
        return SAFE_ALTERNATIVES[name], name
    if name.endswith(".bin"):
        return name.removesuffix(".bin") + ".safetensors", name
    return (name,)


def pretrained_file(name: str) -> Path:
    """The local file of timm's pretrained weights for ``name``, downloaded if need be."""
    config = pretrained_config(name)
    what = f"pretrained weights of timm's {name}"
    if config.hf_hub_id:
        repo_id, _, revision = config.hf_hub_id.partition("@")
        file = HubFile(repo_id, hub_filenames(config.hf_hub_filename), revision or None)
        return download_from_hub(file, what, SCRATCH)
    if config.url:
        return download_to_torch_hub(config.url, what, SCRATCH)
    raise DmlError(
        f"timm names no pretrained weights for {name}; set {SCRATCH}, or "
        "backbone.weights=/path/to/file (.pth or .safetensors)"
    )


def create(name: str, file: Path | None, num_classes: int, **kwargs: Any) -> nn.Module:
    """timm's model; ``img_size`` is dropped for a model without it (a CNN takes any size)."""
    import timm

    overlay = None
    if file is not None:
        # A model whose weights are released as big_vision .npz has its own loader, which
        # timm's hub copies (safetensors) and local state dicts must not go through.
        custom = bool(pretrained_config(name).custom_load) and file.suffix == ".npz"
        overlay = {"file": str(file), "num_classes": num_classes, "custom_load": custom}
    try:
        return timm.create_model(
            name,
            pretrained=file is not None,
            pretrained_cfg_overlay=overlay,
            num_classes=num_classes,
            **kwargs,
        )
    except TypeError as exc:
        unknown = [key for key in kwargs if f"'{key}'" in str(exc)]
        if unknown == ["img_size"]:
            rest = {key: value for key, value in kwargs.items() if key != "img_size"}
            return create(name, file, num_classes, **rest)
        if unknown:
            raise DmlError(
                f"timm's {name} takes no {unknown[0]}; leave backbone.{unknown[0]} at its default"
            ) from None
        raise


def build_trunk(name: str, file: Path | None, **kwargs: Any) -> nn.Module:
    """The model without classifier; with ``file``, every parameter of it loaded."""
    if file is None:
        return create(name, None, 0, **kwargs)
    classes = int(pretrained_config(name).num_classes or 0)
    attempts = [classes, 0] if classes else [0]
    problems = []
    for num_classes in attempts:
        try:
            trunk = create(name, file, num_classes, **kwargs)
        except DmlError:
            raise
        except Exception as exc:  # torch and the file readers fail with many types
            problems.append(first_complaint(exc))
            continue
        trunk.reset_classifier(0)
        return trunk
    raise DmlError(f"{file} does not hold weights of timm's {name}: {problems[0]}")


def first_complaint(exc: Exception) -> str:
    """The first informative line of a loading error, at most 300 characters."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0]
    return line if len(line) <= 300 else line[:297] + "..."
