"""Shared pieces of every picture: colours, saving, and the distance curves.

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg canvas: no
pyplot state is shared, so plotting is safe inside Lightning, joblib and submitit workers
with no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

POS_COLOR = "tab:blue"
NEG_COLOR = "tab:red"
DPI = 110


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
