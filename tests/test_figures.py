"""Report figures: PNGs of the documented pixel size that are not blank; bad shapes fail clearly."""

import matplotlib.image
from matplotlib.container import BarContainer
import numpy as np
import pytest

from matplotlib.patches import Rectangle

from ctxfuse_jax.report import (bar_chart, curves_figure, gradcam_figure, image_grid, matrix_figure, pca_figure,
                                progress_figure, receptive_field_figure, severity_figure)

RNG = np.random.default_rng(0)


def read_png(path) -> np.ndarray:
    assert path.stat().st_size > 0
    pixels = matplotlib.image.imread(path)
    assert pixels[..., :3].std() > 0.05  # something is drawn
    return pixels


def test_gradcam_figure(tmp_path):
    images = RNG.uniform(size=(2, 8, 8, 3))
    maps = {name: RNG.uniform(size=(2, 8, 8)) for name in ('FG', 'BG', 'Joint')}
    gradcam_figure(images, maps, ['dog', 'toilet'], path=tmp_path / 'cam.png')
    # An image column and three classifiers, 2-inch panels at 100 dpi.
    assert read_png(tmp_path / 'cam.png').shape[:2] == (400, 800)


def test_pca_figure(tmp_path):
    labels = np.repeat([0, 1, 2], 4)
    points = {name: (RNG.normal(size=(12, 2)), RNG.normal(size=(12, 2)) + 3) for name in ('FG', 'BG')}
    pca_figure(points, labels, {0: 'dog', 1: 'airplane', 2: 'toilet'}, {'FG': 2.5, 'BG': 0.3},
               path=tmp_path / 'pca.png')
    assert read_png(tmp_path / 'pca.png').shape[:2] == (480, 900)


@pytest.mark.parametrize('seeds', [(), (3,)])
def test_severity_figure(tmp_path, seeds):
    severities = [0, 2, 4, 8]
    accuracy = {row: {col: {m: RNG.uniform(size=(*seeds, 4)) for m in ('FG', 'BG', 'Joint')}
                      for col in ('All', 'Dissimilar')}
                for row in ('foreground blurred', 'whole image blurred')}
    severity_figure(severities, accuracy, path=tmp_path / 'sweep.png')
    assert read_png(tmp_path / 'sweep.png').shape[:2] == (680, 800)


VARIANTS = ['Original', 'Only-BG-B', 'Only-BG-T', 'No-FG', 'Only-FG', 'Mixed-Same', 'Mixed-Rand',
            'Mixed-Next']


def test_image_grid_variants(tmp_path):
    colours = RNG.uniform(size=(len(VARIANTS), 3))
    images = [[np.broadcast_to(colour, (16, 16, 3)) for colour in colours]]
    image_grid(images, [VARIANTS], ['dog'], path=tmp_path / 'variants.png')
    pixels = read_png(tmp_path / 'variants.png')
    # One row of 8 images, 2-inch cells at 100 dpi; each image covers the centre of its cell.
    assert pixels.shape[:2] == (200, 1600)
    np.testing.assert_allclose(pixels[100, 100::200, :3], colours, atol=1 / 255 + 1e-6)


def test_image_grid_pads_short_rows(tmp_path):
    # A foreground, then its most fooling backgrounds: 3 for one class, 1 for the other (grey).
    images = [[RNG.uniform(size=(16, 16, 3)) for _ in range(4)],
              [RNG.uniform(size=(12, 20, 1))] * 2]
    titles = [['foreground', 'fools 83%', 'fools 60%\nas bird', ''], ['foreground', 'fools 9%']]
    figure = image_grid(images, titles, ['dog', 'insect'], path=tmp_path / 'grid.png')
    # Two rows, as wide as the longest (4 cells); the 2 cells after the short row are blank.
    assert read_png(tmp_path / 'grid.png').shape[:2] == (400, 800)
    assert [ax.axison for ax in figure.axes] == [True] * 6 + [False] * 2


def test_bar_chart(tmp_path):
    models = ['MobileNet-v3', 'EfficientNet-b0', 'ResNet-50', 'WRN-50x2', 'DPN-92', 'AlexNet',
              'ShuffleNet', 'VGG16-BN']
    values = {v: {m: RNG.uniform(size=3) for m in models} for v in VARIANTS}
    bar_chart(values, chance=1 / 9, path=tmp_path / 'bars.png')
    # 1 inch for the y axis + 1.5 per group; 3.5-inch axes, a 0.8-inch legend: 8 bars and the
    # chance line in 13 // 1.6 = 8 columns take 2 rows, 0.2 inches more.
    assert read_png(tmp_path / 'bars.png').shape[:2] == (450, 1300)
    bar_chart({'Original': {'FG': [0.9], 'BG': [0.4]}, 'Mixed-Same': {'FG': 0.8, 'BG': 0.3},
               'Mixed-Rand': {'FG': 0.7}}, path=tmp_path / 'small.png')
    # 1 + 3 x 1.5 inches wide, 2 entries in one row of 5.5 // 1.6 = 3 columns.
    assert read_png(tmp_path / 'small.png').shape[:2] == (430, 550)


