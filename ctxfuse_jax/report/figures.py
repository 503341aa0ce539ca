"""Report figures from plain numpy arrays.

Seed 000: Grad-CAM overlays, feature PCA, accuracy vs. severity. Seed 004 (ImageNet-9
backgrounds, Xiao et al. 2021): image grids (an image under every variant, the most fooling
backgrounds per class), grouped bars of accuracy per variant and model, and benchmark progress
(variant vs. original accuracy). Grad-CAM overlays of seed 004 reuse `gradcam_figure`. Seeds
001-003: accuracy curves per panel; seed 003: a confusion matrix and receptive fields drawn over
compression units.

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
import matplotlib.patches
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

DPI = 100
GRADCAM_PANEL = 2.0  # inches per image panel
PCA_PANEL = (4.5, 4.0)  # inches per PCA panel, without the legend
SEVERITY_PANEL = (4.0, 3.0)  # inches per accuracy panel, without the legend
IMAGE_PANEL = 2.0  # inches per image_grid cell, title and row label included
BAR_MARGIN = 1.0  # inches of bar_chart width for the y axis
BAR_GROUP = 1.5  # inches of bar_chart width per group: 8 bars of 0.15 in
BAR_HEIGHT = 3.5  # inches of bar_chart axes, without the legend
PROGRESS_PANEL = 4.5  # inches of the square progress_figure axes, without the legend
MATRIX_CELL = 0.9  # inches per matrix_figure cell
MATRIX_MARGIN = 1.8  # inches of matrix_figure for labels and the colour bar
RF_PANEL = 3.0  # inches per receptive_field_figure panel
LEGEND_HEIGHT = 0.8  # inches below the panels for a figure legend
LEGEND_TITLE = 0.25  # of which for the legend's title: bar_chart and progress_figure have none
LEGEND_ROW = 0.2  # inches more per extra row of legend entries
LEGEND_COLUMN = 1.6  # inches per legend column, which fits names up to about 16 characters

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


def image_grid(images: Sequence[Sequence[np.ndarray]],
               titles: Sequence[Sequence[str]] | None = None,
               row_labels: Sequence[str] | None = None,
               path: str | os.PathLike | None = None) -> Figure:
    """Rows of images with optional per-image titles and row labels (seed 004).

    E.g. one test image under every ImageNet-9 variant, or a row per class: a foreground, then
    the backgrounds that fool the model on it most (seed 004, 'adversarial backgrounds').

    `images[r][c]` is (H, W, 3 or 1) in [0, 1]; rows may differ in length (short rows end in
    blank cells) and images in size. `titles[r][c]` is short text (two lines at most fit, '' for
    none), e.g. the variant ('Only-BG-T') or 'fools 83%'; `row_labels[r]` (e.g. the class) is
    written left of row r. The figure is `IMAGE_PANEL` inches per cell of the longest row.
    """
    rows = [list(row) for row in images]
    _require(bool(rows), 'images is empty; give at least one row')
    shown = []
    for r, row in enumerate(rows):
        _require(bool(row), f'images[{r}] is empty; every row needs an image')
        shown.append([_image(image, f'images[{r}][{c}]') for c, image in enumerate(row)])
    if titles is not None:
        titles = [list(row) for row in titles]
        _require([len(t) for t in titles] == [len(row) for row in rows],
                 f'titles has row lengths {[len(t) for t in titles]}; images has '
                 f'{[len(row) for row in rows]}')
    _require(row_labels is None or len(row_labels) == len(rows),
             f'row_labels has {len(row_labels or [])} entries for {len(rows)} rows of images')

    cols = max(len(row) for row in rows)
    fig = _figure(cols * IMAGE_PANEL, len(rows) * IMAGE_PANEL)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (row, axes_row) in enumerate(zip(shown, axes)):
        for c, ax in enumerate(axes_row):
            if c >= len(row):
                ax.set_axis_off()
                continue
            ax.imshow(row[c], cmap='gray', vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if titles is not None and titles[r][c]:
                ax.set_title(titles[r][c], fontsize='medium')
        if row_labels is not None:
            axes_row[0].set_ylabel(row_labels[r], fontsize='large')
    return _saved(fig, path)


def bar_chart(values: Mapping[str, Mapping[str, np.ndarray]], ylabel: str = 'Accuracy',
              path: str | os.PathLike | None = None, chance: float | None = None) -> Figure:
    """Grouped bars: a group per outer key, a bar per inner key (seed 004's accuracy tables).

    `values[group][bar]` is (seeds,), or a scalar for one seed: e.g. `values['Mixed-Rand']
    ['ResNet-50']` is a model's accuracy on a test variant over seeds. A bar is the seed mean;
    with several seeds an error bar spans their min to max, as `severity_figure`'s bands do (few
    seeds make a standard deviation meaningless; the range shows all of them). A bar missing
    from a group leaves a gap there. `chance` draws a dashed line (1/9 for ImageNet-9). The
    figure is `BAR_MARGIN` plus `BAR_GROUP` per group wide; its legend below has as many columns
    as `LEGEND_COLUMN`s fit and is `LEGEND_ROW` taller per extra row.
    """
    _require(bool(values), 'values is empty; give at least one group')
    seeds = {}  # (group, bar) -> (seeds,)
    for group, bars in values.items():
        _require(bool(bars), f'values[{group!r}] is empty; give at least one bar')
        for bar, v in bars.items():
            v = np.asarray(v, np.float64)
            _require(v.ndim in (0, 1) and v.size > 0,
                     f'values[{group!r}][{bar!r}] has shape {v.shape}; needs (seeds,)')
            seeds[group, bar] = v.reshape(-1)
    groups = list(values)
    bars = list(dict.fromkeys(bar for _, bar in seeds))
    colours = dict(zip(bars, _colours(len(bars))))
    counts = sorted({len(v) for v in seeds.values()})
    most = counts[-1]

    width = BAR_MARGIN + len(groups) * BAR_GROUP
    entries = len(bars) + (chance is not None)
    ncols = _legend_columns(entries, width)
    fig = _figure(width, BAR_HEIGHT + _legend_height(entries, ncols, title=True))
    ax = fig.subplots()
    step = 0.8 / len(bars)  # of the unit between group centres
    for i, bar in enumerate(bars):
        x = np.array([g for g, group in enumerate(groups) if (group, bar) in seeds], np.float64)
        v = [seeds[group, bar] for group in groups if (group, bar) in seeds]
        mean = np.array([s.mean() for s in v])
        spread = np.array([[m - s.min(), s.max() - m] if len(s) > 1 else [np.nan, np.nan]
                           for m, s in zip(mean, v)]).T
        ax.bar(x - 0.4 + (i + 0.5) * step, mean, step, color=colours[bar], label=bar,
               yerr=spread if most > 1 else None, capsize=2, error_kw=dict(lw=0.8))
    if chance is not None:
        ax.axhline(chance, color='0.3', ls='--', lw=1, label=f'chance ({chance:.3g})')
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylabel(ylabel)
    ax.grid(axis='y', alpha=0.3)
    ax.set_axisbelow(True)
    handles, _ = ax.get_legend_handles_labels()  # the chance line first: put it last
    handles = handles[chance is not None:] + handles[:chance is not None]
    fig.legend(handles=handles, loc='outside lower center', ncols=ncols, frameon=False,
               title=f'bar: mean, error bar: min to max over {_count(counts)} seeds'
               if most > 1 else None)
    return _saved(fig, path)


def progress_figure(points: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    xlabel: str = 'Original accuracy', ylabel: str = 'Variant accuracy',
                    path: str | os.PathLike | None = None) -> Figure:
    """Benchmark progress: a line per variant through its models in order (seed 004).

    `points[variant]` is (x, y), each (M,) in [0, 1], for M models in order of quality (e.g.
    checkpoints over training): x their original accuracy, y their accuracy on the variant.
    The dashed diagonal y = x is where a variant costs nothing. The axes are `PROGRESS_PANEL`
    inches square, from 0 to 1; the legend below is laid out as `bar_chart`'s.
    """
    _require(bool(points), 'points is empty; give at least one variant')
    lines = {}
    for name, pair in points.items():
        _require(len(pair) == 2, f'points[{name!r}] must be an (x, y) pair')
        x, y = (np.asarray(v, np.float64) for v in pair)
        _require(x.ndim == 1 and len(x) > 0 and y.shape == x.shape,
                 f'points[{name!r}] has x of shape {x.shape} and y of shape {y.shape}; '
                 f'needs two equal (M,) shapes')
        _require(bool(np.all((x >= 0) & (x <= 1) & (y >= 0) & (y <= 1))),
                 f'points[{name!r}] has values outside [0, 1] (the axes run from 0 to 1)')
        lines[name] = x, y
    colours = _colours(len(lines))

    entries = len(lines) + 1
    ncols = _legend_columns(entries, PROGRESS_PANEL)
    fig = _figure(PROGRESS_PANEL, PROGRESS_PANEL + _legend_height(entries, ncols, title=False))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color='0.4', ls='--', lw=1, label='y = x')
    for (name, (x, y)), colour in zip(lines.items(), colours):
        ax.plot(x, y, marker='o', markersize=4, color=colour, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect('equal')
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.legend(loc='outside lower center', ncols=ncols, frameon=False)
    return _saved(fig, path)


def curves_figure(panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
                  xlabel: str | Mapping[str, str] = 'epoch', ylabel: str = 'value',
                  path: str | os.PathLike | None = None) -> Figure:
    """A panel per title, a line per name through its (x, y) points: metrics over training (seed 002),
    accuracy against a degradation's quality (seeds 001, 003).

    `panels[title][name]` is (x, y) of equal lengths, e.g. the mask IoU of phase 2 per epoch, or
    each phase-3 method's accuracy on the object alone. Panels share the y axis [0, 1]; `xlabel`
    is every panel's, or one per title where panels have different x (JPEG quality, blur sigma).
    """
    _require(bool(panels), 'panels is empty; give at least one panel')
    names = list(dict.fromkeys(name for lines in panels.values() for name in lines))
    _require(bool(names), 'every panel is empty; give at least one line')
    _require(isinstance(xlabel, str) or set(xlabel) >= set(panels),
             f'xlabel has no label for panels {sorted(set(panels) - set(xlabel or ()))}')
    colours = dict(zip(names, _colours(len(names))))
    width = len(panels) * SEVERITY_PANEL[0]
    ncols = _legend_columns(len(names), width)
    fig = _figure(width, SEVERITY_PANEL[1] + _legend_height(len(names), ncols, title=True))
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, letter, (title, lines) in zip(axes, string.ascii_lowercase, panels.items()):
        for name, (x, y) in lines.items():
            _require(len(x) == len(y) and len(x) > 0,
                     f'panels[{title!r}][{name!r}] has {len(x)} x and {len(y)} y values; needs equal, non-zero')
            ax.plot(x, y, marker='o', markersize=3, color=colours[name])
        ax.set_title(f'({letter}) {title}')
        ax.set_xlabel(xlabel if isinstance(xlabel, str) else xlabel[title])
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    handles = [Line2D([], [], color=colours[n], marker='o', label=n) for n in names]
    fig.legend(handles=handles, loc='outside lower center', ncols=ncols, frameon=False)
    return _saved(fig, path)


def matrix_figure(matrix: np.ndarray, row_labels: Sequence[str], column_labels: Sequence[str],
                  xlabel: str = 'predicted', ylabel: str = 'true', path: str | os.PathLike | None = None) -> Figure:
    """A matrix of counts as a heat map, each cell's count written in it: a confusion matrix (seed
    003's master over its quality bins). Rows are coloured by their share of the row's total, so a
    small class's mistakes show as clearly as a large one's."""
    counts = np.asarray(matrix)
    _require(counts.ndim == 2 and counts.shape == (len(row_labels), len(column_labels)),
             f'matrix has shape {counts.shape}; the labels need ({len(row_labels)}, {len(column_labels)})')
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = _figure(MATRIX_MARGIN + MATRIX_CELL * counts.shape[1], MATRIX_MARGIN + MATRIX_CELL * counts.shape[0])
    ax = fig.subplots()
    image = ax.imshow(shares, cmap='Blues', vmin=0, vmax=1)
    for (r, c), count in np.ndenumerate(counts):
        ax.text(c, r, f'{count:g}', ha='center', va='center', color='white' if shares[r, c] > 0.5 else 'black')
    ax.set_xticks(range(len(column_labels)), column_labels, rotation=30, ha='right')
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(image, ax=ax, label='share of the row')
    return _saved(fig, path)


def receptive_field_figure(fields: Mapping[str, int], block: int, path: str | os.PathLike | None = None) -> Figure:
    """Each model's receptive field (a square of `fields[name]` pixels) over a grid of `block`-pixel
    compression units, centred on one unit: how many units a first-layer feature sees (seed 003's
    Fig. 1c, JPEG's 8x8 blocks against AlexNet's and VGG-16's first pooling outputs)."""
    _require(bool(fields), 'fields is empty; give at least one model')
    _require(block > 0 and all(size > 0 for size in fields.values()),
             f'block ({block}) and every field size ({dict(fields)}) must be positive')
    extent = block * (2 * max(0, int(np.ceil((max(fields.values()) / block - 1) / 2))) + 1)  # odd, holds all
    fig = _figure(len(fields) * RF_PANEL, RF_PANEL + 0.4)
    for ax, (name, size) in zip(fig.subplots(1, len(fields), squeeze=False)[0], fields.items()):
        for line in range(0, extent + 1, block):
            ax.axhline(line, color='0.6', lw=0.8)
            ax.axvline(line, color='0.6', lw=0.8)
        centre = extent / 2
        ax.add_patch(matplotlib.patches.Rectangle((centre - block / 2,) * 2, block, block, color='0.85', zorder=0))
        ax.add_patch(matplotlib.patches.Rectangle((centre - size / 2,) * 2, size, size, fill=False, lw=2.5,
                                                  color='tab:red'))
        ax.set_xlim(0, extent)
        ax.set_ylim(0, extent)
        ax.set_aspect('equal')
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f'{name}: {size} px = {size / block:.2g} blocks')
    return _saved(fig, path)


