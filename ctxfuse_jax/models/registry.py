"""Models by name: a config says `model='resnet18'`; a new model is an entry, not a new trainer."""

from collections.abc import Callable
from typing import TypeVar

import flax.linen as nn

from ctxfuse_jax.ops.conv import conv_module

ModelFactory = Callable[..., nn.Module]
F = TypeVar('F', bound=ModelFactory)

_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[F], F]:
    """Decorator (or plain call) adding a module class or factory to the registry under `name`."""

    def register(factory: F) -> F:
        if name in _MODELS:
            raise ValueError(f'model {name!r} is already registered')
        _MODELS[name] = factory
        return factory

    return register


def build_model(name: str, **kwargs) -> nn.Module:
    """The model registered as `name`, constructed with `kwargs` (e.g. num_classes, width).

    `conv` may name a convolution ('auto', 'cpu', 'xla': see `ops.conv.CONV_IMPLS`), so configs
    can choose it; the models' default is 'auto'.
    """
    if name not in _MODELS:
        raise ValueError(f'unknown model {name!r}; available: {", ".join(available_models())}')
    if isinstance(kwargs.get('conv'), str):
        kwargs['conv'] = conv_module(kwargs['conv'])
    return _MODELS[name](**kwargs)


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)
