"""Clustering quality of embeddings: how well k-means recovers the labels."""

from __future__ import annotations

import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from dml.errors import DmlError
from dml.metrics import _inputs
from dml.metrics._inputs import ArrayLike


def clustering_metrics(embeddings: ArrayLike, labels: ArrayLike, seed: int = 0) -> dict[str, float]:
    """NMI and AMI of k-means clusters (as many clusters as labels) against the labels.

    AMI is reported next to NMI because NMI rises with the number of clusters even for a
    random assignment, which flatters datasets with many small classes. k-means is
    scikit-learn's (a runtime dependency, unlike faiss), seeded so reruns agree.
    """
    x = _inputs.embeddings("embeddings", embeddings)
    y = _inputs.integer_ids("labels", labels, len(x))
    n_clusters = int(torch.unique(y).numel())
    if n_clusters > len(x):
        raise DmlError(f"k-means needs at least {n_clusters} embeddings, got {len(x)}")
    x_np = x.cpu().numpy()
    y_np = y.cpu().numpy()
    assigned = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit_predict(x_np)
    return {
        "nmi": float(normalized_mutual_info_score(y_np, assigned)),
        "ami": float(adjusted_mutual_info_score(y_np, assigned)),
    }
