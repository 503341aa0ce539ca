"""Seed 001 end to end: the original VGG, its fine-tuned versions, and every table of the paper.

Per seed: the original model (converted ImageNet weights, or trained here on sharp images at the
paper's scale jitter); each configured mixture fine-tuned from it with the blur drawn inside the
train step (Tables 3, 4); a hypercolumn segmenter on the original and on the mixed-blur trunk
(Table 6). Then everything is scored through the evaluator of conditions, blur applied at the
canonical scale, by `scoring`'s programs (Tables 1-5, deconvolved images included); binarised
activations of sharp and blurred images (Figure 4); per-pixel mIoU over all pixels and near
boundaries (Table 6).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ctxfuse_jax.data.sources import Labelled, load_labelled
from ctxfuse_jax.evaluate import invariance
from ctxfuse_jax.evaluate import segmentation as seg_metrics
from ctxfuse_jax.evaluate.conditions import Family
from ctxfuse_jax.evaluate.scoring import per_example_outputs, score_split
from ctxfuse_jax.experiments.blur_study import outputs, scoring
from ctxfuse_jax.experiments.blur_study.choices import ORIGINAL, SHARP
from ctxfuse_jax.experiments.blur_study.geometry import Geometry, at_scale, geometry
from ctxfuse_jax.experiments.blur_study.mixtures import Mixture, batch_images, train_images
from ctxfuse_jax.experiments.classification import Learner, classifier_module, train_classifier, train_players
from ctxfuse_jax.experiments.finished import Finished, FinishedModels, stage_players
from ctxfuse_jax.models import build_model, restrict_variables
from ctxfuse_jax.train import losses, sharding
from ctxfuse_jax.train.loop import LoopOptions
from ctxfuse_jax.train.state import PlayerSpec, init_variables
from ctxfuse_jax.train.steps import Update, make_eval_step
from ctxfuse_jax.weights import load_pretrained

CLASSIFIER = "classifier"
TRUNK, HEAD = "trunk", "segmenter"
# Every stage's keys are folded from the seed by its place here.
STAGE_KEYS = (ORIGINAL, "segment_original", "segment_fine_tuned")


def _rngs(seed: int, stage: str, mixtures: Sequence[str]) -> tuple[jax.Array, jax.Array]:
    index = STAGE_KEYS.index(stage) if stage in STAGE_KEYS else len(STAGE_KEYS) + list(mixtures).index(stage)
    return tuple(jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), index)))


def pool_names(module) -> list[str]:
    """The five max-pool stages of a VGG (pool1..pool5), by their torch names."""
    return [name for name, _ in module.stages(train=False) if name.startswith("features_")]


class Study:
    """One dataset's models and scorers; stages are resumable and keyed by seed."""

    def __init__(self, config: ml_collections.ConfigDict, data: Labelled, mesh, workdir: str,
                 segmentation_data: Labelled | None = None):
        self.config, self.data, self.mesh, self.workdir = config, data, mesh, workdir
        # Images with masks for Table 6: the classification data itself when it has them (embedded).
        self.seg_data = segmentation_data or data
        self.geometry: Geometry = geometry(config)
        self.classifier = classifier_module(config, data.num_classes)
        self.dense = self.classifier.clone(fully_convolutional=True)
        self.pools = pool_names(self.classifier)
        self.loop = LoopOptions(**config.loop)
        self.mixtures = {name: Mixture.from_weights(m.weights) for name, m in config.fine_tune.mixtures.items()}

    # -- inputs ---------------------------------------------------------------------------------
    def inputs(self, mixture: Mixture, target_scales: Sequence[int], flip: bool):
        """Training crops drawn per image (`mixtures.train_images`); sharp images at the base scale to evaluate."""

        def inputs(batch, rng):
            images = batch_images(batch)
            if rng is None:
                return at_scale(images, self.geometry.base_scale)
            return train_images(images, rng, self.geometry, mixture, target_scales, flip)[0]

        return inputs

    def _sample(self):
        crop = self.geometry.train_crop
        return (jax.ShapeDtypeStruct((1, crop, crop, 3), jnp.float32),)

    def _fingerprint(self, stage: str) -> dict:
        return {"stage": stage, "data": self.config.data.to_dict(), "model": self.config.model.to_dict(),
                "protocol": self.config.protocol.to_dict(), "compute_dtype": self.config.compute_dtype}

    # -- stages ---------------------------------------------------------------------------------
    def original(self, seed: int, seed_dir: str) -> tuple[dict, dict]:
        """The model trained on sharp images: converted weights when configured, else trained here."""
        if self.config.pretrained.weights:
            return load_pretrained(self.config.pretrained.weights, self.classifier), {}
        settings = self.config.original
        init_rng, train_rng = _rngs(seed, ORIGINAL, self.mixtures)
        trained = train_classifier(
            ORIGINAL, _predict, learners={CLASSIFIER: Learner(self.classifier, self._sample(), init_rng)}, frozen={},
            train_split=self.data.train, test_split=self.data.test, train_config=settings.train, seed=seed,
            train_rng=train_rng, workdir=seed_dir, mesh=self.mesh, loop=self.loop,
            fingerprint={**self._fingerprint(ORIGINAL), "target_scales": tuple(settings.target_scales)},
            inputs=self.inputs(Mixture.from_weights({SHARP: 1.0}), settings.target_scales, settings.train.augment.flip))
        return trained.variables[CLASSIFIER], trained.metrics

    def fine_tune(self, name: str, original: dict, seed: int, seed_dir: str) -> tuple[dict, dict]:
        """The original model fine-tuned on mixture `name`, blurred per image inside the step."""
        settings = self.config.fine_tune
        mixture_config = settings.mixtures[name]
        _, train_rng = _rngs(seed, name, self.mixtures)
        trained = train_classifier(
            name, _predict, learners={CLASSIFIER: Learner(self.classifier, variables=original)}, frozen={},
            train_split=self.data.train, test_split=self.data.test, train_config=settings.train, seed=seed,
            train_rng=train_rng, workdir=seed_dir, mesh=self.mesh, loop=self.loop,
            fingerprint={**self._fingerprint(name), "mixture": mixture_config.to_dict(),
                         "original": self.config.original.to_dict(), "pretrained": self.config.pretrained.to_dict()},
            inputs=self.inputs(self.mixtures[name], mixture_config.target_scales, settings.train.augment.flip))
        return trained.variables[CLASSIFIER], trained.metrics

    def trunk(self):
        return self.classifier.clone(outputs=tuple(self.config.segmentation.layers), num_classes=None)

    def head(self):
        return build_model("hypercolumn_head", num_classes=self.seg_data.num_classes + 1,
                           hidden=self.config.segmentation.hidden)

    def segmenter(self, stage: str, classifier: dict, mixture: Mixture, seed: int, seed_dir: str) -> tuple[dict, dict]:
        """A hypercolumn head on a frozen trunk, trained per pixel (object class or background) on
        `mixture`'s images; `classifier` gives the trunk."""
        settings = self.config.segmentation
        init_rng, train_rng = _rngs(seed, stage, self.mixtures)
        trunk = self.trunk()
        trunk_variables = restrict_variables(classifier, trunk, (1, self.geometry.train_crop,
                                                                self.geometry.train_crop, 3))
        crop = self.geometry.train_crop
        features = jax.eval_shape(lambda x: trunk.apply(trunk_variables, x), self._sample()[0])
        head = self.head()
        initial = head.init(init_rng, jax.tree.map(lambda f: jnp.zeros(f.shape, jnp.float32), features), crop)
        base = (self.geometry.base_scale,)

        def loss(forward, batch, rng):
            images, masks = train_images(batch_images(batch), rng, self.geometry, mixture, base,
                                         settings.train.augment.flip, masks=batch["mask"])
            logits = forward(HEAD, forward(TRUNK, images), crop, train=True)
            target = pixel_targets(masks[..., 0] > 0.5, batch["label"])
            values = losses.softmax_cross_entropy(logits, target)
            return jnp.mean(values), {"pixel_accuracy": jnp.mean(jnp.argmax(logits, -1) == target)}

        def metrics(forward, batch):
            images = at_scale(batch_images(batch), self.geometry.base_scale)
            logits = forward(HEAD, forward(TRUNK, images), images.shape[1])
            target = pixel_targets(test_masks(batch, self.geometry.base_scale), batch["label"])
            return {"pixel_accuracy": jnp.mean(jnp.argmax(logits, -1) == target, axis=(1, 2))}

        def evaluation(specs):
            step = jax.jit(make_eval_step(specs, metrics))
            return lambda state: score_split(step, state, self.seg_data.test, self.config.eval.batch_size, self.mesh)

        trained = train_players(
            stage, learners={HEAD: Learner(head, variables=initial)}, frozen={TRUNK: (trunk, trunk_variables)},
            updates=[Update(players=(HEAD,), loss=loss)], evaluate=evaluation,
            train_split=self.seg_data.train, train_config=settings.train, seed=seed, train_rng=train_rng,
            workdir=seed_dir, mesh=self.mesh, loop=self.loop,
            fingerprint={**self._fingerprint(stage), "segmentation": settings.to_dict(),
                         "classifier_data": self.config.data.to_dict(),
                         "mixture": dict(zip(mixture.names, mixture.probabilities))})
        return {TRUNK: trunk_variables, HEAD: trained.variables[HEAD]}, trained.metrics


