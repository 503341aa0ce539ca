"""Seed 003 end to end: degradation sweeps, the master-slave network and Table 1's baselines.

Per seed: the base models (VGG-16 and AlexNet: converted weights, or trained here on clean images);
the master, a quality-prediction network trained to tell the configured bins apart; the slave on
the base VGG-16, its trunk frozen and shared and one branch per degraded bin fine-tuned on that
bin's images; and the baselines, each the base model with the layers after one stage fine-tuned
(data augmentation on all bins' images; stability training on the whole model) or with its most
degradation-sensitive features masked. Degraded images come from the host codecs
(`data.degraded`): training batches per image from the bins, test sets per sweep level, each made
once and scored by one compiled program that runs every model and decision on it.
"""

from __future__ import annotations

import functools
import os
import time
import zlib
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ctxfuse_jax.data import degraded, quality_bins
from ctxfuse_jax.data.pipeline import ArraySplit, to_unit_float
from ctxfuse_jax.data.sources import Labelled, load_labelled
from ctxfuse_jax.evaluate.evaluator import frozen_players
from ctxfuse_jax.evaluate.scoring import per_example_outputs
from ctxfuse_jax.experiments.classification import (Learner, classification_evaluation, image_inputs,
                                                    image_sample, train_classifier, train_players)
from ctxfuse_jax.experiments.finished import Finished, FinishedModels, stage_players
from ctxfuse_jax.experiments.master_slave import baselines, decisions, outputs
from ctxfuse_jax.models import build_model, cut_at, receptive_field, restrict_variables, split_at
from ctxfuse_jax.models.precision import compute_dtype
from ctxfuse_jax.models.variables import flatten, unflatten
from ctxfuse_jax.train import losses, sharding
from ctxfuse_jax.train.forward import Forward
from ctxfuse_jax.train.loop import LoopOptions
from ctxfuse_jax.train.monitor import Progress
from ctxfuse_jax.train.state import PlayerSpec, init_variables
from ctxfuse_jax.train.steps import Update
from ctxfuse_jax.weights import load_pretrained

CLASSIFIER, MASTER, TRUNK, BRANCH = "classifier", "master", "trunk", "branch"
MS, AMS, MAP = "MS", "AMS", "MAP"
JPEG_BLOCK = 8  # pixels: the unit JPEG compresses (Fig. 1c)


def bins_of(config: ml_collections.ConfigDict) -> quality_bins.QualityBins:
    """The configured quality bins: the master's classes, one slave branch each."""
    return quality_bins.QualityBins(tuple(quality_bins.Bin(**b) for b in config.bins.bins),
                                tuple(config.bins.probabilities) or None)


def sweep_label(name: str) -> str:
    """'noise_jpeg2000' -> 'noise + jpeg2000': the name a sweep has in tables and figures."""
    return " + ".join(name.split("_"))


def merged(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """Variables of a model's halves as the whole model's (each leaf in one half)."""
    return unflatten({k: v for part in parts for k, v in flatten(part).items()})


def _rng(seed: int, stage: str) -> tuple[jax.Array, jax.Array]:
    """(init, train) keys of stage `stage`: the seed folded with a checksum of the stage's name."""
    return tuple(jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(stage.encode()))))


