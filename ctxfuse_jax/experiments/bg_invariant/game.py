"""The Updates of seed 002's phases 2 and 3, each one jitted step of the shared trainer.

Phase 2 moves the mask generator against the fixed classifier. Phase 3 moves the classifier on
composites `m * x + b * (1 - m)` whose mask the fixed mask generator drew (computed once per
training image, before training, and augmented with it) and whose background is black, uniform
noise, a real texture, or drawn by the background generator, which *maximises* the classifier's
loss:

    min_f max_{f_b}  L(f(m * x + f_b(z) * (1 - m)), y)

`alternating` moves the classifier, then the generator against the updated classifier (two
Updates, two forward passes); `simultaneous` moves both from one forward pass, the generator's
gradient reversed. For single-channel images the generator pays `relu(mean(b) - 0.5)`: without it
an all-white background (digits are white) wins trivially.
"""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from ctxfuse_jax.data import pipeline
from ctxfuse_jax.data.augment import augment
from ctxfuse_jax.experiments.bg_invariant import masks
from ctxfuse_jax.experiments.bg_invariant.choices import BACKGROUNDS, SCHEDULES
from ctxfuse_jax.experiments.classification import Inputs
from ctxfuse_jax.train import losses
from ctxfuse_jax.train.forward import Forward
from ctxfuse_jax.train.steps import Update

CLASSIFIER, MASK_NET, GENERATOR = "classifier", "mask_net", "generator"
Batch = Mapping[str, jax.Array]


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(losses.softmax_cross_entropy(logits, labels))


def mask_update(mask_config: ml_collections.ConfigDict, inputs: Inputs) -> Update:
    """Phase 2: the mask generator keeps the fixed classifier's label on `x * m`, small and smooth."""

    def loss(forward: Forward, batch: Batch, rng: jax.Array):
        images = inputs(batch, rng)
        mask = forward(MASK_NET, images, train=True)
        logits = forward(CLASSIFIER, images * mask)
        ce = _cross_entropy(logits, batch["label"])
        area = masks.area_penalty(mask, mask_config.area, mask_config.area_loss)
        tv = masks.total_variation(mask)
        return ce + mask_config.area_weight * area + mask_config.tv_weight * tv, {
            "cross_entropy": ce, "area_penalty": area, "total_variation": tv,
            "mask_area": jnp.mean(mask), "accuracy": jnp.mean(losses.correct(logits, batch["label"]))}

    return Update((MASK_NET,), loss)


@jax.custom_vjp
def reverse_gradient(x: jax.Array) -> jax.Array:
    """Identity forward, negated gradient backward: one loss, descended by one player, ascended by another."""
    return x


reverse_gradient.defvjp(lambda x: (x, None), lambda _, g: (-g,))


def brightness_penalty(backgrounds: jax.Array) -> jax.Array:
    """relu(mean(b) - 0.5): what a single-channel adversary pays for brightening the background."""
    return jax.nn.relu(jnp.mean(backgrounds) - 0.5)


BackgroundFn = Callable[[Forward, jax.Array], jax.Array]


def background_fn(kind: str, textures: jax.Array | None, generator_noise: Callable[[int], tuple[int, ...]] | None
                  ) -> BackgroundFn:
    """`(forward, images) -> backgrounds` of `kind`: black, uniform noise, a random crop of a training
    texture bank (uint8, (K, H, W, C)), or the generator's drawing from fresh noise."""
    if kind not in BACKGROUNDS:
        raise ValueError(f"unknown background {kind!r}; choose one of {BACKGROUNDS}")

    def textured(forward, images):
        chosen = jax.random.randint(forward.key(), images.shape[:1], 0, textures.shape[0])
        return jnp.asarray(textures)[chosen].astype(jnp.float32) / 255.0

    def adversarial(forward, images):
        noise = jax.random.normal(forward.key(), generator_noise(images.shape[0]))
        return forward(GENERATOR, noise, train=True)

    return {
        "black": lambda forward, images: jnp.zeros_like(images),
        "noise": lambda forward, images: jax.random.uniform(forward.key(), images.shape),
        "texture": textured,
        "adversarial": adversarial,
    }[kind]


