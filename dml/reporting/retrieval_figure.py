"""The picture of what a model retrieves: one row per query, its nearest gallery items to
the right, correct ones framed green and wrong ones red.

``plots/retrieval_examples.png`` of a run and ``search.png`` of `dml search` share this
layout, so what a user sees after training is what they get when searching later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

CORRECT_COLOR = "#2ca02c"
WRONG_COLOR = "#d62728"
QUERY_COLOR = "#404040"
TILE_INCHES = 1.35


@dataclass(frozen=True)
class Tile:
    """One picture of the grid: ``image`` is [H, W] (grey) or [H, W, 3] in [0, 1].

    ``correct`` frames it green (True), red (False) or neutral (None: a query, or a
    neighbour of a query whose label is unknown).
    """

    image: np.ndarray
    caption: str
    correct: bool | None = None


def retrieval_figure(rows: Sequence[Sequence[Tile]], title: str) -> Figure:
    """Each row is a query tile followed by its neighbours, nearest first."""
    columns = max(len(row) for row in rows)
    figure = Figure(
        figsize=(TILE_INCHES * columns, TILE_INCHES * 1.2 * len(rows) + 0.5),
        layout="constrained",
    )
    axes = np.atleast_2d(figure.subplots(len(rows), columns, squeeze=False))
    for r, row in enumerate(rows):
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.set_axis_off()
                continue
            tile = row[c]
            grey = tile.image.ndim == 2
            ax.imshow(tile.image, cmap="gray" if grey else None, vmin=0.0, vmax=1.0)
            color = {True: CORRECT_COLOR, False: WRONG_COLOR, None: QUERY_COLOR}[tile.correct]
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(4 if tile.correct is not None else 2)
            if c == 0:
                ax.set_title(tile.caption, fontsize=7, fontweight="bold")
            else:
                ax.set_title(tile.caption, fontsize=7, color=color)
    figure.suptitle(title, fontsize=10)
    return figure


def tile_image(pixels: np.ndarray) -> np.ndarray:
    """A [C, H, W] array in [0, 1] as matplotlib shows it: [H, W] grey or [H, W, 3]."""
    if pixels.shape[0] == 1:
        return pixels[0]
    return np.transpose(pixels, (1, 2, 0))
