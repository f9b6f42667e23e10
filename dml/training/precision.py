"""Mixed precision as a guarantee: the backbone may run in bf16 or fp16, the metric never.

Under ``trainer.precision=bf16-mixed`` or ``16-mixed`` Lightning runs every step inside
``torch.autocast``, which would also run the loss's distance matrices in half precision:
margins of 0.1 drown in bf16's 3 significant digits, and the exponentials and
log-sum-exps of multi-similarity, N-pair or proxy losses overflow fp16's range. So the
module hands the miner, the loss, the memory and the evaluation float32 embeddings with
autocast switched off (:func:`in_float32`); only the backbone runs in low precision.

Which precision fits which machine is checked at start (:func:`check_precision`), in one
line, instead of Lightning quietly changing fp16 to bf16 on a CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

import torch
from omegaconf import DictConfig
from torch import Tensor

from dml.errors import DmlError

F = TypeVar("F", bound=Callable[..., Any])
# Every device type autocast may be on for in a dml run.
AUTOCAST_DEVICES = ("cpu", "cuda")
FLOAT16 = ("16", "16-mixed", "16-true")
BFLOAT16 = ("bf16", "bf16-mixed", "bf16-true")
GPU_ACCELERATORS = ("gpu", "cuda")


def autocast_off() -> ExitStack:
    """A context in which no autocast is active, on any device."""
    stack = ExitStack()
    for device in AUTOCAST_DEVICES:
        stack.enter_context(torch.autocast(device, enabled=False))
    return stack


def in_float32(method: F) -> F:
    """Run ``method`` with autocast off and its floating-point tensor arguments in float32.

    Casting at the boundary keeps gradients flowing: the cast is differentiable, so the
    backbone still receives its gradient in its own precision.
    """

    @functools.wraps(method)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        args = tuple(_as_float32(value) for value in args)
        kwargs = {key: _as_float32(value) for key, value in kwargs.items()}
        with autocast_off():
            return method(self, *args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _as_float32(value: Any) -> Any:
    if isinstance(value, Tensor) and value.is_floating_point() and value.dtype != torch.float32:
        return value.float()
    return value


def runs_on_gpu(trainer_cfg: DictConfig) -> bool:
    """Whether the trainer will put the model on a CUDA device."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in GPU_ACCELERATORS:
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def check_precision(trainer_cfg: DictConfig) -> None:
    """fp16 needs a CUDA GPU (and gets gradient scaling there); bf16 needs a CPU or a GPU
    with bf16 support. Anything else Lightning itself checks."""
    precision = str(trainer_cfg.get("precision", "32-true"))
    on_gpu = runs_on_gpu(trainer_cfg)
    if precision in FLOAT16 and not on_gpu:
        raise DmlError(
            f"trainer.precision={precision} needs a CUDA GPU (float16 with gradient scaling); "
            "on a CPU use trainer.precision=bf16-mixed, or trainer=gpu on a machine with one"
        )
    if precision in BFLOAT16 and on_gpu and torch.cuda.is_available():
        if not torch.cuda.is_bf16_supported():
            raise DmlError(
                f"trainer.precision={precision}, but {torch.cuda.get_device_name()} has no "
                "bfloat16 support; use trainer.precision=16-mixed on this GPU"
            )
