"""The pictures of a run (``<run dir>/plots/*.png``), drawn from its files and snapshots.

Each picture comes from what a run directory already holds (metrics.csv, metrics.json) or
from embedding snapshots, so a finished run can be re-plotted without W&B or a GPU.
torch and Lightning are imported only by the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from dml.reporting.figures import (
    NEG_COLOR,
    POS_COLOR,
    draw_distance_curves,
    recall_at_k,
    save_figure,
)
from dml.reporting.projection import ProjectionMethod, projection_figure
from dml.reporting.run_files import read_history, read_metrics
from dml.reporting.snapshots import EmbeddingSnapshot

if TYPE_CHECKING:
    from pytorch_lightning.loggers import Logger


def distance_curves_figure(history: dict[str, np.ndarray], prefix: str = "val") -> Figure:
    """The curve that shows metric learning working: positives pulled in, negatives pushed out.

    ``prefix="train"`` draws the Siamese training pairs (``dataset.pairs=true``), whose
    distances are averaged over each epoch's steps, so their curve starts at epoch 1.
    """
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = figure.add_subplot()
    draw_distance_curves(ax, history, prefix=prefix)
    if prefix == "train":
        ax.set_xlabel("epoch (mean over its training steps)")
        ax.set_title("Embedding distances of the similar and dissimilar training pairs")
    else:
        ax.set_xlabel("epoch (0 = before training)")
        ax.set_title("Embedding distances of same-class and different-class pairs")
    ax.set_ylabel(f"{prefix} pair distance (mean ± std)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return figure


def pair_distances(
    embeddings: np.ndarray, labels: np.ndarray, max_samples: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances of all positive and all negative pairs (each pair once).

    Above ``max_samples`` items a fixed random subset is used: the pair count grows as N²,
    and a histogram needs thousands of pairs, not millions.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if len(emb) > max_samples:
        keep = np.random.default_rng(seed).choice(len(emb), size=max_samples, replace=False)
        emb, labels = emb[keep], labels[keep]
    sq_norms = (emb * emb).sum(1)
    dist = np.sqrt(np.clip(sq_norms[:, None] - 2 * emb @ emb.T + sq_norms[None, :], 0, None))
    upper = np.triu_indices(len(emb), k=1)
    same = (labels[:, None] == labels[None, :])[upper]
    values = dist[upper]
    return values[same], values[~same]


def distance_histograms_figure(
    start: EmbeddingSnapshot, end: EmbeddingSnapshot, bins: int = 50
) -> Figure:
    """Where the two pair populations lie before and after training, on one shared x axis.

    The curves give only two moments of each distribution; the histograms show how much
    the populations overlap, which is what retrieval errors come from.
    """
    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots(1, 2, sharex=True, sharey=True)
    distances = [pair_distances(s.embeddings, s.labels) for s in (start, end)]
    upper = max((float(np.max(d)) for pair in distances for d in pair if len(d)), default=1.0)
    edges = np.linspace(0.0, upper * 1.02, bins + 1)
    for ax, snapshot, (pos, neg) in zip(axes, (start, end), distances, strict=True):
        ax.hist(
            neg,
            bins=edges,
            density=True,
            alpha=0.55,
            color=NEG_COLOR,
            label=f"negative pairs (n={len(neg):,})",
        )
        ax.hist(
            pos,
            bins=edges,
            density=True,
            alpha=0.55,
            color=POS_COLOR,
            label=f"positive pairs (n={len(pos):,})",
        )
        ax.set_title(f"{snapshot.split} set, epoch {snapshot.epoch}")
        ax.set_xlabel("Euclidean distance between embeddings")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    axes[0].set_ylabel("density")
    figure.suptitle("Pair distance distributions before and after training")
    return figure


def recall_at_k_figure(metrics: dict[str, float]) -> Figure:
    """Recall@k for every split the run evaluated, on a log₂ k axis (k = 1, 2, 4, 8 …)."""
    figure = Figure(figsize=(5.6, 4.2), layout="constrained")
    ax = figure.add_subplot()
    ks_seen: set[int] = set()
    for prefix, marker in (("val", "s"), ("test", "o")):
        ks, values = recall_at_k(metrics, prefix)
        if ks:
            ax.plot(ks, values, marker=marker, label=f"{prefix} set")
            ks_seen.update(ks)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ks_seen), [str(k) for k in sorted(ks_seen)])
    ax.set_xlabel("k (neighbours retrieved)")
    ax.set_ylabel("recall@k")
    ax.set_ylim(top=1.0)
    ax.set_title("Recall@k at the end of training")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return figure


def write_run_plots(
    run_dir: Path,
    start: EmbeddingSnapshot | None = None,
    end: EmbeddingSnapshot | None = None,
    test: EmbeddingSnapshot | None = None,
    method: ProjectionMethod = "auto",
    class_names: Sequence[str] | None = None,
) -> list[Path]:
    """Draw every picture the run directory has the data for, into ``<run dir>/plots``.

    The curves need metrics.csv, recall@k needs metrics.json, the histograms need the
    start and end snapshots and the projection the test snapshot; a picture whose input
    is missing is skipped, so this can also re-plot an old run from its files alone.
    """
    run_dir = Path(run_dir)
    figures: dict[str, Figure] = {}
    if (run_dir / "metrics.csv").exists():
        history = read_history(run_dir / "metrics.csv")
        if "val/dist_pos_mean" in history:
            figures["distance_curves"] = distance_curves_figure(history)
        if "train/dist_pos_mean" in history:  # the Siamese pair stream (dataset.pairs=true)
            figures["train_pair_distances"] = distance_curves_figure(history, prefix="train")
    if (run_dir / "metrics.json").exists():
        metrics = read_metrics(run_dir / "metrics.json")
        if recall_at_k(metrics, "test")[0] or recall_at_k(metrics, "val")[0]:
            figures["recall_at_k"] = recall_at_k_figure(metrics)
    if start is not None and end is not None:
        figures["distance_histograms"] = distance_histograms_figure(start, end)
    if test is not None:
        figures["embedding_projection"] = projection_figure(test, method, class_names=class_names)
    return [save_figure(fig, run_dir / "plots" / f"{name}.png") for name, fig in figures.items()]


def log_plots(loggers: Sequence[Logger], paths: Sequence[Path]) -> None:
    """Send the run's pictures to each W&B run as images keyed ``plots/<name>``, in one step."""
    from pytorch_lightning.loggers import WandbLogger

    if not paths:
        return
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in paths})
