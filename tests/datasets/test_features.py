"""dataset=features: Gaussian clusters written as .npz, a .npy pair, .csv and .parquet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import DictConfig

from dml.commands.train import train
from dml.config.build import build_source
from dml.datasets.user_files.feature_file import FeatureFile
from dml.errors import DmlError

CLASSES, PER_CLASS, DIM = 6, 12, 5


def clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian clusters: class c is centred at 6·e_(c mod DIM) ± its sign."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    centres = (
        6.0
        * np.eye(DIM)[np.arange(CLASSES) % DIM]
        * np.where(np.arange(CLASSES) < DIM, 1, -1)[:, None]
    )
    return centres[labels] + rng.normal(size=(len(labels), DIM)), labels


def frame(features: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
    table["label"] = labels
    return table


def write_all(root: Path) -> dict[str, dict[str, str]]:
    """The same clusters in every file type; the value is each file's dataset settings."""
    x, y = clusters()
    np.savez(root / "data.npz", features=x, labels=y)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    frame(x, y).to_csv(root / "data.csv", index=False)
    frame(x, y).to_parquet(root / "data.parquet")
    return {
        "npz": {"path": str(root / "data.npz")},
        "npy": {"path": str(root / "x.npy"), "labels_path": str(root / "y.npy")},
        "csv": {"path": str(root / "data.csv")},
        "parquet": {"path": str(root / "data.parquet")},
    }


def source(**kwargs: object) -> FeatureFile:
    return FeatureFile(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["npz", "npy", "csv", "parquet"])
def test_every_file_type_gives_the_same_rows_and_split(tmp_path: Path, kind: str) -> None:
    x, y = clusters()
    settings = write_all(tmp_path)
    splits = source(**settings[kind], standardize=False).load()
    reference = source(**settings["npz"], standardize=False).load()
    for part, expected in zip(
        (splits.train, splits.val, splits.test),
        (reference.train, reference.val, reference.test),
        strict=True,
    ):
        assert torch.equal(part.labels, expected.labels)
        assert torch.allclose(part.features, expected.features)
    rows = torch.cat([splits.train.features, splits.val.features, splits.test.features])
    assert sorted(map(tuple, rows.double().numpy().round(4).tolist())) == sorted(
        map(tuple, x.astype(np.float32).astype(np.float64).round(4).tolist())
    )
    # split=samples: every class in every split, two or more items in val and test.
    for part in (splits.val, splits.test):
        assert torch.unique(part.labels, return_counts=True)[1].min() >= 2
        assert set(part.labels.tolist()) == set(range(CLASSES))


