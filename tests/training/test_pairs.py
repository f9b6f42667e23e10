"""dataset.pairs=true: the Siamese pair stream, its training step, and the bad combinations."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from dml.commands.train import train
from dml.config.build import build_datamodule, build_module
from dml.datasets.base import TensorLabeledDataset
from dml.datasets.pairs import PairBatch, PairDataset, PairSampler
from dml.errors import DmlError
from tests.conftest import FAST


def labelled(counts: list[int]) -> TensorLabeledDataset:
    """Class c has counts[c] items; item i's feature is i, so pairs can be traced back."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return TensorLabeledDataset(torch.arange(len(labels)).float()[:, None], labels)


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.8])
def test_every_epoch_has_exactly_the_positive_ratio(ratio: float) -> None:
    base = labelled([7, 30, 2, 11, 50])
    pairs = PairDataset(base, positive_ratio=ratio, seed=3)
    for epoch in range(4):
        assert int(pairs.pairs(epoch).same.sum()) == round(ratio * len(base))


def test_same_flag_says_whether_the_two_items_share_a_class() -> None:
    base = labelled([1, 7, 30, 2, 11])  # class 0 has one item: it can only be dissimilar
    pairs = PairDataset(base, positive_ratio=0.6, seed=0)
    for epoch in range(5):
        first, second, same = pairs.pairs(epoch)
        assert torch.equal(base.labels[first] == base.labels[second], same)
        assert not (first == second).any()
        # Every item starts exactly one pair per epoch.
        assert torch.equal(first.sort().values, torch.arange(len(base)))
    # Over epochs, dissimilar partners come from every other class.
    partners = torch.cat([pairs.pairs(e).second[pairs.pairs(e).first == 0] for e in range(40)])
    assert set(base.labels[partners].tolist()) == {1, 2, 3, 4}


def test_pairs_are_a_function_of_seed_and_epoch() -> None:
    base = labelled([9, 9, 9, 9])
    a, b = PairDataset(base, 0.5, seed=1), PairDataset(base, 0.5, seed=1)
    for epoch in (0, 1, 7):
        assert all(torch.equal(x, y) for x, y in zip(a.pairs(epoch), b.pairs(epoch), strict=True))
    assert not torch.equal(a.pairs(0).second, a.pairs(1).second)
    assert not torch.equal(a.pairs(0).second, PairDataset(base, 0.5, seed=2).pairs(0).second)


def test_loader_serves_pair_batches_of_the_sampler_epoch() -> None:
    base = labelled([5, 5, 5, 5])
    pairs = PairDataset(base, 0.5, seed=0)
    sampler = PairSampler(pairs)
    loader = DataLoader(pairs, batch_size=8, sampler=sampler)
    sampler.set_epoch(3)
    batches = list(loader)
    assert all(isinstance(batch, PairBatch) for batch in batches)
    first = torch.cat([b.first for b in batches]).flatten().long()
    second = torch.cat([b.second for b in batches]).flatten().long()
    table = pairs.pairs(3)
    assert torch.equal(first, table.first) and torch.equal(second, table.second)
    assert torch.cat([b.same for b in batches]).dtype == torch.bool
    # An int index means a position in the epoch last set, as the sampler set it.
    assert torch.equal(pairs[2].second, base[int(table.second[2])][0])


@pytest.mark.parametrize(
    ("counts", "ratio", "message"),
    [
        ([5, 5], 1.0, r"dataset.positive_ratio=1.0 must lie strictly between 0 and 1"),
        ([5, 5], 0.0, r"dataset.positive_ratio=0.0 must lie strictly between 0 and 1"),
        ([5, 5], "half", r"dataset.positive_ratio='half' must lie strictly between 0 and 1"),
        ([10], 0.5, r"at least 2 training classes"),
        ([1, 1, 1, 3], 0.8, r"only 3 training items have a same-class partner"),
    ],
)
def test_impossible_pair_settings_are_one_line_errors(
    counts: list[int], ratio: object, message: str
) -> None:
    with pytest.raises(DmlError, match=message) as info:
        PairDataset(labelled(counts), ratio)
    assert "\n" not in str(info.value)


def test_pair_training_logs_the_training_pair_distances(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg(
        *FAST,
        "loss=contrastive",
        "miner=none",
        "dataset.pairs=true",
        "dataset.positive_ratio=0.3",
        "trainer.max_epochs=3",
        "logger=none",
    )
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert isinstance(batch, PairBatch) and len(batch.same) == cfg.data.batch_size
    metrics = train(cfg, tmp_path)
    assert 0.0 <= metrics["test/map_at_r"] <= 1.0
    with (tmp_path / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["train/dist_pos_mean"]]
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    # Contrastive training on pairs pulls similar pairs in and pushes dissimilar ones out.
    assert all(float(r["train/dist_pos_mean"]) < float(r["train/dist_neg_mean"]) for r in rows)
    # Every training item starts one pair an epoch, each pair one tuple of the loss.
    items, steps = len(datamodule.splits.train), len(datamodule.train_dataloader())
    assert float(rows[-1]["train/tuples_per_step"]) == pytest.approx(items / steps)
    assert (tmp_path / "plots" / "train_pair_distances.png").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss=proxy_anchor", "miner=none"], r"dataset.pairs=true gives ProxyAnchorLoss .* "),
        (["loss=npair", "miner=none"], r"dataset.pairs=true gives NPairLoss"),
        (["loss=triplet", "miner=none"], r"dataset.pairs=true gives TripletLoss"),
        (["loss=contrastive", "miner=hard"], r"dataset.pairs=true .* set miner=none"),
        (["loss=contrastive", "miner=none", "memory=xbm"], r"dataset.pairs=true .* memory=none"),
    ],
)
def test_pairs_with_a_loss_or_miner_that_cannot_use_them_fail_at_start(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg = compose_cfg(*FAST, "dataset.pairs=true", "logger=none", *overrides)
    with pytest.raises(DmlError, match=message) as info:
        build_module(cfg)
    assert "\n" not in str(info.value)
    with pytest.raises(DmlError, match=message):
        train(cfg, tmp_path)
    assert not (tmp_path / "checkpoints").exists()
