"""experiment=mnist5k_unseen: train on digits 0–4, beat raw pixels on the unseen 5–9."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig
from torch.nn import functional as F

from dml.commands.train import train
from dml.config.build import build_module, build_source
from dml.datasets.base import stacked_inputs
from dml.metrics import retrieval_metrics

FAST = ["logger=none", "trainer=debug", "trainer.max_epochs=1"]


def test_experiment_trains_on_five_digits_and_tests_on_the_other_five(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    cfg = compose_cfg("experiment=mnist5k_unseen")
    assert cfg.dataset._target_.endswith("MNIST5k") and cfg.backbone._target_.endswith("ConvNet")
    splits = build_source(cfg).load()
    assert set(splits.train.labels.tolist()) == set(splits.val.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(splits.test.labels.tolist()) == {5, 6, 7, 8, 9}
    assert splits.train.transform is not None and splits.test.transform is not None


def test_experiment_runs_one_step(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    metrics = train(compose_cfg("experiment=mnist5k_unseen", *FAST), tmp_path)
    assert 0 <= metrics["test/map_at_r"] <= 1
    assert (tmp_path / "metrics.json").is_file()


@pytest.mark.parametrize("loss", ["contrastive", "triplet", "multi_similarity"])
def test_experiment_composes_with_each_loss_of_the_fair_comparison(
    compose_cfg: Callable[..., DictConfig], loss: str
) -> None:
    """The README's `dml train -m experiment=mnist5k_unseen loss=triplet,contrastive,
    multi_similarity`: the experiment's contrastive margins must not reach other losses."""
    cfg = compose_cfg("experiment=mnist5k_unseen", f"loss={loss}", *FAST)
    contrastive_keys = {"pos_margin", "neg_margin", "form"}
    assert (contrastive_keys <= set(cfg.loss)) is (loss == "contrastive")
    if loss == "contrastive":
        assert (cfg.loss.pos_margin, cfg.loss.neg_margin) == (0.5, 1.0)
    module = build_module(cfg)
    assert type(module.loss_fn).__module__ == f"dml.losses.{loss}"


@pytest.mark.slow
def test_trained_embedding_beats_raw_pixels_on_unseen_digits(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg(
        "experiment=mnist5k_unseen", "logger=none", "trainer.enable_progress_bar=false"
    )
    test = build_source(cfg).load().test
    pixels = F.normalize(stacked_inputs(test).flatten(1), dim=1)
    raw = retrieval_metrics(pixels, test.labels)["map_at_r"]
    assert 0.33 < raw < 0.40
    trained = train(cfg, tmp_path)["test/map_at_r"]
    assert trained > raw + 0.03