class Study:
    """One dataset's modules and resumable stages, keyed by seed."""

    def __init__(self, config: ml_collections.ConfigDict, data: Labelled, mesh):
        self.config, self.data, self.mesh = config, data, mesh
        self.loop = LoopOptions(**config.loop)
        self.bins = bins_of(config)
        dtype = compute_dtype(config.compute_dtype)
        self.modules = {key: build_model(m.model.name, num_classes=data.num_classes, dtype=dtype,
                                         **{k: v for k, v in m.model.items() if k != "name"})
                        for key, m in config.models.items()}
        self.labels = {key: m.label for key, m in config.models.items()}
        self.base = self.modules[config.slave.base]
        self.sample = image_sample(data.train)
        self.input_shape = self.sample[0].shape
        self.slave = split_at(self.base, config.slave.split, self.input_shape)
        self.master_module = build_model(config.master.model.name, num_classes=len(self.bins.bins), dtype=dtype,
                                         **{k: v for k, v in config.master.model.items() if k != "name"})

    def _fingerprint(self, stage: str) -> dict:
        return {"stage": stage, "data": self.config.data.to_dict(), "compute_dtype": self.config.compute_dtype}

    def _base_fingerprint(self) -> dict:
        key = self.config.slave.base
        return {"base": self.config.models[key].to_dict()}

    def _degraded_batches(self, bins: quality_bins.QualityBins, train: ml_collections.ConfigDict, seed: int):
        return lambda start: degraded.train_batches(self.data.train, bins, train.batch_size, seed, start)

    # -- stages ---------------------------------------------------------------------------------
    def base_model(self, key: str, seed: int, seed_dir: str) -> tuple[dict, dict]:
        """Model `key` on clean images: converted weights when configured, else trained here."""
        settings, module = self.config.models[key], self.modules[key]
        if settings.weights:
            return load_pretrained(settings.weights, module), {}
        name = f"base_{key}"
        init_rng, train_rng = _rng(seed, name)
        trained = train_classifier(
            name, _predict(CLASSIFIER), learners={CLASSIFIER: Learner(module, self.sample, init_rng)}, frozen={},
            train_split=self.data.train, test_split=self.data.test, train_config=settings.train, seed=seed,
            train_rng=train_rng, workdir=seed_dir, mesh=self.mesh, loop=self.loop,
            fingerprint={**self._fingerprint(name), "model": settings.to_dict()})
        return trained.variables[CLASSIFIER], trained.metrics

    def master(self, seed: int, seed_dir: str) -> tuple[dict, dict]:
        """The quality-prediction network, trained to predict each training image's bin."""
        train = self.config.master.train
        init_rng, train_rng = _rng(seed, MASTER)
        batches = self._degraded_batches(self.bins, train, seed)
        trained = train_classifier(
            MASTER, _predict(MASTER), learners={MASTER: Learner(self.master_module, self.sample, init_rng)},
            frozen={}, train_split=self.data.train, test_split=self.bin_test_split(seed), train_config=train,
            seed=seed, train_rng=train_rng, workdir=seed_dir, mesh=self.mesh, loop=self.loop,
            fingerprint={**self._fingerprint(MASTER), "master": self.config.master.to_dict(),
                         "bins": self.config.bins.to_dict()},
            batches=lambda start: (_bin_labelled(b) for b in batches(start)))
        return trained.variables[MASTER], trained.metrics

    def bin_test_split(self, seed: int) -> ArraySplit:
        """The test images, each degraded by a bin drawn for it, labelled by that bin."""
        test = self.data.test
        batch = next(degraded.train_batches(test, self.bins, len(test), seed + self.config.eval.seed + 1))
        return ArraySplit(_bin_labelled(batch))

    def fine_tuned(self, name: str, split_stage: str, bins: quality_bins.QualityBins, base: dict,
                   train: ml_collections.ConfigDict, seed: int, seed_dir: str) -> tuple[dict, dict]:
        """The base model's layers after `split_stage` fine-tuned on `bins`' images, the rest frozen;
        returns the whole model's variables."""
        split = split_at(self.base, split_stage, self.input_shape)
        trunk_variables, branch_variables = split.variables(base)
        _, train_rng = _rng(seed, name)

        def predict(forward, images, train):
            return forward(BRANCH, forward(TRUNK, images), train=train)

        trained = train_classifier(
            name, predict, learners={BRANCH: Learner(split.branch, variables=branch_variables)},
            frozen={TRUNK: (split.trunk, trunk_variables)}, train_split=self.data.train,
            test_split=self.data.test, train_config=train, seed=seed, train_rng=train_rng, workdir=seed_dir,
            mesh=self.mesh, loop=self.loop,
            fingerprint={**self._fingerprint(name), **self._base_fingerprint(), "split": split_stage,
                         "bins": [b.name for b in bins.bins], "probabilities": bins.probabilities},
            batches=self._degraded_batches(bins, train, seed))
        return merged(trunk_variables, trained.variables[BRANCH]), trained.metrics

    def stability(self, base: dict, seed: int, seed_dir: str) -> tuple[dict, dict]:
        """The whole base model fine-tuned on clean images with Zheng et al.'s stability term."""
        settings = self.config.baselines.stability
        train = settings.train
        _, train_rng = _rng(seed, "stability")
        inputs = image_inputs(train.augment)

        def loss(forward, batch, rng):
            augment_rng, noise_rng = jax.random.split(rng)
            images = inputs(batch, augment_rng)
            noisy = images + settings.noise_std * jax.random.normal(noise_rng, images.shape, images.dtype)
            logits = forward(CLASSIFIER, jnp.concatenate([images, noisy]), train=True)
            clean_logits, noisy_logits = jnp.split(logits, 2)
            task = jnp.mean(losses.softmax_cross_entropy(clean_logits, batch["label"]))
            stability = jnp.mean(baselines.stability_divergence(clean_logits, noisy_logits))
            return task + settings.alpha * stability, {"accuracy": jnp.mean(losses.correct(clean_logits, batch["label"])),
                                                       "stability": stability}

        trained = train_players(
            "stability", learners={CLASSIFIER: Learner(self.base, variables=base)}, frozen={},
            updates=[Update(players=(CLASSIFIER,), loss=loss)],
            evaluate=classification_evaluation(_predict(CLASSIFIER), inputs, self.data.test, train.batch_size,
                                               self.mesh),
            train_split=self.data.train, train_config=train, seed=seed, train_rng=train_rng, workdir=seed_dir,
            mesh=self.mesh, loop=self.loop,
            fingerprint={**self._fingerprint("stability"), **self._base_fingerprint(),
                         "stability": settings.to_dict()})
        return trained.variables[CLASSIFIER], trained.metrics

    def feature_mask(self, base: dict, seed: int) -> np.ndarray:
        """DeepCloak's mask at `masking.stage`: the features Table 1's condition changes most on
        training images, zeroed; one per class with `masking.per_class`."""
        settings, table = self.config.baselines.masking, self.config.eval.table
        head = self.base.clone(stop_at=settings.stage, outputs=())
        count = min(settings.images, len(self.data.train))
        clean = ArraySplit({"image": self.data.train.arrays["image"][:count],
                            "label": self.data.train.arrays["label"][:count]})
        worse = degraded.degrade_split(clean, quality_bins.Bin(table.kind, table.quality, table.quality), seed)
        variables = jax.device_put(restrict_variables(base, head, self.input_shape))
        apply = jax.jit(lambda v, b: head.apply(v, to_unit_float(b["image"])))  # variables an argument, not constants
        features = functools.partial(apply, variables)
        batch = self.config.eval.batch_size
        clean_features, worse_features = (per_example_outputs(features, s, batch, self.mesh) for s in (clean, worse))
        if settings.per_class:
            return baselines.per_class_masks(clean_features, worse_features, clean.arrays["label"],
                                             self.data.num_classes, settings.fraction)
        return baselines.most_changed_mask(clean_features, worse_features, settings.fraction)


