"""Explicit checks of the composed config, run before any data is read or model built.

Hydra already rejects unknown keys and options; these catch values of the wrong type or
range, which would otherwise surface as a traceback from deep inside torch.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dml.config.resolution import check_resolvable
from dml.errors import DmlError
from dml.semi.data import check_labeled_fraction
from dml.training.precision import check_precision
from dml.training.selection import LIGHTNING_MODE, TEST_CHECKPOINTS


def _value(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


def _integer(cfg: DictConfig, key: str, minimum: int) -> None:
    value = _value(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise DmlError(f"{key}={value!r} must be an integer ≥ {minimum}")
    if value < minimum:
        raise DmlError(f"{key}={value} must be at least {minimum}")


def _number(cfg: DictConfig, key: str, minimum: float, strict: bool) -> None:
    value = _value(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise DmlError(f"{key}={value!r} must be a finite number")
    if value < minimum or (strict and value == minimum):
        bound = f"greater than {minimum}" if strict else f"at least {minimum}"
        raise DmlError(f"{key}={value} must be {bound}")


def check_model_selection(cfg: DictConfig) -> None:
    """Model selection looks at validation only: a test/ optimized_metric is refused.

    Selecting a checkpoint, or tuning a sweep, on the test split would make the reported
    test score an optimistic, tuned-on number (Musgrave et al., 2020).
    """
    metric = _value(cfg, "optimized_metric")
    if metric is None:
        return
    if not isinstance(metric, str) or not metric.startswith("val/"):
        if isinstance(metric, str) and metric.startswith("test/"):
            raise DmlError(
                f"optimized_metric={metric} would select checkpoints and tune sweeps on the "
                "test set, so the test score would no longer measure unseen data; use "
                f"optimized_metric=val/{metric.removeprefix('test/')}"
            )
        raise DmlError(
            f"optimized_metric={metric!r} must be a validation metric (val/..., e.g. "
            "val/map_at_r): it picks checkpoints/best.ckpt after every validation"
        )
    direction = _value(cfg, "optimized_direction")
    if direction not in LIGHTNING_MODE:
        raise DmlError(
            f"optimized_direction={direction!r} must be one of {', '.join(LIGHTNING_MODE)}"
        )
    choice = _value(cfg, "eval.test_checkpoint")
    if choice is not None and choice not in TEST_CHECKPOINTS:
        raise DmlError(
            f"eval.test_checkpoint={choice!r} must be one of {', '.join(TEST_CHECKPOINTS)}"
        )


def check_config(cfg: DictConfig) -> None:
    """Raise a one-line DmlError naming the first bad key, its value and the allowed range."""
    check_resolvable(cfg)
    check_model_selection(cfg)
    _integer(cfg, "seed", 0)
    _integer(cfg, "data.batch_size", 2)
    _integer(cfg, "data.samples_per_class", 1)
    _integer(cfg, "data.eval_batch_size", 1)
    if _value(cfg, "data.num_workers") != "auto":
        _integer(cfg, "data.num_workers", 0)
    _integer(cfg, "trainer.max_epochs", 1)
    _integer(cfg, "backbone.embedding_dim", 1)
    _integer(cfg, "eval.verification_max_pairs", 1)
    verification = _value(cfg, "eval.verification")
    if verification is not None and not isinstance(verification, bool):
        raise DmlError(f"eval.verification={verification!r} must be true or false")
    _number(cfg, "optimizer.lr", 0.0, strict=True)
    _number(cfg, "optimizer.weight_decay", 0.0, strict=False)
    _number(cfg, "optimizer.momentum", 0.0, strict=False)
    for key in ("loss.margin", "loss.pos_margin", "loss.neg_margin", "miner.margin"):
        _number(cfg, key, 0.0, strict=False)
    fraction = _value(cfg, "dataset.labeled_fraction")
    if fraction is not None:
        check_labeled_fraction(fraction)
    for key in ("dataset.val_fraction", "dataset.test_fraction"):
        _number(cfg, key, 0.0, strict=True)
        value = _value(cfg, key)
        if value is not None and value >= 1:
            raise DmlError(f"{key}={value} must be less than 1")
    if _value(cfg, "trainer") is not None:
        check_precision(cfg.trainer)
