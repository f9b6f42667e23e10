"""The pictures of what a trained model does at evaluation: ``plots/retrieval_examples.png``
(image data) and ``plots/roc.png`` (``eval.verification=true``).

They come from what the module kept of its last evaluations (a few retrieved examples, the
ROC curves, both small), so drawing them needs no pass over the data beyond reading the
pictured items.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dml.datasets.base import DataSplits
from dml.metrics.pair_verification import RocCurve
from dml.reporting.figures import save_figure
from dml.reporting.retrieval_examples import RetrievalExamples, write_retrieval_examples


def roc_figure(curves: Mapping[str, RocCurve]) -> Figure:
    """True-accept against false-accept rate, on a log FAR axis as face verification
    reports it, one curve per evaluated split (val at the end of training, test)."""
    figure = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = figure.add_subplot()
    lowest = 1.0
    for split, curve in curves.items():
        shown = curve.far > 0
        lowest = min(lowest, 1.0 / max(curve.different_pairs, 1))
        ax.plot(
            curve.far[shown],
            curve.tar[shown],
            label=f"{split}: AUC {curve.roc_auc:.4f}, EER {curve.eer:.4f} "
            f"({curve.same_pairs:,} same / {curve.different_pairs:,} different pairs)",
        )
    # TAR = FAR, sampled densely: on a log FAR axis chance is a curve, not a straight line.
    chance = np.geomspace(lowest, 1.0, 200)
    ax.plot(chance, chance, ":", color="grey", label="chance")
    ax.set_xscale("log")
    ax.set_xlim(lowest, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false-accept rate (different-class pairs accepted)")
    ax.set_ylabel("true-accept rate (same-class pairs accepted)")
    ax.set_title("Verification ROC: accept a pair when its distance ≤ threshold")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=7)
    return figure


def write_evaluation_plots(
    run_dir: Path,
    examples: RetrievalExamples | None,
    roc_curves: Mapping[str, RocCurve],
    splits: DataSplits,
    transform: object | None,
) -> list[Path]:
    """Write the pictures the evaluation kept data for; feature data get no example grid."""
    plots = Path(run_dir) / "plots"
    written = []
    if examples is not None:
        path = write_retrieval_examples(
            plots / "retrieval_examples.png", examples, splits, transform
        )
        written += [path] if path is not None else []
    if roc_curves:
        written.append(save_figure(roc_figure(roc_curves), plots / "roc.png"))
    return written
