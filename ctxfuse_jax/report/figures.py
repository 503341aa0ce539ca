"""The seed-000 figures from plain numpy arrays: Grad-CAM overlays, feature PCA, accuracy vs. severity.

Inputs are arrays and dicts, not models or experiment state, so the figures can be redrawn from
saved results. Each function returns a `matplotlib.figure.Figure` (shown inline in notebooks; no
pyplot global state, nothing to close) and writes a PNG when given `path`. Sizes are fixed per
panel, so a figure's pixel size depends only on its number of panels.
"""

from collections.abc import Mapping, Sequence
import os
import string

import matplotlib
import matplotlib.colors as mcolors
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

DPI = 100
GRADCAM_PANEL = 2.0  # inches per image panel
PCA_PANEL = (4.5, 4.0)  # inches per PCA panel, without the legend
SEVERITY_PANEL = (4.0, 3.0)  # inches per accuracy panel, without the legend
LEGEND_HEIGHT = 0.8  # inches below the panels for a figure legend

HEATMAP = 'jet'  # the usual Grad-CAM colours, as in seed 000's Figure 2
# Per seed-000 Figure 4: small bright dots sharp, large dark dots blurred (diamonds, so the two
# also differ in greyscale).
SHARP_STYLE = dict(s=20, alpha=0.85, linewidths=0)
BLURRED_STYLE = dict(s=46, alpha=0.8, linewidths=0, marker='D')


def gradcam_figure(images: np.ndarray, heatmaps: Mapping[str, np.ndarray],
                   row_labels: Sequence[str] | None = None,
                   path: str | os.PathLike | None = None) -> Figure:
    """Rows of images, then one Grad-CAM overlay per classifier (seed 000, Figure 2).

    `images` (N, H, W, 3 or 1) in [0, 1]; `heatmaps` maps a classifier name (e.g. 'FG', 'BG',
    'Joint') to (N, H, W) maps in [0, 1]; `row_labels` (e.g. the true class) label the rows.
    """
    images = np.asarray(images, np.float32)
    _require(images.ndim == 4 and images.shape[-1] in (1, 3) and len(images) > 0,
             f'images must be (N, H, W, 3 or 1), got shape {images.shape}')
    maps = {name: np.asarray(m, np.float32) for name, m in heatmaps.items()}
    _require(bool(maps), 'heatmaps is empty; give at least one classifier')
    for name, m in maps.items():
        _require(m.shape == images.shape[:3],
                 f'heatmaps[{name!r}] has shape {m.shape}; images need {images.shape[:3]}')
    _require(row_labels is None or len(row_labels) == len(images),
             f'row_labels has {len(row_labels or [])} entries for {len(images)} images')

    rows, cols = len(images), 1 + len(maps)
    fig = _figure(cols * GRADCAM_PANEL, rows * GRADCAM_PANEL)
    axes = fig.subplots(rows, cols, squeeze=False)
    shown = np.clip(images if images.shape[-1] == 3 else images[..., 0], 0, 1)
    for i, row in enumerate(axes):
        row[0].imshow(shown[i], cmap='gray', vmin=0, vmax=1)
        for ax, m in zip(row[1:], maps.values()):
            ax.imshow(shown[i], cmap='gray', vmin=0, vmax=1)
            ax.imshow(m[i], cmap=HEATMAP, alpha=0.5, vmin=0, vmax=1)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        if row_labels is not None:
            row[0].set_ylabel(row_labels[i])
    for ax, title in zip(axes[0], ['Image', *maps]):
        ax.set_title(title)
    scale = ScalarMappable(mcolors.Normalize(0, 1), HEATMAP)
    fig.colorbar(scale, ax=axes, shrink=0.8 if rows < 3 else 0.5, aspect=25, label='Grad-CAM')
    return _saved(fig, path)


def pca_figure(points: Mapping[str, tuple[np.ndarray, np.ndarray]], labels: np.ndarray,
               class_names: Mapping[int, str] | None = None,
               shift: Mapping[str, float] | None = None,
               path: str | os.PathLike | None = None) -> Figure:
    """One 2-D PCA panel per stream, sharp vs. blurred, a colour per class (seed 000, Figure 4).

    `points` maps a stream name ('FG', 'BG') to (sharp, blurred) coordinates, each (N, 2), with
    `labels` (N,). Arrows join each class's sharp centroid to its blurred one; `shift` (e.g.
    `blur_shift(...).mean` per stream) is printed in the panel title.
    """
    labels = np.asarray(labels)
    _require(bool(points), 'points is empty; give at least one stream')
    _require(labels.ndim == 1, f'labels must be (N,), got shape {labels.shape}')
    pairs = {}
    for name, pair in points.items():
        _require(len(pair) == 2, f'points[{name!r}] must be a (sharp, blurred) pair')
        pairs[name] = tuple(np.asarray(xy, np.float64) for xy in pair)
        for kind, xy in zip(('sharp', 'blurred'), pairs[name]):
            _require(xy.shape == (len(labels), 2),
                     f'points[{name!r}] {kind} has shape {xy.shape}; needs ({len(labels)}, 2)')
    classes = np.unique(labels)
    colours = _colours(len(classes))

    fig = _figure(len(pairs) * PCA_PANEL[0], PCA_PANEL[1] + LEGEND_HEIGHT)
    for ax, (name, (sharp, blurred)) in zip(fig.subplots(1, len(pairs), squeeze=False)[0],
                                            pairs.items()):
        for c, colour in zip(classes, colours):
            s, b = sharp[labels == c], blurred[labels == c]
            # Blurred first, so the small sharp dots stay visible on top.
            ax.scatter(*b.T, color=_shade(colour, -0.45), **BLURRED_STYLE)
            ax.scatter(*s.T, color=_shade(colour, 0.45), **SHARP_STYLE)
            ax.annotate('', b.mean(0), s.mean(0),
                        arrowprops=dict(arrowstyle='->', color='black', lw=1.2))
        title = f'{name} features'
        if shift is not None and name in shift:
            title += f'\nblur shift = {shift[name]:.2f} × sharp within-class spread'
        ax.set_title(title)
        ax.set_xlabel('PC 1')
        ax.set_ylabel('PC 2')
    names = [str(class_names[c]) if class_names else str(c) for c in classes]
    handles = [Line2D([], [], ls='', marker='o', color=colour, label=n)
               for colour, n in zip(colours, names)]
    handles += [Line2D([], [], ls='', marker='o', markersize=4, color='0.6', label='sharp'),
                Line2D([], [], ls='', marker='D', markersize=7, color='0.2', label='blurred'),
                Line2D([], [], color='black', marker='>', label='class centroid shift')]
    fig.legend(handles=handles, loc='outside lower center', ncols=min(len(handles), 7),
               frameon=False)
    return _saved(fig, path)


