"""Pseudo-labels from the current embedding, and the callback that assigns them.

The loss that weighs them is the training module's
(:func:`dml.training.weighted_loss.semi_supervised_loss`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import move_data_to_device
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader

from dml.errors import DmlError
from dml.semi.data import PseudoLabeledDataset

Method = Literal["kmeans", "knn"]
# Rows of unlabelled items compared with the references at once: bounds the distance block.
CHUNK_ROWS = 4096


def kmeans_pseudo_labels(
    embeddings: Tensor, labels: Tensor, labeled: Tensor, iterations: int = 10
) -> tuple[Tensor, Tensor]:
    """Seeded k-means: one cluster per class, started at the class's labelled mean.

    Labelled items stay in their class's cluster, so each cluster keeps the meaning of a
    class and its index is the pseudo-label. Confidence is 1 − d₁/d₂ (nearest and second
    nearest centroid distance): 0 halfway between two classes, near 1 deep inside one.
    Returns a pseudo-label and a confidence for every item (labelled ones keep theirs).
    """
    classes, known = labels[labeled].unique(return_inverse=True)
    if len(classes) < 2:
        raise DmlError("pseudo-labelling needs labelled items of at least 2 classes")
    emb = embeddings.float()
    counts = torch.zeros(len(classes)).index_add_(0, known, torch.ones(len(known)))
    labeled_sums = torch.zeros(len(classes), emb.shape[1]).index_add_(0, known, emb[labeled])
    centroids = labeled_sums / counts[:, None]
    unlabeled = emb[~labeled]
    for _ in range(iterations):
        cluster = nearest_rows(unlabeled, centroids, 1)[1][:, 0]
        sums = labeled_sums.index_add(0, cluster, unlabeled)
        sizes = counts.index_add(0, cluster, torch.ones(len(cluster)))
        centroids = sums / sizes[:, None]
    distances, cluster = nearest_rows(unlabeled, centroids, 2)
    confidence = 1 - distances[:, 0] / distances[:, 1].clamp_min(torch.finfo(emb.dtype).tiny)
    return fill(labels, labeled, classes[cluster[:, 0]], confidence)


def knn_pseudo_labels(
    embeddings: Tensor, labels: Tensor, labeled: Tensor, k: int = 10
) -> tuple[Tensor, Tensor]:
    """Label propagation by a vote of each unlabelled item's ``k`` nearest labelled items.

    Confidence is the winning class's share of the votes. Returns a pseudo-label and a
    confidence for every item (labelled ones keep theirs).
    """
    classes, known = labels[labeled].unique(return_inverse=True)
    emb = embeddings.float()
    k = min(k, len(known))
    neighbours = nearest_rows(emb[~labeled], emb[labeled], k)[1]
    votes = F.one_hot(known[neighbours], len(classes)).sum(1)
    share, winner = votes.max(1)
    return fill(labels, labeled, classes[winner], share.float() / k)


def nearest_rows(queries: Tensor, references: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Distances to and indices of each query's ``k`` nearest references, ascending."""
    found = [
        torch.cdist(chunk, references).topk(k, dim=1, largest=False)
        for chunk in queries.split(CHUNK_ROWS)
    ]
    return torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])


def fill(
    labels: Tensor, labeled: Tensor, pseudo: Tensor, confidence: Tensor
) -> tuple[Tensor, Tensor]:
    """Per-item labels and confidences: labelled items their own label at confidence 1."""
    all_labels = labels.clone()
    all_labels[~labeled] = pseudo
    all_confidence = torch.ones(len(labels))
    all_confidence[~labeled] = confidence
    return all_labels, all_confidence


