"""The fusion paper's looks inside the models: Grad-CAM maps (Figure 2), PCA of BN features (Figure 4)."""

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ctxfuse_jax import degrade
from ctxfuse_jax.data import test_sets
from ctxfuse_jax.data.pipeline import ArraySplit, to_unit_float
from ctxfuse_jax.data.sources import Labelled
from ctxfuse_jax.evaluate import apply_tapped, blur_pca, blur_shift, gradcam, pooled_features
from ctxfuse_jax.experiments.fusion.networks import CONV_HEADS, STREAMS_OF
from ctxfuse_jax.report import gradcam_figure, pca_figure

Variables = Mapping[str, dict]


def _one_per_class(labels: np.ndarray, classes: np.ndarray, count: int) -> np.ndarray:
    """Indices of the first example of each of `classes`, up to `count` of them."""
    return np.array([np.flatnonzero(labels == c)[0] for c in classes if np.any(labels == c)][:count], int)


def gradcam_maps(config: ml_collections.ConfigDict, stream, heads: Mapping[str, object], streams: Variables,
                 head_vars: Variables, images: jax.Array, labels: jax.Array) -> dict[str, np.ndarray]:
    """Grad-CAM of the true class on each classifier's last conv layer, as in the paper (the two conv
    heads, Joint and FG-conv, at `analysis.joint_cam_layer`)."""
    cut = config.streams.cut

    def probe_logits(role, model):
        def logits_fn(x, delta):
            features, cam_layer = apply_tapped(stream, streams[role], cut, x, delta=delta)
            return heads[model].apply(head_vars[model], features), cam_layer
        return logits_fn

    def conv_head_logits(model):
        def logits_fn(x, delta):
            features = [stream.apply(streams[role], x) for role in STREAMS_OF[model]]
            return apply_tapped(heads[model], head_vars[model], config.analysis.joint_cam_layer, *features,
                                delta=delta)
        return logits_fn

    fns = {"FG": probe_logits("fg", "FG"), "BG": probe_logits("bg", "BG"),
           **{model: conv_head_logits(model) for model in CONV_HEADS}}
    return {model: np.asarray(jax.jit(gradcam, static_argnums=0)(fn, images, labels)) for model, fn in fns.items()}


def write_gradcam_figure(config, data: Labelled, stream, heads, streams, head_vars, path: str) -> None:
    test = data.test.arrays
    chosen = _one_per_class(test["label"], test_sets.dissimilar_classes(test["label"], data.class_supercategory),
                            config.analysis.gradcam_images)
    images = to_unit_float(jnp.asarray(test["image"][chosen]))
    maps = gradcam_maps(config, stream, heads, streams, head_vars, images, jnp.asarray(test["label"][chosen]))
    gradcam_figure(np.asarray(images), maps, [data.class_names[c] for c in test["label"][chosen]], path=path)


def blurred_copies(config, split: ArraySplit, sigma_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Sharp and foreground-blurred float images of a split (the paper blurs the object only)."""
    sharp = to_unit_float(jnp.asarray(split.arrays["image"]))
    blurred = degrade.composite(sharp, degrade.gaussian_blur(sharp, sigma_px), split.arrays["mask"], "foreground")
    return np.asarray(sharp), np.asarray(blurred)


def pca_analysis(config, data: Labelled, stream, streams: Variables, sigma_px: float,
                 path: str) -> dict[str, dict[str, float]]:
    """PCA figure of BN features, sharp vs blurred, per class; returns the blur-shift per stream."""
    labels = data.test.arrays["label"]
    classes = test_sets.dissimilar_classes(labels, data.class_supercategory)[: config.analysis.pca_classes]
    keep = np.flatnonzero(np.isin(labels, classes))
    keep = np.concatenate([keep[labels[keep] == c][: config.analysis.pca_images_per_class] for c in classes])
    sharp, blurred = blurred_copies(config, data.test.subset(keep), sigma_px)
    feature = config.analysis.pca_feature
    points, shifts = {}, {}
    for role, name in (("fg", "FG"), ("bg", "BG")):
        a = pooled_features(stream, streams[role], sharp, feature)
        b = pooled_features(stream, streams[role], blurred, feature)
        points[name] = blur_pca(a, b)
        shift = blur_shift(a, b, labels[keep])
        shifts[name] = {"mean": float(shift.mean),
                        **{data.class_names[c]: float(r) for c, r in zip(shift.classes, shift.ratio)}}
    pca_figure(points, labels[keep], dict(enumerate(data.class_names)), {k: v["mean"] for k, v in shifts.items()},
               path=path)
    return shifts
