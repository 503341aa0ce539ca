"""The CPU max pool equals `nn.max_pool` exactly, gradients and ties included, and stays off GPU/TPU."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctxfuse_jax.ops.pool import cpu_max_pool, max_pool


def _relu_maps(shape, dtype=jnp.float32):
    """Rectified maps: many windows hold several zeros, so which tap gets the gradient matters."""
    return jnp.maximum(jnp.asarray(np.random.default_rng(0).normal(size=shape), dtype), 0)


@pytest.mark.parametrize("pool", [cpu_max_pool, max_pool])
@pytest.mark.parametrize("window,strides,padding,size", [
    ((3, 3), (2, 2), ((1, 1), (1, 1)), 9),  # ResNet's stem.
    ((2, 2), (2, 2), "VALID", 8),  # VGG.
    ((3, 3), (1, 1), "SAME", 5),
])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_values_and_gradients_equal_flax(pool, window, strides, padding, size, dtype):
    x = _relu_maps((2, size, size, 3), dtype)

    def value_and_grad(pool):
        def run(x):
            y, vjp = jax.vjp(lambda x: pool(x, window, strides, padding), x)
            return y, vjp(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) % 7)[0]
        return jax.jit(run)(x)

    for got, want in zip(value_and_grad(pool), value_and_grad(nn.max_pool)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))


@pytest.mark.parametrize("platform", ["cpu", "cuda", "rocm", "tpu"])
def test_only_cpu_compiles_the_tap_gradient(platform):
    x = _relu_maps((2, 8, 8, 3))
    grad = jax.grad(lambda x: jnp.sum(max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))))
    text = jax.jit(grad).trace(x).lower(lowering_platforms=(platform,)).as_text()
    assert ("select_and_scatter" in text) == (platform != "cpu")
