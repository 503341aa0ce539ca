"""Report figures: PNGs of the documented pixel size that are not blank; bad shapes fail clearly."""

import matplotlib.image
import numpy as np
import pytest

from ctxfuse_jax.report import gradcam_figure, pca_figure, severity_figure

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
])
def test_figures_reject_bad_shapes(draw, message):
    with pytest.raises(ValueError, match=message):
        draw()
