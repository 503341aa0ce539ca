"""The fusion experiment's networks: frozen streams cut from a zoo backbone and the heads on them.

Four classifiers share the two frozen streams: FG and BG (linear probes on one stream), Joint (the
paper's fusion head on both) and FG-conv, the capacity-matched control a reviewer asks for: Joint's
two trainable conv layers on the FG stream alone, so "Joint beats FG" can be told apart from "more
trainable layers beat fewer".
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ctxfuse_jax.models.fusion import FusionHead, LinearProbe
from ctxfuse_jax.models.precision import compute_dtype
from ctxfuse_jax.models.registry import build_model
from ctxfuse_jax.ops.conv import conv_module

ROLES = ("fg", "bg")
MODELS = ("FG", "BG", "Joint", "FG-conv")
STREAMS_OF = {"FG": ("fg",), "BG": ("bg",), "Joint": ("fg", "bg"), "FG-conv": ("fg",)}
CONV_HEADS = ("Joint", "FG-conv")  # FusionHead; the others are linear probes
REFERENCE_SIZE = 224  # the paper's image size: blur sigmas in configs are given at this scale


def backbone_module(config: ml_collections.ConfigDict, **kwargs) -> nn.Module:
    """The streams' backbone as configured (architecture, width, convolution, compute precision)."""
    return build_model(config.streams.arch, width=config.streams.width, conv=config.streams.conv,
                       dtype=compute_dtype(config.compute_dtype), **kwargs)


def stream_module(config: ml_collections.ConfigDict) -> nn.Module:
    """A stream: the backbone with its head and last conv stage removed (cut at `streams.cut`)."""
    return backbone_module(config, num_classes=None, stop_at=config.streams.cut)


def head_module(model: str, config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    dtype = compute_dtype(config.compute_dtype)
    if model in CONV_HEADS:
        return FusionHead(num_classes, features=config.heads.fusion_features, conv=conv_module(config.streams.conv),
                          dtype=dtype)
    return LinearProbe(num_classes, dtype=dtype)


def stream_feature(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    """Shape and dtype of a stream's features of one image, computing nothing."""
    stream = stream_module(config)
    sample = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    return jax.eval_shape(lambda x: stream.init_with_output(jax.random.PRNGKey(0), x)[0], sample)


def head_logits(fw, features: dict, train: bool = False, *, model: str) -> jax.Array:
    """A classifier's logits: its head applied to the features of the streams it uses."""
    return fw("head", *[features[role] for role in STREAMS_OF[model]], train=train)


def streams_then_head(fw, images, train: bool = False, *, model: str) -> jax.Array:
    """A classifier's logits from images: its frozen streams run, then its head."""
    return head_logits(fw, {role: fw(f"{role}_stream", images) for role in STREAMS_OF[model]}, train, model=model)


def all_logits(fw, images, models: tuple[str, ...] = MODELS) -> dict[str, jax.Array]:
    """Each of `models`' logits (players `<role>_stream`, `head_<model>`); the two streams run once
    per batch and feed all heads."""
    features = {role: fw(f"{role}_stream", images) for role in ROLES}
    return {model: fw(f"head_{model}", *[features[role] for role in STREAMS_OF[model]]) for model in models}
