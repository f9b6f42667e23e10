"""compare.png: the variants of a comparison side by side, one colour per variant.

Four panels: the ranked metric as one bar per variant with its 95% confidence interval
(and a dot per run), the validation distance curves, validation MAP@R per epoch, and
recall@k. Curves are the mean over a variant's runs, with a band of ± one standard
deviation across them where there are two or more: the spread between seeds is what
tells a real difference from a lucky one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dml.reporting.figures import distinct_colors, recall_at_k

VAL_MAP = "val/map_at_r"


@dataclass(frozen=True)
class VariantCurves:
    """What compare.png needs from one variant: its runs' histories and final metrics,
    and the ranked metric's mean and CI half-width (None for a single run)."""

    label: str
    histories: list[dict[str, np.ndarray]]
    metrics: list[dict[str, float]]
    mean: float
    ci95: float | None


def per_epoch(
    histories: Sequence[dict[str, np.ndarray]], column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean over runs and std across runs (NaN below two runs) of one column.

    Runs may stop at different epochs; each epoch averages the runs that reached it.
    """
    present = [h for h in histories if column in h and "epoch" in h]
    epochs = np.unique(
        np.concatenate([h["epoch"][~np.isnan(h[column])] for h in present] or [np.zeros(0)])
    )
    table = np.full((len(present), len(epochs)), np.nan)
    for row, history in enumerate(present):
        keep = ~np.isnan(history[column])
        table[row, np.searchsorted(epochs, history["epoch"][keep])] = history[column][keep]
    counts = (~np.isnan(table)).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(table, axis=0) if len(present) else np.zeros(0)
        std = np.nanstd(table, axis=0, ddof=1) if len(present) else np.zeros(0)
    return epochs, mean, np.where(counts >= 2, std, np.nan)


def draw_mean_curve(
    ax: Axes, epochs: np.ndarray, mean: np.ndarray, std: np.ndarray, **line: Any
) -> None:
    """The mean as a line, and where defined, the ± std band in the same colour."""
    if not len(epochs):
        return
    (drawn,) = ax.plot(epochs, mean, marker="o", markersize=3, **line)
    banded = ~np.isnan(std)
    if banded.any():
        ax.fill_between(
            epochs[banded],
            (mean - std)[banded],
            (mean + std)[banded],
            color=drawn.get_color(),
            alpha=0.15,
            linewidth=0,
        )


def draw_bars(ax: Axes, variants: Sequence[VariantCurves], colors: list, metric: str) -> None:
    positions = np.arange(len(variants))
    means = [v.mean for v in variants]
    errors = [v.ci95 if v.ci95 is not None else 0.0 for v in variants]
    ax.bar(positions, means, yerr=errors, color=colors, alpha=0.75, capsize=4)
    for position, variant in zip(positions, variants, strict=True):
        values = [m[metric] for m in variant.metrics if metric in m]
        ax.plot([position] * len(values), values, "o", color="black", markersize=3)
    ax.set_xticks(positions, [str(rank) for rank in range(1, len(variants) + 1)])
    ax.set_xlabel("variant (rank)")
    ax.set_ylabel(f"{metric} (mean, 95% CI; dots: runs)")
    ax.set_title(f"{metric} by variant")
    ax.grid(alpha=0.3, axis="y")


def compare_figure(variants: Sequence[VariantCurves], metric: str) -> Figure:
    """The four panels of compare.png; ``variants`` in rank order."""
    figure = Figure(figsize=(14, 9), layout="constrained")
    (bar_ax, curves_ax), (map_ax, recall_ax) = figure.subplots(2, 2)
    colors = distinct_colors(len(variants))
    draw_bars(bar_ax, variants, colors, metric)
    ks_seen: set[int] = set()
    for rank, (variant, color) in enumerate(zip(variants, colors, strict=True), start=1):
        label = f"{rank}. {variant.label}"
        for kind, style in (("pos", "-"), ("neg", "--")):
            curve = per_epoch(variant.histories, f"val/dist_{kind}_mean")
            name = label if kind == "pos" else None
            draw_mean_curve(curves_ax, *curve, color=color, linestyle=style, label=name)
        draw_mean_curve(map_ax, *per_epoch(variant.histories, VAL_MAP), color=color)
        points: dict[int, list[float]] = {}
        for metrics in variant.metrics:
            ks, values = recall_at_k(metrics, "test")
            if not ks:
                ks, values = recall_at_k(metrics, "val")
            for k, value in zip(ks, values, strict=True):
                points.setdefault(k, []).append(value)
        if points:
            ks = sorted(points)
            means = [float(np.mean(points[k])) for k in ks]
            recall_ax.plot(ks, means, marker="o", color=color)
            ks_seen.update(ks)
    curves_ax.set_xlabel("epoch (0 = before training)")
    curves_ax.set_ylabel("val pair distance (mean over runs ± std)")
    curves_ax.set_title("Distance curves by variant")
    styles = [Line2D([], [], color="black", linestyle=style) for style in ("-", "--")]
    curves_ax.legend(styles, ["positive pairs", "negative pairs"], loc="best")
    map_ax.set_xlabel("epoch (0 = before training)")
    map_ax.set_ylabel(f"{VAL_MAP} (mean over runs ± std)")
    map_ax.set_title("Validation MAP@R per epoch")
    for ax in (curves_ax, map_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    recall_ax.set_xscale("log", base=2)
    ticks = sorted(ks_seen) or [1]
    recall_ax.set_xticks(ticks, [str(k) for k in ticks])
    recall_ax.set_xlabel("k (neighbours retrieved)")
    recall_ax.set_ylabel("test recall@k, mean over runs (val where untested)")
    recall_ax.set_title("Recall@k by variant")
    recall_ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=color, linewidth=6) for color in colors]
    if handles:
        figure.legend(
            handles,
            [f"{rank}. {v.label}" for rank, v in enumerate(variants, start=1)],
            loc="outside right center",
            title="variant",
            frameon=False,
            fontsize="small" if len(handles) > 10 else "medium",
        )
    return figure
