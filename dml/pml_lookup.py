"""A pytorch-metric-learning class by name, for ``loss=pml`` and ``miner=pml``.

Losses and miners look PML's classes up the same way and fail with the same one-line
messages, so the lookup lives below both (see :mod:`dml.losses.pml` for why dml wraps
PML's classes at all). PML stays optional: it is imported only when such an option is
built.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from torch import nn

from dml.errors import DmlError


def pml_component(group: str, name: str, settings: dict[str, Any]) -> nn.Module:
    """``pytorch_metric_learning.<group>.<name>(**settings)`` (group: losses or miners)."""
    option = "loss" if group == "losses" else "miner"
    try:
        library = importlib.import_module(f"pytorch_metric_learning.{group}")
    except ImportError:
        raise DmlError(
            f"{option}=pml needs pytorch-metric-learning, which dml does not install: "
            "pip install pytorch-metric-learning"
        ) from None
    known = sorted(
        attr
        for attr in dir(library)
        if isinstance(getattr(library, attr), type)
        and issubclass(getattr(library, attr), nn.Module)
        and not attr.startswith("Base")
    )
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise DmlError(
            f"{option}.name={name!r} is not a class of pytorch_metric_learning.{group}; "
            f"{hint}choose one of {', '.join(known)}"
        )
    try:
        return getattr(library, name)(**settings)
    except (TypeError, ValueError, AssertionError) as exc:
        given = ", ".join(f"{option}.{key}" for key in settings) or "no settings"
        raise DmlError(
            f"pytorch_metric_learning.{group}.{name} rejected {given}: {exc}; set its own "
            f"arguments with +{option}.<name>=<value>"
        ) from None
