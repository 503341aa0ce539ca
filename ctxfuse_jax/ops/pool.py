"""A drop-in for `flax.linen.max_pool` whose gradient XLA:CPU runs fast.

XLA:CPU expands max pooling's gradient (select-and-scatter) into index maps and a scatter:
137 ms for ResNet18's stem pool at 64 px, batch 64, against 17 ms for the same gradient written
with window taps (bench/README.md). `max_pool` uses the tap formulation when compiled for CPU
and `nn.max_pool` elsewhere; both route each gradient to the first maximum of its window (in
row-major order), so they agree exactly, ties included.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ctxfuse_jax.ops.windows import Pairs, Window, explicit_padding, taps


def _taps(x: jax.Array, window_hw: tuple[int, ...], window: Window) -> list[jax.Array]:
    return taps(x, window_hw, window, pad_value=-jnp.inf)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool(x: jax.Array, window_hw: tuple[int, ...], window: Window) -> jax.Array:
    return functools.reduce(jnp.maximum, _taps(x, window_hw, window))


def _max_pool_fwd(x, window_hw, window):
    y = _max_pool(x, window_hw, window)
    return y, (x, y)


def _max_pool_bwd(window_hw, window, residuals, g):
    x, y = residuals
    seen, taps_vjp = jax.vjp(lambda x: _taps(x, window_hw, window), x)
    taken = jnp.zeros(y.shape, bool)
    per_tap = []
    for tap in seen:  # Each output's gradient goes to the first tap holding its maximum.
        first = (tap == y) & ~taken
        taken = taken | first
        per_tap.append(jnp.where(first, g, jnp.zeros_like(g)))
    return taps_vjp(per_tap)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def cpu_max_pool(inputs: jax.Array, window_shape: tuple[int, ...], strides: tuple[int, ...] | None = None,
                 padding: str | Pairs = "VALID") -> jax.Array:
    """`nn.max_pool` with the tap gradient on every platform (NHWC floats; else `nn.max_pool`)."""
    strides = tuple(strides or (1,) * len(window_shape))
    if inputs.ndim != 4 or len(window_shape) != 2 or not jnp.issubdtype(inputs.dtype, jnp.floating):
        return nn.max_pool(inputs, window_shape, strides, padding)
    window = Window(strides, explicit_padding(padding, inputs.shape[1:3], window_shape, strides))
    return _max_pool(inputs, tuple(window_shape), window)


def max_pool(inputs: jax.Array, window_shape: tuple[int, ...], strides: tuple[int, ...] | None = None,
             padding: str | Pairs = "VALID") -> jax.Array:
    """`nn.max_pool`, computed by `cpu_max_pool` when compiled for CPU (`lax.platform_dependent`)."""
    return lax.platform_dependent(
        inputs,
        cpu=lambda x: cpu_max_pool(x, window_shape, strides, padding),
        default=lambda x: nn.max_pool(x, window_shape, strides, padding))