def _predict(forward, images, train: bool) -> jax.Array:
    return forward(CLASSIFIER, images, train=train)


def pixel_targets(foreground: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-pixel class: 0 for background, label + 1 on the object."""
    return jnp.where(foreground, labels[:, None, None].astype(jnp.int32) + 1, 0)


def test_masks(batch: Mapping[str, jax.Array], scale: int) -> jax.Array:
    """The exact masks at the network scale (nearest neighbour), as booleans (N, scale, scale)."""
    masks = batch["mask"][..., 0].astype(jnp.float32)
    return jax.image.resize(masks, (masks.shape[0], scale, scale), method="nearest") > 0.5


# -- Figure 4 and Table 6 -----------------------------------------------------------------------
def activation_invariance(study: Study, variables: Mapping[str, dict], family: Family, level: int,
                          num_images: int, seed: int) -> dict[str, Any]:
    """Hamming distances between binarised pool1..pool5 activations of sharp and blurred test images:
    per-layer means over `num_images` images and the maps of the first few, for every model."""
    pyramid = study.classifier.clone(outputs=tuple(study.pools), num_classes=None)
    count = min(num_images, len(study.data.test))
    images = batch_images({"image": jnp.asarray(study.data.test.arrays["image"][:count])})
    blurred = family.transform(images, {}, {}, jnp.int32(level), jax.random.PRNGKey(seed))
    base = study.geometry.base_scale

    @jax.jit
    def maps(variables, sharp, blurred):
        a = pyramid.apply(variables, at_scale(sharp, base))
        b = pyramid.apply(variables, at_scale(blurred, base))
        return {name: invariance.hamming_maps(a[name], b[name]) for name in study.pools}

    result = {}
    for model, v in variables.items():
        by_layer = jax.device_get(maps(restrict_variables(v, pyramid, (1, base, base, 3)), images, blurred))
        result[model] = {"means": invariance.layer_means(by_layer),
                         "maps": {name: np.asarray(m[:study.config.analysis.figure_images]) for name, m in
                                  by_layer.items()}}
    return result


def segmentation_scores(study: Study, segmenters: Mapping[str, dict], families: Sequence[Family]
                        ) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {condition level: {miou_all, miou_boundary}}} on the test set at the base scale."""
    trunk, head = study.trunk(), study.head()
    base = study.geometry.base_scale
    settings = study.config.segmentation
    num_classes = study.seg_data.num_classes + 1
    transforms = [f.transform for f in families]

    @functools.partial(jax.jit, static_argnums=(2,))
    def predict(variables, batch, family, level):
        images = transforms[family](batch_images(batch), batch, {}, level, jax.random.PRNGKey(study.config.eval.seed))
        images = at_scale(images, base)
        logits = head.apply(variables[HEAD], trunk.apply(variables[TRUNK], images), base)
        return {"predicted": jnp.argmax(logits, -1).astype(jnp.int32),
                "target": pixel_targets(test_masks(batch, base), batch["label"])}

    result = {}
    for model, variables in segmenters.items():
        result[model] = {}
        for index, family in enumerate(families):
            for level_index, level in enumerate(family.levels):
                pixels = per_example_outputs(lambda b: predict(variables, b, index, jnp.int32(level_index)),
                                             study.seg_data.test, study.config.eval.batch_size, study.mesh)
                result[model][level] = seg_metrics.segmentation_scores(
                    pixels["predicted"], pixels["target"], num_classes, settings.band_width)
    return result


# -- run ----------------------------------------------------------------------------------------
def run_seed(config, study: Study, scorers: scoring.Scorers, families: list[Family], seed: int, seed_dir: str
             ) -> dict[str, Any]:
    """Every model of one seed trained (or loaded), then scored for every table."""
    stages, variables = {}, {}
    variables[ORIGINAL], stages[ORIGINAL] = study.original(seed, seed_dir)
    for name in config.fine_tune.mixtures:
        variables[name], stages[name] = study.fine_tune(name, variables[ORIGINAL], seed, seed_dir)
    scores = scorers.score(variables)
    by_name = {f.name: f for f in families}
    d8 = config.analysis.invariance_condition
    family = by_name[d8.family]
    chosen = {m: variables[m] for m in config.analysis.invariance_models}
    invariance_result = activation_invariance(study, chosen, family, family.levels.index(d8.level),
                                              config.analysis.invariance_images, config.eval.seed)
    segmentation = {}
    if config.segmentation.enabled:
        settings = config.segmentation
        segmenters = {}
        segmenters[ORIGINAL], stages["segment_original"] = study.segmenter(
            "segment_original", variables[ORIGINAL], Mixture.from_weights({SHARP: 1.0}), seed, seed_dir)
        tuned = settings.fine_tuned_trunk
        segmenters[tuned], stages["segment_fine_tuned"] = study.segmenter(
            "segment_fine_tuned", variables[tuned], study.mixtures[tuned], seed, seed_dir)
        segmentation = segmentation_scores(study, segmenters, [by_name[name] for name in settings.conditions])
    return {"stages": stages, "scores": scores, "invariance": invariance_result,
            "segmentation": segmentation}


def finished(workdir: str, config: ml_collections.ConfigDict) -> Finished:
    """Every classifier the study scores (`scoring.every_output`: 'original@72', 'original@72+144',
    'sharp_d4@72', ensembles, ...), per seed, on the test split at the canonical scale; the
    segmenters label pixels, not images, and are left out."""
    data = load_labelled(config.data)
    study = Study(config, data, mesh=None, workdir=workdir)
    shapes = jax.eval_shape(lambda: init_variables(study.classifier, jax.random.PRNGKey(0),
                                                   *(jnp.zeros(s.shape) for s in study._sample())))
    program = scoring.every_output(config)
    # Converted weights, as `Study.original` loads them: every seed's original model.
    weights = config.pretrained.weights
    converted = {ORIGINAL: load_pretrained(weights, study.classifier)} if weights else {}
    models = []
    for seed in config.seeds:
        variables = dict(converted)
        for stage in program.players:
            if stage not in variables:
                variables[stage] = stage_players(workdir, f"seed_{seed}/{stage}", {CLASSIFIER: shapes})[CLASSIFIER]
        models.append(FinishedModels(f"seed_{seed}", {p: PlayerSpec(study.dense) for p in program.players},
                                     program.logits, variables))
    return Finished(workdir, config, data, tuple(models))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The experiment for a config that passed `config_checks.check_config` (as the CLI does first)."""
    start = time.monotonic()
    mesh = sharding.make_mesh()
    data = load_labelled(config.data)
    seg_config = config.segmentation
    seg_data = load_labelled(seg_config.data) if seg_config.enabled and seg_config.data else None
    study = Study(config, data, mesh, workdir, seg_data)
    families = scoring.blur_families(config, study.geometry, len(data.test))
    scorers = scoring.Scorers(config, study.dense, data, families, mesh)
    results = {seed: run_seed(config, study, scorers, families, seed, os.path.join(workdir, f"seed_{seed}"))
               for seed in config.seeds}
    if jax.process_index() == 0:
        outputs.write_outputs(config, study, results, workdir, time.monotonic() - start)
    return outputs.summary(config, results)
