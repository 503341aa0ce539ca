"""Sliding 2-D windows over NHWC maps as strided slices: what each window tap sees.

Convolution and pooling gradients written with taps become matrix products and elementwise
ops, which XLA:CPU runs near peak, instead of the windowed ops it runs slowly.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

Pairs = tuple[tuple[int, int], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Window:
    """Strides, explicit (low, high) padding and dilation of a window over the H and W axes."""

    strides: tuple[int, int]
    padding: Pairs
    dilation: tuple[int, int] = (1, 1)

    def output_hw(self, input_hw: tuple[int, ...], window_hw: tuple[int, ...]) -> tuple[int, int]:
        return tuple((size + lo + hi - (k - 1) * d - 1) // s + 1 for size, k, (lo, hi), d, s
                     in zip(input_hw, window_hw, self.padding, self.dilation, self.strides))


def explicit_padding(padding: str | Pairs, input_hw: tuple[int, ...], window_hw: tuple[int, ...],
                     strides: tuple[int, ...], dilation: tuple[int, ...] = (1, 1)) -> Pairs:
    """'SAME' / 'VALID' (or pairs) as (low, high) pairs, as lax resolves them."""
    if isinstance(padding, str):
        dilated = [(k - 1) * d + 1 for k, d in zip(window_hw, dilation)]
        padding = lax.padtype_to_pads(input_hw, dilated, strides, padding)
    return tuple(tuple(int(p) for p in pair) for pair in padding)


def taps(x: jax.Array, window_hw: tuple[int, ...], window: Window, pad_value: float = 0.0) -> list[jax.Array]:
    """What each tap (row-major over the window) sees: [N, OH, OW, C] strided slices of padded x."""
    (oh, ow), (sh, sw), (dh, dw) = window.output_hw(x.shape[1:3], window_hw), window.strides, window.dilation
    config = [(0, 0, 0), (*window.padding[0], 0), (*window.padding[1], 0), (0, 0, 0)]
    padded = lax.pad(x, jnp.asarray(pad_value, x.dtype), config)
    n, _, _, c = padded.shape
    return [lax.slice(padded, (0, i * dh, j * dw, 0), (n, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, c),
                      (1, sh, sw, 1))
            for i in range(window_hw[0]) for j in range(window_hw[1])]
