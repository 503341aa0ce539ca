"""Evaluation: scoring splits, Grad-CAM and feature PCA on named features of any model.

(`scoring` needs the data pipeline, and so TensorFlow; import it from its module.)
"""

from ctxfuse_jax.evaluate.gradcam import gradcam
from ctxfuse_jax.evaluate.pca import PCA, BlurShift, blur_pca, blur_shift, fit_pca, pooled_features
from ctxfuse_jax.evaluate.taps import apply_tapped
