"""Seed 002's adversarial background generator: noise -> a tiles x tiles grid of patches in [0, 1].

Cruz & Cardoso train a generator to make the backgrounds that fool their classifier most. As in
their code (`gen`, `adv_back`), one patch network makes every tile of a background, each tile from
its own noise, so a background is tiles x tiles independent patches; z is (B, tiles**2, noise_dim)
with tile (r, c) at z[:, r * tiles + c] (row-major, as `adv_back` concatenates them).

The patch network follows the authors' sizes: for a patch side p = size // tiles, a seed map of
side max(p / 2**k, 4), k the number of trailing zero bits of p (p = 14: 7; p = 32: 4), with
`channels` channels, so noise_dim = seed * seed * channels; n = log2(p / seed) doublings. A 3x3
conv with 2**(n+5) channels, then n doublings to 2**(n-1-i+5) channels, LeakyReLU(0.2) after each,
then a 1x1 conv to `channels` and a sigmoid. The authors double with nearest upsampling and a
3x3 conv; here each doubling is a stride-2 4x4 transposed conv ('SAME': exactly 2x, padding 1 in
torch's terms), so the seed map reaches p exactly. It is written as the convolution it is (zeros
between the input's pixels, padding 2, the kernel as it is), which is `nn.ConvTranspose`'s result
and kernel layout, so that `conv` computes it: with XLA:CPU's own transposed convs the generator's
gradient took 1.3-3.3x as long (64 px, 32 backgrounds of 4 tiles, on a shared 2-core machine)."""

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from ctxfuse_jax.models.layers import Array, Dtype, ModuleDef
from ctxfuse_jax.models.registry import register_model
from ctxfuse_jax.models.layers import scaled_channels
from ctxfuse_jax.models.small_cnn import KERAS_INIT
from ctxfuse_jax.ops.conv import conv_module

MIN_SEED = 4
SLOPE = 0.2


def spread(x: Array) -> Array:
    """A zero between neighbouring pixels (H, W -> 2H-1, 2W-1): a stride-2 transposed conv's input."""
    return lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 0)))


def seed_side(patch: int) -> int:
    """The authors' seed map side for a `patch` px patch: its odd part, at least MIN_SEED."""
    return max(patch // (patch & -patch), MIN_SEED)


@register_model('background_generator')
class BackgroundGenerator(nn.Module):
    """Noise (B, tiles**2, noise_dim) -> float32 backgrounds (B, size, size, channels) in [0, 1]."""

    size: int = 28
    channels: int = 1
    tiles: int = 2
    width: float = 1.0
    conv: ModuleDef = conv_module('auto')  # XLA's convolution, reformulated when compiled for CPU.
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tiles < 1 or self.size < self.tiles or self.size % self.tiles:
            raise ValueError(f'BackgroundGenerator cannot split a {self.size} px background into '
                             f'{self.tiles} x {self.tiles} equal tiles')
        if not (self.patch / self.seed).is_integer() or (self.patch // self.seed).bit_count() != 1:
            raise ValueError(f'BackgroundGenerator: {self.patch} px tiles ({self.size} px in {self.tiles} x '
                             f'{self.tiles}) are not a {self.seed} px seed map doubled a whole number of '
                             f'times; choose a tile side of 4 * 2**k or (odd >= 5) * 2**k')

    @property
    def patch(self) -> int:
        """The side of one tile."""
        return self.size // self.tiles

    @property
    def seed(self) -> int:
        """The side of the map the noise is reshaped to."""
        return seed_side(self.patch)

    @property
    def doublings(self) -> int:
        """log2(patch / seed): how many stride-2 transposed convs take the seed map to a patch."""
        return (self.patch // self.seed).bit_length() - 1

    @property
    def noise_dim(self) -> int:
        """The length of one tile's noise vector: the seed map's size."""
        return self.seed * self.seed * self.channels

    def noise_shape(self, batch: int) -> tuple[int, int, int]:
        """The shape of z for `batch` backgrounds: one noise vector per tile, row-major."""
        return batch, self.tiles * self.tiles, self.noise_dim

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        """`train` is the players' calling convention; the generator has no batch norm or dropout."""
        if z.shape[1:] != self.noise_shape(z.shape[0])[1:]:
            raise ValueError(f'BackgroundGenerator needs noise of shape {self.noise_shape(z.shape[0])} '
                             f'(see noise_shape); got {z.shape}')
        batch, n = z.shape[0], self.doublings
        layer = dict(kernel_init=KERAS_INIT, dtype=self.dtype, param_dtype=self.param_dtype)
        x = jnp.asarray(z, self.dtype).reshape(batch * self.tiles ** 2, self.seed, self.seed, self.channels)
        x = self.conv(scaled_channels(self, 2 ** (n + 5)), (3, 3), padding=1, name='seed_conv', **layer)(x)
        x = nn.leaky_relu(x, SLOPE)
        for i in range(n):
            x = self.conv(scaled_channels(self, 2 ** (n - 1 - i + 5)), (4, 4), padding=2, name=f'up_{i}',
                          **layer)(spread(x))
            x = nn.leaky_relu(x, SLOPE)
        x = self.conv(self.channels, (1, 1), padding=0, name='to_pixels', **layer)(x)
        patches = nn.sigmoid(x.astype(jnp.float32))
        # (B * tiles * tiles, p, p, C) -> (B, row, p, column, p, C) -> (B, size, size, C).
        patches = patches.reshape(batch, self.tiles, self.tiles, self.patch, self.patch, self.channels)
        return patches.transpose(0, 1, 3, 2, 4, 5).reshape(batch, self.size, self.size, self.channels)