def severity_figure(severities: Sequence[float],
                    accuracy: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
                    xlabel: str = 'Gaussian blur σ', ylabel: str = 'Accuracy',
                    path: str | os.PathLike | None = None) -> Figure:
    """Accuracy vs. severity: a panel per (row, column), a line per model (seed 000, Figure 5).

    `accuracy[row][column][model]` is (S,) or (seeds, S) for the S `severities`, e.g. rows
    'Foreground blurred' / 'Whole image blurred', columns 'All' / 'Dissimilar', models 'FG',
    'BG', 'Joint'. Lines are seed means; with several seeds a band spans their min to max
    (few seeds make a standard deviation meaningless; the range shows all of them).
    """
    severities = np.asarray(severities, np.float64)
    _require(severities.ndim == 1 and len(severities) > 0,
             f'severities must be a non-empty 1-D sequence, got shape {severities.shape}')
    _require(bool(accuracy), 'accuracy is empty')
    rows, columns = list(accuracy), list(next(iter(accuracy.values())))
    curves = {}  # (row, column) -> {model: (seeds, S)}
    for row, panels in accuracy.items():
        _require(list(panels) == columns,
                 f'accuracy[{row!r}] has columns {list(panels)}; the first row has {columns}')
        for column, lines in panels.items():
            curves[row, column] = {m: _seed_curves(v, len(severities), f'accuracy[{row!r}]'
                                                   f'[{column!r}][{m!r}]') for m, v in lines.items()}
    models = list(dict.fromkeys(m for lines in curves.values() for m in lines))
    colours = dict(zip(models, _colours(len(models))))
    seeds = max(len(v) for lines in curves.values() for v in lines.values())

    fig = _figure(len(columns) * SEVERITY_PANEL[0], len(rows) * SEVERITY_PANEL[1] + LEGEND_HEIGHT)
    axes = fig.subplots(len(rows), len(columns), squeeze=False, sharex=True, sharey=True)
    for ax, letter, (row, column) in zip(axes.flat, string.ascii_lowercase, curves):
        for model, values in curves[row, column].items():
            ax.plot(severities, values.mean(0), marker='o', color=colours[model])
            if len(values) > 1:
                ax.fill_between(severities, values.min(0), values.max(0), color=colours[model],
                                alpha=0.2, linewidth=0)
        ax.set_title(f'({letter}) {column}: {row}')
        ax.set_xticks(severities)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    handles = [Line2D([], [], color=colours[m], marker='o', label=m) for m in models]
    fig.legend(handles=handles, loc='outside lower center', ncols=len(handles), frameon=False,
               title=f'line: mean, band: min to max over {seeds} seeds' if seeds > 1 else None)
    return _saved(fig, path)


def _seed_curves(values: np.ndarray, count: int, what: str) -> np.ndarray:
    """(S,) or (seeds, S) -> (seeds, S), or a ValueError naming `what`."""
    values = np.asarray(values, np.float64)
    _require(values.ndim in (1, 2) and values.shape[-1] == count and values.size > 0,
             f'{what} has shape {values.shape}; needs ({count},) or (seeds, {count})')
    return values.reshape(-1, count)


def _figure(width: float, height: float) -> Figure:
    """A figure of that many inches; constrained layout fits legends and colour bars inside."""
    return Figure(figsize=(width, height), dpi=DPI, layout='constrained')


def _saved(fig: Figure, path: str | os.PathLike | None) -> Figure:
    # No bbox_inches='tight': it would make the pixel size depend on the text drawn.
    if path is not None:
        fig.savefig(path, dpi=DPI)
    return fig


def _colours(count: int) -> list[tuple[float, float, float]]:
    """`count` distinct colours (repeating after 20)."""
    cmap = 'tab10' if count <= 10 else 'tab20'
    return [mcolors.to_rgb(c) for c in matplotlib.colormaps[cmap](np.arange(count) % 20)]


def _shade(colour: tuple[float, float, float], amount: float) -> tuple[float, ...]:
    """Towards white (amount > 0) or black (amount < 0) by |amount|."""
    rgb = np.asarray(colour)
    target = 1.0 if amount > 0 else 0.0
    return tuple(rgb + abs(amount) * (target - rgb))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
