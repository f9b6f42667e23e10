"""A trial of the optimizer and scheduler before training, on a throwaway parameter.

Their constructors accept almost anything (``scheduler.T_max=abc`` builds fine) and fail
only when stepped, which Lightning does after the first epoch: minutes in, with a traceback
from inside torch. Two trial steps at start turn that into one line naming the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dml.errors import DmlError

TRIAL_STEPS = 2


def check_optimization(
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    scheduler_factory: Callable[[torch.optim.Optimizer], Any] | None,
    cfg: DictConfig,
) -> None:
    """Build both factories on one zero parameter and step them; a failure names the group."""
    probe = nn.Parameter(torch.zeros(1))
    try:
        optimizer = optimizer_factory([probe])
    except Exception as exc:
        raise DmlError(failure("optimizer", cfg, "cannot be built", exc)) from None
    scheduler = None
    if scheduler_factory is not None:
        try:
            scheduler = scheduler_factory(optimizer)
        except Exception as exc:
            raise DmlError(failure("scheduler", cfg, "cannot be built", exc)) from None
    for _ in range(TRIAL_STEPS):
        try:
            optimizer.step(lambda: probe.sum())
        except Exception as exc:
            raise DmlError(failure("optimizer", cfg, "fails on a trial step", exc)) from None
        if scheduler is not None:
            try:
                scheduler.step()
            except Exception as exc:
                raise DmlError(failure("scheduler", cfg, "fails on a trial step", exc)) from None


def failure(group: str, cfg: DictConfig, what: str, exc: Exception) -> str:
    node = OmegaConf.to_container(cfg[group], resolve=True)
    assert isinstance(node, dict)
    target = str(node.pop("_target_", "?")).rsplit(".", 1)[-1]
    node.pop("_partial_", None)
    settings = ", ".join(f"{group}.{key}={value!r}" for key, value in node.items())
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{group} {target} {what} ({reason}); check its settings: {settings}"
