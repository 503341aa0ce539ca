"""Evaluation: scoring splits, and Grad-CAM on named features of any model.

(`scoring` needs the data pipeline, and so TensorFlow; import it from its module.)
"""

from ctxfuse_jax.evaluate.gradcam import gradcam
from ctxfuse_jax.evaluate.taps import apply_tapped
