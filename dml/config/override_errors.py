"""One line, with the closest valid choice, for a command line that Hydra cannot compose.

Hydra reports a mistyped option with its config search path, and a mistyped key with the
advice to append it (``+optimizer.learning_rate=0.1``), which the component then rejects
when it is built. Here the same errors name what exists instead: the options of the group
or the keys of the node, closest first, and ``+key`` only where the component's
constructor would accept the key.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Iterable
from importlib.resources import files
from typing import Any

import yaml
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

# How alike (difflib's ratio) a typed name and an existing one must be to be suggested.
CLOSE = 0.6
# Config groups that dml composes itself, never picked on the command line.
INTERNAL_GROUPS = ("experiment_loss", "trainer_last")
# Hydra's message for a group override that the defaults list has no place for.
NOT_IN_DEFAULTS = re.compile(r"Could not override '([^']+)'\.")


def closeness(typed: str, name: str) -> float:
    """difflib's similarity, where an abbreviation by initials (lr: learning_rate) is exact."""
    if initials(typed) == name or initials(name) == typed:
        return 1.0
    return difflib.SequenceMatcher(None, typed.lower(), name.lower()).ratio()


def initials(name: str) -> str:
    words = [word for word in name.split("_") if word]
    return "".join(word[0] for word in words) if len(words) > 1 else ""


def closest_first(typed: str, names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda name: (-closeness(typed, name), name))


def closest(typed: str, names: Iterable[str]) -> str | None:
    """The most alike name, if it is alike enough to be what the user meant."""
    ranked = closest_first(typed, names)
    if ranked and closeness(typed, ranked[0]) >= CLOSE:
        return ranked[0]
    return None


def explain(error: HydraException, overrides: list[str]) -> str:
    """The one-line message (without ``error:``) for a Hydra error at composition."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        return missing_option(error.missing_cfg_file, list(error.options))
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException) and "not in struct" in str(cause):
        key = getattr(cause, "full_key", None)
        parent = getattr(cause, "parent_node", None)
        if key and isinstance(parent, DictConfig) and not key.startswith("hydra."):
            return unknown_key(key, parent, typed_value(key, overrides))
    if isinstance(error, OverrideParseException):
        return f"cannot read the override {error.override!r}: {first_line(error.message)}"
    unplaced = NOT_IN_DEFAULTS.match(str(error))
    if unplaced and error.__cause__ is None:
        group = unplaced.group(1)
        return unused_group(group, typed_value(group, overrides))
    return flatten(str(error))


def missing_option(missing: str, options: list[str]) -> str:
    """``loss=tripplet``: the closest option and the group's options."""
    group, _, name = missing.rpartition("/")
    guess = closest(name, options) if name else None
    message = f"{group}={name} is not an option of {group}"
    listed = ", ".join(options)
    if guess:
        return f"{message}; did you mean {group}={guess}? Options: {listed}"
    return f"{message}; options: {listed}"


def unknown_key(key: str, parent: DictConfig, value: str | None) -> str:
    """``optimizer.learning_rate=0.1``: the node's keys, closest first, and ``+key`` only
    where the node's ``_target_`` would take it as a keyword argument."""
    path, _, name = key.rpartition(".")
    prefix = f"{path}." if path else ""
    assigned = f"={value}" if value is not None else "=VALUE"
    keys = [str(k) for k in parent.keys() if not str(k).startswith("_") and k != "hydra"]
    target = parent.get("_target_")
    parameters, open_ended = constructor_keywords(target)
    if not keys and target is None:
        # An open mapping such as `callbacks`: adding to it is how it is used.
        return f"{path or 'the config'} is empty; add {key} with +{key}{assigned}"
    if name in parameters and name not in keys:
        return (
            f"{key} is not set in the config, but {target} takes {name}: "
            f"add it with +{key}{assigned}"
        )
    message = f"{f'{path} ({target})' if target else (path or 'the config')} has no key {name}"
    guess = closest(name, keys)
    spare = closest(name, [p for p in parameters if p not in keys])
    if guess:
        message += f"; did you mean {prefix}{guess}{assigned}?"
    elif spare:
        message += f"; did you mean +{prefix}{spare}{assigned}? {target} takes {spare}."
    elif open_ended:
        message += f"; {target} takes any keyword, so +{key}{assigned} passes it on."
    if not keys:
        return message
    listed = ", ".join(prefix + k for k in closest_first(name, keys))
    joiner = " Its" if message.endswith(("?", ".")) else "; its"
    return f"{message}{joiner} keys, closest first: {listed}"


def unused_group(group: str, value: str | None) -> str:
    """``dataset/transform=small`` where the chosen dataset has no transform to pick."""
    top, _, sub = group.rpartition("/")
    choice = f"{group}={value}" if value is not None else group
    if re.split("[/@]", group)[0] in INTERNAL_GROUPS:
        return f"{group} is composed by dml from the other choices, not picked on the command line"
    owners = options_with_group(top, sub) if top else []
    if owners:
        return (
            f"{choice} picks a {sub} of the {top}, but the chosen {top} has none; "
            f"{top}={', '.join(owners)} have one"
        )
    return f"{choice}: {group} is not a config group of this command; see dml COMMAND --help"


def options_with_group(top: str, sub: str) -> list[str]:
    """The built-in options of group ``top`` whose defaults list picks from ``top/sub``."""
    folder = files("dml.conf") / top
    if not folder.is_dir():
        return []
    owners = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        defaults = (yaml.safe_load(entry.read_text()) or {}).get("defaults") or []
        picks = {
            name.split()[-1].strip("/")
            for item in defaults
            if isinstance(item, dict)
            for name in item
        }
        if sub in picks or f"{top}/{sub}" in picks:
            owners.append(entry.name.removesuffix(".yaml"))
    return owners


def constructor_keywords(target: Any) -> tuple[list[str], bool]:
    """The keyword parameters of a ``_target_``, and whether it takes any keyword
    (``**kwargs``). Nothing is known of a target that does not import."""
    if not isinstance(target, str):
        return [], False
    from hydra.utils import get_object

    try:
        signature = inspect.signature(get_object(target))
    except (ImportError, AttributeError, ValueError, TypeError, HydraException):
        return [], False
    parameters = signature.parameters.values()
    keywords = [
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    ]
    return keywords, any(p.kind == p.VAR_KEYWORD for p in parameters)


def typed_value(key: str, overrides: list[str]) -> str | None:
    """The value the command line gave ``key`` (the first of a sweep's list)."""
    for override in overrides:
        name, sep, value = override.lstrip("+~").partition("=")
        if sep and name == key:
            return value.split(",")[0] if "," in value and "[" not in value else value
    return None


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def flatten(text: str) -> str:
    """Hydra's message on one line, without the config search path."""
    text = text.split("Config search path:")[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return re.sub(r"\.;", ";", "; ".join(lines))