# (batch, rng) -> (images, masks): the training images and their mask generator's masks, augmented
# together (`rng` None at evaluation).
MaskedInputs = Callable[[Batch, jax.Array | None], tuple[jax.Array, jax.Array]]


LEARNED_MASK = "learned_mask"  # the split field holding each image's mask (uint8, 255 = 1), drawn before training


def masked_inputs(augment_config: ml_collections.ConfigDict) -> MaskedInputs:
    """Images in [0, 1] and their learned masks, flipped and cropped together when training, so the
    mask stays on its object."""

    def inputs(batch, rng):
        images = pipeline.to_unit_float(batch["image"])
        mask = batch[LEARNED_MASK].astype(jnp.float32) / 255.0
        if rng is None:
            return images, mask
        both = augment(jnp.concatenate([images, mask], axis=-1), rng, augment_config.flip,
                       augment_config.crop_padding)
        return both[..., :-1], both[..., -1:]

    return inputs


def background_updates(config: ml_collections.ConfigDict, kind: str, inputs: MaskedInputs, channels: int,
                       textures: jax.Array | None = None,
                       generator_noise: Callable[[int], tuple[int, ...]] | None = None,
                       brightness_weight: float | None = None) -> list[Update]:
    """Phase 3 for one background `kind`; `config` is the dataset's `background` section (schedule,
    brightness_weight, clean_weight: the weight of the classifier's loss on the clean images, 0 in the
    authors' code). Only `adversarial` has a second player."""
    draw = background_fn(kind, textures, generator_noise)
    weight = config.brightness_weight if brightness_weight is None else brightness_weight
    penalised = weight if channels == 1 else 0.0

    def classify(forward, batch, rng, reverse=False):
        """The classifier's loss on the composites (plus `clean_weight` x its loss on the clean images, in
        the same batch: batch norm then sees the mixture it will hold in its running statistics)."""
        images, mask = inputs(batch, rng)
        backgrounds = draw(forward, images)
        shown = reverse_gradient(backgrounds) if reverse else backgrounds
        pasted = masks.composite(images, mask, jnp.broadcast_to(shown, images.shape))
        both = jnp.concatenate([pasted, images]) if config.clean_weight else pasted
        logits = forward(CLASSIFIER, both, train=True)
        labels = batch["label"]
        ce = _cross_entropy(logits[:len(labels)], labels)
        metrics = {"cross_entropy": ce, "accuracy": jnp.mean(losses.correct(logits[:len(labels)], labels)),
                   "background_mean": jnp.mean(backgrounds)}
        if config.clean_weight:
            metrics["clean_cross_entropy"] = _cross_entropy(logits[len(labels):], labels)
        return ce, backgrounds, metrics

    def classifier_loss(forward, batch, rng):
        ce, _, metrics = classify(forward, batch, rng)
        return ce + config.clean_weight * metrics.get("clean_cross_entropy", 0.0), metrics

    if kind != "adversarial":
        return [Update((CLASSIFIER,), classifier_loss)]

    def generator_loss(forward, batch, rng):
        ce, backgrounds, metrics = classify(forward, batch, rng)
        penalty = brightness_penalty(backgrounds)
        return -ce + penalised * penalty, {**metrics, "brightness_penalty": penalty}

    def game_loss(forward, batch, rng):  # one pass: the classifier descends ce, the generator ascends it
        ce, backgrounds, metrics = classify(forward, batch, rng, reverse=True)
        penalty = brightness_penalty(backgrounds)
        clean = config.clean_weight * metrics.get("clean_cross_entropy", 0.0)
        return ce + clean + penalised * penalty, {**metrics, "brightness_penalty": penalty}

    if config.schedule == "alternating":
        return [Update((CLASSIFIER,), classifier_loss, name=CLASSIFIER),
                Update((GENERATOR,), generator_loss, name=GENERATOR)]
    if config.schedule == "simultaneous":
        return [Update((CLASSIFIER, GENERATOR), game_loss, name="game")]
    raise ValueError(f"unknown schedule {config.schedule!r}; choose one of {SCHEDULES}")
