"""The attention baseline of seed 002: a global CNN says where to look, a local CNN looks there.

Following Guan et al. 2018 ("Diagnose like a radiologist") as the authors of "Training a CNN to be
Background Invariant" ported it (rpmcruz/background-invariance, src/train_att.py):
1. a trained global CNN G gives a heat map, max |activation| over channels of its last pool block;
2. `heatmap_box`: the heat map, min-max normalised per image and thresholded at tau, keeps its
   largest connected component, whose bounding box says where to look;
3. `crop_resize`: each image cropped to its box;
4. `AttentionHead`: a local CNN on the crop, fused with G's frozen pooled features.

The authors do steps 2-3 on the host, one image at a time, and feed crops of whatever size they come
out; here everything is batched with fixed shapes, so it runs inside a jitted step on device. Where
that changes what the model sees, the function that does it says how.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from ctxfuse_jax.degrade.regions import pixel_bounds
from ctxfuse_jax.models.layers import ModuleDef, scaled_channels
from ctxfuse_jax.ops.conv import conv_module

Array = jax.Array

# Keras's default initialisation of Conv2D and Dense kernels (biases start at zero in both).
KERAS_INIT = nn.initializers.glorot_uniform()
LOCAL_CHANNELS = (128, 256, 512)
DENSE_FEATURES = (2048, 256)


@functools.partial(jax.jit, static_argnames=("connectivity", "image_hw"))
def heatmap_box(features: Array, tau: float = 0.7, connectivity: int = 2,
                image_hw: tuple[int, int] | None = None) -> Array:
    """(N, 4) boxes [ymin, xmin, ymax, xmax] in [0, 1]: where G's features (N, h, w, C) say to look.

    The box bounds the largest connected component of `(heat - min) / (max - min) >= tau`, heat being
    max |feature| over channels. `connectivity` is skimage's: 1 joins the 4 orthogonal neighbours, 2 (the
    default of the authors' `skimage.measure.label(m)`) the 8 neighbours. Of equal-sized components the
    one reached first in raster order wins, as the authors' argmax over skimage's labels picks it.

    With `image_hw=None` the box is the component's cells, [r1/h, c1/w, r2/h, c2/w] (r2, c2 exclusive).
    Given the image's (H, W) it is the authors' pixel box instead, rows [H*r1//h, H*r2//h + 1) and
    columns likewise, clipped to the image: one row and column more than the cells (their regionprops
    end is already exclusive; they add one), in pixels (see degrade.regions.pixel_bounds).

    The threshold is taken as heat - min >= tau * (max - min): XLA turns the division by a broadcast
    into a product with its reciprocal, which can put the maximum itself below tau = 1. The two differ
    from the authors' float32 quotient only for a cell within an ulp of the threshold.

    A flat heat map (max == min: nothing stands out), or no cell over tau (tau > 1), gives the whole
    image [0, 0, 1, 1]. The authors drop such images from training and from their scores; a fixed-shape
    batch cannot drop them, and the whole image is what a local CNN sees when nothing is singled out.
    The boxes carry no gradient to the features: they come from comparisons and indices.
    """
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity {connectivity} is not skimage's 1 (4 neighbours) or 2 (8 neighbours)")
    heat = jnp.max(jnp.abs(features.astype(jnp.float32)), axis=-1)
    n, h, w = heat.shape
    low, high = jnp.min(heat, axis=(1, 2), keepdims=True), jnp.max(heat, axis=(1, 2), keepdims=True)
    # A flat map is all on (0 >= tau * 0): one component, the whole map.
    on = heat - low >= tau * (high - low)
    labels = _components(on, connectivity).reshape(n, h * w)
    sizes = jax.vmap(lambda l: jax.ops.segment_sum(jnp.ones_like(l), l, num_segments=h * w + 1))(labels)
    # argmax takes the first of equal sizes, i.e. the smallest label. Label 0 (off) counts as empty, so it
    # wins only when nothing is on, and then it is every cell: the whole map.
    largest = (labels == jnp.argmax(sizes.at[:, 0].set(0), axis=1)[:, None]).reshape(n, h, w)
    r1, r2 = _extent(jnp.any(largest, axis=2), h)
    c1, c2 = _extent(jnp.any(largest, axis=1), w)
    if image_hw is None:
        box = [_fractions(h)[r1], _fractions(w)[c1], _fractions(h)[r2], _fractions(w)[c2]]
    else:
        height, width = image_hw
        box = [_fractions(height)[height * r1 // h], _fractions(width)[width * c1 // w],
               _fractions(height)[jnp.minimum(height * r2 // h + 1, height)],
               _fractions(width)[jnp.minimum(width * c2 // w + 1, width)]]
    return jnp.stack(box, axis=1)


def _fractions(count: int) -> Array:
    """i / count for i in 0..count, correctly rounded (XLA would multiply by 1 / count instead)."""
    return jnp.asarray(np.arange(count + 1) / count, jnp.float32)


def _components(on: Array, connectivity: int) -> Array:
    """int32 (N, h, w) connected-component labels of `on`: each component's smallest flat index + 1, 0 off.

    Label propagation: every on cell starts with its own label and takes the smallest label in its
    neighbourhood, h*w - 1 times, the longest path a component can have (maps here are ~16x16 or
    smaller). A fixed count, not a test for convergence: a GPU then never reads a loop predicate back.
    Smallest-first labels order components by their first cell in raster order, as skimage numbers them.
    """
    _, h, w = on.shape
    off = h * w + 1  # Larger than every label, so it never wins a minimum.
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if abs(dy) + abs(dx) <= connectivity]

    def spread(_: int, labels: Array) -> Array:
        padded = jnp.pad(labels, ((0, 0), (1, 1), (1, 1)), constant_values=off)
        nearest = functools.reduce(jnp.minimum, [padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                                                 for dy, dx in shifts])
        return jnp.where(on, nearest, off)

    start = jnp.where(on, jnp.arange(1, h * w + 1, dtype=jnp.int32).reshape(h, w), off)
    return jnp.where(on, lax.fori_loop(0, h * w - 1, spread, start), 0)


def _extent(occupied: Array, length: int) -> tuple[Array, Array]:
    """First and one-past-last index of True along axis 1 of (N, length) `occupied`."""
    index = jnp.arange(length)
    return (jnp.min(jnp.where(occupied, index, length), axis=1),
            jnp.max(jnp.where(occupied, index + 1, 0), axis=1))


@functools.partial(jax.jit, static_argnames=("size",))
def crop_resize(images: Array, boxes: Array, size: int) -> Array:
    """float32 (N, size, size, C): each image (N, H, W, C) cropped to its box (N, 4), resized bilinearly.

    The crop is the box's pixels (degrade.regions.pixel_bounds; at least one pixel), resized as torch's
    `interpolate(crop, size, mode='bilinear', align_corners=False)` would: pixel centres, edges clamped
    to the crop, so no pixel outside the box leaks in; no antialiasing, so choose `size` at least the
    usual crop (upsampling). The authors feed each crop at its own size instead, one image per step,
    which their global-average-pooled local CNN allows; a fixed size is what a jitted batch needs.
    """
    _, height, width, _ = images.shape
    y0, x0, y1, x1 = jnp.moveaxis(pixel_bounds(boxes, height, width), 1, 0)
    # Separable, two taps per output pixel gathered (3x faster on CPU than resampling matrices).
    rows = _lerp(images.astype(jnp.float32), *_bilinear_taps(y0, y1, height, size), axis=1)
    return _lerp(rows, *_bilinear_taps(x0, x1, width, size), axis=2)


def _bilinear_taps(start: Array, stop: Array, length: int, size: int) -> tuple[Array, Array, Array]:
    """(N, size) lower and upper source pixels and the upper one's weight, resampling pixels
    [start, stop) of an axis of `length` to `size` pixels."""
    start = jnp.clip(start, 0, length - 1)
    extent = (jnp.clip(stop, start + 1, length) - start).astype(jnp.float32)[:, None]
    # Output pixel i's centre in crop coordinates (align_corners=False), clamped to the crop's pixels.
    source = jnp.clip((jnp.arange(size, dtype=jnp.float32) + 0.5) * extent / size - 0.5, 0.0, extent - 1)
    position = start[:, None] + source
    lower = jnp.floor(position)
    return lower.astype(jnp.int32), jnp.minimum(lower.astype(jnp.int32) + 1, length - 1), position - lower


def _lerp(images: Array, lower: Array, upper: Array, weight: Array, axis: int) -> Array:
    """Each image's pixels at (N, size) positions along `axis` (1: rows, 2: columns), linearly interpolated."""
    shape = (-1, 1, weight.shape[1], 1) if axis == 2 else (-1, weight.shape[1], 1, 1)
    a = jnp.take_along_axis(images, lower.reshape(shape), axis=axis)
    b = jnp.take_along_axis(images, upper.reshape(shape), axis=axis)
    return a + (b - a) * weight.reshape(shape)


class AttentionHead(nn.Module):
    """The trainable part: the local CNN on crops, fused with G's pooled features, three dense layers.

    As the authors' Keras model: three 3x3 stride-2 'same' convs (128, 256, 512 channels, ReLU) on the
    crop as given (their crops are [0, 1] pixels, unnormalised), global average pool, concatenated with
    the global average pool of G's last pool output, then Dense 2048, Dense 256, Dense num_classes, with
    Keras's Glorot-uniform kernels and zero biases. Their dense layers have no activation between them,
    so the three compose to one linear map of the pooled features, intended or not; kept as written,
    since this is their baseline. Channels and dense features are scaled by `width` for tiny CPU runs.
    The caller holds G frozen: pass its features through `jax.lax.stop_gradient`. `train` is unused
    (no BN or dropout) but keeps the heads' call signature.
    """

    num_classes: int
    width: float = 1.0
    conv: ModuleDef = conv_module("auto")

    @nn.compact
    def __call__(self, crops: Array, global_features: Array, train: bool = False) -> Array:
        x = crops.astype(jnp.float32)
        for i, base in enumerate(LOCAL_CHANNELS):
            # lax's 'SAME' is Keras's: an odd total padding puts the extra row and column at the end.
            x = nn.relu(self.conv(self.channels(base), (3, 3), strides=2, padding="SAME", kernel_init=KERAS_INIT,
                                  name=f"local_conv{i + 1}")(x))
        x = jnp.concatenate([jnp.mean(x, axis=(1, 2)),
                             jnp.mean(global_features.astype(jnp.float32), axis=(1, 2))], axis=-1)
        for i, base in enumerate(DENSE_FEATURES):
            x = nn.Dense(self.channels(base), kernel_init=KERAS_INIT, name=f"dense{i + 1}")(x)
        return nn.Dense(self.num_classes, kernel_init=KERAS_INIT, name="logits")(x)

    def channels(self, base: int) -> int:
        """`base` channels or features scaled by `width` (`layers.scaled_channels`)."""
        return scaled_channels(self, base)