def test_config_reads_shape_and_class_count_from_the_file(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    path = write_all(tmp_path)["csv"]["path"]
    cfg = compose_cfg("dataset=features", f"dataset.path={path}", "backbone=mlp")
    assert list(cfg.backbone.input_shape) == [DIM] and cfg.dataset.num_classes == CLASSES
    cfg = compose_cfg("dataset=features", f"dataset.path={path}", "dataset.feature_columns=[f1,f3]")
    assert list(cfg.dataset.input_shape) == [2]
    assert build_source(cfg).load().train.features.shape[1] == 2
    # An unreadable file leaves the shape unset; loading then says what is wrong.
    cfg = compose_cfg("dataset=features", f"dataset.path={tmp_path / 'none.csv'}")
    assert cfg.dataset.input_shape is None
    with pytest.raises(DmlError, match=r"none.csv does not exist"):
        build_source(cfg).load()


def test_feature_file_trains_end_to_end_with_an_mlp(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    path = write_all(tmp_path)["parquet"]["path"]
    cfg = compose_cfg(
        "dataset=features",
        f"dataset.path={path}",
        "backbone=mlp",
        "logger=csv",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "data.batch_size=24",
        "data.samples_per_class=4",
    )
    metrics = train(cfg, tmp_path / "run")
    assert 0.9 <= metrics["test/map_at_r"] <= 1.0
    assert np.isfinite(metrics["val/map_at_r"])


def test_text_labels_become_class_names_and_text_columns_are_skipped(tmp_path: Path) -> None:
    x, y = clusters()
    table = frame(x, np.array([f"speaker_{c}" for c in y]))
    table["utterance"] = [f"utt_{i}.wav" for i in range(len(y))]
    table.to_csv(tmp_path / "t.csv", index=False)
    splits = source(path=str(tmp_path / "t.csv")).load()
    assert splits.train.class_names == [f"speaker_{c}" for c in range(CLASSES)]
    assert splits.train.features.shape[1] == DIM


def test_standardize_uses_the_training_rows_only(tmp_path: Path) -> None:
    path = write_all(tmp_path)["npz"]["path"]
    train = source(path=path).load().train.features.double()
    assert torch.allclose(train.mean(0), torch.zeros(DIM, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(train.std(0), torch.ones(DIM, dtype=torch.float64), atol=1e-5)


def test_split_by_classes_tests_on_unseen_classes(tmp_path: Path) -> None:
    path = write_all(tmp_path)["npz"]["path"]
    splits = source(path=path, split="classes", train_classes=4).load()
    assert set(splits.train.labels.tolist()) == set(splits.val.labels.tolist()) == {0, 1, 2, 3}
    assert set(splits.test.labels.tolist()) == {4, 5}


def test_the_files_own_split_and_groups_are_used(tmp_path: Path) -> None:
    x, y = clusters()
    split = np.array(["train"] * len(y), dtype=object)
    split[np.arange(len(y)) % PER_CLASS >= 9] = "test"
    split[np.arange(len(y)) % PER_CLASS < 2] = "val"
    groups = np.arange(len(y)) // 3
    np.savez(tmp_path / "s.npz", features=x, labels=y, split=split.astype(str), groups=groups)
    splits = source(path=str(tmp_path / "s.npz")).load()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (42, 12, 18)
    assert splits.test.groups is not None
    assert torch.equal(splits.test.groups, torch.as_tensor(groups[split == "test"]))

    # Without val rows, validation is a stratified share of the train rows.
    split[split == "val"] = "train"
    table = frame(x, y).assign(split=split)
    table.to_csv(tmp_path / "s.csv", index=False)
    splits = source(path=str(tmp_path / "s.csv"), val_fraction=0.25).load()
    assert len(splits.test) == 18 and len(splits.val) == 12 and len(splits.train) == 42


def bad_csv(tmp_path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> str:
    x, y = clusters()
    path = tmp_path / "bad.csv"
    edit(frame(x, y).astype({"f2": object})).to_csv(path, index=False)
    return str(path)


def set_cell(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table = table.astype({column: object})
        table.loc[row, column] = value
        return table

    return edit


@pytest.mark.parametrize(
    ("edit", "kwargs", "message"),
    [
        (
            lambda t: t.rename(columns={"label": "class"}),
            {},
            r"bad.csv has no column 'label' \(its columns: f0, f1, f2, f3, f4, class\)",
        ),
        (
            set_cell("f2", 5, "n/a?"),
            {},
            r"bad.csv: column 'f2', row 5 \(line 7\): 'n/a\?' is not a number",
        ),
        (
            set_cell("f3", 7, float("nan")),
            {},
            r"bad.csv: column 'f3', row 7 \(line 9\): the value is nan",
        ),
        (
            set_cell("f1", 8, "inf"),
            {},
            r"bad.csv: column 'f1', row 8 \(line 10\): the value is inf",
        ),
        (
            set_cell("f0", 3, 1e39),
            {},
            r"bad.csv: column 'f0', row 3 \(line 5\): the value is 1e\+39",
        ),
        (
            lambda t: t.assign(split=["train"] * 10 + ["valid"] + ["test"] * (len(t) - 11)),
            {},
            r"bad.csv: column 'split', row 10 \(line 12\): split 'valid' is not one of train, val",
        ),
        (
            set_cell("label", 20, 99),
            {"split": "classes"},
            r"bad.csv: column 'label', row 20 \(line 22\): class 99 has only this row",
        ),
        (
            set_cell("label", 4, 2.5),
            {},
            r"bad.csv: column 'label', row 4 \(line 6\): label 2.5 is not an integer",
        ),
        (
            set_cell("label", 6, None),
            {},
            r"bad.csv: column 'label', row 6 \(line 8\): the label is empty",
        ),
        (
            lambda t: t,
            {"feature_columns": ["f0", "f9"]},
            r"dataset.feature_columns names 'f9', which .*bad.csv does not have",
        ),
    ],
    ids=[
        "no-label",
        "text-in-feature",
        "nan",
        "inf",
        "float32-overflow",
        "unknown-split",
        "single-row-class",
        "fractional-label",
        "empty-label",
        "missing-named-column",
    ],
)
def test_bad_table_gets_one_line_naming_file_column_and_row(
    tmp_path: Path,
    edit: Callable[[pd.DataFrame], pd.DataFrame],
    kwargs: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(DmlError, match=message) as info:
        source(path=bad_csv(tmp_path, edit), **kwargs).load()
    assert "\n" not in str(info.value)


def test_bad_arrays_get_one_line_naming_file_array_and_row(tmp_path: Path) -> None:
    x, y = clusters()
    x[11, 3] = np.inf
    np.savez(tmp_path / "inf.npz", features=x, labels=y)
    with pytest.raises(DmlError, match=r"inf.npz: feature 3, row 11: the value is inf"):
        source(path=str(tmp_path / "inf.npz")).load()
    np.savez(tmp_path / "nolabels.npz", features=x)
    with pytest.raises(DmlError, match=r"nolabels.npz has no array 'labels' \(it has features\)"):
        source(path=str(tmp_path / "nolabels.npz")).load()
    x, y = clusters()
    np.savez(tmp_path / "single.npz", features=x, labels=np.where(np.arange(len(y)) == 30, 50, y))
    with pytest.raises(DmlError, match=r"single.npz: array 'labels', row 30: class 50 has only"):
        source(path=str(tmp_path / "single.npz"), split="classes").load()
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DmlError, match=r"x.npy is a .npy of features only; .*labels_path"):
        source(path=str(tmp_path / "x.npy")).load()
    np.save(tmp_path / "short.npy", y[:-1])
    with pytest.raises(DmlError, match=r"'labels' has shape \(71,\) but there are 72 feature rows"):
        source(path=str(tmp_path / "x.npy"), labels_path=str(tmp_path / "short.npy")).load()
    with pytest.raises(DmlError, match=r"dataset.path is not set"):
        source(path=None).load()
    (tmp_path / "data.txt").write_text("1,2,3")
    with pytest.raises(DmlError, match=r"data.txt is not a feature file; use one of .npz"):
        source(path=str(tmp_path / "data.txt")).load()
