"""What every classifier in the zoo shares: named features, truncation, normalisation, pooling.

A *feature* is any tensor a model passes through `tap`. Tapping it once makes it
(a) readable: `_, state = model.apply(variables, x, mutable=[INTERMEDIATES])`, then
    `features(state[INTERMEDIATES])`;
(b) differentiable: pass `variables[PERTURBATIONS] = {name: zeros like the feature}` and the
    gradient w.r.t. those zeros is the gradient w.r.t. the feature (GradCAM);
(c) a place to stop: a `Backbone` whose `stop_at` names one of its stages returns that stage's
    output and never creates the layers after it;
(d) a place to start: a `Backbone` whose `start_at` names one takes that stage's output as its
    input and runs only the layers after it, so `clone(stop_at=S)` then `clone(start_at=S)` is
    the whole model, each on its own part of the whole model's variables (seed 003's shared trunk
    and branches; `models.branches`).

Feature names follow torchvision's module names, with '_' before an index and '/' for nesting
(`layer3`, `layer1_0/bn1`, `features_30`, `avgpool`), so a torch user finds them where expected.
"""

from collections.abc import Callable, Mapping, Sequence
import functools
from typing import Any, ClassVar, NamedTuple

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ctxfuse_jax.ops.conv import conv_module

Array = jax.Array
ModuleDef = Any
Dtype = Any
Stage = tuple[str, Callable[[Array], Array]]


class Footprint(NamedTuple):
    """How a sliding layer (a conv, a pool) reads its input along each axis: a square `kernel`,
    `stride` and zero `padding` before the first position. All `receptive_field` needs."""

    kernel: int
    stride: int = 1
    padding: int = 0


StageFootprints = list[tuple[str, tuple[Footprint, ...]]]

INTERMEDIATES = 'intermediates'
PERTURBATIONS = 'perturbations'
# A module's own output is tapped as OUT inside its scope: a Flax scope cannot hold a variable
# and a submodule of the same name, so the parent cannot tap it under the module's name.
OUT = 'out'

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision initialises every conv with kaiming_normal_(mode='fan_out', nonlinearity='relu').
CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class WidthError(ValueError):
    """`width` leaves a layer without a channel: the model would build, train and learn nothing."""


def tap(module: nn.Module, name: str, x: Array) -> Array:
    """Makes `x` the feature `name` of `module` (see the module docstring); returns it."""
    # Keep only the latest value, so intermediates and perturbation gradients share one layout.
    module.sow(INTERMEDIATES, name, x, init_fn=lambda: None, reduce_fn=lambda _, new: new)
    # Perturb when asked: given a zero for this feature, or told to make them. Never in `init`,
    # which would hand out batch-shaped zeros as if they were weights.
    asked = module.has_variable(PERTURBATIONS, name) or (
        module.is_mutable_collection(PERTURBATIONS) and not module.is_initializing())
    return module.perturb(name, x, PERTURBATIONS) if asked else x


def features(tree: Mapping[str, Any]) -> dict[str, Array]:
    """Flattens a tapped collection (intermediates, perturbation gradients) to {name: array}."""
    return {'/'.join(path[:-1] if path[-1] == OUT else path): value
            for path, value in traverse_util.flatten_dict(tree).items()}


class BatchNorm(nn.BatchNorm):
    """nn.BatchNorm whose output is a feature: seed 000 studies PCA of BN features under blur."""

    @nn.compact
    def __call__(self, x: Array, use_running_average: bool | None = None, **kwargs) -> Array:
        return tap(self, OUT, super().__call__(x, use_running_average, **kwargs))


def normalize(x: Array, mean: Sequence[float], std: Sequence[float], dtype: Dtype) -> Array:
    """[0, 1] pixels -> standardised inputs, in float32 before casting to the compute dtype."""
    x = jnp.asarray(x, jnp.float32)
    return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


def adaptive_avg_pool(x: Array, size: tuple[int, int]) -> Array:
    """torch's AdaptiveAvgPool2d on NHWC: any input size gives a `size` map (VGG's 7x7)."""
    if x.shape[1:3] == size:
        return x
    rows, cols = _pool_matrix(x.shape[1], size[0]), _pool_matrix(x.shape[2], size[1])
    return jnp.einsum('ih,jw,nhwc->nijc', rows.astype(x.dtype), cols.astype(x.dtype), x,
                      precision=jax.lax.Precision.HIGHEST)


def _pool_matrix(length: int, bins: int) -> np.ndarray:
    """Averaging weights of torch's bins: bin i covers [floor(i*L/n), ceil((i+1)*L/n))."""
    weights = np.zeros((bins, length), np.float32)
    for i in range(bins):
        start, stop = i * length // bins, -(-(i + 1) * length // bins)
        weights[i, start:stop] = 1.0 / (stop - start)
    return weights


