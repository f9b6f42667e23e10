"""The body of ``dml <command> --help``, rendered by Hydra's help template.

``hydra/default.yaml`` sets the template to ``${dml.help_body:<command>}``, which this
resolver fills:

- ``dml train``: the config groups a user picks from, then the composed config (Hydra's
  ``$CONFIG``);
- the commands that read a checkpoint (eval, embed, search, export): the command's own keys
  with their one-line descriptions (the comment above each key in ``conf/<command>.yaml``),
  then the groups. The training config is the checkpoint's, so it is not printed.

Groups that dml composes itself (``experiment_loss``, ``trainer_last``) are left out.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dml.config.override_errors import INTERNAL_GROUPS

TRAIN = "train"
TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):")


def help_body(command: str, root: DictConfig) -> str:
    """The help text between the header and the footer of ``command``."""
    groups = "\n".join(f"{group}: {', '.join(options)}" for group, options in config_groups())
    if command == TRAIN:
        body = (
            "== Config groups ==\nPick one option per group (group=option)\n\n"
            f"{groups}\n\n== Config ==\nOverride any key (key=value)\n\n$CONFIG"
        )
        return body
    width = max((len(k) + len(v) for k, v, _ in own_keys(command, root)), default=0) + 3
    keys = "\n".join(
        f"{f'{key}={value}':<{width}}{description}".rstrip()
        for key, value, description in own_keys(command, root)
    )
    body = (
        f"== dml {command}'s own keys ==\n{keys}\n\n== Config groups ==\n"
        "The model and data are the checkpoint's; an option picked here replaces that part "
        "(group=option, key=value)\n\n"
        f"{groups}"
    )
    # Hydra fills $CONFIG and friends with string.Template; a literal $ must be doubled.
    return body.replace("$", "$$")


def own_keys(command: str, root: DictConfig) -> list[tuple[str, str, str]]:
    """(key, current value, description) of each top-level key that ``conf/<command>.yaml``
    sets itself; the description is the comment just above the key."""
    lines = (files("dml.conf") / f"{command}.yaml").read_text().splitlines()
    keys = []
    comment: list[str] = []
    for line in lines:
        if line.startswith("#"):
            comment.append(line.lstrip("#").strip())
            continue
        match = TOP_KEY.match(line)
        if match and match.group(1) not in ("defaults", "hydra"):
            key = match.group(1)
            # "???" (required) is the file's: merged over train.yaml's value it is ignored.
            required = line.split(":", 1)[1].split("#")[0].strip() == "???"
            value = OmegaConf.select(root, key, default=None, throw_on_missing=False)
            shown = "???" if required else format_value(value)
            keys.append((key, shown, " ".join(comment)))
        comment = []
    return keys


def format_value(value: Any) -> str:
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def config_groups() -> list[tuple[str, list[str]]]:
    """(group, options) of every group a user can pick from, from Hydra's config search
    path (so the groups of a user's searchpath show too)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    if not GlobalHydra.instance().is_initialized():
        return []
    loader = GlobalHydra.instance().config_loader()
    found = []
    pending = [group for group in loader.list_groups("") if group != "hydra"]
    while pending:
        group = pending.pop(0)
        if group.split("/")[0] in INTERNAL_GROUPS:
            continue
        options = sorted(loader.get_group_options(group, ObjectType.CONFIG))
        if options:
            found.append((group, options))
        pending.extend(f"{group}/{sub}" for sub in loader.list_groups(group))
    return sorted(found)
