"""The classical view inside `dml train` runs (the ``nca_iris`` demonstration): k-NN
classification accuracy before and after training, and the data as the learned linear map
sees it next to its raw features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from pytorch_lightning import Callback, LightningModule, Trainer
from sklearn.neighbors import KNeighborsClassifier
from torch.utils.data import DataLoader

from dml.datasets.base import LabeledDataset
from dml.reporting.figures import distinct_colors, save_figure
from dml.reporting.projection import project_2d
from dml.reporting.run_plots import log_plots
from dml.reporting.snapshots import snapshot_embeddings
from dml.semi import PseudoLabeledDataset


class KNNAccuracy(Callback):
    """k-NN classification accuracy over the embedding: the classic test of a learned metric.

    Retrieval metrics rank neighbours within one split; this asks what NCA and LMNN
    optimise: does a ``k``-NN classifier fitted on the embedded training split label held-out
    items correctly? It logs ``val/knn_accuracy`` after every validation pass (the pass at
    epoch 0 is before training) and, at test, ``test/knn_accuracy`` beside
    ``test/raw_knn_accuracy``, the same classifier on the raw inputs: the Euclidean
    baseline the learned metric has to beat. Training items are embedded as the training
    loader serves them, so they carry its transform.
    """

    def __init__(self, k: int = 3, batch_size: int = 1024) -> None:
        self.k = k
        self.batch_size = batch_size

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            splits = trainer.datamodule.splits
            accuracy = self.accuracy(pl_module, known_labels(splits.train), splits.val)
            pl_module.log("val/knn_accuracy", accuracy)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        splits = trainer.datamodule.splits
        train = known_labels(splits.train)
        pl_module.log("test/knn_accuracy", self.accuracy(pl_module, train, splits.test))
        train_x, train_y = raw_inputs(train, self.batch_size)
        test_x, test_y = raw_inputs(splits.test, self.batch_size)
        raw = KNeighborsClassifier(self.k).fit(train_x, train_y).score(test_x, test_y)
        pl_module.log("test/raw_knn_accuracy", float(raw))

    def accuracy(
        self, module: LightningModule, train: LabeledDataset, held_out: LabeledDataset
    ) -> float:
        fitted = embed(module, train, self.batch_size)
        scored = embed(module, held_out, self.batch_size)
        classifier = KNeighborsClassifier(self.k).fit(*fitted)
        return float(classifier.score(*scored))


class LinearProjectionPlot(Callback):
    """After test, ``plots/linear_projection.png``: raw features beside the learned map.

    The left panel is every item's first two raw features, the right one the same items
    after the backbone (its 2-D output as is; a wider one through PCA). With a 2-D linear
    backbone trained by NCA the classes that overlap on the left come apart on the right:
    the picture of what the learned L does. The file also goes to W&B as
    ``plots/linear_projection``.
    """

    def __init__(self, batch_size: int = 1024) -> None:
        self.batch_size = batch_size

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        splits = trainer.datamodule.splits
        parts = [known_labels(splits.train), splits.val, splits.test]
        raw = np.concatenate([raw_inputs(part, self.batch_size)[0] for part in parts])
        embedded = [embed(pl_module, part, self.batch_size) for part in parts]
        points = np.concatenate([e for e, _ in embedded])
        labels = np.concatenate([y for _, y in embedded])
        figure = linear_projection_figure(raw, points, labels)
        path = Path(trainer.default_root_dir) / "plots" / "linear_projection.png"
        log_plots(trainer.loggers, [save_figure(figure, path)])


def known_labels(train: LabeledDataset) -> LabeledDataset:
    """The training items whose labels a run may use: with ``dataset.labeled_fraction < 1``
    only the labelled part (a k-NN classifier fitted on hidden labels would be cheating)."""
    return train.labeled_items() if isinstance(train, PseudoLabeledDataset) else train


def embed(
    module: LightningModule, dataset: LabeledDataset, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every item's embedding (eval mode, no gradient) and label, in order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    snapshot = snapshot_embeddings(module, loader, epoch=0, split="", max_samples=len(dataset))
    return snapshot.embeddings, snapshot.labels


def raw_inputs(dataset: LabeledDataset, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every item's input, flattened, and its label: the identity embedding."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    batches = [(x.flatten(1), y) for x, y in loader]
    return (
        torch.cat([x for x, _ in batches]).numpy(),
        torch.cat([y for _, y in batches]).numpy(),
    )


def linear_projection_figure(raw: np.ndarray, embedded: np.ndarray, labels: np.ndarray) -> Figure:
    """Two scatter plots of the same items, one colour per class: raw and embedded."""
    if embedded.shape[1] == 2:
        points, name = embedded, "embedding"
    else:
        points, name = project_2d(embedded, method="pca")
        name = f"{name} of the embedding"
    classes = np.unique(labels)
    figure = Figure(figsize=(11.0, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    for ax, xy in ((left, raw[:, :2]), (right, points)):
        for cls, color in zip(classes, distinct_colors(len(classes)), strict=True):
            mask = labels == cls
            ax.scatter(xy[mask, 0], xy[mask, 1], s=14, alpha=0.8, color=color, label=str(cls))
        ax.grid(alpha=0.3)
    left.set_title("raw features 1 and 2")
    left.set_xlabel("feature 1")
    left.set_ylabel("feature 2")
    right.set_title(f"after the learned map ({name})")
    right.set_xlabel(f"{name} 1")
    right.set_ylabel(f"{name} 2")
    right.legend(title="class", loc="best", frameon=False)
    return figure
