"""Resolve the whole composed config once, before any work, so a broken interpolation is
one line naming the key rather than OmegaConf's error from inside a constructor.

The usual cause is a mistyped group override: ``dataset.transform=small`` sets the key
``transform`` to the string "small", where ``dataset/transform=small`` picks the option
``small`` of the config group ``dataset/transform``; every ``${dataset.transform.…}``
interpolation then fails.
"""

from __future__ import annotations

from importlib.resources import files

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dml.errors import DmlError

# How OmegaConf reports a DmlError raised inside a resolver.
RESOLVER_ERROR = "DmlError raised while resolving interpolation: "
TEXT_SOURCE = "dml.datasets.user_files.text_file.TextFile"


def check_resolvable(cfg: DictConfig) -> None:
    """Raise a one-line DmlError if any interpolation of ``cfg`` cannot be resolved."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "the config"
        reason = str(exc).strip().splitlines()[0]
        if reason.startswith(RESOLVER_ERROR):
            # A resolver's own one-line error (e.g. an unknown backbone.name) says it all.
            raise DmlError(reason.removeprefix(RESOLVER_ERROR)) from None
        hint = group_hint(cfg) or text_hint(cfg, reason)
        raise DmlError(f"{key} cannot be resolved: {reason}{hint}") from None


def group_hint(cfg: DictConfig) -> str:
    """Where a nested config group (``dataset/transform``) holds a plain string, the fix."""
    for group, options in nested_groups().items():
        value = OmegaConf.select(cfg, group.replace("/", "."), default=None)
        if isinstance(value, str):
            return (
                f". {group.replace('/', '.')}={value} replaced the config group {group} "
                f"by a string; pick an option of the group with {group}={value} "
                f"(options: {', '.join(options)})"
            )
    return ""


def text_hint(cfg: DictConfig, reason: str) -> str:
    """Where a backbone for shaped inputs (mlp, convnet, timm, ...) meets text, the fix."""
    source = OmegaConf.select(cfg, "dataset._target_", default=None)
    if "dataset.input_shape" not in reason or source != TEXT_SOURCE:
        return ""
    return (
        ". dataset=text gives texts, which have no input_shape; use backbone=hf_text (or "
        "your own backbone that takes input_ids and attention_mask)"
    )


def nested_groups() -> dict[str, list[str]]:
    """Config groups inside config groups (``dataset/transform``), with their options."""
    groups = {}
    for top in files("dml.conf").iterdir():
        if not top.is_dir() or top.name in ("hydra", "__pycache__"):
            continue
        for sub in top.iterdir():
            if sub.is_dir() and sub.name != "__pycache__":
                names = (entry.name for entry in sub.iterdir())
                options = sorted(n.removesuffix(".yaml") for n in names if n.endswith(".yaml"))
                groups[f"{top.name}/{sub.name}"] = options
    return groups
