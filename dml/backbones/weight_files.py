"""Weights from a local file: ``backbone.weights=/path/to/file``, a .pth (any torch
pickle of tensors) or a .safetensors file.

A local file is how a machine without a network gets pretrained weights, and how a user
starts from their own pretraining. Both formats load without running code from the file:
torch.load with ``weights_only``, safetensors by its design.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from dml.errors import DmlError

SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def is_weights_path(weights: str) -> bool:
    """A value of ``backbone.weights`` that names a file rather than a library's weights."""
    return "/" in weights or "\\" in weights or weights.endswith(SUFFIXES)


def existing_file(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise DmlError(
            f"backbone.weights={weights}: no such file ({path.resolve()}); give the path "
            "of a .pth or .safetensors file"
        )
    return path


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a weights file; a Lightning- or DDP-style wrapping is removed."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # both readers signal a damaged file with many exception types
        raise DmlError(f"cannot read pretrained weights {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DmlError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {key.removeprefix("module."): value for key, value in state.items()}
