"""GPU-friendly forms of any backbone: channels-last memory layout, and torch.compile.

Both are ``backbone.*`` keys that work with every backbone option, the user's own
included, so they live here and not in each backbone class. Neither changes the
parameter names, so a checkpoint trained with them loads without them and back.

- ``backbone.channels_last=true`` stores the convolution weights, and every 4-D input,
  in NHWC order, which tensor cores (and oneDNN on CPUs) run faster under mixed precision.
- ``backbone.compile=true`` compiles the backbone's forward in place
  (:meth:`torch.nn.Module.compile`). Compiling fails late and deep inside torch when the
  machine lacks what inductor needs (a C++ compiler on a CPU, Triton on a GPU), so a
  tiny function is compiled at start and a failure is one line.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dml.errors import DmlError


def channels_last_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook: a 4-D image batch enters in channels-last layout."""
    if args and isinstance(args[0], Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def use_channels_last(backbone: nn.Module) -> nn.Module:
    """Weights and inputs in NHWC; only convolutional backbones have a layout to change."""
    if not any(isinstance(m, nn.Conv2d) for m in backbone.modules()):
        raise DmlError(
            f"backbone.channels_last=true needs a convolutional backbone (resnet18, resnet50, "
            f"convnet), but {type(backbone).__name__} has no Conv2d layer; set it to false"
        )
    backbone.to(memory_format=torch.channels_last)
    backbone.register_forward_pre_hook(channels_last_input)
    return backbone


def _probe(x: Tensor) -> Tensor:
    return torch.relu(x) * 2 + 1


def compile_problem(device: str) -> str | None:
    """Why torch cannot compile for ``device`` here, or None if it can."""
    try:
        torch.compile(_probe)(torch.ones(8, device=device))
    except Exception as exc:  # inductor and dynamo fail with many exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}"
    return None


def accelerate(
    backbone: nn.Module, channels_last: bool, compile: bool, device: str = "cpu"
) -> nn.Module:
    """The backbone with the requested forms; ``device`` is where it will run."""
    for key, value in (("channels_last", channels_last), ("compile", compile)):
        if not isinstance(value, bool):
            raise DmlError(f"backbone.{key}={value!r} must be true or false")
    if channels_last:
        use_channels_last(backbone)
    if compile:
        can_probe = device != "cuda" or torch.cuda.is_available()
        problem = compile_problem(device) if can_probe else None
        if problem is not None:
            raise DmlError(
                f"backbone.compile=true, but torch cannot compile for {device} here "
                f"({problem}); set backbone.compile=false"
            )
        backbone.compile()
    return backbone
