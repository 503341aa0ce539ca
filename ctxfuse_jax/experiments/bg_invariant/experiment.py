"""Training a CNN to be background invariant (seed 002, Cruz & Cardoso) end to end.

Per dataset and seed, the authors' three phases, each a resumable stage of the shared trainer:
(1) the vanilla classifier on plain-background images; (2) the U-Net mask generator against it;
(3) the classifier, started from the vanilla one, fine-tuned on its objects pasted behind the
fixed masks on black, uniform-noise, real-texture or adversarially generated backgrounds (the
generator a second player with its own optimizer). The attention baseline (a local CNN on the
crop the vanilla model's activation map points at, fused with its global features) trains beside
them. Every model is then scored by the evaluator of conditions on Table 1's test backgrounds
and, for objects with scenes, on seed 004's variants and challenge.
"""

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ctxfuse_jax.data import pipeline
from ctxfuse_jax.data.pipeline import steps_per_epoch, to_unit_float
from ctxfuse_jax.degrade import patterns
from ctxfuse_jax.errors import DataError
from ctxfuse_jax.evaluate.conditions import build_families
from ctxfuse_jax.evaluate.evaluator import ConditionScorer, ConditionScores, frozen_players
from ctxfuse_jax.evaluate.scoring import per_example_outputs, score_split
from ctxfuse_jax.experiments.bg_invariant import data as bg_data
from ctxfuse_jax.experiments.bg_invariant import game, masks, outputs, report
from ctxfuse_jax.experiments.bg_invariant.choices import ATTENTION, BACKGROUND_METHODS, TABLE, VANILLA
from ctxfuse_jax.experiments.bg_invariant.game import CLASSIFIER, GENERATOR, MASK_NET
from ctxfuse_jax.experiments.classification import (
    Learner, classifier_module, image_inputs, image_sample, train_classifier, train_players)
from ctxfuse_jax.experiments.finished import Finished, FinishedModels, stage_players
from ctxfuse_jax.experiments.in9 import experiment as in9_experiment
from ctxfuse_jax.models import attention, build_model, restrict_variables
from ctxfuse_jax.ops.conv import conv_module
from ctxfuse_jax.train import losses, sharding
from ctxfuse_jax.train.loop import LoopOptions
from ctxfuse_jax.train.monitor import METRICS_FILE
from ctxfuse_jax.train.state import PlayerSpec, TrainState, init_variables
from ctxfuse_jax.train.steps import make_eval_step

GLOBAL = "global"  # the attention baseline's frozen global CNN: the vanilla model, truncated
SAMPLES_DIR = "samples"  # a background stage's generated backgrounds and composites, per evaluation
# Every stage's key is folded from the seed by its place here: adding a method changes no other stage.
STAGE_KEYS = (VANILLA, "mask_net", ATTENTION, *BACKGROUND_METHODS)


def _rngs(seed: int, stage: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(init, second player's init, train) keys of one stage of one seed."""
    return tuple(jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), STAGE_KEYS.index(stage)), 3))


def mask_module(part_config: ml_collections.ConfigDict):
    return build_model("unet", width=part_config.mask.width, conv=part_config.mask.conv)


def generator_module(part_config: ml_collections.ConfigDict, part: bg_data.Part):
    generator = part_config.background.generator
    return build_model("background_generator", size=part.image_size, channels=part.channels, tiles=generator.tiles,
                       width=generator.width, conv=part_config.classifier.conv)


def _classifier(config: ml_collections.ConfigDict, part_config: ml_collections.ConfigDict, num_classes: int):
    return classifier_module(ml_collections.ConfigDict({"model": part_config.classifier,
                                                        "compute_dtype": config.compute_dtype}), num_classes)


def _fingerprint(config, part_config, stage: str) -> dict:
    return {"stage": stage, "data": part_config.data.to_dict(), "plain_background": part_config.plain_background,
            "classifier": part_config.classifier.to_dict(), "compute_dtype": config.compute_dtype}


