"""The config a MetricLearner trains with: what `dml train` composes, by Hydra's compose API.

The options are chosen by group (``loss=nca``), as on the command line, and Hydra composes
train.yaml with them. The groups that say where data and logs live are left out: a fit in
memory takes its data as arrays, all labelled, and logs nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import lru_cache
from importlib.resources import files
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from dml.errors import DmlError

# Groups whose options a MetricLearner picks by name.
CHOSEN_GROUPS = ("loss", "backbone", "miner", "optimizer", "scheduler")
# Overrides that drop what an in-memory fit has no use for.
IN_MEMORY = ("~dataset", "logger=none", "semi=none")


def learner_config(choices: Mapping[str, str], values: Mapping[str, Any]) -> DictConfig:
    """train.yaml composed with ``choices`` (e.g. ``{"loss": "nca"}``), then ``values``
    (dotted keys, e.g. ``{"loss.margin": 0.5}``) set on top, as overrides would be.

    Values are set on the composed config rather than passed as override strings, so that
    any Python value (a list, a nested mapping) arrives as it is, without quoting.
    """
    unknown = set(choices) - set(CHOSEN_GROUPS)
    if unknown:
        raise DmlError(
            f"no config group named {', '.join(sorted(unknown))}; "
            f"MetricLearner chooses {', '.join(CHOSEN_GROUPS)}"
        )
    for group, option in choices.items():
        options = group_options(group)
        if option not in options:
            raise DmlError(
                f"{group}={option!r} is not an option of dml/conf/{group}; "
                f"choose one of {', '.join(options)}"
            )
    root = copy.deepcopy(composed(tuple(sorted(choices.items()))))
    for key, value in values.items():
        top = key.split(".", 1)[0]
        if top not in root:
            raise DmlError(
                f"config key {key!r} names nothing in train.yaml or its groups; "
                f"its first part must be one of {', '.join(sorted(root))}"
            )
        OmegaConf.update(root, key, value, merge=True, force_add=True)
    return root


def group_options(group: str) -> list[str]:
    """The option names of a config group: its YAML files in the package."""
    names = (entry.name for entry in (files("dml.conf") / group).iterdir())
    return sorted(name.removesuffix(".yaml") for name in names if name.endswith(".yaml"))


@lru_cache(maxsize=32)
def composed(choices: tuple[tuple[str, str], ...]) -> DictConfig:
    """Hydra's composition of train.yaml with the chosen options, once per process and
    choice: composing costs more than a whole NCA fit on a small table, and
    cross-validation fits the same choices again and again."""
    overrides = [*IN_MEMORY, "+dataset.input_shape=null"]
    overrides += [f"{group}={option}" for group, option in choices]
    try:
        if GlobalHydra.instance().is_initialized():
            # Inside a `dml` command, whose Hydra already searches dml/conf.
            cfg = compose("train", overrides=overrides)
        else:
            with initialize_config_module("dml.conf", version_base="1.3"):
                cfg = compose("train", overrides=overrides)
    except HydraException as exc:
        raise DmlError(str(exc).splitlines()[0]) from None
    OmegaConf.set_struct(cfg, False)
    return cfg
