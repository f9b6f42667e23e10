"""The one-line messages for command lines Hydra cannot compose (dml.config.override_errors),
from Hydra's own exceptions raised by the compose API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from dml.config.override_errors import closest, closest_first, explain, unknown_key


def composition_error(compose_cfg: Callable[..., DictConfig], *overrides: str) -> str:
    with pytest.raises(HydraException) as info:
        compose_cfg(*overrides)
    return explain(info.value, list(overrides))


def test_initials_count_as_the_closest_name() -> None:
    assert closest_first("learning_rate", ["weight_decay", "lr"]) == ["lr", "weight_decay"]
    assert closest("wd", ["lr", "weight_decay"]) == "weight_decay"
    assert closest("xyz", ["lr", "weight_decay"]) is None


def test_a_missing_option_names_the_closest_and_all_options(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    message = composition_error(compose_cfg, "loss=tripplet")
    assert message.startswith("loss=tripplet is not an option of loss; did you mean loss=triplet?")
    assert "\n" not in message
    assert composition_error(compose_cfg, "loss=xyzzy").startswith(
        "loss=xyzzy is not an option of loss; options: arcface"
    )


def test_an_unknown_key_names_the_existing_keys_closest_first(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    message = composition_error(compose_cfg, "optimizer.learning_rate=0.1")
    assert "did you mean optimizer.lr=0.1?" in message
    assert message.endswith("closest first: optimizer.lr, optimizer.weight_decay")
    assert "+" not in message


def test_an_argument_missing_from_the_yaml_is_offered_with_plus(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    message = composition_error(compose_cfg, "optimizer.amsgrad=true")
    assert message == (
        "optimizer.amsgrad is not set in the config, but torch.optim.Adam takes amsgrad: "
        "add it with +optimizer.amsgrad=true"
    )


def takes_anything(size: int = 1, **options: Any) -> None:
    """A component whose constructor passes extra keywords on."""


def test_plus_is_offered_for_a_component_that_takes_any_keyword() -> None:
    node = OmegaConf.create({"_target_": f"{__name__}.takes_anything", "size": 2})
    message = unknown_key("thing.colour", node, "red")
    assert "takes any keyword, so +thing.colour=red passes it on" in message
    closed = OmegaConf.create({"_target_": "torch.nn.Linear", "in_features": 2})
    assert "+" not in unknown_key("thing.colour", closed, "red")
