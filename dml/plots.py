"""The pictures of a run (``<run dir>/plots/*.png``) and of a sweep (``compare.png``).

Each picture is drawn from what a run directory already holds (metrics.csv, metrics.json)
or from embedding snapshots, so a finished run can be re-plotted without W&B or a GPU.
Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg canvas:
no pyplot state is shared, so plotting is safe inside Lightning, joblib and submitit
workers with no display. torch and Lightning are imported only by the functions that
need them, so `dml compare` starts in a second, not in the time Lightning takes to load.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

if TYPE_CHECKING:
    import torch
    from pytorch_lightning.loggers import Logger

POS_COLOR = "tab:blue"
NEG_COLOR = "tab:red"
DPI = 110

ProjectionMethod = Literal["auto", "pca", "umap"]


@dataclass(frozen=True)
class EmbeddingSnapshot:
    """Embeddings of one split at one moment of training, with their class labels."""

    embeddings: np.ndarray
    labels: np.ndarray
    epoch: int
    split: str


def read_history(path: Path) -> dict[str, np.ndarray]:
    """metrics.csv as one float array per column; cells a row never logged are NaN.

    A run killed mid-epoch still leaves a readable file (it is replaced atomically), so
    this also serves runs that never finished.
    """
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {
        column: np.array([float(row[column]) if row.get(column) else math.nan for row in rows])
        for column in rows[0]
    }


def read_metrics(path: Path) -> dict[str, float]:
    return {key: float(value) for key, value in json.loads(Path(path).read_text()).items()}


def recall_at_k(metrics: dict[str, float], prefix: str) -> tuple[list[int], list[float]]:
    """The (k, recall@k) points a metric dict holds for one split, k ascending."""
    start = f"{prefix}/recall_at_"
    points = sorted(
        (int(key[len(start) :]), value)
        for key, value in metrics.items()
        if key.startswith(start) and key[len(start) :].isdigit()
    )
    return [k for k, _ in points], [value for _, value in points]


def save_figure(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def draw_distance_curves(
    ax: Axes,
    history: dict[str, np.ndarray],
    prefix: str = "val",
    label: str | None = None,
    color: Any = None,
    band: bool = True,
) -> None:
    """Positive-pair (solid) and negative-pair (dashed) mean distance per epoch.

    Alone (no ``label``), the two lines are coloured and named by pair kind. In a
    comparison, both lines take the run's colour and only the solid one its label, so the
    legend lists runs and the line style tells the kinds apart. ``band`` shades mean ± std.
    """
    kinds = (("pos", "-", POS_COLOR, "positive pairs"), ("neg", "--", NEG_COLOR, "negative pairs"))
    for kind, style, kind_color, kind_name in kinds:
        mean = history.get(f"{prefix}/dist_{kind}_mean")
        if mean is None or "epoch" not in history or np.isnan(mean).all():
            continue
        keep = ~np.isnan(mean)
        epochs, mean = history["epoch"][keep], mean[keep]
        line_color = color if color is not None else kind_color
        name = kind_name if label is None else label if kind == "pos" else None
        ax.plot(epochs, mean, style, color=line_color, marker="o", markersize=3, label=name)
        std = history.get(f"{prefix}/dist_{kind}_std")
        if band and std is not None:
            spread = std[keep]
            ax.fill_between(
                epochs, mean - spread, mean + spread, color=line_color, alpha=0.18, linewidth=0
            )


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
    snapshot: EmbeddingSnapshot, method: ProjectionMethod = "auto", max_points: int = 5000
) -> Figure:
    """Test embeddings in 2-D, one colour per class: separated clusters mean a usable metric."""
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
            label=str(cls),
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


def distinct_colors(count: int) -> list[Any]:
    """Qualitative colours while they stay distinguishable, a ramp beyond.

    tab20 comes in dark/light pairs of one hue; taking the ten dark ones first keeps
    neighbouring runs (which a sweep often makes similar) in different hues.
    """
    from matplotlib import colormaps

    if count <= 10:
        return list(colormaps["tab10"].colors[:count])
    if count <= 20:
        paired = colormaps["tab20"].colors
        return list(paired[0::2] + paired[1::2])[:count]
    return [colormaps["viridis"](i / (count - 1)) for i in range(count)]


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


@dataclass(frozen=True)
class RunCurves:
    """What compare.png needs from one run."""

    label: str
    history: dict[str, np.ndarray]
    metrics: dict[str, float]


def compare_figure(runs: Sequence[RunCurves]) -> Figure:
    """All runs' distance curves overlaid, and their recall@k, one colour per run.

    Bands are left out: with several runs they hide each other. Recall@k uses the test set,
    or the validation set for a run that never reached its test.
    """
    figure = Figure(figsize=(13, 5.2), layout="constrained")
    curves_ax, recall_ax = figure.subplots(1, 2)
    ks_seen: set[int] = set()
    for run, color in zip(runs, distinct_colors(len(runs)), strict=True):
        draw_distance_curves(curves_ax, run.history, label=run.label, color=color, band=False)
        ks, values = recall_at_k(run.metrics, "test")
        if not ks:
            ks, values = recall_at_k(run.metrics, "val")
        if ks:
            recall_ax.plot(ks, values, marker="o", color=color, label=run.label)
            ks_seen.update(ks)
    curves_ax.set_xlabel("epoch (0 = before training)")
    curves_ax.set_ylabel("val pair distance (mean)")
    curves_ax.set_title("Distance curves of every run")
    styles = [Line2D([], [], color="black", linestyle=style) for style in ("-", "--")]
    curves_ax.legend(styles, ["positive pairs", "negative pairs"], loc="best")
    curves_ax.xaxis.get_major_locator().set_params(integer=True)
    curves_ax.grid(alpha=0.3)
    recall_ax.set_xscale("log", base=2)
    ticks = sorted(ks_seen) or [1]
    recall_ax.set_xticks(ticks, [str(k) for k in ticks])
    recall_ax.set_xlabel("k (neighbours retrieved)")
    recall_ax.set_ylabel("test recall@k (val for runs that never tested)")
    recall_ax.set_title("Recall@k by run")
    recall_ax.grid(alpha=0.3)
    handles, labels = recall_ax.get_legend_handles_labels()
    if not handles:
        handles, labels = curves_ax.get_legend_handles_labels()
    if handles:
        figure.legend(
            handles,
            labels,
            loc="outside right center",
            title="run",
            frameon=False,
            fontsize="small" if len(handles) > 10 else "medium",
        )
    return figure


def snapshot_embeddings(
    module: torch.nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    epoch: int,
    split: str,
    max_samples: int = 5000,
    seed: int = 0,
) -> EmbeddingSnapshot:
    """Embed a whole loader in eval mode, keeping at most ``max_samples`` random items.

    The module evaluates on batches it then discards, so the histograms and the projection
    need their own pass. The module's train/eval mode is restored afterwards; the subset
    is fixed by ``seed`` and keeps the loader's order, so start and end snapshots of one
    split hold the same items.
    """
    import torch

    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    chunks, labels = [], []
    try:
        with torch.no_grad():
            for x, y in loader:
                chunks.append(module(x.to(device)).float().cpu())
                labels.append(y.cpu())
    finally:
        module.train(was_training)
    embeddings, targets = torch.cat(chunks).numpy(), torch.cat(labels).numpy()
    if len(embeddings) > max_samples:
        keep = np.random.default_rng(seed).choice(len(embeddings), size=max_samples, replace=False)
        keep.sort()
        embeddings, targets = embeddings[keep], targets[keep]
    return EmbeddingSnapshot(embeddings, targets, epoch=epoch, split=split)


def write_run_plots(
    run_dir: Path,
    start: EmbeddingSnapshot | None = None,
    end: EmbeddingSnapshot | None = None,
    test: EmbeddingSnapshot | None = None,
    method: ProjectionMethod = "auto",
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
        figures["embedding_projection"] = projection_figure(test, method)
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
