"""ctxfuse_jax: train and stress-test image classifiers against blur, degradations and background shifts.

Data flows top to bottom: config -> data -> degrade -> model -> train -> evaluate -> report.
Images everywhere are float32 NHWC in [0, 1]; models normalise them internally.
"""

__version__ = "0.1.0"
