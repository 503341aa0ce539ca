"""One named feature of a module, read or perturbed: the step Grad-CAM and feature PCA share.

Every zoo model and head passes its features through `models.tap`, which sows them into
'intermediates' and adds the matching entry of a 'perturbations' collection when one is given.
`apply_tapped` turns that into a function of the perturbation, so `jax.grad` with respect to a
zero perturbation is the gradient with respect to the feature, wherever it sits in the module.
"""

from collections.abc import Mapping
from typing import Any

from flax import traverse_util
import flax.linen as nn
import jax

from ctxfuse_jax.models import INTERMEDIATES, PERTURBATIONS, features

Array = jax.Array
Path = tuple[str, ...]


def apply_tapped(module: nn.Module, variables: Mapping[str, Any], name: str, *args: Any,
                 delta: Array | None = None, **kwargs: Any) -> tuple[Any, Array]:
    """`module.apply(variables, *args, **kwargs)` and its feature `name`, optionally perturbed.

    Returns `(output, feature)`. With `delta` (shaped like the feature), the module computes on
    `feature + delta` downstream of the tap, so the output is differentiable w.r.t. `delta`;
    the returned feature is the unperturbed one. Apply in inference mode (the default
    `train=False` of zoo models) so that examples in the batch do not interact.
    """
    if delta is not None:
        path, shape = _locate(module, variables, name, args, kwargs)
        if delta.shape != shape:
            raise ValueError(f'perturbation of {name!r} has shape {delta.shape}; '
                             f'the feature has shape {shape}')
        variables = {**variables, PERTURBATIONS: traverse_util.unflatten_dict({path: delta})}
    output, state = module.apply(variables, *args, mutable=[INTERMEDIATES], **kwargs)
    return output, select_feature(features(state[INTERMEDIATES]), name, module)


def _locate(module: nn.Module, variables: Mapping[str, Any], name: str, args: tuple,
            kwargs: Mapping[str, Any]) -> tuple[Path, tuple[int, ...]]:
    """Where feature `name` lives in the collections, and its shape (traced, nothing computed)."""
    def tapped(v, *a):
        return module.apply(v, *a, mutable=[INTERMEDIATES], **kwargs)[1][INTERMEDIATES]

    tree = jax.eval_shape(tapped, variables, *args)
    # `features` owns the path -> name rule; applied to a tree of (path, shape) it inverts it.
    located = {path: (path, leaf.shape) for path, leaf in traverse_util.flatten_dict(tree).items()}
    return select_feature(features(traverse_util.unflatten_dict(located)), name, module)


def select_feature(named: Mapping[str, Any], name: str, module: nn.Module) -> Any:
    """`named[name]`; an unknown name lists the module's features (config checks say it the same way)."""
    if name not in named:
        raise ValueError(f'{type(module).__name__} has no feature {name!r}; '
                       f'its features are: {", ".join(sorted(named))}')
    return named[name]
