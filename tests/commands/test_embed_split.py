from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from dml.commands.embed import without_augmentation
from dml.config.build import build_source


def test_embedding_the_training_split_uses_the_deterministic_eval_transform(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    splits = build_source(compose_cfg("experiment=mnist5k_unseen")).load()
    augmented = splits.train[0][0]
    assert not torch.equal(augmented, splits.train[0][0]), "the fixture should augment"
    view = without_augmentation(splits.train, splits)
    assert torch.equal(view[0][0], view[0][0])
    assert torch.equal(view[0][0], splits.val.transform(splits.train.features[0]))
    assert splits.train.transform is not splits.val.transform, "the split itself is unchanged"
    assert without_augmentation(splits.test, splits) is splits.test
