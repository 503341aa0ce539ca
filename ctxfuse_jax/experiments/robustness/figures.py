"""The report's heat map: one classifier's accuracy (%) per corruption (rows) and severity (columns),
a panel per region, each cell's accuracy written in it. (Accuracy against severity, a line per
corruption, is the shared `report.curves_figure`.)"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

DPI = 100
CELL = (0.75, 0.45)  # inches per heat-map cell (width, height)
MARGIN = (1.9, 1.3)  # inches for the row labels and colour bar (width), title and axis label (height)
COLOURS = "viridis"


def accuracy_heatmap(accuracy: Mapping[str, Mapping[str, Sequence[float]]], levels: Mapping[str, Sequence[str]],
                     severities: Mapping[str, Sequence[int]], title: str,
                     path: str | os.PathLike | None = None) -> Figure:
    """`accuracy[region][corruption]` is one accuracy per level of the corruption, whose labels are
    `levels[corruption]` and severities (columns, from 1) `severities[corruption]`; a label that is
    not its severity's number (JPEG 2000's 'r10') is written under the value. Severities a
    corruption was not scored at stay empty."""
    regions = list(accuracy)
    rows = list(levels)
    if not regions or not rows:
        raise ValueError("accuracy_heatmap needs at least one region and one corruption")
    columns = max(max(v) for v in severities.values())
    fig = Figure(figsize=(MARGIN[0] + len(regions) * columns * CELL[0] + 0.9 * (len(regions) - 1),
                          MARGIN[1] + len(rows) * CELL[1]), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(regions), squeeze=False, sharey=True)[0]
    cmap = matplotlib.colormaps[COLOURS].with_extremes(bad="0.92")
    image = None
    for ax, region in zip(axes, regions):
        grid = np.full((len(rows), columns), np.nan)
        for r, corruption in enumerate(rows):
            values = np.asarray(accuracy[region][corruption], np.float64)
            if len(values) != len(levels[corruption]):
                raise ValueError(f"accuracy[{region!r}][{corruption!r}] has {len(values)} values for "
                                 f"{len(levels[corruption])} levels")
            grid[r, np.asarray(severities[corruption]) - 1] = 100 * values
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100, aspect="auto")
        for r, corruption in enumerate(rows):
            for label, severity in zip(levels[corruption], severities[corruption]):
                value, c = grid[r, severity - 1], severity - 1
                text = f"{value:.0f}" + ("" if label == str(severity) else f"\n{label}")
                ax.text(c, r, text, ha="center", va="center", fontsize=9 if "\n" not in text else 7.5,
                        color="black" if value > 55 else "white")
        ax.set_xticks(range(columns), [str(c + 1) for c in range(columns)])
        ax.set_xlabel("severity")
        ax.set_title(region)
    axes[0].set_yticks(range(len(rows)), rows)
    fig.colorbar(image, ax=list(axes), label="accuracy (%)", shrink=0.9)
    fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=DPI)
    return fig