def _per_epoch(loop: LoopOptions, split_size: int, batch_size: int) -> LoopOptions:
    return dataclasses.replace(loop, eval_every=steps_per_epoch(split_size, batch_size))


class Seed:
    """One seed of one dataset: the stages in order, each reading what the earlier ones trained."""

    def __init__(self, config, part_config, part: bg_data.Part, seed: int, seed_dir: str, mesh):
        self.config, self.part_config, self.part, self.seed, self.dir, self.mesh = (
            config, part_config, part, seed, seed_dir, mesh)
        self.classifier = _classifier(config, part_config, part.data.num_classes)
        self.loop = LoopOptions(**config.loop)
        self._learned_masks = None

    def vanilla(self) -> tuple[dict, dict]:
        """Phase 1: the classifier on the plain-background training images."""
        init_rng, _, train_rng = _rngs(self.seed, VANILLA)
        train = self.part.data.train
        trained = train_classifier(
            VANILLA, lambda fw, x, train_mode: fw(CLASSIFIER, x, train=train_mode),
            learners={CLASSIFIER: Learner(self.classifier, image_sample(train), init_rng)}, frozen={},
            train_split=train, test_split=self.part.data.test, train_config=self.part_config.train, seed=self.seed,
            train_rng=train_rng, workdir=self.dir, mesh=self.mesh, loop=self.loop,
            fingerprint=_fingerprint(self.config, self.part_config, VANILLA))
        return trained.variables[CLASSIFIER], trained.metrics

    def mask_net(self, vanilla: dict) -> tuple[dict, dict]:
        """Phase 2: the U-Net whose masks keep the vanilla classifier's label, small and smooth."""
        mask_config = self.part_config.mask
        init_rng, _, train_rng = _rngs(self.seed, "mask_net")
        train = self.part.data.train
        binarize = masks.binarizer(self.part_config.background.binarize, self.part_config.background.area)

        def metrics(forward, batch):
            images = to_unit_float(batch["image"])
            mask = forward(MASK_NET, images)
            used = binarize(mask)
            return {"iou": masks.iou(used, batch["mask"]), "soft_area": jnp.mean(mask, axis=(1, 2, 3)),
                    "accuracy_masked": losses.correct(forward(CLASSIFIER, images * mask), batch["label"]),
                    "accuracy_object": losses.correct(forward(CLASSIFIER, images * used), batch["label"])}

        trained = train_players(
            "mask_net", learners={MASK_NET: Learner(mask_module(self.part_config), image_sample(train), init_rng)},
            frozen={CLASSIFIER: (self.classifier, vanilla)},
            updates=[game.mask_update(mask_config, image_inputs(mask_config.train.augment))],
            evaluate=self._evaluation(metrics), train_split=train, train_config=mask_config.train, seed=self.seed,
            train_rng=train_rng, workdir=self.dir, mesh=self.mesh,
            loop=_per_epoch(self.loop, len(train), mask_config.train.batch_size),
            fingerprint={**_fingerprint(self.config, self.part_config, "mask_net"), "mask": mask_config.to_dict(),
                         "binarize": self.part_config.background.binarize})
        return trained.variables[MASK_NET], trained.metrics

    def _evaluation(self, example_metrics, after: Callable[[TrainState], None] | None = None):
        """`evaluate(specs)` for `train_players`: means of `example_metrics` over the plain test set."""
        batch_size = self.config.eval.batch_size

        def evaluation(specs):
            step = jax.jit(make_eval_step(specs, example_metrics))

            def evaluate(state: TrainState) -> dict[str, float]:
                if after is not None:
                    after(state)
                return score_split(step, state, self.part.data.test, batch_size, self.mesh)

            return evaluate

        return evaluation

    def background(self, method: str, method_config: Mapping[str, Any], vanilla: dict, mask_net: dict,
                   textures: np.ndarray) -> tuple[dict, dict]:
        """Phase 3: the vanilla classifier fine-tuned on composites with `method`'s backgrounds."""
        background = self.part_config.background
        kind = method_config["background"]
        _, generator_rng, train_rng = _rngs(self.seed, method)
        train = self.part.data.train
        learners = {CLASSIFIER: Learner(self.classifier, variables=vanilla)}
        generator = generator_module(self.part_config, self.part)
        if kind == "adversarial":
            noise = jax.ShapeDtypeStruct(generator.noise_shape(1), jnp.float32)
            learners[GENERATOR] = Learner(generator, (noise,), generator_rng, optimizer=background.generator.optimizer)
        binarize = masks.binarizer(background.binarize, background.area)
        train = pipeline.ArraySplit({**train.arrays, game.LEARNED_MASK: self.learned_masks(mask_net, binarize)})
        updates = game.background_updates(
            background, kind, game.masked_inputs(background.train.augment), self.part.channels,
            textures=textures if kind == "texture" else None, generator_noise=generator.noise_shape,
            brightness_weight=method_config.get("brightness_weight", background.brightness_weight))
        eval_noise = jax.random.normal(jax.random.PRNGKey(self.config.eval.seed),
                                       generator.noise_shape(self.config.eval.batch_size))

        def metrics(forward, batch):
            images = to_unit_float(batch["image"])
            used = binarize(forward(MASK_NET, images))
            values = {"accuracy": losses.correct(forward(CLASSIFIER, images), batch["label"]),
                      "accuracy_object": losses.correct(forward(CLASSIFIER, images * used), batch["label"])}
            if kind == "adversarial":
                generated = forward(GENERATOR, eval_noise[:images.shape[0]])
                pasted = masks.composite(images, used, generated)
                values["accuracy_generated"] = losses.correct(forward(CLASSIFIER, pasted), batch["label"])
                values["background_mean"] = jnp.mean(generated, axis=(1, 2, 3))
            return values

        after = functools.partial(self._save_samples, method, generator, binarize) if kind == "adversarial" else None
        trained = train_players(
            method, learners=learners, frozen={MASK_NET: (mask_module(self.part_config), mask_net)},
            updates=updates, evaluate=self._evaluation(metrics, after), train_split=train,
            train_config=background.train, seed=self.seed, train_rng=train_rng, workdir=self.dir, mesh=self.mesh,
            loop=_per_epoch(self.loop, len(train), background.train.batch_size),
            fingerprint={**_fingerprint(self.config, self.part_config, method), "method": dict(method_config),
                         "background": background.to_dict(), "mask": self.part_config.mask.to_dict()})
        return trained.variables, trained.metrics

    def learned_masks(self, mask_net: dict, binarize) -> np.ndarray:
        """The fixed mask generator's (binarised) mask of every training image, uint8 (255 = 1): phase 3
        reads them instead of running the U-Net in every step."""
        if self._learned_masks is None:
            module = mask_module(self.part_config)
            dilation = self.part_config.background.dilation

            def masks_of(params, images):
                mask = binarize(module.apply({"params": params}, to_unit_float(images)))
                if dilation:  # grown as the test backgrounds grow the true mask: no stroke is painted over
                    mask = jnp.maximum(mask, patterns.dilate(mask, dilation).astype(mask.dtype))
                return jnp.round(mask * 255).astype(jnp.uint8)

            draw = jax.jit(masks_of)
            self._learned_masks = per_example_outputs(lambda batch: draw(mask_net["params"], batch["image"]),
                                                      self.part.data.train, self.config.eval.batch_size, self.mesh)
        return self._learned_masks

    def _save_samples(self, method: str, generator, binarize, state: TrainState) -> None:
        """The generator's backgrounds (fixed noise) behind fixed test objects at this step: Figure 4."""
        if jax.process_index() != 0:
            return
        count = self.config.analysis.figure_images
        images = to_unit_float(jnp.asarray(self.part.data.test.arrays["image"][:count]))
        noise = jax.random.normal(jax.random.PRNGKey(self.config.eval.seed + 1), generator.noise_shape(count))
        players = jax.device_get(state.players)
        backgrounds = generator.apply({"params": players[GENERATOR].params}, noise)
        mask = binarize(mask_module(self.part_config).apply({"params": players[MASK_NET].params}, images))
        directory = os.path.join(self.dir, method, SAMPLES_DIR)
        os.makedirs(directory, exist_ok=True)
        np.savez(os.path.join(directory, f"step_{int(state.step):06d}.npz"), backgrounds=np.asarray(backgrounds),
                 composites=np.asarray(masks.composite(images, mask, backgrounds)))

    def attention(self, vanilla: dict) -> tuple[dict, dict]:
        """The attention baseline: a local CNN on the crop the vanilla model points at, fused with its
        (frozen) global features."""
        settings = self.part_config.attention
        init_rng, _, train_rng = _rngs(self.seed, ATTENTION)
        train = self.part.data.train
        global_module, global_variables = global_cnn(self.classifier, self.part_config, self.part, vanilla)
        head = attention_head(self.part_config, self.part.data.num_classes)
        trained = train_classifier(
            ATTENTION, functools.partial(attention_logits, settings),
            learners={ATTENTION: Learner(head, attention_sample(self.part_config, self.part, global_module,
                                                                global_variables), init_rng)},
            frozen={GLOBAL: (global_module, global_variables)},
            train_split=train, test_split=self.part.data.test, train_config=settings.train, seed=self.seed,
            train_rng=train_rng, workdir=self.dir, mesh=self.mesh, loop=self.loop,
            fingerprint={**_fingerprint(self.config, self.part_config, ATTENTION), "attention": settings.to_dict()})
        return {**trained.variables, GLOBAL: global_variables}, trained.metrics


