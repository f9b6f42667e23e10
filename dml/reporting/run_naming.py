"""A run's W&B identity: a readable name, the sweep's group, and searchable tags."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

GROUPS = ("loss", "miner", "backbone", "dataset")
# Override keys whose runs are repetitions of one variant, not variants of their own: the
# seed, and the fold of a class-disjoint cross-validation.
REPLICATE_KEYS = ("seed", "dataset.fold")
# What a run whose only overrides are replicate keys is called.
DEFAULT_VARIANT = "defaults"


def short_number(value: str) -> str:
    """Three significant digits for a float drawn by a sweeper (``0.0012345678`` → ``0.00123``);
    anything else unchanged."""
    try:
        number = float(value)
    except ValueError:
        return value
    if value.lstrip("+-").isdigit() or len(value) <= 5:
        return value
    return f"{number:.3g}"


def override_label(override: str) -> str:
    """A short label for a W&B run name.

    ``loss=triplet`` → ``triplet``; ``loss.margin=0.2`` → ``m0.2``;
    ``optimizer.lr=1e-3`` → ``lr1e-3``.
    """
    key, _, value = override.lstrip("+~").partition("=")
    value = short_number(value)
    if "." not in key:
        return value
    last = key.rsplit(".", 1)[1]
    short = last if len(last) <= 3 else "".join(part[0] for part in last.split("_") if part)
    return f"{short}{value}"


def override_key(override: str) -> str:
    """``+loss.margin=0.3`` → ``loss.margin``: the key an override sets, prefixes dropped."""
    return override.lstrip("+~").partition("=")[0]


def variant_of(overrides: Sequence[str]) -> str:
    """The variant a run belongs to: its overrides less the replicate keys (seed, fold)
    and Hydra's own, sorted, so every seed of one configuration gets the same string
    whatever the order its command line gave."""
    kept = sorted(
        o for o in overrides if override_key(o) not in REPLICATE_KEYS and not o.startswith("hydra")
    )
    return " ".join(kept) if kept else DEFAULT_VARIANT


def run_variant(cfg: DictConfig) -> str:
    """This run's variant (:func:`variant_of` of its command-line overrides).

    Without Hydra (``train(cfg)`` called from Python) there is no command line; the
    component choices stand in for it.
    """
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return variant_of(list(HydraConfig.get().overrides.task))
    return variant_of([f"{group}={value}" for group, value in group_choices(cfg).items()])


def group_choices(cfg: DictConfig) -> dict[str, str]:
    """The option chosen in each component group, from Hydra if it composed the config."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
        return {group: str(choices.get(group)) for group in GROUPS}
    chosen = {}
    for group in GROUPS:
        node = cfg.get(group)
        target = node.get("_target_") if node is not None else None
        chosen[group] = target.rsplit(".", 1)[1].lower() if target else "none"
    return chosen


def run_identity(cfg: DictConfig) -> tuple[str, str | None, list[str]]:
    """(name, group, tags). The group is the multirun directory's name, shared by its jobs."""
    from hydra.core.hydra_config import HydraConfig

    choices = group_choices(cfg)
    tags = [f"{group}:{value}" for group, value in choices.items()]
    if not HydraConfig.initialized():
        return f"{choices['loss']}-{choices['miner']}", None, tags
    hydra_cfg = HydraConfig.get()
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hydra")]
    labels = [override_label(o) for o in overrides]
    name = "-".join(labels) if labels else f"{choices['loss']}-{choices['miner']}"
    if cfg.get("dataset", {}).get("folds") and not any(
        override_key(o) == "dataset.fold" for o in overrides
    ):
        # A fold of a cv.folds job: the command line does not tell its runs apart.
        name = f"{name}-fold{cfg.dataset.fold}"
    group = None
    if hydra_cfg.mode is not None and hydra_cfg.mode.name == "MULTIRUN":
        group = Path(hydra_cfg.sweep.dir).name
    return name, group, tags
