"""A run's W&B identity: a readable name, the sweep's group, and searchable tags."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

GROUPS = ("loss", "miner", "backbone", "dataset")


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
    group = None
    if hydra_cfg.mode is not None and hydra_cfg.mode.name == "MULTIRUN":
        group = Path(hydra_cfg.sweep.dir).name
    return name, group, tags
