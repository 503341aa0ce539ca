"""The backgrounds challenge through the project's evaluator of conditions: ours, in `bench.challenge`.

`composite_family` pastes every foreground of the split on each chosen background of the bank
(`evaluate.conditions`), and `make_condition_step` + `evaluate_conditions` score all (foreground,
background) pairs with one compiled program: the background is the family's traced level.
`prepare` writes what both sides read (the split, the bank, the chosen backgrounds, the weights),
so ours and the PyTorch reference (`bench.challenge_torch`) see the same pixels and one model.
"""

import numpy as np

import jax
import jax.numpy as jnp

from bench.compile_events import CompileEvents
from bench.harness import Parts, Step
from ctxfuse_jax.data.pipeline import ArraySplit
from ctxfuse_jax.degrade import backgrounds
from ctxfuse_jax.evaluate.conditions import composite_family
from ctxfuse_jax.evaluate.evaluator import evaluate_conditions, frozen_players, make_condition_step
from ctxfuse_jax.models import build_model
from ctxfuse_jax.models.variables import unflatten
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.state import PlayerSpec
from ctxfuse_jax.weights import convert_state_dict

ARCH, WIDTH, NUM_CLASSES, SIZE = "resnet18", 0.25, 24, 64  # The zoo's ResNet18 as the supervised job trains it.
FAMILY, MODEL = "challenge", "model"
KEYS = ("image", "label", "mask", "bbox")  # What the split needs: bbox for the tiled backgrounds.
WEIGHT = "weight:"  # Prefix of the weights' entries in the prepared file.


def prepare(path: str, num_images: int, num_backgrounds: int, seed: int = 0) -> None:
    """The first `num_images` test images of the embedded objects split (64 px) and their tiled
    backgrounds (the evaluator's bank, seed 004's only_bg_t), `num_backgrounds` of them chosen by
    `seed` (all when equal), and the weights of a random ResNet18 whose BN statistics are measured
    on those images (`challenge_torch.random_resnet18`), under torchvision's names."""
    from bench import challenge_torch  # Only this one-off process holds both frameworks.
    from ctxfuse_jax.data import pipeline
    from ctxfuse_jax.data.embedded import load_embedded

    split = pipeline.materialize(load_embedded("objects", "test", image_size=SIZE), KEYS)
    if num_images > len(split):
        raise ValueError(f"the split has {len(split)} images; asked for {num_images}")
    if not 0 < num_backgrounds <= num_images:
        raise ValueError(f"num_backgrounds must be in 1..{num_images} (the bank is the split's own backgrounds)")
    arrays = {k: v[:num_images] for k, v in split.arrays.items()}
    chosen = np.arange(num_images)
    if num_backgrounds < num_images:
        chosen = np.sort(np.random.default_rng(seed).choice(num_images, num_backgrounds, replace=False))
    bank = backgrounds.tiled_backgrounds(arrays["image"], arrays["bbox"])
    net = challenge_torch.random_resnet18(NUM_CLASSES, WIDTH, np.concatenate([arrays["image"], bank[chosen]]), seed)
    weights = challenge_torch.torchvision_weights(net)
    np.savez(path, **arrays, bank=bank, chosen=chosen.astype(np.int32), **{WEIGHT + k: v for k, v in weights.items()})


def challenge_step(data_path: str, batch_size: int = 128, predictions_path: str = "") -> Step:
    """Each call scores every (foreground, background) pair of `prepare`'s data with the evaluator.

    The condition step is built once, so the first call compiles it and later calls only run.
    Parts: `compilations` and `compile s` (backend compiles during the call), `step programs` (how
    many programs the condition step holds after it). The first call writes the (B, F)
    predictions to `predictions_path` if given.
    """
    with np.load(data_path) as data:
        arrays = {k: data[k] for k in data.files}
    model = build_model(ARCH, width=WIDTH, num_classes=NUM_CLASSES)
    weights = {k[len(WEIGHT):]: v for k, v in arrays.items() if k.startswith(WEIGHT)}
    variables = unflatten(convert_state_dict(weights, model))
    split = ArraySplit({k: arrays[k] for k in KEYS})
    families = [composite_family(FAMILY, arrays["chosen"])]
    specs = {MODEL: PlayerSpec(model)}
    players = frozen_players({MODEL: variables})
    mesh = sharding.make_mesh()
    step_fn = make_condition_step(specs, lambda fw, images: {MODEL: fw(MODEL, images)}, families)
    jax.random.fold_in(jax.random.PRNGKey(0), jnp.int32(0)).block_until_ready()  # Keys' own compilations.
    written = [not predictions_path]

    def step() -> Parts:
        with CompileEvents() as events:
            scores = evaluate_conditions(step_fn, players, split, families, batch_size, mesh,
                                         num_classes=NUM_CLASSES, seed=0)
        predictions = scores.family(FAMILY).predictions[MODEL]
        if not written[0]:
            np.save(predictions_path, predictions)
            written[0] = True
        vulnerable = (predictions != split.arrays["label"][None]).any(axis=0)
        return Parts({**events.parts(), "step programs": step_fn._cache_size(), "vulnerable": float(vulnerable.sum())})

    return step
