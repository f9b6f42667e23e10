"""loss=pml and miner=pml: pytorch-metric-learning's losses and miners by name, in one line."""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from pytorch_metric_learning import losses, miners

from dml.commands.train import train
from dml.config.build import build_module
from dml.errors import DmlError
from dml.losses.pml import PMLLoss
from dml.miners.pml import PMLMiner
from tests.conftest import FAST

CASES = {
    # The default miner (semihard, dml's) hands PML's CircleLoss its triplets.
    "circle": ["loss=pml", "loss.name=CircleLoss", "+loss.m=0.4"],
    "proxy_anchor": [
        "loss=pml",
        "loss.name=ProxyAnchorLoss",
        "+loss.num_classes=${dataset.num_classes}",
        "+loss.embedding_size=${backbone.embedding_dim}",
        "miner=none",
    ],
    "multi_similarity": [
        "loss=pml",
        "loss.name=MultiSimilarityLoss",
        "miner=pml",
        "miner.name=MultiSimilarityMiner",
        "+miner.epsilon=0.2",
    ],
}


@pytest.mark.parametrize("case", list(CASES))
def test_pml_options_train_a_debug_step(
    case: str, compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg(*FAST, "trainer=debug", "trainer.max_epochs=1", "logger=none", *CASES[case])
    metrics = train(cfg, tmp_path)
    assert 0.0 <= metrics["test/map_at_r"] <= 1.0
    (trained,) = [r for r in csv.DictReader((tmp_path / "metrics.csv").open()) if r["train/loss"]]
    assert math.isfinite(float(trained["train/loss"])) and float(trained["train/loss"]) > 0


def test_the_options_build_pml_classes_with_the_given_settings(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    module = build_module(compose_cfg(*FAST, *CASES["circle"]))
    assert isinstance(module.loss_fn.loss, losses.CircleLoss) and module.loss_fn.loss.m == 0.4
    module = build_module(compose_cfg(*FAST, *CASES["multi_similarity"]))
    assert isinstance(module.miner.miner, miners.MultiSimilarityMiner)
    assert module.miner.miner.epsilon == 0.2
    module = build_module(compose_cfg(*FAST, *CASES["proxy_anchor"]))
    proxies = module.loss_fn.loss.proxies
    assert proxies.shape == (10, 64)
    optimised = [
        p
        for group in module.configure_optimizers()["optimizer"].param_groups
        for p in group["params"]
    ]
    assert any(p is proxies for p in optimised)


def test_adapters_give_pml_s_own_values() -> None:
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(32, 8), dim=1)
    labels = torch.arange(32) % 4
    mined = miners.MultiSimilarityMiner(epsilon=0.2)(embeddings, labels)
    assert [
        t.tolist() for t in PMLMiner("MultiSimilarityMiner", epsilon=0.2)(embeddings, labels)
    ] == [t.tolist() for t in mined]
    for name, settings in (("CircleLoss", {"m": 0.3}), ("TripletMarginLoss", {"margin": 0.1})):
        expected = getattr(losses, name)(**settings)(embeddings, labels, mined)
        got = PMLLoss(name, **settings).compute(embeddings, labels, mined)
        assert got.loss.item() == pytest.approx(expected.item())
        assert got.num_tuples == len(mined[0])
    assert PMLLoss("CircleLoss").compute(embeddings, labels).num_tuples == 32


def test_mistakes_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        DmlError, match="loss.name='CircleLos' is not a class of .*did you mean CircleLoss\\?"
    ) as info:
        PMLLoss("CircleLos")
    assert "\n" not in str(info.value)
    with pytest.raises(DmlError, match=r"losses.CircleLoss rejected loss.margin: .*\+loss"):
        PMLLoss("CircleLoss", margin=0.1)
    with pytest.raises(DmlError, match="miner.name='Hard' is not a class"):
        PMLMiner("Hard")
    monkeypatch.setitem(sys.modules, "pytorch_metric_learning.losses", None)
    with pytest.raises(DmlError, match="loss=pml needs pytorch-metric-learning.*pip install"):
        PMLLoss("CircleLoss")