def _image(image: np.ndarray, what: str) -> np.ndarray:
    """(H, W, 3) or (H, W) in [0, 1] for imshow, or a ValueError naming `what`."""
    image = np.asarray(image, np.float32)
    _require(image.ndim == 3 and image.shape[-1] in (1, 3) and image.size > 0,
             f'{what} must be (H, W, 3 or 1), got shape {image.shape}')
    low, high = float(image.min()), float(image.max())
    # Clipping a 0..255 image would show it white: refuse it (rounding slack allowed).
    _require(low >= -1e-3 and high <= 1 + 1e-3,
             f'{what} has values in [{low:.3g}, {high:.3g}]; needs [0, 1] '
             f'(divide uint8 images by 255)')
    image = np.clip(image, 0, 1)
    return image if image.shape[-1] == 3 else image[..., 0]


def _count(counts: Sequence[int]) -> str:
    """'3' or '1 to 3'."""
    return f'{counts[0]}' if len(counts) == 1 else f'{counts[0]} to {counts[-1]}'


def _legend_columns(entries: int, width: float) -> int:
    """Columns for `entries` in as few rows as `LEGEND_COLUMN`s in `width` inches allow, and the
    rows filled evenly (9 entries in 2 rows of 5 and 4, not of 8 and 1)."""
    rows = -(-entries // max(1, int(width // LEGEND_COLUMN)))
    return -(-entries // rows)


def _legend_height(entries: int, ncols: int, title: bool) -> float:
    """Inches for a legend of `entries` in `ncols` columns below the panels."""
    rows = -(-entries // ncols)
    return LEGEND_HEIGHT - (not title) * LEGEND_TITLE + LEGEND_ROW * (rows - 1)


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
