"""Embeddings in two dimensions: PCA, or UMAP where umap-learn is installed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from matplotlib.figure import Figure

from dml.reporting.figures import distinct_colors
from dml.reporting.snapshots import EmbeddingSnapshot

ProjectionMethod = Literal["auto", "pca", "umap"]


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def project_2d(
    embeddings: np.ndarray, method: ProjectionMethod = "auto", seed: int = 0
) -> tuple[np.ndarray, str]:
    """Two coordinates per embedding, and the name of the method that made them.

    PCA is exact and deterministic; UMAP keeps neighbourhoods, which is what retrieval
    cares about, so ``auto`` prefers it whenever umap-learn is installed.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if method == "umap" or (method == "auto" and umap_available()):
        import umap

        reducer = umap.UMAP(n_components=2, random_state=seed, n_jobs=1)
        return np.asarray(reducer.fit_transform(emb)), "UMAP"
    centred = emb - emb.mean(0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    if points.shape[1] < 2:
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    return points, "PCA"


def projection_figure(
    snapshot: EmbeddingSnapshot,
    method: ProjectionMethod = "auto",
    max_points: int = 5000,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Test embeddings in 2-D, one colour per class: separated clusters mean a usable metric.

    The legend names each class by ``class_names[label]`` where the data has names (image
    folders, text labels), so a user reads "tabby", not "3"."""
    emb, labels = np.asarray(snapshot.embeddings), np.asarray(snapshot.labels)
    if len(emb) > max_points:
        keep = np.random.default_rng(0).choice(len(emb), size=max_points, replace=False)
        emb, labels = emb[keep], labels[keep]
    points, name = project_2d(emb, method)
    classes = np.unique(labels)
    figure = Figure(figsize=(6.4, 5.4), layout="constrained")
    ax = figure.add_subplot()
    for cls, color in zip(classes, distinct_colors(len(classes)), strict=True):
        mask = labels == cls
        ax.scatter(
            points[mask, 0],
            points[mask, 1],
            s=8,
            alpha=0.8,
            color=color,
            label=class_name(int(cls), class_names),
            linewidths=0,
        )
    ax.set_xlabel(f"{name} 1")
    ax.set_ylabel(f"{name} 2")
    ax.set_title(f"{name} of {snapshot.split} embeddings by class, epoch {snapshot.epoch}")
    if len(classes) <= 20:
        ax.legend(
            title="class",
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            markerscale=2,
            frameon=False,
        )
    return figure


def class_name(label: int, class_names: Sequence[str] | None) -> str:
    """The class's name where one is known, else its label."""
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)
