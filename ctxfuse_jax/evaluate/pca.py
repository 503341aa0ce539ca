"""PCA of stream features on sharp vs. blurred images, and a number for what Figure 4 shows.

Seed 000 (section 3.2) blurs the object, takes batch-norm features of the FG and BG streams and
finds in a 2-D PCA that the FG cloud moves as a whole while BG stays inside its sharp cloud.

Choices, and why:
- Features are per-channel spatial means of one BN output (for ResNet18 cut at `layer3`, the
  last one it keeps is 'layer3_1/bn2'). Pooling makes them independent of where the object sits
  and keeps C dimensions instead of C*h*w; the claim concerns the features' statistics, not
  their layout.
- The 2-D PCA is fitted on sharp and blurred features together. Axes fitted on sharp images
  alone would project away any shift orthogonal to the sharp variance and hide it; fitted on
  both, a shift becomes a leading axis exactly when it is large next to the class structure.
- The figure is only an illustration: `blur_shift` measures the shift in the full feature space
  (any rotation, PCA included, leaves it unchanged), relative to the sharp within-class spread,
  so FG and BG, whose features have different scales, are compared in the same units.
"""

from collections.abc import Mapping
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ctxfuse_jax.evaluate.taps import apply_tapped


@functools.partial(jax.jit, static_argnums=(0, 3))
def _pooled(module: nn.Module, variables: Mapping[str, Any], batch: jax.Array, name: str) -> jax.Array:
    """Module level, so repeated calls (sharp and blurred images, two streams) share one compilation."""
    _, feature = apply_tapped(module, variables, name, batch)
    if feature.ndim != 4:
        raise ValueError(f'feature {name!r} has shape {feature.shape}; pooling needs a feature map (B, h, w, C)')
    return jnp.mean(feature.astype(jnp.float32), axis=(1, 2))


def pooled_features(module: nn.Module, variables: Mapping[str, Any], images: np.ndarray,
                    name: str, *, batch_size: int = 64) -> np.ndarray:
    """(N, C) spatial means of feature `name` of `module` (in inference mode) over `images`.

    Images go through one jitted function in batches of `batch_size`, the last padded so that
    it compiles once.
    """
    images = np.asarray(images)
    if images.ndim != 4 or not len(images):
        raise ValueError(f'images must be a non-empty (N, H, W, channels) array, got {images.shape}')
    size = min(batch_size, len(images))
    chunks = []
    for start in range(0, len(images), size):
        batch = images[start:start + size]
        padding = np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)
        chunks.append(np.asarray(_pooled(module, variables, np.concatenate([batch, padding]), name))[:len(batch)])
    return np.concatenate(chunks)


@dataclasses.dataclass(frozen=True)
class PCA:
    """A fitted PCA: `components` (k, D) are orthonormal rows, largest variance first."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray

    def project(self, x: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N, k) coordinates."""
        x = _matrix(x, 'features')
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(f'PCA was fitted on {self.mean.shape[0]} dimensions, got {x.shape[1]}')
        return (x - self.mean) @ self.components.T


def fit_pca(x: np.ndarray, n_components: int = 2) -> PCA:
    """PCA by SVD of the centred data; each component's largest loading is made positive."""
    x = _matrix(x, 'features')
    if not 1 <= n_components <= min(x.shape):
        raise ValueError(f'n_components must be in [1, {min(x.shape)}] for data of shape '
                         f'{x.shape}, got {n_components}')
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = vt[:n_components]
    signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(axis=1)])
    variance = singular[:n_components] ** 2 / max(len(x) - 1, 1)
    return PCA(mean, components * signs[:, None], variance)


def blur_pca(sharp: np.ndarray, blurred: np.ndarray,
             n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Sharp and blurred features projected by one PCA fitted on both (see the module notes)."""
    sharp, blurred = _check_paired(sharp, blurred)
    pca = fit_pca(np.concatenate([sharp, blurred]), n_components)
    return pca.project(sharp), pca.project(blurred)


@dataclasses.dataclass(frozen=True)
class BlurShift:
    """Per class: |blurred centroid - sharp centroid| / RMS distance of sharp points to theirs.

    Below ~1 the blurred images stay within their class's sharp cloud; well above 1 the whole
    cloud has moved. `mean` averages the classes, one number per stream for a report.
    """

    classes: np.ndarray
    ratio: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.ratio.mean())


def blur_shift(sharp: np.ndarray, blurred: np.ndarray, labels: np.ndarray) -> BlurShift:
    """How far blur moves each class's features, in units of that class's sharp spread.

    `blurred[i]` is `sharp[i]`'s image blurred; both (N, D), with `labels` (N,).
    """
    sharp, blurred = _check_paired(sharp, blurred)
    labels = np.asarray(labels)
    if labels.shape != (len(sharp),):
        raise ValueError(f'labels must have shape ({len(sharp)},), got {labels.shape}')
    classes = np.unique(labels)
    ratios = []
    for c in classes:
        s, b = sharp[labels == c], blurred[labels == c]
        centre = s.mean(axis=0)
        spread = np.sqrt(np.mean(np.sum((s - centre) ** 2, axis=1)))
        if len(s) < 2 or spread == 0:
            raise ValueError(f'class {c} needs at least two distinct sharp examples to have a spread')
        ratios.append(np.linalg.norm(b.mean(axis=0) - centre) / spread)
    return BlurShift(classes, np.array(ratios))


def _matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or not x.size:
        raise ValueError(f'{what} must be a non-empty (N, D) array, got shape {x.shape}')
    return x


def _check_paired(sharp: np.ndarray, blurred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sharp, blurred = _matrix(sharp, 'sharp features'), _matrix(blurred, 'blurred features')
    if sharp.shape != blurred.shape:
        raise ValueError(f'sharp {sharp.shape} and blurred {blurred.shape} features must pair up '
                         '(the same images, sharp and blurred)')
    return sharp, blurred
