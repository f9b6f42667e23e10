"""A Hydra callback that refuses, before any job starts, a sweep that would fail as a whole.

Each job of a sweep checks its config too (:func:`dml.config.checks.check_config`), but a
sweep that tunes on a test metric, or that lists an option its group does not have
(``loss=tripplet,contrastive``), is wrong as a whole: it is refused once, in one line and
before the sweep directory is made, instead of failing after the jobs before it ran.
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dml.config.checks import check_model_selection
from dml.config.override_errors import missing_option
from dml.errors import DmlError


def check_swept_options(overrides: list[str]) -> None:
    """Every option of a swept group (``loss=a,b``) exists; glob() picks only existing ones.

    A single option is checked by Hydra's first composition already; a list is composed
    job by job, so a mistyped member would stop the sweep only when its job comes.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not GlobalHydra.instance().is_initialized():
        return
    loader = GlobalHydra.instance().config_loader()
    for override in OverridesParser.create(config_loader=loader).parse_overrides(overrides):
        if override.is_hydra_override() or not override.is_choice_sweep():
            continue
        options = loader.get_group_options(override.key_or_group, ObjectType.CONFIG)
        if not options:
            continue  # a key, not a group
        for value in override.sweep_string_iterator():
            if value not in options:
                raise DmlError(missing_option(f"{override.key_or_group}/{value}", options))


class SweepStartCheck(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_model_selection(config)
            check_swept_options(list(config.hydra.overrides.task))
        except DmlError as exc:
            # SystemExit passes through Hydra's error reporting, which would print a traceback.
            raise SystemExit(f"error: {exc}") from None
