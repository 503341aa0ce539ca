"""JAX workloads: one train or inference step of the project's own models and trainer.

Steps are built exactly as experiments build them (models from the registry, players, the
trainer's `make_train_step`), without data augmentation, on one fixed device-resident batch.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.conv_layers import RESNET18_64PX, timed
from bench.harness import Step
from ctxfuse_jax.models import build_model, compute_dtype
from ctxfuse_jax.models.fusion import FusionHead
from ctxfuse_jax.ops.conv import CONV_IMPLS, conv_module
from ctxfuse_jax.train import losses
from ctxfuse_jax.train.state import PlayerSpec, init_variables, new_train_state
from ctxfuse_jax.train.steps import Update, make_train_step

NUM_CLASSES = 10
CUT = "layer3"


def batch_of(batch: int, size: int, seed: int = 0, mask: bool = False) -> dict[str, jax.Array]:
    """Random images and labels; `mask` adds a centred box covering a quarter of each image."""
    rng = np.random.default_rng(seed)
    data = {"image": jnp.asarray(rng.uniform(size=(batch, size, size, 3)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, NUM_CLASSES, batch))}
    if mask:
        data["mask"] = jnp.zeros((batch, size, size, 1), bool).at[:, size // 4:3 * size // 4,
                                                                   size // 4:3 * size // 4].set(True)
    return data


def sgd() -> optax.GradientTransformation:
    """torch.optim.SGD(lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4), as in the reference."""
    return optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.01, momentum=0.9, nesterov=True))


Logits = Callable[[Any, dict[str, jax.Array], bool], jax.Array]  # (forward, batch, train) -> logits


@dataclasses.dataclass(frozen=True)
class Game:
    """Players as an experiment builds them; `predict(forward, images, train)` classifies (None
    when the batch holds no images, e.g. cached features)."""

    specs: dict[str, PlayerSpec]
    variables: dict[str, Any]
    predict: Callable[[Any, jax.Array, bool], jax.Array] | None
    moving: tuple[str, ...]

    def on_images(self) -> Logits:
        return lambda fw, b, train: self.predict(fw, b["image"], train)


def cross_entropy(logits: Logits, moving: tuple[str, ...], degradation: str = "") -> Update:
    """Mean cross entropy of `logits`, moving `moving`; `degradation` (a `bench.degradations`
    name) first degrades the batch's images inside the same step, with the step's rng."""
    degrade_fn = None
    if degradation:
        from bench.degradations import ON_DEVICE  # Imports TensorFlow: only workers that degrade pay.
        degrade_fn = ON_DEVICE[degradation]

    def loss(forward, batch, rng):
        if degrade_fn is not None:
            batch = {**batch, "image": degrade_fn(batch["image"], batch["mask"], rng)}
        return jnp.mean(losses.softmax_cross_entropy(logits(forward, batch, True), batch["label"])), {}

    return Update(moving, loss)


def train_loop(game: Game, update: Update, next_batch: Callable[[], dict[str, jax.Array]],
               steps: int = 1) -> Step:
    """A `Step` running the trainer's jitted step `steps` times on `next_batch()`, blocking once at
    the end (as the training loop does between log steps)."""
    train_step = jax.jit(make_train_step(game.specs, [update]), donate_argnums=0)
    cell = [new_train_state(game.specs, game.variables, jax.random.PRNGKey(99))]

    def step():
        for _ in range(steps):
            cell[0], metrics = train_step(cell[0], next_batch())
        return jax.block_until_ready(metrics)

    return step


def _resident(game: Game, data: dict[str, jax.Array], degradation: str = "", logits: Logits | None = None) -> Step:
    """Cross-entropy SGD steps of `game` on one device-resident batch, no augmentation."""
    return train_loop(game, cross_entropy(logits or game.on_images(), game.moving, degradation), lambda: data)


def classifier_game(model: str, conv: str, image: jax.Array, width: float = 1.0,
                    dtype: str = "float32", num_classes: int = NUM_CLASSES) -> Game:
    """A zoo classifier (`resnet18`, `vgg16`) learning alone, batch-norm statistics included."""
    net = build_model(model, num_classes=num_classes, width=width, conv=conv_module(conv), dtype=compute_dtype(dtype))
    variables = {"net": init_variables(net, jax.random.PRNGKey(0), image[:1])}
    return Game({"net": PlayerSpec(net, sgd())}, variables, lambda fw, x, train: fw("net", x, train=train), ("net",))


def classifier_train_step(model: str, conv: str, batch: int, size: int, width: float = 1.0,
                          dtype: str = "float32", degradation: str = "") -> Step:
    """One SGD step of a zoo classifier; `degradation` degrades the batch first, in the same jit."""
    data = batch_of(batch, size, mask=bool(degradation))
    return _resident(classifier_game(model, conv, data["image"], width, dtype), data, degradation)


def _stream(conv: str, width: float, image: jax.Array, seed: int = 0) -> tuple[PlayerSpec, Any, Callable]:
    """A frozen fusion stream (ResNet18 cut after layer3): its spec, variables and jitted inference."""
    module = build_model("resnet18", num_classes=None, width=width, stop_at=CUT, conv=conv_module(conv))
    variables = init_variables(module, jax.random.PRNGKey(seed), image[:1])
    return PlayerSpec(module), variables, functools.partial(jax.jit(module.apply), variables)


def _head(conv: str, features: int, fmap: jax.Array, num_classes: int = NUM_CLASSES) -> tuple[PlayerSpec, Any]:
    head = FusionHead(num_classes, features=features, conv=conv_module(conv))
    return PlayerSpec(head, sgd()), init_variables(head, jax.random.PRNGKey(1), fmap[:1], fmap[:1])


def fusion_game(conv: str, image: jax.Array, width: float = 1.0, features: int = 256,
                num_classes: int = NUM_CLASSES) -> Game:
    """Seed 000's Joint model: two frozen streams, the fusion head learns."""
    (fg_spec, fg_variables, infer), (bg_spec, bg_variables, _) = (_stream(conv, width, image, seed) for seed in range(2))
    head_spec, head_variables = _head(conv, features, infer(image[:1]), num_classes)

    def joint(fw, images, train):  # experiments.fusion's Joint model (that module imports TensorFlow).
        return fw("head", fw("fg_stream", images), fw("bg_stream", images), train=train)

    return Game({"fg_stream": fg_spec, "bg_stream": bg_spec, "head": head_spec},
                {"fg_stream": fg_variables, "bg_stream": bg_variables, "head": head_variables}, joint, ("head",))