class PseudoLabeler(Callback):
    """Every few epochs, label the unlabelled training items from the current embedding.

    From ``start_epoch`` on, after every ``every_n_epochs``-th epoch, the whole training
    split is embedded; ``method`` (seeded k-means or a k-NN vote) proposes a label for each
    unlabelled item, and those at least ``confidence`` sure join the training batches with
    loss weight ``weight``, in blocks of ``batch_size`` (None: ``data.batch_size``).
    Logged on each relabelling epoch: ``train/pseudo_label_accuracy`` (against the hidden
    true labels, of the confident pseudo-labels), ``train/pseudo_label_fraction`` (share
    of unlabelled items confident enough to use) and ``train/pseudo_label_accuracy_all``.
    """

    def __init__(
        self,
        method: Method = "kmeans",
        start_epoch: int = 2,
        every_n_epochs: int = 1,
        confidence: float = 0.5,
        weight: float = 0.5,
        k: int = 10,
        batch_size: int | None = None,
        eval_batch_size: int = 1024,
    ) -> None:
        if method not in ("kmeans", "knn"):
            raise DmlError(f"semi.method={method!r} is not one of kmeans, knn")
        if start_epoch < 1 or every_n_epochs < 1:
            raise DmlError("semi.start_epoch and semi.every_n_epochs must be at least 1")
        if not 0 <= confidence <= 1:
            raise DmlError(f"semi.confidence={confidence} must lie in [0, 1]")
        if weight < 0:
            raise DmlError(f"semi.weight={weight} must not be negative")
        self.method = method
        self.start_epoch = start_epoch
        self.every_n_epochs = every_n_epochs
        self.confidence = confidence
        self.weight = weight
        self.k = k
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size

    def due(self, completed_epochs: int) -> bool:
        since = completed_epochs - self.start_epoch
        return since >= 0 and since % self.every_n_epochs == 0

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Relabel after a training epoch's validation, which is before that epoch's
        checkpoint is written (Lightning runs checkpoint callbacks last), so the checkpoint
        holds these pseudo-labels (in the data module's state) and a resumed run goes on
        with them."""
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        completed = trainer.current_epoch + 1
        if not self.due(completed):
            return
        dataset = trainer.datamodule.splits.train
        if not isinstance(dataset, PseudoLabeledDataset):
            raise DmlError(
                "semi=pseudo_label needs the semi-supervised data module; the training "
                "split here has no unlabelled part"
            )
        metrics = self.relabel(pl_module, dataset, trainer.datamodule.source.collate_fn())
        pl_module.log_dict({f"train/{name}": value for name, value in metrics.items()})

    def relabel(
        self,
        module: LightningModule,
        dataset: PseudoLabeledDataset,
        collate: Callable[[list[Any]], Any] | None = None,
    ) -> dict[str, float]:
        """Assign pseudo-labels to ``dataset`` from ``module``'s embedding; returns metrics.
        ``collate`` batches the items as the data module does (None: torch's default)."""
        embeddings = embed_items(module, dataset, self.eval_batch_size, collate)
        observed = torch.where(dataset.labeled, dataset.hidden_labels, 0)
        if self.method == "kmeans":
            pseudo, confidence = kmeans_pseudo_labels(embeddings, observed, dataset.labeled)
        else:
            pseudo, confidence = knn_pseudo_labels(embeddings, observed, dataset.labeled, self.k)
        confident = confidence >= self.confidence
        dataset.assign(pseudo, confident, self.weight)
        unlabeled = ~dataset.labeled
        correct = pseudo == dataset.hidden_labels
        used = confident & unlabeled
        return {
            "pseudo_label_accuracy": float(correct[used].float().mean()) if used.any() else 0.0,
            "pseudo_label_fraction": float(used.sum() / unlabeled.sum().clamp_min(1)),
            "pseudo_label_accuracy_all": float(correct[unlabeled].float().mean()),
        }


def embed_items(
    module: LightningModule,
    dataset: PseudoLabeledDataset,
    batch_size: int,
    collate: Callable[[list[Any]], Any] | None = None,
) -> Tensor:
    """Every training item's embedding, in eval mode; the module's mode is restored."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            chunks = [
                module(move_data_to_device(x, module.device)).float().cpu() for x, _, _ in loader
            ]
    finally:
        module.train(was_training)
    return torch.cat(chunks)
