"""A drop-in for `lax.conv_general_dilated` whose training step XLA:CPU runs fast.

XLA:CPU runs most forward convolutions near peak, but two cases are slow (bench/README.md):
- any convolution whose kernel covers more positions than its input (3x3 on the 2x2 maps of
  ResNet layer4 at 64 px): XLA's simplifier swaps the operands, and the swapped convolution is
  compiled as a plain loop (1.5 s instead of 15 ms, batch 64). This hits forward and d/dx;
- the filter gradient d/dW of large maps (3x3, 32x32, 128->256 channels, batch 64: 7.6 s on one
  core, 0.9 s as matrix products).
So the CPU formulation computes d/dW as one matrix product per kernel tap, and forward and d/dx as
im2col matrix products where XLA would swap, as XLA convolutions elsewhere. `fast_conv` uses it
only when compiling for CPU; on GPU and TPU it is plain XLA."""

import dataclasses
import functools
import inspect
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ctxfuse_jax.ops.windows import Window, explicit_padding, taps

ConvFn = Callable[..., jax.Array]
ModuleDef = Any

NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))
_LAX_CONV = inspect.signature(lax.conv_general_dilated)
# Fewer input channels than this (RGB) are too narrow to be the vectorised dimension of a GEMM.
MIN_VECTOR_CHANNELS = 16


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A 2-D NHWC/HWIO convolution without input dilation or groups: all the CPU path handles."""

    window: Window
    precision: Any = None

    def xla(self, x: jax.Array, w: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(x, w, self.window.strides, self.window.padding,
                                        rhs_dilation=self.window.dilation, dimension_numbers=NHWC,
                                        precision=self.precision)


def geometry(lhs: jax.Array, rhs: jax.Array, *args: Any, **kwargs: Any) -> Geometry | None:
    """The geometry of `lax.conv_general_dilated(lhs, rhs, *args, **kwargs)`, None if not handled."""
    call = _LAX_CONV.bind(lhs, rhs, *args, **kwargs)
    call.apply_defaults()
    a = call.arguments
    if (lhs.ndim != 4 or lhs.dtype != rhs.dtype or a["feature_group_count"] != 1
            or a["batch_group_count"] != 1 or a["preferred_element_type"] is not None
            or a.get("out_sharding") is not None or any(d != 1 for d in a["lhs_dilation"] or ())):
        return None
    if lax.conv_dimension_numbers(lhs.shape, rhs.shape, a["dimension_numbers"]) != NHWC:
        return None
    strides, dilation = tuple(a["window_strides"]), tuple(a["rhs_dilation"] or (1, 1))
    padding = explicit_padding(a["padding"], lhs.shape[1:3], rhs.shape[:2], strides, dilation)
    return Geometry(Window(strides, padding, dilation), a["precision"])


def _gemm_forward(x: jax.Array, w: jax.Array, geom: Geometry) -> jax.Array:
    """im2col x GEMM: patches [N, OH, OW, KH*KW*C] (HWIO order) times the kernel as a matrix."""
    patches = jnp.concatenate(taps(x, w.shape[:2], geom.window), axis=-1)
    y = lax.dot_general(patches, w.reshape(-1, w.shape[-1]), (((3,), (0,)), ((), ())),
                        precision=geom.precision, preferred_element_type=jnp.float32)
    return y.astype(x.dtype)


def xla_conv_is_slow(kernel_hw: tuple[int, ...], input_hw: tuple[int, ...]) -> bool:
    """XLA:CPU swaps the operands of a convolution whose kernel has more positions than its input,
    and compiles the swapped convolution as a plain loop (~100x slower)."""
    return kernel_hw[0] * kernel_hw[1] > input_hw[0] * input_hw[1]


def _forward(x: jax.Array, w: jax.Array, geom: Geometry, gemm: bool) -> jax.Array:
    return _gemm_forward(x, w, geom) if gemm else geom.xla(x, w)


def _filter_grad(x: jax.Array, w: jax.Array, g: jax.Array, geom: Geometry) -> jax.Array:
    """dL/dW[kh, kw] = tap(kh, kw)^T g, contracting batch and output positions: one GEMM per tap.

    As g^T tap ([O, C]) each tap is read in its own layout, 1.2-1.5x faster than tap^T g; but then
    C is the vectorised dimension, too narrow for an RGB input (C=3: 2x slower), so those keep tap^T g.
    """
    contract = (((0, 1, 2), (0, 1, 2)), ((), ()))
    thin = x.shape[-1] < MIN_VECTOR_CHANNELS
    per_tap = [lax.dot_general(*((tap, g) if thin else (g, tap)), contract, precision=geom.precision,
                               preferred_element_type=jnp.float32)
               for tap in taps(x, w.shape[:2], geom.window)]
    dw = jnp.stack(per_tap)
    return (dw if thin else dw.transpose(0, 2, 1)).reshape(w.shape).astype(w.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _cpu_conv(x: jax.Array, w: jax.Array, geom: Geometry) -> jax.Array:
    return _forward(x, w, geom, gemm=xla_conv_is_slow(w.shape[:2], x.shape[1:3]))


def _cpu_conv_fwd(x, w, geom):
    return _cpu_conv(x, w, geom), (x, w)


def _cpu_conv_bwd(geom, residuals, g):
    x, w = residuals
    # The input gradient is a transposed convolution over g's maps: slow in XLA if the kernel outsizes them.
    gemm = xla_conv_is_slow(w.shape[:2], g.shape[1:3])
    _, input_vjp = jax.vjp(lambda x: _forward(x, w, geom, gemm), x)
    return input_vjp(g)[0], _filter_grad(x, w, g, geom)


_cpu_conv.defvjp(_cpu_conv_fwd, _cpu_conv_bwd)


def cpu_conv(lhs: jax.Array, rhs: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
    """`lax.conv_general_dilated` with the CPU formulation on every platform (cases it does not
    handle, e.g. NCHW or groups, go to lax unchanged). Use `fast_conv` unless testing or measuring."""
    geom = geometry(lhs, rhs, *args, **kwargs)
    if geom is None:
        return lax.conv_general_dilated(lhs, rhs, *args, **kwargs)
    return _cpu_conv(lhs, rhs, geom)


def fast_conv(lhs: jax.Array, rhs: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
    """`lax.conv_general_dilated`, computed by `cpu_conv` when compiled for CPU.

    The choice is made at lowering time for the platform actually compiled for
    (`lax.platform_dependent`), so GPU and TPU programs never contain the CPU formulation.
    """
    return lax.platform_dependent(
        lhs, rhs,
        cpu=lambda lhs, rhs: cpu_conv(lhs, rhs, *args, **kwargs),
        default=lambda lhs, rhs: lax.conv_general_dilated(lhs, rhs, *args, **kwargs))


CONV_IMPLS: dict[str, ConvFn] = {
    "auto": fast_conv,  # The CPU formulation on CPU, XLA's convolution elsewhere.
    "cpu": cpu_conv,  # The CPU formulation on every platform.
    "xla": lax.conv_general_dilated,  # XLA's convolution on every platform.
}


def conv_module(impl: str = "auto") -> ModuleDef:
    """`nn.Conv` computing with the convolution named `impl`, for a model's `conv` attribute."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"unknown convolution {impl!r}; choose one of {sorted(CONV_IMPLS)}")
    return functools.partial(nn.Conv, conv_general_dilated=CONV_IMPLS[impl])
