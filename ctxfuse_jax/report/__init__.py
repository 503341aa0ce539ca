"""Reports: figures (and tables) drawn from plain arrays of saved results."""

from ctxfuse_jax.report.figures import gradcam_figure, pca_figure, severity_figure