def test_bar_chart_draws_mean_and_range():
    figure = bar_chart({'Original': {'FG': [0.6, 0.9, 0.6], 'BG': [0.4]},
                        'Mixed-Rand': {'FG': [0.5, 0.8, 0.5]}}, chance=0.25)
    ax = figure.axes[0]
    fg, bg = [c for c in ax.containers if isinstance(c, BarContainer)]
    np.testing.assert_allclose([bar.get_height() for bar in fg], [0.7, 0.6])  # means, not medians
    np.testing.assert_allclose([bar.get_height() for bar in bg], [0.4])  # no Mixed-Rand: a gap
    ranges = [segment[:, 1] for segment in fg.errorbar.lines[2][0].get_segments()]
    np.testing.assert_allclose(ranges, [[0.6, 0.9], [0.5, 0.8]])
    # One seed: no range to show.
    assert all(np.size(segment) == 0 for segment in bg.errorbar.lines[2][0].get_segments())
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ['FG', 'BG', 'chance (0.25)']
    assert figure.legends[0].get_title().get_text().endswith('over 1 to 3 seeds')


def test_progress_figure(tmp_path):
    x = np.linspace(0.3, 0.95, 6)
    points = {v: (x, x * RNG.uniform(0.2, 1)) for v in VARIANTS[1:]}
    figure = progress_figure(points, path=tmp_path / 'progress.png')
    # 4.5-inch square axes; 7 variants and y = x in 2 columns take 4 legend rows:
    # 0.8 - 0.25 (no legend title) + 3 x 0.2 inches.
    assert read_png(tmp_path / 'progress.png').shape[:2] == (565, 450)
    ax = figure.axes[0]
    assert ax.get_xlim() == ax.get_ylim() == (0, 1)
    diagonal, first, *_ = ax.get_lines()
    assert diagonal.get_linestyle() == '--'
    np.testing.assert_allclose(first.get_xydata(), np.stack(points['Only-BG-B'], 1))  # in order


def test_curves_figure_labels_each_panels_x(tmp_path):
    figure = curves_figure({'JPEG': {'VGG-16': ([90, 10], [0.8, 0.3])}, 'noise': {'VGG-16': ([0.1, 0.5], [0.7, 0.2])}},
                           xlabel={'JPEG': 'quality', 'noise': 'std'}, path=tmp_path / 'curves.png')
    assert [ax.get_xlabel() for ax in figure.axes] == ['quality', 'std']
    np.testing.assert_allclose(figure.axes[1].get_lines()[0].get_xydata(), [[0.1, 0.7], [0.5, 0.2]])
    assert read_png(tmp_path / 'curves.png').shape[:2] == (380, 800)  # 2 panels of 4 x 3 in, legend 0.8 in


def test_matrix_figure_writes_each_count_and_colours_by_row_share(tmp_path):
    counts = np.array([[8, 2, 0], [1, 1, 0], [0, 0, 5]])
    figure = matrix_figure(counts, ['clean', 'jpeg', 'jp2'], ['clean', 'jpeg', 'jp2'], path=tmp_path / 'm.png')
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.texts] == ['8', '2', '0', '1', '1', '0', '0', '0', '5']
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.8, 0.2, 0], [0.5, 0.5, 0], [0, 0, 1]])
    assert read_png(tmp_path / 'm.png').shape[:2] == (450, 450)  # 1.8 + 3 x 0.9 inches each way


def test_receptive_field_figure_draws_each_field_over_the_blocks(tmp_path):
    figure = receptive_field_figure({'AlexNet': 19, 'VGG-16': 6}, 8, path=tmp_path / 'rf.png')
    for ax, size in zip(figure.axes, (19, 6)):
        block, field = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert (block.get_width(), field.get_width()) == (8, size)
        assert ax.get_xlim() == (0, 24)  # three blocks: enough for a 19-px field centred on one
        assert field.get_x() + size / 2 == 12
    assert [ax.get_title() for ax in figure.axes] == ['AlexNet: 19 px = 2.4 blocks', 'VGG-16: 6 px = 0.75 blocks']
    assert read_png(tmp_path / 'rf.png').shape[:2] == (340, 600)