def global_cnn(classifier, part_config: ml_collections.ConfigDict, part: bg_data.Part, vanilla: dict):
    """The vanilla classifier cut after `attention.layer`: the global CNN whose map gives the box."""
    module = classifier.clone(stop_at=part_config.attention.layer)
    return module, restrict_variables(vanilla, module, (1, part.image_size, part.image_size, part.channels))


def attention_sample(part_config: ml_collections.ConfigDict, part: bg_data.Part, global_module,
                     global_variables) -> tuple[jax.ShapeDtypeStruct, ...]:
    """What the attention head is initialised on: a crop, and the global CNN's features of an image."""
    size, channels, crop = part.image_size, part.channels, part_config.attention.crop_size
    features = jax.eval_shape(global_module.apply, global_variables,
                              jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32))
    return (jax.ShapeDtypeStruct((1, crop, crop, channels), jnp.float32),
            jax.ShapeDtypeStruct(features.shape, jnp.float32))


def attention_head(part_config: ml_collections.ConfigDict, num_classes: int):
    return attention.AttentionHead(num_classes=num_classes, width=part_config.attention.width,
                                   conv=conv_module(part_config.classifier.conv))


def attention_logits(settings: ml_collections.ConfigDict, forward, images: jax.Array, train: bool) -> jax.Array:
    """Global features -> box of the largest hot region -> crop -> local CNN, fused with the global features."""
    features = jax.lax.stop_gradient(forward(GLOBAL, images))
    boxes = attention.heatmap_box(features, settings.tau, image_hw=images.shape[1:3])
    crops = attention.crop_resize(images, boxes, settings.crop_size)
    return forward(ATTENTION, crops, features, train=train)


