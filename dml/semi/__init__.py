"""Semi-supervised metric learning: train with part of the labels, pseudo-label the rest.

``dataset.labeled_fraction`` keeps the labels of a stratified fraction of the training
split; :class:`SemiSupervisedDataModule` serves it. With ``semi=none`` only the labelled
items train. With ``semi=pseudo_label`` the :class:`PseudoLabeler` callback labels the
rest from the current embedding every few epochs (seeded k-means or a k-NN vote, with a
confidence threshold), and each batch adds a P×K block of confidently pseudo-labelled
items whose loss counts with a weight (:func:`semi_supervised_loss`).
"""

from dml.semi.data import (
    PseudoLabeledDataset,
    SemiSupervisedBatchSampler,
    SemiSupervisedDataModule,
    labeled_mask,
)
from dml.semi.pseudo_label import PseudoLabeler, kmeans_pseudo_labels, knn_pseudo_labels
from dml.training.weighted_loss import semi_supervised_loss

__all__ = [
    "PseudoLabeledDataset",
    "PseudoLabeler",
    "SemiSupervisedBatchSampler",
    "SemiSupervisedDataModule",
    "kmeans_pseudo_labels",
    "knn_pseudo_labels",
    "labeled_mask",
    "semi_supervised_loss",
]
