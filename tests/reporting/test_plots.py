"""The run pictures: each shows the data it claims, and a real run yields all four."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from matplotlib.collections import PathCollection
from omegaconf import DictConfig
from sklearn.decomposition import PCA

from dml.config.build import build_datamodule, build_module
from dml.reporting.compare_plots import VariantCurves, compare_figure
from dml.reporting.projection import project_2d, projection_figure
from dml.reporting.run_files import read_history, read_metrics, write_json
from dml.reporting.run_plots import (
    distance_curves_figure,
    distance_histograms_figure,
    log_plots,
    pair_distances,
    recall_at_k_figure,
    write_run_plots,
)
from dml.reporting.snapshots import EmbeddingSnapshot, snapshot_embeddings
from dml.training.trainer import build_loggers, build_trainer
from tests.conftest import FAST
from tests.training.test_train import read_wandb_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def blobs(
    n_per_class: int = 20, classes: int = 3, dim: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def history_rows(path: Path) -> dict[str, np.ndarray]:
    rows = [
        {
            "epoch": 0,
            "val/dist_pos_mean": 0.5,
            "val/dist_pos_std": 0.1,
            "val/dist_neg_mean": 0.6,
            "val/dist_neg_std": 0.1,
        },
        {
            "epoch": 1,
            "train/loss": 0.3,
            "val/dist_pos_mean": 0.4,
            "val/dist_pos_std": 0.1,
            "val/dist_neg_mean": 0.8,
            "val/dist_neg_std": 0.2,
        },
        {
            "epoch": 2,
            "train/loss": 0.2,
            "val/dist_pos_mean": 0.3,
            "val/dist_pos_std": 0.05,
            "val/dist_neg_mean": 0.9,
            "val/dist_neg_std": 0.1,
        },
    ]
    columns = [
        "epoch",
        "train/loss",
        "val/dist_neg_mean",
        "val/dist_neg_std",
        "val/dist_pos_mean",
        "val/dist_pos_std",
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return read_history(path)


def test_read_history_turns_cells_never_logged_into_nan(tmp_path: Path) -> None:
    history = history_rows(tmp_path / "metrics.csv")
    assert history["epoch"].tolist() == [0, 1, 2]
    assert np.isnan(history["train/loss"][0])
    assert history["train/loss"][1:].tolist() == [0.3, 0.2]


def test_pair_distances_equal_a_loop_over_pairs() -> None:
    emb, labels = blobs(n_per_class=6, classes=4)
    pos, neg = pair_distances(emb, labels)
    expected_pos, expected_neg = [], []
    for i, j in itertools.combinations(range(len(emb)), 2):
        d = float(np.sqrt(((emb[i] - emb[j]) ** 2).sum()))
        (expected_pos if labels[i] == labels[j] else expected_neg).append(d)
    assert sorted(pos) == pytest.approx(sorted(expected_pos))
    assert sorted(neg) == pytest.approx(sorted(expected_neg))


def test_pair_distances_subsample_above_the_limit() -> None:
    emb, labels = blobs(n_per_class=100)
    pos, neg = pair_distances(emb, labels, max_samples=40)
    assert len(pos) + len(neg) == 40 * 39 // 2


def test_pca_projection_equals_sklearn_up_to_sign() -> None:
    emb, _ = blobs()
    points, name = project_2d(emb, method="pca")
    expected = PCA(n_components=2).fit_transform(emb)
    assert name == "PCA"
    for column in range(2):
        sign = np.sign(points[0, column] * expected[0, column])
        assert points[:, column] == pytest.approx(sign * expected[:, column], abs=1e-8)


def test_umap_projection_when_installed() -> None:
    pytest.importorskip("umap")
    emb, _ = blobs()
    points, name = project_2d(emb, method="auto")
    assert name == "UMAP" and points.shape == (len(emb), 2)


def test_distance_curves_show_mean_and_band_per_pair_kind(tmp_path: Path) -> None:
    history = history_rows(tmp_path / "metrics.csv")
    ax = distance_curves_figure(history).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"positive pairs", "negative pairs"}
    assert lines["positive pairs"].get_xdata().tolist() == [0, 1, 2]
    assert lines["positive pairs"].get_ydata().tolist() == [0.5, 0.4, 0.3]
    assert lines["negative pairs"].get_ydata().tolist() == [0.6, 0.8, 0.9]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.25) and band.max() == pytest.approx(0.6)
    assert "epoch" in ax.get_xlabel() and "distance" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(lines)


def test_histograms_show_both_pair_kinds_at_start_and_end() -> None:
    emb, labels = blobs()
    start = EmbeddingSnapshot(emb * 0.1, labels, epoch=0, split="val")
    end = EmbeddingSnapshot(emb, labels, epoch=5, split="val")
    figure = distance_histograms_figure(start, end, bins=20)
    pos, neg = pair_distances(emb, labels)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["val set, epoch 0", "val set, epoch 5"]
    for ax in figure.axes:
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == [f"negative pairs (n={len(neg):,})", f"positive pairs (n={len(pos):,})"]
        bars = ax.patches
        area = sum(bar.get_height() * bar.get_width() for bar in bars)
        assert area == pytest.approx(2.0)  # two densities, each integrating to one
        assert ax.get_xlabel()
    assert figure.axes[0].get_ylabel() == "density"


def test_projection_colours_each_class_and_names_it() -> None:
    emb, labels = blobs(classes=4)
    ax = projection_figure(EmbeddingSnapshot(emb, labels, epoch=3, split="test"), "pca").axes[0]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(s.get_offsets()) for s in scatters] == [20, 20, 20, 20]
    assert len({tuple(s.get_facecolor()[0]) for s in scatters}) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2", "3"]
    assert ax.get_xlabel() == "PCA 1" and "epoch 3" in ax.get_title()


def test_projection_legend_uses_class_names_where_the_data_has_them() -> None:
    emb, labels = blobs(classes=4)
    snapshot = EmbeddingSnapshot(emb, labels, epoch=1, split="test")
    # Names cover labels 0-2 only: label 3 falls back to its number.
    ax = projection_figure(snapshot, "pca", class_names=["cat", "dog", "owl"]).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cat", "dog", "owl", "3"]


def test_recall_figure_plots_each_split_against_k() -> None:
    metrics = {
        "val/recall_at_1": 0.5,
        "val/recall_at_2": 0.7,
        "test/recall_at_1": 0.6,
        "test/recall_at_8": 0.9,
        "test/recall_at_4": 0.8,
        "test/map_at_r": 0.4,
    }
    ax = recall_at_k_figure(metrics).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["test set"].get_xdata().tolist() == [1, 4, 8]
    assert lines["test set"].get_ydata().tolist() == [0.6, 0.8, 0.9]
    assert lines["val set"].get_ydata().tolist() == [0.5, 0.7]
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "recall@k"


def seed_history(epochs: int, map_values: list[float], pos: list[float]) -> dict[str, np.ndarray]:
    return {
        "epoch": np.arange(epochs, dtype=float),
        "val/map_at_r": np.array(map_values),
        "val/dist_pos_mean": np.array(pos),
        "val/dist_neg_mean": np.array(pos) + 0.3,
    }


def test_compare_figure_shows_each_variants_mean_ci_and_seed_band() -> None:
    two_seeds = VariantCurves(
        "loss=triplet",
        # The second seed stopped an epoch early: epoch 2 is the first seed's alone.
        [
            seed_history(3, [0.1, 0.5, 0.6], [0.5, 0.4, 0.3]),
            seed_history(2, [0.1, 0.3], [0.5, 0.2]),
        ],
        [
            {"val/map_at_r": 0.6, "test/recall_at_1": 0.6, "test/recall_at_2": 0.8},
            {"val/map_at_r": 0.3, "test/recall_at_1": 0.4, "test/recall_at_2": 0.6},
        ],
        mean=0.45,
        ci95=0.2,
    )
    one_run = VariantCurves(
        "loss=contrastive",
        [seed_history(2, [0.1, 0.4], [0.5, 0.45])],
        [{"val/map_at_r": 0.4, "val/recall_at_1": 0.5}],
        mean=0.4,
        ci95=None,
    )
    figure = compare_figure([two_seeds, one_run], "val/map_at_r")
    bar_ax, curves_ax, map_ax, recall_ax = figure.axes
    assert [bar.get_height() for bar in bar_ax.patches] == pytest.approx([0.45, 0.4])
    (error_bars,) = [c for c in bar_ax.collections if c.get_segments()]
    assert [seg[:, 1].tolist() for seg in error_bars.get_segments()] == [
        pytest.approx([0.25, 0.65]),
        pytest.approx([0.4, 0.4]),
    ]
    dots = [line.get_ydata().tolist() for line in bar_ax.get_lines() if line.get_marker() == "o"]
    assert dots == [[0.6, 0.3], [0.4]]

    curves = map_ax.get_lines()
    assert curves[0].get_ydata().tolist() == pytest.approx([0.1, 0.4, 0.6])
    assert curves[1].get_ydata().tolist() == pytest.approx([0.1, 0.4])
    assert curves[0].get_color() != curves[1].get_color()
    (band,) = map_ax.collections  # only the two-seed variant has a spread, and only where
    upper = band.get_paths()[0].vertices[:, 1]  # both seeds reached: epochs 0 and 1
    std = np.std([0.5, 0.3], ddof=1)
    assert upper.max() == pytest.approx(0.4 + std)

    positives = [line for line in curves_ax.get_lines() if line.get_linestyle() == "-"]
    assert positives[0].get_ydata().tolist() == pytest.approx([0.5, 0.3, 0.3])
    assert [line.get_ydata().tolist() for line in recall_ax.get_lines()] == [
        pytest.approx([0.5, 0.7]),
        [0.5],
    ]
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["1. loss=triplet", "2. loss=contrastive"]


def test_snapshot_embeds_in_eval_mode_and_restores_training() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.5))
    x, y = torch.randn(50, 4), torch.arange(50) % 5
    loader = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 50, 16)]
    module.train()
    snapshot = snapshot_embeddings(module, loader, epoch=2, split="val")
    assert module.training
    with torch.no_grad():
        expected = module[0](x).numpy()
    assert snapshot.embeddings == pytest.approx(expected, abs=1e-6)
    assert snapshot.labels.tolist() == y.tolist() and snapshot.epoch == 2

    first = snapshot_embeddings(module, loader, epoch=0, split="val", max_samples=20)
    again = snapshot_embeddings(module, loader, epoch=1, split="val", max_samples=20)
    assert len(first.labels) == 20
    assert first.embeddings.tolist() == again.embeddings.tolist()
    rows = [int(np.flatnonzero((expected == row).all(1))[0]) for row in first.embeddings]
    assert rows == sorted(rows)


def test_a_trained_run_gets_all_four_pictures_and_sends_them_to_wandb(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """What `train` does once wired: snapshots around fit and test, then the pictures."""
    cfg = compose_cfg(*FAST, "trainer.max_epochs=1")
    pl.seed_everything(0)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    module = build_module(cfg)
    loggers = build_loggers(cfg, tmp_path)
    trainer = build_trainer(cfg, tmp_path, loggers)
    trainer.validate(module, datamodule=datamodule, verbose=False)
    start = snapshot_embeddings(module, datamodule.val_dataloader(), epoch=0, split="val")
    trainer.fit(module, datamodule=datamodule)
    end = snapshot_embeddings(module, datamodule.val_dataloader(), trainer.current_epoch, "val")
    trainer.test(module, datamodule=datamodule, verbose=False)
    test = snapshot_embeddings(module, datamodule.test_dataloader(), trainer.current_epoch, "test")
    write_json(tmp_path / "metrics.json", loggers[0].rows[max(loggers[0].rows)])

    paths = write_run_plots(tmp_path, start=start, end=end, test=test, method="pca")
    log_plots(loggers, paths)
    loggers[1].experiment.finish()

    names = sorted(p.name for p in paths)
    assert names == [
        "distance_curves.png",
        "distance_histograms.png",
        "embedding_projection.png",
        "recall_at_k.png",
    ]
    assert all(p.parent == tmp_path / "plots" and p.read_bytes()[:8] == PNG_MAGIC for p in paths)
    assert end.epoch == cfg.trainer.max_epochs and start.epoch == 0
    assert len(test.labels) == len(datamodule.splits.test)
    summary, _ = read_wandb_run(tmp_path)
    logged = {key for key in summary["summary"] if key.startswith("plots/")}
    assert logged == {f"plots/{p.stem}" for p in paths}
    media = list(tmp_path.glob("wandb/offline-run-*/files/media/images/plots/*.png"))
    assert len(media) == 4


def test_an_unfinished_run_still_gets_its_curves(tmp_path: Path) -> None:
    history_rows(tmp_path / "metrics.csv")
    assert [p.name for p in write_run_plots(tmp_path)] == ["distance_curves.png"]
    write_json(tmp_path / "metrics.json", {"test/recall_at_1": 0.5, "test/recall_at_2": 0.75})
    assert read_metrics(tmp_path / "metrics.json")["test/recall_at_2"] == 0.75
    assert [p.name for p in write_run_plots(tmp_path)] == ["distance_curves.png", "recall_at_k.png"]