def _predict(player: str):
    return lambda forward, images, train: forward(player, images, train=train)


def _bin_labelled(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A degraded batch whose label is its quality bin: what the master learns and is scored on."""
    return {"image": batch["image"], "label": batch[quality_bins.BIN]}


# -- scoring ------------------------------------------------------------------------------------
def feature_stages(study: Study) -> tuple[str, ...]:
    """Where scoring cuts the base model: the slave's split, each augmentation model's split and the
    masked stage. Every model built on the base shares its layers before its own cut."""
    config = study.config
    return (config.slave.split, *config.baselines.augmentation.splits.values(), config.baselines.masking.stage)


def scoring_modules(study: Study) -> dict[str, nn.Module]:
    """The players of the scoring program by name: the other base models (`base_<key>`), the base
    model in pieces cut at `feature_stages` (`piece_<i>`), the slave's fine-tuned branches
    (`branch_<i>`, i >= 1), the master, the layers after each augmentation model's cut
    (`augmentation_<name>`) and after the masked stage (`cloak`, the base model's), and the
    stability-trained model."""
    config, base_key = study.config, study.config.slave.base
    modules = {f"base_{key}": module for key, module in study.modules.items() if key != base_key}
    modules.update({f"piece_{i}": piece for i, (_, piece) in enumerate(cut_at(study.base, feature_stages(study)))})
    modules.update({f"branch_{i}": study.slave.branch for i in range(1, len(study.bins.bins))})
    modules[MASTER] = study.master_module
    modules.update({f"augmentation_{name}": study.base.clone(start_at=stage)
                    for name, stage in config.baselines.augmentation.splits.items()})
    modules["cloak"] = study.base.clone(start_at=config.baselines.masking.stage)
    modules["stability"] = study.base
    return modules


def classify(study: Study, forward, images: jax.Array, mask: jax.Array | None = None
             ) -> tuple[dict[str, jax.Array], list[jax.Array], jax.Array]:
    """({method: logits}, the slave's branches' logits, the master's bin probabilities) of `images`
    for every base model, the slave's three decisions and each baseline; `forward(player, x)` runs
    `scoring_modules`' players. DC only with `mask` (its features' mask, per image or shared).

    The base model's layers run once for all the models that share them: the slave's trunk for its
    branches (the base model's own rest is branch 1), its features at each augmentation split for
    that model's fine-tuned layers, at the masked stage for the masked copy."""
    config, base_key = study.config, study.config.slave.base
    split, masked = config.slave.split, config.baselines.masking.stage
    branch_of_bin = np.arange(len(study.bins.bins))
    logits = {study.labels[key]: forward(f"base_{key}", images) for key in study.modules if key != base_key}
    features, x = {}, images
    for i, (stage, _) in enumerate(cut_at(study.base, feature_stages(study))):
        x = features[stage] = forward(f"piece_{i}", x)
    logits[study.labels[base_key]] = x
    branch_logits = [x] + [forward(f"branch_{i}", features[split]) for i in range(1, len(study.bins.bins))]
    branch_probs = jnp.stack([jax.nn.softmax(b.astype(jnp.float32)) for b in branch_logits])
    master_probs = jax.nn.softmax(forward(MASTER, images).astype(jnp.float32))
    probs = {MS: decisions.switched(branch_probs, master_probs, branch_of_bin),
             AMS: decisions.max_pooled(branch_probs),
             MAP: decisions.map_combined(branch_probs, master_probs, branch_of_bin)}
    logits.update({name: decisions.as_logits(p) for name, p in probs.items()})
    for name, stage in config.baselines.augmentation.splits.items():
        logits[f"DA {name}"] = forward(f"augmentation_{name}", features[stage])
    logits["ST"] = forward("stability", images)
    if mask is not None:
        logits["DC"] = forward("cloak", features[masked] * mask)
    return logits, branch_logits, master_probs


def predictions(study: Study):
    """One program: `(variables, batch) -> {method: top-1 class}` for every method `classify` gives
    (DC with the true label's mask under `masking.per_class`), and the master's bin under 'bin'."""
    specs = {player: PlayerSpec(module) for player, module in scoring_modules(study).items()}
    per_class = study.config.baselines.masking.per_class

    def program(variables, batch):
        mask = variables["mask"][batch["label"]] if per_class else variables["mask"]  # per class: the label's
        forward = Forward(specs, frozen_players(variables["players"]))
        logits, _, master_probs = classify(study, forward, to_unit_float(batch["image"]), mask)
        out = {name: jnp.argmax(value, axis=-1) for name, value in logits.items()}
        out["bin"] = jnp.argmax(master_probs, axis=-1)
        return out

    return jax.jit(program)


def scoring_players(study: Study, models: Mapping[str, Any]) -> dict[str, Any]:
    """The variables of `scoring_modules`' players, from the trained models of one seed: of every
    model built on the base model, only the layers after its cut (the rest are the base model's)."""
    config, base_key = study.config, study.config.slave.base
    base = models["base"][base_key]
    shape = study.input_shape

    def after(stage: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        return restrict_variables(variables, study.base.clone(start_at=stage), shape)

    players = {f"base_{key}": v for key, v in models["base"].items() if key != base_key}
    players.update({f"piece_{i}": restrict_variables(base, piece, shape)
                    for i, (_, piece) in enumerate(cut_at(study.base, feature_stages(study)))})
    players.update({f"branch_{i}": v for i, v in enumerate(models["branches"][1:], start=1)})
    players[MASTER] = models[MASTER]
    players.update({f"augmentation_{name}": after(stage, models["augmentation"][name])
                    for name, stage in config.baselines.augmentation.splits.items()})
    players["cloak"] = after(config.baselines.masking.stage, base)
    players["stability"] = models["stability"]
    # Both collections for every player, if empty: a piece may hold no variables, a model no batch norm.
    return {player: {k: v.get(k, {}) for k in ("params", "batch_stats")} for player, v in players.items()}


def scoring_variables(study: Study, models: Mapping[str, Any]) -> dict[str, Any]:
    """What `predictions` reads: the players' variables and DC's feature mask."""
    return {"players": scoring_players(study, models), "mask": jnp.asarray(models["mask"])}


def psnr(clean: np.ndarray, worse: np.ndarray) -> float:
    """Mean over images of their PSNR in dB (8-bit peak); identical images count as 100 dB."""
    error = np.mean((clean.astype(np.float64) - worse.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return float(np.mean(np.where(error > 0, 10 * np.log10(255.0 ** 2 / np.maximum(error, 1e-12)), 100.0)))


def score(study: Study, models: Mapping[Any, Mapping[str, Any]], test_sets: degraded.DegradedTestSets
          ) -> dict[Any, dict[str, Any]]:
    """Per seed: top-1 of every method on every sweep level and on Table 1's clean and degraded
    images, and the master's confusion matrix over the bins. `models` maps seed -> its trained
    models; each degraded test set is made once, scored by every seed's models, then let go."""
    program = predictions(study)
    # On the device once: converted weights arrive as numpy, which every batch would copy again.
    variables = {seed: jax.device_put(scoring_variables(study, m)) for seed, m in models.items()}
    batch, mesh, config = study.config.eval.batch_size, study.mesh, study.config
    clean = test_sets.split

    def predicted(split: ArraySplit) -> dict[Any, dict[str, np.ndarray]]:
        return {seed: per_example_outputs(lambda b, v=v: program(v, b), split, batch, mesh)
                for seed, v in variables.items()}

    def top1(split: ArraySplit) -> dict[Any, dict[str, float]]:
        labels = split.arrays["label"]
        return {seed: {m: float(np.mean(p == labels)) for m, p in out.items() if m != "bin"}
                for seed, out in predicted(split).items()}

    table = config.eval.table
    conditions = [(sweep_label(name), sweep, q) for name, sweep in config.eval.sweeps.items() for q in sweep.qualities]
    progress = Progress("scoring", len(conditions) + 2)
    scores = {"table clean": top1(clean)}
    progress.start(1)
    scores["table degraded"] = top1(test_sets.at(table.kind, table.quality))
    test_sets.clear()
    sweeps = {seed: {} for seed in models}
    for step, (label, sweep, quality) in enumerate(conditions, start=3):
        split = test_sets.at(sweep.kind, quality, blur_sigma=sweep.blur_sigma, noise_std=sweep.noise_std)
        level_psnr = psnr(clean.arrays["image"], split.arrays["image"])
        for seed, accuracy in top1(split).items():
            entry = sweeps[seed].setdefault(label, {
                "kind": sweep.kind, "unit": quality_bins.UNITS[sweep.kind], "qualities": [],
                "blur_sigma": sweep.blur_sigma, "noise_std": sweep.noise_std, "psnr": [],
                "top1": {m: [] for m in accuracy}})
            entry["qualities"].append(float(quality))
            entry["psnr"].append(level_psnr)
            for m, value in accuracy.items():
                entry["top1"][m].append(value)
        test_sets.clear()
        first = next(iter(sweeps.values()))[label]["top1"]
        progress.report(step, {f"{label} {quality:g} {m}": first[m][-1] for m in (study.labels[config.slave.base], MS)})
    bin_split = study.bin_test_split(config.eval.seed)
    count = len(study.bins.bins)
    results = {}
    for seed, out in predicted(bin_split).items():
        confusion = np.zeros((count, count), np.int64)
        np.add.at(confusion, (bin_split.arrays["label"], out["bin"]), 1)
        results[seed] = {
            "sweeps": sweeps[seed],
            "table": {"condition": f"{table.kind} {table.quality:g}", "clean": scores["table clean"][seed],
                      "degraded": scores["table degraded"][seed]},
            "master": {"bins": list(study.bins.names), "confusion": confusion.tolist(),
                       "ranges": [[b.kind, b.low, b.high] for b in study.bins.bins],
                       "accuracy": float(np.trace(confusion) / confusion.sum())}}
    return results


def receptive_fields(study: Study) -> dict[str, dict[str, Any]]:
    """Each base model's receptive field at its first pooling output (the paper's Fig. 1c)."""
    fields = {}
    for key, module in study.modules.items():
        first_pool = next(name for name, _ in module.stages(train=False))
        field = receptive_field(module, first_pool)
        fields[study.labels[key]] = {"stage": first_pool, "size": field.size, "stride": field.jump}
    return fields


# -- run ----------------------------------------------------------------------------------------
def train_seed(study: Study, seed: int, seed_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(stage metrics, models) of one seed: every model trained (or loaded)."""
    config = study.config
    stages, models = {}, {"base": {}, "augmentation": {}}
    for key in config.models:
        models["base"][key], stages[f"base_{key}"] = study.base_model(key, seed, seed_dir)
    base = models["base"][config.slave.base]
    models[MASTER], stages[MASTER] = study.master(seed, seed_dir)
    _, own_branch = study.slave.variables(base)
    models["branches"] = [own_branch]
    for index, b in enumerate(study.bins.bins[1:], start=1):
        name = f"branch_{index}"
        whole, stages[name] = study.fine_tuned(name, config.slave.split, quality_bins.QualityBins((b,)), base,
                                               config.slave.train, seed, seed_dir)
        models["branches"].append(study.slave.variables(whole)[1])
    augmentation = config.baselines.augmentation
    for name, stage in augmentation.splits.items():
        models["augmentation"][name], stages[f"augmentation_{name}"] = study.fine_tuned(
            f"augmentation_{name}", stage, study.bins, base, augmentation.train, seed, seed_dir)
    models["stability"], stages["stability"] = study.stability(base, seed, seed_dir)
    models["mask"] = study.feature_mask(base, seed)
    return stages, models


def read_seed(study: Study, workdir: str, seed: int) -> dict[str, Any]:
    """One seed's models as `train_seed` gives them (without DC's mask), read from its finished stages."""
    config, seed_dir = study.config, f"seed_{seed}"

    def shapes(module) -> dict[str, Any]:
        return jax.eval_shape(lambda: init_variables(module, jax.random.PRNGKey(0), jnp.zeros(study.input_shape)))

    def read(stage: str, player: str, player_shapes) -> dict[str, Any]:
        return stage_players(workdir, f"{seed_dir}/{stage}", {player: player_shapes})[player]

    models = {"base": {}, "augmentation": {}}
    for key, settings in config.models.items():
        module = study.modules[key]
        models["base"][key] = (load_pretrained(settings.weights, module) if settings.weights  # as `base_model`
                               else read(f"base_{key}", CLASSIFIER, shapes(module)))
    base = models["base"][config.slave.base]
    models[MASTER] = read(MASTER, MASTER, shapes(study.master_module))
    base_shapes = shapes(study.base)
    own_branch = study.slave.variables(base)[1]
    branch_shapes = study.slave.variables(base_shapes)[1]
    models["branches"] = [own_branch] + [read(f"branch_{i}", BRANCH, branch_shapes)
                                         for i in range(1, len(study.bins.bins))]
    for name, stage in config.baselines.augmentation.splits.items():
        split = split_at(study.base, stage, study.input_shape)
        fine_tuned = read(f"augmentation_{name}", BRANCH, split.variables(base_shapes)[1])
        models["augmentation"][name] = merged(split.variables(base)[0], fine_tuned)
    models["stability"] = read("stability", CLASSIFIER, base_shapes)
    return models


def finished(workdir: str, config: ml_collections.ConfigDict) -> Finished:
    """Every seed's classifiers of images on the clean test split: the base models ("VGG-16",
    "AlexNet"), the slave's decisions ("MS", "AMS", "MAP": the master and the branches, all on the
    image), its fine-tuned branches as whole models ("branch <bin>"; the clean bin's is the base
    model), and the baselines ("DA <split>", "ST"; "DC" only with one shared mask: `masking.per_class`
    picks the mask by the true label, so it is no function of the image). The master predicts
    quality bins, not classes."""
    data = load_labelled(config.data)
    study = Study(config, data, sharding.make_mesh())
    specs = {player: PlayerSpec(module) for player, module in scoring_modules(study).items()}
    models = []
    for seed in config.seeds:
        trained = read_seed(study, workdir, seed)
        shared_mask = None
        if not config.baselines.masking.per_class:  # computed, as `train_seed` does, from the base model
            shared_mask = jnp.asarray(study.feature_mask(trained["base"][config.slave.base], seed))

        def logits(forward, images, mask=shared_mask):
            methods, branches, _ = classify(study, forward, images, mask)
            return {**methods, **{f"branch {b.name}": v for b, v in zip(study.bins.bins[1:], branches[1:])}}

        models.append(FinishedModels(f"seed_{seed}", specs, logits, scoring_players(study, trained)))
    return Finished(workdir, config, data, tuple(models))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The experiment for a config that passed `config_checks.check_config` (as the CLI does first)."""
    start = time.monotonic()
    mesh = sharding.make_mesh()
    data = load_labelled(config.data)
    study = Study(config, data, mesh)
    trained = {seed: train_seed(study, seed, os.path.join(workdir, f"seed_{seed}")) for seed in config.seeds}
    scores = score(study, {seed: models for seed, (_, models) in trained.items()},
                   degraded.DegradedTestSets(data.test, seed=config.eval.seed))
    fields = receptive_fields(study)
    results = {seed: {"stages": stages, "receptive_fields": fields, "jpeg_block": JPEG_BLOCK, **scores[seed]}
               for seed, (stages, _) in trained.items()}
    if jax.process_index() == 0:
        outputs.write_outputs(config, results, workdir, time.monotonic() - start)
    return outputs.summary(config, results)