class PartScorer:
    """Table 1's test backgrounds over the plain test set and, for objects in scenes, seed 004's
    variants and challenge over the scene test set; one program per architecture and split."""

    def __init__(self, config, part_config, part: bg_data.Part, classifier, mesh):
        size, channels, seed = part.image_size, part.channels, config.eval.seed
        batch_size = config.eval.batch_size
        table = build_families({TABLE: part_config.table.to_dict()}, size, len(part.data.test), seed, channels)
        self.scorers = {TABLE: ConditionScorer(table, part.data.test, part.data.num_classes, batch_size, seed, mesh)}
        if part.scenes is not None and part_config.reliance:
            reliance = build_families(part_config.reliance.to_dict(), size, len(part.scenes.test), seed, channels)
            self.scorers["reliance"] = ConditionScorer(reliance, part.scenes.test, part.data.num_classes, batch_size,
                                                       seed, mesh)
        for scorer in self.scorers.values():
            scorer.add_architecture(CLASSIFIER, {CLASSIFIER: PlayerSpec(classifier)},
                                    lambda fw, x: {CLASSIFIER: fw(CLASSIFIER, x)})

    def add_attention(self, part_config, classifier, num_classes: int) -> None:
        module = classifier.clone(stop_at=part_config.attention.layer)
        specs = {GLOBAL: PlayerSpec(module), ATTENTION: PlayerSpec(attention_head(part_config, num_classes))}
        logits = functools.partial(attention_logits, part_config.attention)
        for scorer in self.scorers.values():
            scorer.add_architecture(ATTENTION, specs, lambda fw, x: {CLASSIFIER: logits(fw, x, False)})

    def score(self, architecture: str, variables: Mapping[str, dict]) -> dict[str, ConditionScores]:
        players = frozen_players(variables)
        return {name: scorer.score(architecture, players) for name, scorer in self.scorers.items()}


