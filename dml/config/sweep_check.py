"""A Hydra callback that refuses a sweep whose model selection would look at the test set.

Each job of a sweep checks its config too (:func:`dml.config.checks.check_config`), but a
sweep that tunes on a test metric is wrong as a whole: it is refused once, before any job
starts, instead of failing job after job.
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dml.config.checks import check_model_selection
from dml.errors import DmlError


class SweepStartCheck(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_model_selection(config)
        except DmlError as exc:
            # SystemExit passes through Hydra's error reporting, which would print a traceback.
            raise SystemExit(f"error: {exc}") from None
