"""Reports: figures (and tables) drawn from plain arrays of saved results."""

from ctxfuse_jax.report.figures import (bar_chart, curves_figure, gradcam_figure, image_grid, matrix_figure,
                                        pca_figure, progress_figure, receptive_field_figure, severity_figure)
