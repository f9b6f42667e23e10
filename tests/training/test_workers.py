"""data.num_workers=auto, persistent workers, and unreadable images inside workers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from dml.config.build import build_datamodule
from dml.config.checks import check_config
from dml.datasets.builtin.cub200 import CUB200
from dml.datasets.builtin.digits import Digits
from dml.errors import DmlError, one_line
from dml.training import workers
from dml.training.datamodule import EmbeddingDataModule
from tests.conftest import subprocess_env
from tests.fixtures.trees import damage_inside, make_cub, small_transform

SHAPE = [3, 32, 32]


def cub_source(root: Path, skip_corrupt: bool = False) -> CUB200:
    return CUB200(
        data_dir=root,
        input_shape=SHAPE,
        num_classes=8,
        train_classes=4,
        transform=small_transform(),
        val_split="samples",
        val_fraction=0.25,
        skip_corrupt=skip_corrupt,
    )


def digits() -> Digits:
    return Digits(input_shape=[1, 8, 8], num_classes=10)


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 2), (8, 8), (64, 8)])
def test_auto_gives_file_backed_data_min_of_cores_and_8_workers(
    cores: int, expected: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "usable_cores", lambda: cores)
    source = cub_source(make_cub(tmp_path).root)
    assert source.reads_files
    assert workers.resolve_num_workers("auto", source) == expected
    assert workers.resolve_num_workers("auto", digits()) == 0


def test_an_explicit_number_wins_and_bad_values_are_one_line(tmp_path: Path) -> None:
    source = cub_source(make_cub(tmp_path).root)
    assert workers.resolve_num_workers(0, source) == 0
    assert workers.resolve_num_workers(3, digits()) == 3
    for bad in (-1, "many", True, 1.5):
        with pytest.raises(DmlError, match="must be auto or an integer"):
            workers.resolve_num_workers(bad, source)
    with pytest.raises(DmlError, match="must be auto, true or false"):
        workers.resolve_persistent_workers("yes", 2)
    assert workers.resolve_persistent_workers("auto", 2) is True
    assert workers.resolve_persistent_workers("auto", 0) is False
    assert workers.resolve_persistent_workers(True, 0) is False


def test_the_default_config_is_auto_and_the_check_accepts_it(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    cfg = compose_cfg()
    assert cfg.data.num_workers == "auto" and cfg.data.persistent_workers == "auto"
    check_config(cfg)
    with pytest.raises(DmlError, match=r"data.num_workers='many' must be an integer"):
        check_config(compose_cfg("data.num_workers=many"))


def test_loaders_of_image_data_get_persistent_workers_and_in_memory_data_none(
    tmp_path: Path, compose_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "usable_cores", lambda: 3)
    tree = make_cub(tmp_path)
    images = build_datamodule(
        compose_cfg(
            "dataset=cub200",
            f"dataset.data_dir={tree.root}",
            "dataset.num_classes=8",
            "dataset.train_classes=4",
            "dataset.transform.crop_size=32",
            "dataset.transform.resize_size=36",
            "data.batch_size=4",
            "data.samples_per_class=2",
        )
    )
    images.setup("fit")
    for loader in (images.train_dataloader(), images.val_dataloader()):
        assert loader.num_workers == 3 and loader.persistent_workers
    in_memory = build_datamodule(compose_cfg("dataset=digits"))
    in_memory.setup("fit")
    loader = in_memory.train_dataloader()
    assert loader.num_workers == 0 and not loader.persistent_workers
    explicit = build_datamodule(compose_cfg("dataset=digits", "data.num_workers=2"))
    assert explicit.train_dataloader().num_workers == 2


def test_pseudo_labels_turn_auto_persistence_off(
    tmp_path: Path, compose_cfg: Callable[..., DictConfig]
) -> None:
    from dml.instantiate import build

    tree = make_cub(tmp_path)
    cfg = compose_cfg(
        "dataset=cub200",
        f"dataset.data_dir={tree.root}",
        "dataset.num_classes=8",
        "dataset.train_classes=4",
        "dataset.transform.crop_size=32",
        "dataset.transform.resize_size=36",
        "dataset.labeled_fraction=0.5",
        "semi=pseudo_label",
        "data.num_workers=1",
    )
    module = build_datamodule(cfg, build(cfg.semi))
    assert module.num_workers == 1 and not module.persistent_workers


def batches(module: EmbeddingDataModule) -> list[torch.Tensor]:
    return [labels for _, labels in module.eval_loader(module.splits.test)]


def test_damage_found_in_a_worker_stops_with_one_line_naming_the_file(tmp_path: Path) -> None:
    tree = make_cub(tmp_path)
    module = EmbeddingDataModule(
        cub_source(tree.root), batch_size=4, samples_per_class=2, num_workers=2
    )
    victim = Path(module.splits.test.paths[1])  # type: ignore[attr-defined]
    damage_inside(victim)
    with pytest.raises(DmlError) as info:
        batches(module)
    message = one_line(info.value)
    assert message.startswith(f"cannot decode image {victim}:") and "\n" not in message
    assert "dataset.skip_corrupt=true" in message


def test_skip_corrupt_replaces_damage_found_in_a_worker_by_its_class(tmp_path: Path) -> None:
    tree = make_cub(tmp_path)
    module = EmbeddingDataModule(
        cub_source(tree.root, skip_corrupt=True), batch_size=4, samples_per_class=2, num_workers=2
    )
    test = module.splits.test
    damage_inside(Path(test.paths[1]))  # type: ignore[attr-defined]
    assert torch.equal(torch.cat(batches(module)), test.labels)


def test_skip_corrupt_warns_once_with_the_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = make_cub(tmp_path)
    test = cub_source(tree.root, skip_corrupt=True).load().test
    victim = Path(test.paths[0])  # type: ignore[attr-defined]
    damage_inside(victim)
    with caplog.at_level("WARNING", logger="dml.datasets.images.source"):
        first, again = test[0][0], test[0][0]
    assert torch.equal(first, test[1][0]) and torch.equal(again, first)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and f"skipped unreadable image {victim}" in lines[0]


def test_a_class_with_no_readable_image_is_named(tmp_path: Path) -> None:
    tree = make_cub(tmp_path, per_class=4)
    test = cub_source(tree.root, skip_corrupt=True).load().test
    first_class = test.labels == test.labels[0]
    for path, hit in zip(test.paths, first_class.tolist(), strict=True):  # type: ignore[attr-defined]
        if hit:
            damage_inside(Path(path))
    with pytest.raises(DmlError, match=r"every image of class 5 is unreadable"):
        test[0]


@pytest.mark.slow
def test_dml_train_on_a_damaged_tree_fails_in_one_line_from_a_worker(tmp_path: Path) -> None:
    """The CLI end of the in-process tests above (a subprocess: about 20 s)."""
    tree = make_cub(tmp_path / "data")
    victim = tree.images[-1]
    damage_inside(victim)
    command = [
        sys.executable, "-m", "dml", "train", "dataset=cub200", f"dataset.data_dir={tree.root}",
        "dataset.num_classes=8", "dataset.train_classes=4", "dataset.val_split=samples",
        "dataset.val_fraction=0.5", "dataset.transform.crop_size=32",
        "dataset.transform.resize_size=36", "backbone=convnet", "trainer=debug", "logger=none",
        "data.batch_size=4", "data.samples_per_class=2", "data.num_workers=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot decode image {victim}:"), result.stderr[-2000:]
