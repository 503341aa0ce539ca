"""The CPU convolution equals `lax.conv_general_dilated`, values and gradients, and stays off GPU/TPU."""

import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ctxfuse_jax.models import build_model
from ctxfuse_jax.ops.conv import conv_module, cpu_conv, fast_conv, geometry

NHWC = ("NHWC", "HWIO", "NHWC")

# (kernel, stride, padding, dilation, input size): ResNet/VGG layers, torch-style symmetric and
# TF-style asymmetric paddings, and maps smaller than the kernel (XLA's slow case, done as GEMM).
CASES = [
    (1, 1, "VALID", 1, 8),
    (1, 2, [(0, 0), (0, 0)], 1, 8),
    (3, 1, [(1, 1), (1, 1)], 1, 8),
    (3, 2, [(1, 1), (1, 1)], 1, 9),
    (3, 2, "SAME", 1, 8),
    (3, 2, [(0, 1), (1, 2)], 1, 7),
    (3, 1, [(2, 2), (2, 2)], 2, 8),
    (7, 2, [(3, 3), (3, 3)], 1, 16),
    (3, 1, [(1, 1), (1, 1)], 1, 2),
    (3, 2, [(1, 1), (1, 1)], 1, 4),
    (3, 1, [(1, 1), (1, 1)], 1, 1),
]


def _problem(batch, size, kernel, features=(5, 6), dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (batch, size, size, features[0]))
    w = rng.uniform(-1, 1, (kernel, kernel, *features)) / kernel
    return jnp.asarray(x, dtype), jnp.asarray(w, dtype)


def _value_and_grads(conv, x, w, **kwargs):
    """The output and (dL/dx, dL/dW) for a fixed random cotangent, jitted like a train step."""

    f = lambda x, w: conv(x, w, dimension_numbers=NHWC, **kwargs)
    out = jax.eval_shape(f, x, w)
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=out.shape), out.dtype)

    def run(x, w, cotangent):
        y, vjp = jax.vjp(f, x, w)
        return (y, *vjp(cotangent))

    return jax.jit(run)(x, w, cotangent)


def _assert_close(actual, expected, rtol):
    for a, e, name in zip(actual, expected, ("value", "d/dx", "d/dW")):
        a, e = np.asarray(a, np.float32), np.asarray(e, np.float32)
        scale = max(1.0, float(np.max(np.abs(e))))
        np.testing.assert_allclose(a, e, rtol=0, atol=rtol * scale, err_msg=name)


# Narrow (RGB-like) and wide input channels take differently oriented filter-gradient GEMMs.
@pytest.mark.parametrize("batch,features", [(1, (5, 6)), (3, (16, 8))])
@pytest.mark.parametrize("kernel,stride,padding,dilation,size", CASES)
def test_matches_xla_convolution_and_its_gradients(kernel, stride, padding, dilation, size, batch, features):
    x, w = _problem(batch, size, kernel, features)
    kwargs = dict(window_strides=(stride, stride), padding=padding, rhs_dilation=(dilation, dilation))
    expected = _value_and_grads(lax.conv_general_dilated, x, w, **kwargs)
    _assert_close(_value_and_grads(cpu_conv, x, w, **kwargs), expected, rtol=1e-5)
    _assert_close(_value_and_grads(fast_conv, x, w, **kwargs), expected, rtol=1e-5)


@pytest.mark.parametrize("kernel,stride,padding,dilation,size", [CASES[3], CASES[8], CASES[7]])
def test_bfloat16_inputs_match_float32(kernel, stride, padding, dilation, size):
    x, w = _problem(2, size, kernel, features=(16, 8))
    kwargs = dict(window_strides=(stride, stride), padding=padding, rhs_dilation=(dilation, dilation))
    expected = _value_and_grads(lax.conv_general_dilated, x, w, **kwargs)
    actual = _value_and_grads(cpu_conv, x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), **kwargs)
    assert all(a.dtype == jnp.bfloat16 for a in actual)
    _assert_close(actual, expected, rtol=3e-2)


def test_per_example_gradients_under_vmap():
    x, w = _problem(4, 6, 3)

    def per_example_grads(conv):
        def loss(w, x):
            y = conv(x[None], w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=NHWC)
            return jnp.sum(jnp.sin(y))
        return jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(w, x)

    expected = per_example_grads(lax.conv_general_dilated)
    np.testing.assert_allclose(per_example_grads(fast_conv), expected, rtol=0, atol=1e-5)


def test_flax_conv_uses_it_through_the_module_attribute():
    x, w = _problem(2, 8, 3)
    plain, fast = nn.Conv(6, (3, 3), strides=2), conv_module("auto")(6, (3, 3), strides=2)
    params = {"params": {"kernel": w, "bias": jnp.linspace(-1, 1, 6)}}
    grads = [jax.grad(lambda p, m=m: jnp.sum(m.apply(p, x) ** 2))(params) for m in (plain, fast)]
    np.testing.assert_allclose(fast.apply(params, x), plain.apply(params, x), rtol=0, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-4), *grads)
    with pytest.raises(ValueError, match="unknown convolution"):
        conv_module("fast")


def test_models_compute_with_the_convolution_a_config_names():
    assert build_model("resnet18").conv.keywords["conv_general_dilated"] is fast_conv
    assert build_model("resnet18", conv="xla").conv.keywords["conv_general_dilated"] is lax.conv_general_dilated
    assert build_model("vgg16", conv="cpu").conv.keywords["conv_general_dilated"] is cpu_conv


@pytest.mark.parametrize("kwargs", [
    dict(dimension_numbers=("NCHW", "HWIO", "NCHW")),
    dict(dimension_numbers=NHWC, feature_group_count=5),
    dict(dimension_numbers=NHWC, lhs_dilation=(2, 2)),
])
def test_cases_it_does_not_handle_go_to_lax_unchanged(kwargs):
    x, w = _problem(2, 5, 3, features=(5, 5))
    if kwargs.get("feature_group_count"):
        w = w[:, :, :1]
    assert geometry(x, w, (1, 1), [(1, 1), (1, 1)], **kwargs) is None
    expected = lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)], **kwargs)
    np.testing.assert_array_equal(cpu_conv(x, w, (1, 1), [(1, 1), (1, 1)], **kwargs), expected)


def _lowered_grad(platform: str) -> str:
    x, w = _problem(2, 4, 3)
    loss = lambda x, w: jnp.sum(fast_conv(x, w, (1, 1), "SAME", dimension_numbers=NHWC))
    return jax.jit(jax.grad(loss, (0, 1))).trace(x, w).lower(lowering_platforms=(platform,)).as_text()


@pytest.mark.parametrize("platform", ["cuda", "rocm", "tpu"])
def test_other_platforms_compile_plain_xla_convolutions(platform):
    text = _lowered_grad(platform)
    assert "stablehlo.convolution" in text and "dot_general" not in text


def test_cpu_compiles_the_filter_gradient_as_matrix_products():
    assert "dot_general" in _lowered_grad("cpu")


SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax import lax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from ctxfuse_jax.ops.conv import fast_conv
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(8, 6, 6, 3)).astype(np.float32), rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    loss = lambda conv: lambda x, w: jnp.sum(jnp.sin(conv(x, w, (2, 2), [(1, 1), (1, 1)],
                                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))))
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    got = jax.jit(jax.grad(loss(fast_conv), (0, 1)))(xs, w)
    want = jax.grad(loss(lax.conv_general_dilated), (0, 1))(x, w)
    for g, e in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=0, atol=1e-4)
    print(len(jax.devices()))
""")


def test_data_parallel_gradients_on_a_device_mesh():
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=4"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4"]
