"""A model's variable structure, and fitting given variables to it with errors that name keys.

Variables are compared as flat dicts keyed 'collection/module/.../leaf'
(e.g. 'params/layer1_0/conv1/kernel', 'batch_stats/bn1/mean').
`input_shape` is always the images' shape, also for a Backbone that starts at a stage (a branch):
it is then traced on what the stages before it make of such images.
"""

from collections.abc import Callable, Mapping
from typing import Any

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp

from ctxfuse_jax.models.layers import Backbone

SEP = '/'
_SHOWN = 8  # keys listed per kind of problem before "(+N more)"


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Nested variables -> {'params/conv1/kernel': leaf, ...}."""
    return traverse_util.flatten_dict(tree, sep=SEP)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `flatten`."""
    return traverse_util.unflatten_dict(dict(flat), sep=SEP)


def module_path(key: str) -> str:
    """'params/layer1_0/conv1/kernel' -> 'layer1_0/conv1'."""
    return key.split(SEP, 1)[1].rsplit(SEP, 1)[0]


def variable_shapes(model: nn.Module,
                    input_shape: tuple[int, ...] = (1, 224, 224, 3)) -> dict[str, Any]:
    """The variables `model.init` would make on `input_shape` images, as ShapeDtypeStructs: traced,
    nothing computed."""
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                          model_input(model, input_shape))


def model_input(model: nn.Module, input_shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    """What `model` takes for `input_shape` images: the images, or for a Backbone that starts at a
    stage, that stage's output (the part before it traced, nothing computed)."""
    image = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    if not isinstance(model, Backbone) or model.start_at is None:
        return image
    model.first_stage([name for name, _ in model.stages(train=False)])  # an unknown start_at said as such
    trunk = model.clone(start_at=None, stop_at=model.start_at, outputs=())
    return jax.eval_shape(lambda x: trunk.init_with_output(jax.random.key(0), x, train=False)[0], image)


def check_structure(found: Mapping[str, Any], expected: Mapping[str, Any], what: str, *,
                    allow_unexpected: bool = False, key_name: Callable[[str], str] = str) -> None:
    """Raises ValueError(`what` + each missing, unexpected and wrong-shaped key) if they differ.

    Values are anything with a `.shape` (arrays, ShapeDtypeStructs); `key_name` renders a key
    for the message, e.g. as the torch key it came from.
    """
    def ordered(keys):  # grouped by module, whatever the collection
        return sorted(keys, key=lambda k: (module_path(k), key_name(k)))

    extra = set() if allow_unexpected else found.keys() - expected.keys()
    missing = [key_name(k) for k in ordered(expected.keys() - found.keys())]
    unexpected = [key_name(k) for k in ordered(extra)]
    wrong = [f'{key_name(k)} is {tuple(found[k].shape)}, needs {tuple(expected[k].shape)}'
             for k in ordered(expected.keys() & found.keys())
             if tuple(found[k].shape) != tuple(expected[k].shape)]
    problems = [f'  {kind}: {_listing(keys)}' for kind, keys in
                (('missing', missing), ('unexpected', unexpected), ('wrong shape', wrong)) if keys]
    if problems:
        raise ValueError('\n'.join([what + ':', *problems]))


def _listing(items: list[str]) -> str:
    more = f' (+{len(items) - _SHOWN} more)' if len(items) > _SHOWN else ''
    return ', '.join(items[:_SHOWN]) + more


def restrict_variables(variables: Mapping[str, Any], model: nn.Module,
                       input_shape: tuple[int, ...] = (1, 224, 224, 3)) -> dict[str, Any]:
    """The part of a bigger model's `variables` that `model` (e.g. truncated by stop_at, or started
    at a stage) uses, traced on `input_shape` images."""
    flat = flatten(variables)
    expected = flatten(variable_shapes(model, input_shape))
    check_structure(flat, expected, f'variables do not fit {type(model).__name__}',
                    allow_unexpected=True)
    return unflatten({k: flat[k] for k in expected})
