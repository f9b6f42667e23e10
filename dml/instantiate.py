"""Instantiate one ``_target_`` config node, with the user's one-line errors.

Every layer builds components from config nodes: the composition root (:mod:`dml.config`)
the model and data, the trainer its callbacks and loggers. They share this one helper,
kept below all of them, so that none has to import the composition root to build a node.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from dml.errors import DmlError
from dml.moved_targets import MOVED_TARGETS

log = logging.getLogger(__name__)


def build(node: DictConfig | None, **kwargs: Any) -> Any:
    """Instantiate a config node; an empty node (e.g. ``miner=none``) gives None.

    Hydra wraps errors raised by constructors; a DmlError is unwrapped so the user sees
    its one-line message, not Hydra's report around it.
    """
    if node is None or "_target_" not in node:
        return None
    node = current_target(node)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, DmlError):
            raise cause from None
        raise DmlError(f"{str(exc).splitlines()[0]} {cause}" if cause else str(exc)) from exc


def current_target(node: DictConfig) -> DictConfig:
    """``node``, or a copy naming the class's current path where it names one that moved
    (a user's YAML copied from an older dml), with a warning to update the YAML."""
    target = node.get("_target_")
    if not isinstance(target, str) or target not in MOVED_TARGETS:
        return node
    log.warning(
        "_target_: %s has moved to %s; update the YAML that names it", target, MOVED_TARGETS[target]
    )
    node = node.copy()
    with open_dict(node):
        node._target_ = MOVED_TARGETS[target]
    return node