def test_figures_return_without_writing():
    figure = severity_figure([1, 2], {'blur': {'All': {'FG': [0.5, 0.4]}}})
    assert len(figure.axes) == 1


@pytest.mark.parametrize('draw, message', [
    (lambda: gradcam_figure(np.zeros((2, 8, 8)), {'FG': np.zeros((2, 8, 8))}),
     r'images must be \(N, H, W, 3 or 1\), got shape \(2, 8, 8\)'),
    (lambda: gradcam_figure(np.zeros((2, 8, 8, 3)), {'FG': np.zeros((2, 4, 4))}),
     r"heatmaps\['FG'\] has shape \(2, 4, 4\); images need \(2, 8, 8\)"),
    (lambda: gradcam_figure(np.zeros((2, 8, 8, 3)), {'FG': np.zeros((2, 8, 8))}, ['dog']),
     'row_labels has 1 entries for 2 images'),
    (lambda: pca_figure({'FG': (np.zeros((3, 2)), np.zeros((3, 3)))}, np.zeros(3)),
     r"points\['FG'\] blurred has shape \(3, 3\); needs \(3, 2\)"),
    (lambda: pca_figure({'FG': np.zeros((3, 2))}, np.zeros(3)),
     r"points\['FG'\] must be a \(sharp, blurred\) pair"),
    (lambda: severity_figure([1, 2, 3], {'blur': {'All': {'FG': np.zeros((2, 4))}}}),
     r"accuracy\['blur'\]\['All'\]\['FG'\] has shape \(2, 4\); needs \(3,\) or \(seeds, 3\)"),
    (lambda: severity_figure([1], {'a': {'All': {'FG': [1]}}, 'b': {'Dissimilar': {'FG': [1]}}}),
     r"accuracy\['b'\] has columns \['Dissimilar'\]; the first row has \['All'\]"),
    (lambda: image_grid([]), 'images is empty; give at least one row'),
    (lambda: image_grid([[np.zeros((8, 8, 3))], []]),
     r'images\[1\] is empty; every row needs an image'),
    (lambda: image_grid([[np.zeros((8, 8, 3)), np.zeros((8, 8))]]),
     r'images\[0\]\[1\] must be \(H, W, 3 or 1\), got shape \(8, 8\)'),
    (lambda: image_grid([[np.full((8, 8, 3), 255, np.uint8)]]),
     r'images\[0\]\[0\] has values in \[255, 255\]; needs \[0, 1\] \(divide uint8 images by 255\)'),
    (lambda: image_grid([[np.zeros((8, 8, 3))] * 2], [['Original']]),
     r'titles has row lengths \[1\]; images has \[2\]'),
    (lambda: image_grid([[np.zeros((8, 8, 3))]], row_labels=['dog', 'bird']),
     'row_labels has 2 entries for 1 rows of images'),
    (lambda: bar_chart({}), 'values is empty; give at least one group'),
    (lambda: bar_chart({'Original': {}}), r"values\['Original'\] is empty; give at least one bar"),
    (lambda: bar_chart({'Original': {'FG': np.zeros((2, 3))}}),
     r"values\['Original'\]\['FG'\] has shape \(2, 3\); needs \(seeds,\)"),
    (lambda: progress_figure({}), 'points is empty; give at least one variant'),
    (lambda: curves_figure({'JPEG': {'a': ([1], [0.5])}}, xlabel={'noise': 'std'}),
     r"xlabel has no label for panels \['JPEG'\]"),
    (lambda: matrix_figure(np.zeros((2, 3)), ['a', 'b'], ['a', 'b']),
     r'matrix has shape \(2, 3\); the labels need \(2, 2\)'),
    (lambda: receptive_field_figure({'AlexNet': 0}, 8), 'must be positive'),
    (lambda: progress_figure({'Mixed-Rand': np.zeros(3)}),
     r"points\['Mixed-Rand'\] must be an \(x, y\) pair"),
    (lambda: progress_figure({'Mixed-Rand': (np.zeros(3), np.zeros(2))}),
     r"points\['Mixed-Rand'\] has x of shape \(3,\) and y of shape \(2,\); needs two equal \(M,\)"),
    (lambda: progress_figure({'Mixed-Rand': ([50, 90], [40, 70])}),
     r"points\['Mixed-Rand'\] has values outside \[0, 1\] \(the axes run from 0 to 1\)"),
])
def test_figures_reject_bad_shapes(draw, message):
    with pytest.raises(ValueError, match=message):
        draw()
