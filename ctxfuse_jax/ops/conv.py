"""A drop-in for `lax.conv_general_dilated` whose training step XLA:CPU runs fast.

XLA:CPU runs most forward convolutions well, but two cases are slow (bench/conv_layers.py):
- the filter gradient of large feature maps (3x3, 32x32, 128->256 channels, batch 64: 3.1 s,
  against 0.55 s for the same numbers computed as matrix products);
- any convolution whose kernel covers more positions than its input (3x3 on the 2x2 maps of
  ResNet layer4 at 64 px): XLA's simplifier then swaps the operands, and the swapped convolution
  leaves the Eigen fast path (0.5 GFLOP/s, 100x slower). This hits forward and input gradient.
So the CPU formulation computes the filter gradient as one matrix product per kernel tap, and the
forward and input gradient as im2col matrix products where XLA would swap, XLA convolutions
elsewhere. `fast_conv` uses it only when compiling for CPU; on GPU and TPU it is plain XLA.
"""

import dataclasses
import functools
import inspect
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

ConvFn = Callable[..., jax.Array]
ModuleDef = Any

NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))
_LAX_CONV = inspect.signature(lax.conv_general_dilated)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A 2-D NHWC/HWIO convolution without input dilation or groups: all the CPU path handles."""

    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    dilation: tuple[int, int]
    precision: Any = None

    def xla(self, x: jax.Array, w: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(x, w, self.strides, self.padding, rhs_dilation=self.dilation,
                                        dimension_numbers=NHWC, precision=self.precision)

    def output_hw(self, input_hw: tuple[int, ...], kernel_hw: tuple[int, ...]) -> tuple[int, int]:
        return tuple((size + lo + hi - (k - 1) * d - 1) // s + 1 for size, k, (lo, hi), d, s
                     in zip(input_hw, kernel_hw, self.padding, self.dilation, self.strides))


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
    strides = tuple(a["window_strides"])
    dilation = tuple(a["rhs_dilation"] or (1, 1))
    padding = a["padding"]
    if isinstance(padding, str):
        dilated_kernel = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dilation)]
        padding = lax.padtype_to_pads(lhs.shape[1:3], dilated_kernel, strides, padding)
    return Geometry(strides, tuple(tuple(p) for p in padding), dilation, a["precision"])


def _taps(x: jax.Array, kernel_hw: tuple[int, ...], geom: Geometry) -> list[jax.Array]:
    """What each kernel tap (row-major over kh, kw) sees: [N, OH, OW, C] strided slices of x."""
    (oh, ow), (sh, sw), (dh, dw) = geom.output_hw(x.shape[1:3], kernel_hw), geom.strides, geom.dilation
    padded = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (*geom.padding[0], 0), (*geom.padding[1], 0), (0, 0, 0)])
    n, _, _, c = padded.shape
    return [lax.slice(padded, (0, i * dh, j * dw, 0), (n, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, c),
                      (1, sh, sw, 1))
            for i in range(kernel_hw[0]) for j in range(kernel_hw[1])]


def _gemm_forward(x: jax.Array, w: jax.Array, geom: Geometry) -> jax.Array:
    """im2col x GEMM: patches [N, OH, OW, KH*KW*C] (HWIO order) times the kernel as a matrix."""
    patches = jnp.concatenate(_taps(x, w.shape[:2], geom), axis=-1)
    y = lax.dot_general(patches, w.reshape(-1, w.shape[-1]), (((3,), (0,)), ((), ())),
                        precision=geom.precision, preferred_element_type=jnp.float32)
    return y.astype(x.dtype)


def xla_conv_is_slow(kernel_hw: tuple[int, ...], input_hw: tuple[int, ...]) -> bool:
    """XLA:CPU swaps the operands of a convolution whose kernel has more positions than its input,
    and the swapped convolution runs off the Eigen fast path (~100x slower)."""
    return kernel_hw[0] * kernel_hw[1] > input_hw[0] * input_hw[1]


def _forward(x: jax.Array, w: jax.Array, geom: Geometry, gemm: bool) -> jax.Array:
    return _gemm_forward(x, w, geom) if gemm else geom.xla(x, w)


def _filter_grad(x: jax.Array, w: jax.Array, g: jax.Array, geom: Geometry) -> jax.Array:
    """dL/dW[kh, kw] = tap(kh, kw)^T g, contracting batch and output positions: one GEMM per tap."""
    contract = (((0, 1, 2), (0, 1, 2)), ((), ()))
    per_tap = [lax.dot_general(tap, g, contract, precision=geom.precision, preferred_element_type=jnp.float32)
               for tap in _taps(x, w.shape[:2], geom)]
    return jnp.stack(per_tap).reshape(w.shape).astype(w.dtype)


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
