"""The ImageNet-9 background study (seed 004) end to end.

Per seed: train the zoo classifier on each configured training variant (Original, Only-BG-T, No-FG,
Only-FG, Mixed-Rand), the Original one scored on every test variant as it trains (the paper's
"benchmark progress"); then score every model — and the FG, BG, Joint (and FG-conv) classifiers of
a finished fusion workdir, when one is given — under the evaluator's conditions: every test variant
and the adversarial-backgrounds challenge, one compiled program per architecture. From the
per-example predictions: accuracy per variant, BG-gap, challenge accuracy and fooling rates, the
fine-grained Mixed-Rand split, and the Grad-CAM mass inside the foreground.
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ctxfuse_jax import degrade
from ctxfuse_jax.data.pipeline import steps_per_epoch, to_unit_float
from ctxfuse_jax.data.sources import Labelled, load_labelled
from ctxfuse_jax.errors import DataError
from ctxfuse_jax.evaluate import apply_tapped, gradcam
from ctxfuse_jax.evaluate.conditions import Family, build_families, chosen_examples
from ctxfuse_jax.evaluate.evaluator import ConditionScorer, ConditionScores, frozen_players
from ctxfuse_jax.experiments.classification import Learner, classifier_module, image_sample, train_classifier
from ctxfuse_jax.experiments.finished import Finished, FinishedModels, stage_players
from ctxfuse_jax.experiments.fusion import finished as fusion_finished
from ctxfuse_jax.experiments.in9 import data as in9_data
from ctxfuse_jax.experiments.in9 import measures, outputs
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.loop import LoopOptions
from ctxfuse_jax.train.monitor import METRICS_FILE
from ctxfuse_jax.train.state import PlayerSpec, init_variables

VARIANTS = "in9"  # the config's variant family (every test variant)
CHALLENGE = "challenge"  # the config's composite family
PROGRESS_KEY = "in9/"  # eval metrics of the Original model while it trains: eval/in9/<variant>


def trained_name(variant: str) -> str:
    return f"{in9_data.NAMES[variant]}-trained"


def fusion_name(model: str) -> str:
    return f"fusion {model}"


def _rngs(seed: int, variant: str) -> tuple[jax.Array, jax.Array]:
    """(init, train) keys of the model trained on `variant`; independent of which others are trained."""
    return tuple(jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), degrade.VARIANTS.index(variant))))


class Scorer(ConditionScorer):
    """The configured families over the test split, and one compiled step per architecture."""

    def __init__(self, config: ml_collections.ConfigDict, data: Labelled, mesh: jax.sharding.Mesh):
        families = build_families(config.eval.conditions.to_dict(), data.test.arrays["image"].shape[1],
                                  len(data.test), config.eval.seed)
        super().__init__(families, data.test, data.num_classes, config.eval.batch_size, config.eval.seed, mesh)
        self.config, self.data = config, data
        self._gradcam = None
        self.add_architecture("classifier", {"classifier": PlayerSpec(classifier_module(config, data.num_classes))},
                              lambda fw, x: {"classifier": fw("classifier", x)})

    @property
    def variant_family(self) -> Family:
        return self.family(VARIANTS)

    def progress(self, players: Mapping[str, Any]) -> ConditionScores:
        """The variant family on `analysis.progress_images` test images: the same program, fewer batches."""
        examples = chosen_examples(len(self.data.test), self.config.analysis.progress_images, self.config.eval.seed,
                                   stream=2)
        families = [dataclasses.replace(f, examples=tuple(int(i) for i in examples)) if f.name == VARIANTS else f
                    for f in self.families]
        return self.score("classifier", players, only=(VARIANTS,), families=families)

    def gradcam(self, variables: Mapping[str, Any], images: jax.Array, labels: jax.Array) -> jax.Array:
        """Grad-CAM of `labels` at `analysis.cam_layer` of a classifier trained here; one program for all."""
        if self._gradcam is None:
            module = classifier_module(self.config, self.data.num_classes)
            layer = self.config.analysis.cam_layer

            def maps(variables, images, labels):
                return gradcam(lambda x, delta: apply_tapped(module, variables, layer, x, delta=delta), images,
                               labels)

            self._gradcam = jax.jit(maps)
        return self._gradcam(variables, images, labels)


def variant_accuracy(scores: ConditionScores, model: str) -> dict[str, float]:
    """{variant: accuracy} of one model."""
    return dict(zip(scores.family(VARIANTS).levels, scores.correct(model, VARIANTS).mean(axis=1).tolist()))


def train_on_variant(config, data: Labelled, variant: str, seed: int, seed_dir: str, mesh,
                     scorer: Scorer) -> tuple[dict, dict]:
    """Trains the classifier on the `variant` training set (tested on the same variant); the Original
    one is also scored on every test variant every `analysis.progress_every_epochs` epochs."""
    train = in9_data.variant_split(data.train, variant, data.num_classes, seed)
    test = in9_data.variant_split(data.test, variant, data.num_classes, config.eval.seed)
    init_rng, train_rng = _rngs(seed, variant)
    loop, extra_metrics = LoopOptions(**config.loop), None
    if variant == "original" and config.analysis.progress_every_epochs:
        loop = dataclasses.replace(loop, eval_every=config.analysis.progress_every_epochs
                                   * steps_per_epoch(len(train), config.train.batch_size))
        extra_metrics = functools.partial(progress_metrics, scorer)

    trained = train_classifier(
        f"train_{variant}", lambda fw, x, train_mode: fw("classifier", x, train=train_mode),
        learners={"classifier": Learner(classifier_module(config, data.num_classes), image_sample(train), init_rng)},
        frozen={}, train_split=train, test_split=test, train_config=config.train, seed=seed, train_rng=train_rng,
        workdir=seed_dir, mesh=mesh, loop=loop, extra_metrics=extra_metrics,
        fingerprint={"model": config.model.to_dict(), "data": config.data.to_dict(), "variant": variant,
                     "compute_dtype": config.compute_dtype, "eval": config.eval.to_dict(),
                     "progress_every_epochs": config.analysis.progress_every_epochs})
    return trained.variables["classifier"], trained.metrics


def progress_metrics(scorer: Scorer, state) -> dict[str, float]:
    """A training classifier's accuracy on every test variant (the stage's evaluation adds it)."""
    scores = scorer.progress({"classifier": state.players["classifier"]})
    return {f"{PROGRESS_KEY}{v}": a for v, a in variant_accuracy(scores, "classifier").items()}


def progress_points(seed_dir: str, per_epoch: int) -> list[dict[str, float]]:
    """The Original model's accuracy on every test variant at each evaluation while it trained."""
    path = os.path.join(seed_dir, "train_original", METRICS_FILE)
    points = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                prefix = f"eval/{PROGRESS_KEY}"
                accuracy = {k[len(prefix):]: v for k, v in record.items() if k.startswith(prefix)}
                if accuracy:
                    points.append({"epoch": record["step"] / per_epoch, **accuracy})
    return points