def scaled_channels(module: nn.Module, base: int) -> int:
    """`base` channels of a full-width layer scaled by `module.width`; at least one, or a `WidthError`."""
    count = int(base * module.width)
    if count < 1:
        raise WidthError(f"width {module.width:g} gives {type(module).__name__}'s {base}-channel layers "
                         f"{base * module.width:g} channels; the smallest width is 1/{base} = {1 / base:g}")
    return count


class Backbone(nn.Module):
    """A classifier as named stages and a linear head, normalising its own inputs.

    Subclasses say which stages they have (`stages`) and what their head is called. Channel
    counts are scaled by `width` (0.125 -> 8 base channels) for tiny CPU runs; `num_classes=None`
    returns the pooled pre-logits features; `stop_at` truncates after the stage of that name;
    `outputs` (stage names) returns those stages' outputs as a dict instead, stopping after the
    last (hypercolumns, seed 001's per-layer activation maps); `start_at` takes the output of the
    stage of that name instead of images (not normalised, only cast to `dtype`) and runs the
    stages after it, then the head: the branch on a trunk truncated there.
    Layers compute in `dtype` (bfloat16 for mixed precision) on `param_dtype` parameters.
    """

    num_classes: int | None = 1000
    width: float = 1.0
    stop_at: str | None = None
    outputs: tuple[str, ...] = ()
    start_at: str | None = None
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    conv: ModuleDef = conv_module('auto')  # XLA's convolution, reformulated when compiled for CPU.
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    head_name: ClassVar[str]

    def stages(self, train: bool) -> list[Stage]:
        """The named stages, in order; each creates its layers only when called."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        stages = self.stages(train)
        first = self.first_stage([name for name, _ in stages])
        x = normalize(x, self.mean, self.std, self.dtype) if self.start_at is None else x.astype(self.dtype)
        collected = {}
        for name, stage in stages[first:]:
            x = tap(self, name, stage(x))
            if name in self.outputs:
                collected[name] = x
                if len(collected) == len(self.outputs):
                    return collected
            if name == self.stop_at:
                return x
        if self.num_classes is None:
            return x
        # Float32 logits whatever the compute dtype: losses, softmax and metrics then never see bf16.
        return self.dense_def()(self.num_classes, name=self.head_name)(x).astype(jnp.float32)

    def first_stage(self, names: Sequence[str]) -> int:
        """The index in `names` (the stages) of the first stage to run: 0, or the one after
        `start_at`. Raises ValueError listing the stages if `start_at`, `stop_at` or `outputs`
        names none of them, or if one to stop at does not come after `start_at`."""
        names = list(names)
        model = type(self).__name__
        for verb, wanted in (('start', self.start_at), ('stop', self.stop_at),
                             *(('stop', name) for name in self.outputs)):
            if wanted is not None and wanted not in names:
                raise ValueError(f'{model} cannot {verb} at {wanted!r}; its stages are {names}')
        first = 0 if self.start_at is None else names.index(self.start_at) + 1
        for wanted in (self.stop_at, *self.outputs):
            if wanted is not None and names.index(wanted) < first:
                raise ValueError(f'{model} starting at {self.start_at!r} cannot stop at {wanted!r}, '
                                 f'which comes before; the stages after it are {names[first:]}')
        return first

    def channels(self, base: int) -> int:
        """`base` channels of the full-width network, scaled by `width` (`scaled_channels`)."""
        return scaled_channels(self, base)

    def conv_def(self, use_bias: bool) -> ModuleDef:
        """The pluggable convolution, configured like torchvision's."""
        return functools.partial(self.conv, use_bias=use_bias, kernel_init=CONV_INIT,
                                 dtype=self.dtype, param_dtype=self.param_dtype)

    def dense_def(self) -> ModuleDef:
        """nn.Dense in the compute and parameter dtypes."""
        return functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype)

    def stage_footprints(self) -> StageFootprints:
        """(stage name, its sliding layers in order) for the leading stages whose outputs are maps
        of fixed geometry, for `receptive_field.receptive_field`: the list ends before the first
        stage whose geometry follows the input size (adaptive pooling, dense layers). Layers off
        the longest path (a residual shortcut, inside its branch's window) are left out. Empty
        where a model does not describe its geometry."""
        return []

    def flattened_inputs(self) -> dict[str, tuple[int, int]]:
        """Dense layers reading a (rows, cols, channels) map flattened, by module name, with its
        (rows, cols). Flattened here in HWC order, by torch in CHW: the converter permutes them."""
        return {}

    def norm_def(self, train: bool) -> ModuleDef:
        """BatchNorm as in torch (momentum 0.1 there is 0.9 here); running stats unless training."""
        return functools.partial(BatchNorm, use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, dtype=self.dtype, param_dtype=self.param_dtype)