def fusion_train_step(conv: str, batch: int, size: int, width: float = 1.0, features: int = 256,
                      degradation: str = "") -> Step:
    """One step of the Joint model: both frozen streams run forward, the head learns."""
    data = batch_of(batch, size, mask=bool(degradation))
    return _resident(fusion_game(conv, data["image"], width, features), data, degradation)


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
    game = Game({"head": head_spec}, {"head": head_variables}, None, ("head",))
    return _resident(game, inputs, logits=lambda fw, b, train: fw("head", b["fg"], b["bg"], train=train))


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


def degradation_pieces(batch: int, size: int) -> Step:
    """Every `bench.degradations` entry alone on one batch, timed one by one: on-device ones jitted
    (compiled by the first call), host ones (JPEG) as the presets run them."""
    from bench.degradations import HOST, ON_DEVICE  # Imports TensorFlow.

    data = batch_of(batch, size, mask=True)
    key = jax.random.PRNGKey(0)
    fns = {name: functools.partial(lambda fn: jax.block_until_ready(fn(data["image"], data["mask"], key)), jax.jit(fn))
           for name, fn in ON_DEVICE.items()}
    fns.update({name: functools.partial(lambda fn: jax.block_until_ready(fn(data["image"], key)), fn)
                for name, fn in HOST.items()})
    return lambda: timed(fns)
