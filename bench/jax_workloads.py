"""JAX workloads: one train or inference step of the project's own models and trainer.

Steps are built exactly as experiments build them (models from the registry, players, the
trainer's `make_train_step`), without data augmentation, on one fixed device-resident batch.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.conv_layers import RESNET18_64PX, timed
from bench.harness import Step
from ctxfuse_jax.models import build_model
from ctxfuse_jax.models.fusion import FusionHead
from ctxfuse_jax.ops.conv import CONV_IMPLS, conv_module
from ctxfuse_jax.train import losses
from ctxfuse_jax.train.state import PlayerSpec, init_variables, new_train_state
from ctxfuse_jax.train.steps import Update, make_train_step

NUM_CLASSES = 10
CUT = "layer3"


def batch_of(batch: int, size: int, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.uniform(size=(batch, size, size, 3)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, NUM_CLASSES, batch))}


def sgd() -> optax.GradientTransformation:
    """torch.optim.SGD(lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4), as in the reference."""
    return optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.01, momentum=0.9, nesterov=True))


def _train_loop(specs: dict[str, PlayerSpec], variables: dict[str, Any], predict: Callable,
                inputs: dict[str, jax.Array], moving: tuple[str, ...]) -> Step:
    """A `Step` running the trainer's step (cross entropy of `predict`, moving `moving`) on `inputs`."""

    def loss(forward, batch, rng):
        logits = predict(forward, batch, True)
        return jnp.mean(losses.softmax_cross_entropy(logits, batch["label"])), {}

    train_step = jax.jit(make_train_step(specs, [Update(moving, loss)]), donate_argnums=0)
    cell = [new_train_state(specs, variables, jax.random.PRNGKey(99))]

    def step():
        cell[0], metrics = train_step(cell[0], inputs)
        return jax.block_until_ready(metrics)

    return step


def classifier_train_step(model: str, conv: str, batch: int, size: int, width: float = 1.0,
                          dtype: str = "float32") -> Step:
    """One SGD step of a zoo classifier (`resnet18`, `vgg16`), batch-norm statistics included."""
    net = build_model(model, num_classes=NUM_CLASSES, width=width, conv=conv_module(conv), dtype=jnp.dtype(dtype))
    data = batch_of(batch, size)
    variables = {"net": init_variables(net, jax.random.PRNGKey(0), data["image"][:1])}
    return _train_loop({"net": PlayerSpec(net, sgd())}, variables,
                       lambda fw, b, train: fw("net", b["image"], train=train), data, ("net",))


def _stream(conv: str, width: float, image: jax.Array, seed: int = 0) -> tuple[PlayerSpec, Any, Callable]:
    """A frozen fusion stream (ResNet18 cut after layer3): its spec, variables and jitted inference."""
    module = build_model("resnet18", num_classes=None, width=width, stop_at=CUT, conv=conv_module(conv))
    variables = init_variables(module, jax.random.PRNGKey(seed), image[:1])
    return PlayerSpec(module), variables, functools.partial(jax.jit(module.apply), variables)


def _head(conv: str, features: int, fmap: jax.Array) -> tuple[PlayerSpec, Any]:
    head = FusionHead(NUM_CLASSES, features=features, conv=conv_module(conv))
    return PlayerSpec(head, sgd()), init_variables(head, jax.random.PRNGKey(1), fmap[:1], fmap[:1])


def fusion_train_step(conv: str, batch: int, size: int, width: float = 1.0, features: int = 256) -> Step:
    """One step of seed 000's Joint model: both frozen streams run forward, the head learns."""
    data = batch_of(batch, size)
    (fg_spec, fg_variables, infer), (bg_spec, bg_variables, _) = (
        _stream(conv, width, data["image"], seed) for seed in range(2))
    head_spec, head_variables = _head(conv, features, infer(data["image"][:1]))
    specs = {"fg_stream": fg_spec, "bg_stream": bg_spec, "head": head_spec}
    variables = {"fg_stream": fg_variables, "bg_stream": bg_variables, "head": head_variables}

    def joint(fw, b, train):  # As `experiments.fusion.predict_fns()["Joint"]`, whose module imports TensorFlow.
        return fw("head", fw("fg_stream", b["image"]), fw("bg_stream", b["image"]), train=train)

    return _train_loop(specs, variables, joint, data, ("head",))


def stream_inference_step(conv: str, batch: int, size: int, width: float = 1.0) -> Step:
    """Forward of one frozen stream in inference mode (running BN statistics)."""
    images = batch_of(batch, size)["image"]
    _, _, infer = _stream(conv, width, images)
    return lambda: jax.block_until_ready(infer(images))


def cached_head_train_step(conv: str, batch: int, size: int, width: float = 1.0, features: int = 256) -> Step:
    """One step of the Joint head on stream features computed once (no augmentation: reusable)."""
    data = batch_of(batch, size)
    _, _, infer = _stream(conv, width, data["image"])
    fmap = infer(data["image"])
    head_spec, head_variables = _head(conv, features, fmap)
    inputs = {"fg": fmap, "bg": fmap + 1.0, "label": data["label"]}  # Stand-ins for two cached streams.
    return _train_loop({"head": head_spec}, {"head": head_variables},
                       lambda fw, b, train: fw("head", b["fg"], b["bg"], train=train), inputs, ("head",))


def conv_layer_pieces(conv: str) -> Step:
    """Forward, d/dx and d/dW of every ResNet18 layer shape (`bench.conv_layers`), timed one by one."""
    conv_fn = CONV_IMPLS[conv]
    rng = np.random.default_rng(0)
    fns = {}
    for layer in RESNET18_64PX:
        x, w, g = (jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in layer.shapes_nhwc())

        def f(x, w, layer=layer):
            return conv_fn(x, w, (layer.stride,) * 2, [(layer.padding,) * 2] * 2,
                           dimension_numbers=("NHWC", "HWIO", "NHWC"))

        pieces = {"fwd": lambda x, w, g, f=f: f(x, w),
                  "d/dx": lambda x, w, g, f=f: jax.vjp(lambda x: f(x, w), x)[1](g)[0],
                  "d/dW": lambda x, w, g, f=f: jax.vjp(lambda w: f(x, w), w)[1](g)[0]}
        for piece, fn in pieces.items():
            compiled = jax.jit(fn).lower(x, w, g).compile()
            fns[f"{layer.name} {piece}"] = functools.partial(
                lambda compiled, *args: jax.block_until_ready(compiled(*args)), compiled, x, w, g)
    return lambda: timed(fns)
