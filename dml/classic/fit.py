"""How a MetricLearner fits: the module ``dml train`` builds, stepped by a plain loop.

A classic metric-learning fit on a small table takes tens of milliseconds, less than a
Lightning ``Trainer`` takes to start, and it has nothing to log or checkpoint; so the
loop here steps the module's own ``forward``, ``compute_loss`` and
``configure_optimizers``: what ``dml train`` steps.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from dml.classic.config import learner_config
from dml.config.build import build_module
from dml.errors import DmlError
from dml.training.module import EmbeddingModule
from dml.training.samplers import ClassBalancedBatchSampler

# Untrained modules above this many parameters (a ResNet) are not kept between fits:
# building one costs little next to training it, and keeping it costs memory.
PROTOTYPE_MAX_PARAMETERS = 1_000_000


def untrained_module(
    choices: Mapping[str, str], values: Mapping[str, Any]
) -> tuple[DictConfig, EmbeddingModule]:
    """The config and a freshly built module, as ``build_module`` gives them.

    Call it with torch's generator seeded from ``values``' seed. Cross-validation and
    grid search fit one config many times, and reading the YAMLs and instantiating the
    module costs about as much as a whole NCA fit on a small table, so a config that
    can be written as JSON is built once: later calls get a copy of that module and the
    generator state its build left, which is exactly what building it again would give.
    """
    try:
        key = json.dumps([sorted(choices.items()), values], sort_keys=True)
    except TypeError:
        cfg = learner_config(choices, values)
        return cfg, build_module(cfg)
    cfg, prototype, rng_after_build = built_prototype(key)
    if sum(p.numel() for p in prototype.parameters()) > PROTOTYPE_MAX_PARAMETERS:
        built_prototype.cache_clear()
    torch.set_rng_state(rng_after_build)
    # The module's run_config (the whole config, for checkpoints) is only read: shared.
    shared = {id(prototype.run_config): prototype.run_config}
    return cfg, copy.deepcopy(prototype, shared)


@lru_cache(maxsize=8)
def built_prototype(key: str) -> tuple[DictConfig, EmbeddingModule, Tensor]:
    """``untrained_module``'s cache: config, module and generator state, by JSON key."""
    choices, values = json.loads(key)
    cfg = learner_config(dict(choices), values)
    module = build_module(cfg)
    return cfg, module, torch.get_rng_state()


def optimise(module: EmbeddingModule, x: Tensor, y: Tensor, cfg: DictConfig) -> list[float]:
    """Train ``module`` in place on (x, y); returns each epoch's mean loss over its steps.

    The loss is the module's own ``compute_loss`` on its own ``forward``, and the optimizer
    and scheduler come from its ``configure_optimizers``: what ``dml train`` steps.
    """
    configured = module.configure_optimizers()
    if isinstance(configured, dict):
        optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]
    else:
        optimizer, scheduler = configured, None
    batches = batch_plan(y, cfg.data.batch_size, cfg.data.samples_per_class, cfg.seed)
    module.train()
    curve = []
    for epoch in range(cfg.trainer.max_epochs):
        if hasattr(module.miner, "set_epoch"):
            module.miner.set_epoch(epoch)
        losses = [step(module, optimizer, x[i], y[i], epoch) for i in batches(epoch)]
        curve.append(float(np.mean(losses)))
        if scheduler is not None:
            scheduler.step()
    return curve


def batch_plan(
    labels: Tensor, batch_size: int | None, samples_per_class: int, seed: int
) -> Callable[[int], list[Tensor]]:
    """Each epoch's batches: the whole set at once, or ``dml train``'s P×K batches."""
    if batch_size is None or batch_size >= len(labels):
        everything = [torch.arange(len(labels))]
        return lambda epoch: everything
    sampler = ClassBalancedBatchSampler(labels, batch_size, samples_per_class, seed)

    def batches(epoch: int) -> list[Tensor]:
        sampler.set_epoch(epoch)
        return [torch.tensor(batch) for batch in sampler]

    return batches


def step(
    module: EmbeddingModule, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, epoch: int
) -> float:
    """One optimizer step; returns the loss at its last evaluation.

    The loss is computed in a closure so that L-BFGS can evaluate it as often as its line
    search needs; its last evaluation is then the loss where the step ended.
    """
    evaluated: list[Tensor] = []

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss, _, _ = module.compute_loss(module(x), y)
        loss.backward()
        evaluated.append(loss.detach())
        return loss

    optimizer.step(closure)
    last = float(evaluated[-1])
    if not np.isfinite(last):
        raise DmlError(
            f"the loss became {last} in epoch {epoch}; lower lr or check X for extreme "
            "values (standardise it, e.g. with StandardScaler)"
        )
    return last