def gradcam_masses(data: Labelled, scorer: Scorer, variables: dict, indices: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM (true class) of chosen test images, and each map's mass inside the foreground mask."""
    test = data.test.arrays
    heatmaps = np.asarray(scorer.gradcam(variables, to_unit_float(jnp.asarray(test["image"][indices])),
                                         jnp.asarray(test["label"][indices])))
    return heatmaps, measures.mass_inside(heatmaps, test["mask"][indices])


def seed_measures(scores: ConditionScores, model: str, data: Labelled, donors: np.ndarray) -> dict[str, Any]:
    """Everything the report says about one model of one seed, from its per-example predictions."""
    labels = data.test.arrays["label"]
    accuracy = variant_accuracy(scores, model)
    variants = scores.family(VARIANTS)
    result: dict[str, Any] = {"accuracy": accuracy}
    if {"mixed_same", "mixed_rand"} <= set(accuracy):
        result["bg_gap"] = measures.bg_gap(accuracy)
    if "mixed_rand" in variants.levels:
        mixed = variants.predictions[model][variants.levels.index("mixed_rand")]
        result["follows"] = measures.follows(mixed, labels, labels[donors])
    if CHALLENGE in scores.families:
        challenge = scores.family(CHALLENGE)
        correct = scores.correct(model, CHALLENGE)
        background_labels = labels[np.asarray(challenge.levels, int)]  # a composite's levels: bank indices
        rates = measures.fooling_rates(correct, labels[challenge.examples], background_labels)
        original = scores.correct(model, VARIANTS)[variants.levels.index("original"), challenge.examples]
        result["challenge"] = {
            "accuracy": measures.challenge_accuracy(correct),
            # Of the foregrounds recognised on their own image, the share some background flips.
            "fooled_share": float((~correct.all(axis=0))[original].mean()) if original.any() else float("nan"),
            "foregrounds": len(challenge.examples), "backgrounds": len(challenge.levels),
            "fooling_rates": rates.tolist()}
    return result


def fusion_scores(config, data: Labelled, scorer: Scorer) -> dict[int, dict[str, ConditionScores]]:
    """{seed: scores of every classifier} of a finished fusion workdir, in one program for all."""
    _, models = fusion_finished.seed_models(config.fusion_workdir, data.num_classes, fusion_name)
    first = next(iter(models.values()))  # every seed holds the same classifiers, e.g. FG, BG, Joint
    scorer.add_architecture("fusion", first.specs, first.logits_fn)
    return {seed: scorer.score("fusion", frozen_players(m.variables)) for seed, m in models.items()}


def run_seed(config, data: Labelled, seed: int, seed_dir: str, mesh, scorer: Scorer, donors: np.ndarray,
             cam_images: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One seed: every training variant's model trained, scored and measured; and their Grad-CAM maps."""
    models, stages, cams = {}, {}, {}
    for variant in config.train_variants:
        name = trained_name(variant)
        variables, stages[f"train_{variant}"] = train_on_variant(config, data, variant, seed, seed_dir, mesh, scorer)
        scores = scorer.score("classifier", frozen_players({"classifier": variables}))
        models[name] = seed_measures(scores, "classifier", data, donors)
        cams[name], mass = gradcam_masses(data, scorer, variables, cam_images)
        models[name]["gradcam_mass"] = float(np.nanmean(mass))
    per_epoch = steps_per_epoch(len(data.train), config.train.batch_size)
    return {"models": models, "stages": stages, "progress": progress_points(seed_dir, per_epoch)}, cams


def finished(workdir: str, config: ml_collections.ConfigDict) -> Finished:
    """Every seed's classifier per training variant ("Original-trained", ...) on the usable test
    split, and those of the fusion workdir it read ("fusion FG", ...), when one was given."""
    if config.data.name == in9_data.RELEASE:
        raise DataError(f"{workdir} scored the released folders: it trained nothing, and its pretrained models "
                        "(`pretrained`, through class maps) are read from their own weight files")
    data, _ = in9_data.usable(load_labelled(config.data))
    module = classifier_module(config, data.num_classes)
    shapes = jax.eval_shape(lambda: init_variables(module, jax.random.PRNGKey(0),
                                                   *(jnp.zeros(s.shape) for s in image_sample(data.test))))
    stages = {f"train_{v}": trained_name(v) for v in config.train_variants}  # player: the classifier it is
    specs = {stage: PlayerSpec(module) for stage in stages}

    def logits(fw, images):
        return {name: fw(stage, images) for stage, name in stages.items()}

    models = []
    for seed in config.seeds:
        variables = {stage: stage_players(workdir, f"seed_{seed}/{stage}", {"classifier": shapes})["classifier"]
                     for stage in stages}
        models.append(FinishedModels(f"seed_{seed}", specs, logits, variables))
    if config.fusion_workdir:
        _, fusion = fusion_finished.seed_models(config.fusion_workdir, data.num_classes, fusion_name)
        models += [dataclasses.replace(m, name=f"fusion/{m.name}") for m in fusion.values()]
    return Finished(workdir, config, data, tuple(models))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The experiment for a config that passed `config_checks.check_config` (as the CLI does first)."""
    if config.data.name == in9_data.RELEASE:
        from ctxfuse_jax.experiments.in9 import release  # the released folders: nothing to train

        return release.run(config, workdir)
    start = time.monotonic()
    mesh = sharding.make_mesh()
    data, dropped = in9_data.usable(load_labelled(config.data))
    if any(dropped.values()):
        print(f"[in9] left out images whose box covers the whole image (no background to tile): {dropped}",
              flush=True)
    scorer = Scorer(config, data, mesh)
    donors = scorer.bank["mixed_rand"]
    cam_images = chosen_examples(len(data.test), config.analysis.gradcam_images, config.eval.seed, stream=3)
    trained, first_cams = {}, None
    for seed in config.seeds:
        trained[seed], cams = run_seed(config, data, seed, os.path.join(workdir, f"seed_{seed}"), mesh, scorer,
                                       donors, cam_images)
        first_cams = first_cams or cams
    fusion = {}
    if config.fusion_workdir:
        for seed, scores in fusion_scores(config, data, scorer).items():
            fusion[seed] = {model: seed_measures(scores, model, data, donors)
                            for model in scores.family(VARIANTS).predictions}
    results = {"trained": trained, "fusion": fusion}
    if jax.process_index() == 0:
        outputs.write_outputs(config, data, scorer, results, first_cams, cam_images, workdir,
                              time.monotonic() - start)
    return results