def model_measures(scores: Mapping[str, ConditionScores], part: bg_data.Part, scorer: PartScorer) -> dict[str, Any]:
    """Accuracy under each test background, and seed 004's measures where the objects have scenes."""
    table = scores[TABLE]
    result: dict[str, Any] = {"table": dict(zip(table.family(TABLE).levels,
                                                table.correct(CLASSIFIER, TABLE).mean(axis=1).tolist()))}
    if "reliance" in scores:
        donors = scorer.scorers["reliance"].bank["mixed_rand"]
        scenes = dataclasses.replace(part.data, test=part.scenes.test)
        result["reliance"] = in9_experiment.seed_measures(scores["reliance"], CLASSIFIER, scenes, donors)
    return result


def epoch_curves(stage_dir: str, per_epoch: int) -> list[dict[str, float]]:
    """A stage's evaluations while it trained: [{epoch, metric: value}] from its metrics file."""
    path = os.path.join(stage_dir, METRICS_FILE)
    points = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                values = {k[len("eval/"):]: v for k, v in record.items() if k.startswith("eval/")}
                if values:
                    points.append({"epoch": record["step"] / per_epoch, **values})
    return points


def run_seed(config, part_config, part: bg_data.Part, seed: int, seed_dir: str, mesh, scorer: PartScorer,
             textures: np.ndarray) -> dict[str, Any]:
    """One seed of one dataset: every configured method trained, scored and measured."""
    stages = Seed(config, part_config, part, seed, seed_dir, mesh)
    variables, metrics = {}, {}
    vanilla, metrics[VANILLA] = stages.vanilla()
    variables[VANILLA] = {CLASSIFIER: vanilla}
    mask_net, metrics["mask_net"] = stages.mask_net(vanilla)
    for method in part_config.methods:
        if method == ATTENTION:
            variables[method], metrics[method] = stages.attention(vanilla)
        elif method in BACKGROUND_METHODS:
            trained, metrics[method] = stages.background(method, BACKGROUND_METHODS[method], vanilla, mask_net,
                                                         textures)
            variables[method] = {CLASSIFIER: trained[CLASSIFIER]}
    models = {method: model_measures(scorer.score(ATTENTION if method == ATTENTION else CLASSIFIER, v), part, scorer)
              for method, v in variables.items()}
    for method in models:
        if "background_mean" in metrics[method]:
            models[method]["background_mean"] = metrics[method]["background_mean"]
    curves = {}
    for stage, train_config in [("mask_net", part_config.mask.train)] + [
            (m, part_config.background.train) for m in part_config.methods if m in BACKGROUND_METHODS]:
        curves[stage] = epoch_curves(os.path.join(seed_dir, stage),
                                     steps_per_epoch(len(part.data.train), train_config.batch_size))
    return {"models": models, "stages": metrics, "curves": curves, "mask_net": mask_net}


