"""compare.png: the distance curves and recall@k of many runs, one colour per run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dml.reporting.figures import distinct_colors, draw_distance_curves, recall_at_k


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
