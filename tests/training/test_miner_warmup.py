"""Training tells a warming-up miner its epoch: semi-hard triplets first, then batch-hard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from dml.commands.train import train
from dml.miners.batch_hard import BatchHardMiner
from dml.tuples import Triplets, TripletSelection
from tests.conftest import FAST


def test_the_miner_warms_up_then_mines_batch_hard(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mined: list[tuple[int, type]] = []
    original = BatchHardMiner.mine

    def recorded(self: BatchHardMiner, *args: object, **kwargs: object) -> object:
        out = original(self, *args, **kwargs)
        mined.append((self.epoch, type(out)))
        return out

    monkeypatch.setattr(BatchHardMiner, "mine", recorded)
    cfg = compose_cfg(
        *FAST,
        "logger=none",
        "loss=triplet",
        "miner=hard",
        "miner.warmup_epochs=1",
        "+trainer.limit_train_batches=3",
    )
    train(cfg, tmp_path)
    assert mined == [(0, TripletSelection)] * 3 + [(1, Triplets)] * 3
