"""Grad-CAM (Selvaraju et al., 2017) on a named feature of any classifier, composite or not.

Seed 000 (section 3.1, Figure 2) asks where the FG, BG and Joint classifiers look: FG and BG at
the last conv layer their streams keep (`layer3`), Joint at the last layer of its fusion head
(`fuse_relu2`). The three differ only in how images become logits, so Grad-CAM takes that as a
function of a perturbation of the chosen feature, built with `apply_tapped`:

    def fg_logits(images, delta):
        features, cam_layer = apply_tapped(stream, fg_vars, 'layer3', images, delta=delta)
        return probe.apply(probe_vars, features), cam_layer

    def joint_logits(images, delta):
        fg, bg = stream.apply(fg_vars, images), stream.apply(bg_vars, images)
        return apply_tapped(head, head_vars, 'fuse_relu2', fg, bg, delta=delta)

    heatmaps = jax.jit(gradcam, static_argnums=0)(joint_logits, images, labels)
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
# (images, delta or None) -> (logits (B, classes), feature (B, h, w, C)); delta is added to the
# feature, so d logits / d delta at delta = 0 is d logits / d feature.
LogitsFn = Callable[[Array, Array | None], tuple[Array, Array]]


def gradcam(logits_fn: LogitsFn, images: Array, target_classes: Array | None = None) -> Array:
    """Grad-CAM heatmaps (B, H, W) in [0, 1] at the images' size, one per image.

    The score of image b is its pre-softmax logit of `target_classes[b]` (default: the predicted
    class). Channel weights are the spatial means of the score's gradient w.r.t. the feature;
    the map is ReLU of the weighted channel sum, bilinearly resized to the image (torch's
    `interpolate(align_corners=False)`) and divided by its maximum, so 1 marks each image's
    strongest evidence and an image with none is all zeros. Jit with `static_argnums=0`.
    """
    if images.ndim != 4:
        raise ValueError(f'images must be (B, H, W, channels), got shape {images.shape}')
    batch, height, width = images.shape[:3]
    logits_spec, feature_spec = jax.eval_shape(logits_fn, images, None)
    logits_shape, feature_shape = logits_spec.shape, feature_spec.shape
    if len(feature_shape) != 4 or feature_shape[0] != batch:
        raise ValueError(f'Grad-CAM needs a feature map (B={batch}, h, w, C); logits_fn returned '
                         f'a feature of shape {feature_shape}')
    if len(logits_shape) != 2 or logits_shape[0] != batch:
        raise ValueError(f'logits_fn must return logits (B={batch}, classes), got {logits_shape}')
    if target_classes is not None and jnp.shape(target_classes) != (batch,):
        raise ValueError(f'target_classes must have shape ({batch},), got '
                         f'{jnp.shape(target_classes)}')

    def score(delta: Array) -> tuple[Array, Array]:
        logits, feature = logits_fn(images, delta)
        classes = (jnp.argmax(logits, axis=-1) if target_classes is None
                   else jnp.asarray(target_classes))
        chosen = jnp.take_along_axis(logits, classes[:, None], axis=-1)
        # Images are independent (inference mode), so the sum's gradient is per image.
        return jnp.sum(chosen.astype(jnp.float32)), feature

    grads, feature = jax.grad(score, has_aux=True)(jnp.zeros(feature_shape, feature_spec.dtype))
    weights = jnp.mean(grads.astype(jnp.float32), axis=(1, 2))
    cam = jax.nn.relu(jnp.einsum('bhwc,bc->bhw', feature.astype(jnp.float32), weights,
                                 precision=jax.lax.Precision.HIGHEST))
    cam = jax.image.resize(cam, (batch, height, width), 'bilinear')
    peak = jnp.max(cam, axis=(1, 2), keepdims=True)
    return cam / jnp.maximum(peak, jnp.finfo(cam.dtype).tiny)