def finished(workdir: str, config: ml_collections.ConfigDict, dataset: str | None = None) -> Finished:
    """Every seed's classifier per method of one dataset ("Vanilla", "Attention", "Black bg", ...,
    as the report names them), on its plain-background test split with the true masks (Table 1's);
    `dataset` names it, and may be left out when the run has one. The mask generator and the
    background generator classify nothing; the scenes of seed 004's evaluation are not the split."""
    if dataset is None and len(config.datasets) == 1:
        dataset = next(iter(config.datasets))
    if dataset not in config.datasets:
        raise DataError(f"{workdir} holds the datasets {list(config.datasets)}: name one of them "
                        f"(dataset=...), got {dataset!r}")
    part_config = config.datasets[dataset]
    part = bg_data.load_part(dataset, part_config)
    classifier = _classifier(config, part_config, part.data.num_classes)
    shapes = jax.eval_shape(lambda: init_variables(classifier, jax.random.PRNGKey(0),
                                                   *(jnp.zeros(s.shape) for s in image_sample(part.data.test))))
    methods = [VANILLA, *(m for m in part_config.methods if m != VANILLA)]
    specs = {m: PlayerSpec(classifier) for m in methods if m != ATTENTION}
    if ATTENTION in methods:
        global_module, global_shapes = global_cnn(classifier, part_config, part, shapes)
        head = attention_head(part_config, part.data.num_classes)
        sample = attention_sample(part_config, part, global_module, global_shapes)
        head_shapes = jax.eval_shape(lambda: init_variables(head, jax.random.PRNGKey(0),
                                                            *(jnp.zeros(s.shape) for s in sample)))
        specs.update({GLOBAL: PlayerSpec(global_module), ATTENTION: PlayerSpec(head)})
    attention = functools.partial(attention_logits, part_config.attention)

    def logits(fw, images):
        return {report.NAMES.get(m, m): attention(fw, images, False) if m == ATTENTION else fw(m, images)
                for m in methods}

    models = []
    for seed in part_config.seeds or config.seeds:
        seed_dir = f"{dataset}/seed_{seed}"
        variables = {}
        for method in methods:
            if method == ATTENTION:
                variables.update(stage_players(workdir, f"{seed_dir}/{method}",
                                               {GLOBAL: global_shapes, ATTENTION: head_shapes}))
            else:
                variables[method] = stage_players(workdir, f"{seed_dir}/{method}", {CLASSIFIER: shapes})[CLASSIFIER]
        models.append(FinishedModels(seed_dir, specs, logits, variables))
    return Finished(workdir, config, part.data, tuple(models))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The experiment for a config that passed `config_checks.check_config` (as the CLI does first)."""
    start = time.monotonic()
    mesh = sharding.make_mesh()
    results, parts, scorers = {}, {}, {}
    for name, part_config in config.datasets.items():
        part = parts[name] = bg_data.load_part(name, part_config)
        classifier = _classifier(config, part_config, part.data.num_classes)
        scorer = scorers[name] = PartScorer(config, part_config, part, classifier, mesh)
        scorer.add_attention(part_config, classifier, part.data.num_classes)
        textures = bg_data.texture_bank(tuple(part_config.background.textures), part.image_size, part.channels,
                                        part_config.background.texture_crops, config.eval.seed)
        seeds = part_config.seeds or config.seeds
        results[name] = {seed: run_seed(config, part_config, part, seed, os.path.join(workdir, name, f"seed_{seed}"),
                                        mesh, scorer, textures) for seed in seeds}
    if jax.process_index() == 0:
        outputs.write_outputs(config, parts, results, workdir, time.monotonic() - start, scorers,
                              {name: mask_module(config.datasets[name]) for name in parts})
    return {name: {seed: {k: v for k, v in r.items() if k != "mask_net"} for seed, r in per_seed.items()}
            for name, per_seed in results.items()}
