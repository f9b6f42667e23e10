import pytest
import torch

from dml.errors import DmlError
from dml.training.samplers import ClassBalancedBatchSampler, fitted_batch_size


def labels_with_counts(*counts: int) -> torch.Tensor:
    return torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])


def test_every_batch_has_p_classes_of_k_samples() -> None:
    labels = labels_with_counts(*[20] * 10)
    sampler = ClassBalancedBatchSampler(labels, batch_size=32, samples_per_class=8, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 200 // 32
    for batch in batches:
        classes, counts = torch.unique(labels[batch], return_counts=True)
        assert len(classes) == 4
        assert counts.tolist() == [8] * 4
        assert len(set(batch)) == 32  # without replacement when a class is big enough


def test_small_class_is_sampled_with_replacement() -> None:
    labels = labels_with_counts(3, 3)
    batch = next(iter(ClassBalancedBatchSampler(labels, batch_size=10, samples_per_class=5)))
    assert torch.bincount(labels[batch]).tolist() == [5, 5]


def test_same_seed_and_epoch_give_the_same_batches() -> None:
    labels = labels_with_counts(*[12] * 6)
    a = ClassBalancedBatchSampler(labels, 12, 4, seed=3)
    b = ClassBalancedBatchSampler(labels, 12, 4, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


@pytest.mark.parametrize(
    ("counts", "batch_size", "k", "message"),
    [
        ([10] * 4, 64, 8, "8 × 4 classes = 32 is less than data.batch_size=64"),
        ([10] * 4, 30, 8, "is not a multiple of data.samples_per_class=8"),
        ([10, 1, 10], 8, 4, "fewer than 2 samples"),
        ([10] * 4, 8, 0, "must be at least 1"),
    ],
)
def test_infeasible_settings_fail_with_numbers_and_fix(
    counts: list[int], batch_size: int, k: int, message: str
) -> None:
    with pytest.raises(DmlError, match=message.replace("(", r"\(")) as info:
        ClassBalancedBatchSampler(labels_with_counts(*counts), batch_size, k)
    assert "\n" not in str(info.value)


def test_training_draws_new_batches_every_epoch() -> None:
    """Lightning does not call set_epoch on a batch sampler itself; the module must."""
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_module

    from dml.config.build import build_datamodule, build_module

    with initialize_config_module("dml.conf", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "dataset=digits",
                "backbone=mlp",
                "data.batch_size=60",
                "data.samples_per_class=6",
            ],
        )
    first_batches: list[list[int]] = []

    class FirstBatch(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
            if batch_idx == 0:
                first_batches.append(batch[1].tolist())

    trainer = pl.Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        callbacks=[FirstBatch()],
    )
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    assert len(first_batches) == 3
    assert first_batches[0] != first_batches[1] != first_batches[2]


def test_one_sample_per_class_is_the_losses_rule_not_the_samplers() -> None:
    """K = 1 batches are drawable (a proxy loss needs no positive pair in the batch), so
    the sampler accepts them, also with single-sample classes; the triplet loss refuses
    them at start through its own min_samples_per_class."""
    from hydra import compose, initialize_config_module

    from dml.config.build import build_datamodule, build_module

    sampler = ClassBalancedBatchSampler(labels_with_counts(10, 1, 10, 10), 4, 1)
    assert all(len(batch) == 4 for batch in sampler)
    overrides = ["dataset=iris", "backbone=mlp", "data.batch_size=3", "data.samples_per_class=1"]
    with initialize_config_module("dml.conf", version_base="1.3"):
        proxy = compose("train", overrides=[*overrides, "loss=proxy_anchor", "miner=none"])
        triplet = compose("train", overrides=overrides)
    build_datamodule(proxy).setup("fit")
    build_module(proxy)
    with pytest.raises(DmlError, match="TripletLoss needs at least 2 samples per class"):
        build_module(triplet)


@pytest.mark.parametrize(
    ("counts", "batch_size", "k", "fitted"),
    [
        ([6] * 3, 128, 16, 48),  # too few classes: all of them in every batch
        ([6] * 3, 12, 4, 12),  # the batch fits: unchanged
        ([6] * 10, 128, 16, 128),
        ([6] * 3, 130, 16, 130),  # not a multiple of K: the sampler's own error explains
        ([6], 128, 16, 128),  # one class: nothing to fit, the sampler's error explains
    ],
)
def test_fitted_batch_size_only_shrinks_a_batch_the_classes_cannot_fill(
    counts: list[int], batch_size: int, k: int, fitted: int
) -> None:
    assert fitted_batch_size(labels_with_counts(*counts), batch_size, k) == fitted
