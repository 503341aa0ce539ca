"""Contextual fusion (seed 000) end to end.

Per seed: obtain a foreground (FG) and a background (BG) feature stream — converted pretrained
weights, or pretraining on the embedded object crops / scenes — freeze them, train four heads
(FG probe, BG probe, Joint fusion head, FG-conv control), then score them with the evaluator of
conditions under the configured blur conditions (object only, whole image), on the All and
Dissimilar test sets. Every stage is resumable; the report, tables and figures are rewritten from
the results at the end of every run.
"""

import dataclasses
import functools
import os
import time

import jax
import ml_collections

from ctxfuse_jax import provenance
from ctxfuse_jax.data import test_sets
from ctxfuse_jax.data.sources import Labelled, load_labelled
from ctxfuse_jax.evaluate.conditions import build_families
from ctxfuse_jax.evaluate.evaluator import evaluate_conditions, frozen_players, long_table, make_condition_step
from ctxfuse_jax.experiments import feature_cache
from ctxfuse_jax.experiments.classification import Learner, image_sample, train_classifier
from ctxfuse_jax.experiments.feature_cache import StreamFeatures
from ctxfuse_jax.experiments.fusion import analysis, report
from ctxfuse_jax.experiments.fusion.finished import finished  # noqa: F401  (`read_finished` looks here)
from ctxfuse_jax.experiments.fusion.networks import (MODELS, REFERENCE_SIZE, ROLES, STREAMS_OF, all_logits,
                                                     backbone_module, head_logits, head_module, stream_feature,
                                                     stream_module, streams_then_head)
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.models.variables import restrict_variables
from ctxfuse_jax.report import severity_figure, tables
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.loop import LoopOptions
from ctxfuse_jax.train.state import PlayerSpec
from ctxfuse_jax.weights import load_pretrained


@dataclasses.dataclass
class SeedResult:
    streams: dict  # role -> frozen stream variables
    heads: dict  # model -> head variables
    metrics: dict  # stage -> final test metrics
    rows: list  # the evaluator's long table for this seed


def _seed_rngs(seed: int, index: int) -> tuple[jax.Array, jax.Array]:
    """(init, train) keys of a seed's `index`-th stage; independent across stages and seeds."""
    return tuple(jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), index)))


def stream_variables(config, role: str, seed: int, seed_dir: str, mesh) -> tuple[dict, dict]:
    """The frozen stream's variables (and pretraining metrics): converted weights, or trained here."""
    stream_config = config.streams[role]
    stream = stream_module(config)
    if stream_config.weights:
        return load_pretrained(stream_config.weights, stream), {}
    data = load_labelled(stream_config.data)
    init_rng, train_rng = _seed_rngs(seed, ROLES.index(role))
    trained = train_classifier(
        f"pretrain_{role}", lambda fw, x, train: fw("backbone", x, train=train),
        learners={"backbone": Learner(backbone_module(config, num_classes=data.num_classes),
                                      image_sample(data.train), init_rng)},
        frozen={}, train_split=data.train, test_split=data.test, train_config=stream_config.train, seed=seed,
        train_rng=train_rng, workdir=seed_dir, mesh=mesh, loop=LoopOptions(**config.loop),
        fingerprint={"arch": config.streams.arch, "width": config.streams.width,
                     "data": stream_config.data.to_dict(), "compute_dtype": config.compute_dtype})
    return restrict_variables(trained.variables["backbone"], stream), trained.metrics


def train_head(config, model: str, data: Labelled, streams: dict, seed: int, seed_dir: str, mesh, input_files: dict,
               features: StreamFeatures | None = None) -> tuple[dict, dict]:
    """Trains one classifier's head on its frozen streams; returns the head's variables and metrics.

    With `features` the head learns from the streams' cached features and the stage's players are
    the head alone; without, the streams are frozen players run at every step.
    """
    roles = STREAMS_OF[model]
    feature = stream_feature(config, data.train.arrays["image"].shape[1:])
    init_rng, train_rng = _seed_rngs(seed, len(ROLES) + MODELS.index(model))
    if features is None:
        frozen = {f"{role}_stream": (stream_module(config), streams[role]) for role in roles}
        predict, inputs = functools.partial(streams_then_head, model=model), None
        train_split, test_split = data.train, data.test
    else:
        frozen = {}
        predict, inputs = functools.partial(head_logits, model=model), features.inputs(roles)
        train_split, test_split = features.splits(roles)
    trained = train_classifier(
        f"head_{model.lower()}", predict,
        learners={"head": Learner(head_module(model, config, data.num_classes), (feature,) * len(roles), init_rng)},
        frozen=frozen, train_split=train_split, test_split=test_split, train_config=config.heads.train, seed=seed,
        train_rng=train_rng, workdir=seed_dir, mesh=mesh, loop=LoopOptions(**config.loop), inputs=inputs,
        fingerprint={"model": model, "streams": config.streams.to_dict(), "data": config.data.to_dict(),
                     "fusion_features": config.heads.fusion_features, "compute_dtype": config.compute_dtype,
                     "stream_features": "recomputed" if features is None else "cached",
                     "inputs": input_files})
    return trained.variables["head"], trained.metrics


def in_pixels(sigma: float, image_size: int) -> float:
    """A sigma given at the paper's 224 px scale, in pixels of this image size."""
    return float(sigma) * image_size / REFERENCE_SIZE


def score_conditions(config, data: Labelled, streams: dict, heads: dict, mesh, seed: int) -> list[dict]:
    """The long table of every classifier under every configured condition: one compiled program."""
    stream = stream_module(config)
    specs = {f"{role}_stream": PlayerSpec(stream) for role in ROLES}
    specs.update({f"head_{m}": PlayerSpec(head_module(m, config, data.num_classes)) for m in MODELS})
    players = frozen_players({**{f"{r}_stream": streams[r] for r in ROLES},
                              **{f"head_{m}": heads[m] for m in MODELS}})
    conditions = config.eval.conditions.to_dict()
    families = build_families(conditions, data.test.arrays["image"].shape[1], len(data.test), config.eval.seed)
    scores = evaluate_conditions(make_condition_step(specs, all_logits, families), players, data.test, families,
                                 config.eval.batch_size, mesh, num_classes=data.num_classes, seed=config.eval.seed)
    subsets = test_sets.masks(data.test.arrays["label"], data.class_supercategory)
    return long_table(scores, subsets, seed=seed)


def run_seed(config, data: Labelled, seed: int, seed_dir: str, mesh, cache_features: bool,
             input_files: dict) -> SeedResult:
    """One seed's streams, heads and scores; `input_files` by content (`provenance.input_digests`)."""
    streams, metrics = {}, {}
    for role in ROLES:
        streams[role], metrics[f"pretrain_{role}"] = stream_variables(config, role, seed, seed_dir, mesh)
    features = None
    if cache_features:  # One pass of each stream over the data serves all heads.
        features = StreamFeatures(stream_module(config), streams, data, config.heads.train.augment.flip,
                                  config.heads.train.batch_size, mesh)
    heads = {}
    for model in MODELS:
        heads[model], metrics[f"head_{model.lower()}"] = train_head(config, model, data, streams, seed,
                                                                    seed_dir, mesh, input_files, features)
    return SeedResult(streams, heads, metrics, score_conditions(config, data, streams, heads, mesh, seed))


def blur_titles(config) -> dict[str, str]:
    """Each configured blur condition and what it blurs, for the report and the figure."""
    order = list(report.REGION_TITLES)
    by_region = sorted(config.eval.conditions.items(), key=lambda item: order.index(item[1].region))
    return {name: report.REGION_TITLES[spec.region] for name, spec in by_region}


def write_outputs(config, data: Labelled, results: dict[int, SeedResult], workdir: str, seconds: float) -> None:
    """results.json, the long table and its summary (CSV), the figures and report.md."""
    rows = [row for r in results.values() for row in r.rows]
    tables.write_csv(os.path.join(workdir, "table.csv"), rows)
    tables.write_csv(os.path.join(workdir, "summary.csv"), tables.summarize(rows))
    first = results[config.seeds[0]]
    stream = stream_module(config)
    heads = {m: head_module(m, config, data.num_classes) for m in MODELS}
    analysis.write_gradcam_figure(config, data, stream, heads, first.streams, first.heads,
                                  os.path.join(workdir, "gradcam.png"))
    image_size = data.test.arrays["image"].shape[1]
    shifts = analysis.pca_analysis(config, data, stream, first.streams,
                                   in_pixels(config.analysis.pca_sigma, image_size), os.path.join(workdir, "pca.png"))
    titles = blur_titles(config)
    accuracy = {title: {t: {m: report.accuracy(rows, c, t, m) for m in MODELS}
                        for t in (test_sets.ALL, test_sets.DISSIMILAR)}
                for c, title in titles.items()}
    sigmas = [float(level) for level in report.sigma_levels(rows, next(iter(titles)))]
    severity_figure(sigmas, accuracy, xlabel="Gaussian blur σ (224 px scale)", path=os.path.join(workdir, "sweep.png"))
    fingerprint = provenance.run_fingerprint(config)
    write_json_atomic(os.path.join(workdir, "results.json"), {
        "table": rows, "stages": {str(s): r.metrics for s, r in results.items()}, "pca_blur_shift": shifts,
        "seconds": seconds, "fingerprint": fingerprint})
    shift_text = "\n".join(f"- {name}: mean shift {v['mean']:.2f} (blurred-vs-sharp centroid distance / sharp "
                           f"within-class spread, feature `{config.analysis.pca_feature}`, σ={config.analysis.pca_sigma:g})"
                           for name, v in shifts.items())
    report.write_report(os.path.join(workdir, "report.md"), config=config.to_dict(), rows=rows, titles=titles, models=MODELS,
                 stage_metrics={str(s): r.metrics for s, r in results.items()},
                 figures={"Accuracy vs blur (paper Figure 5)": "sweep.png",
                          "Grad-CAM on each classifier's last conv layer (Figure 2)": "gradcam.png",
                          "PCA of BN features, sharp vs foreground-blurred (Figure 4)": "pca.png"},
                 extra_sections={"Blur shift of stream features": shift_text}, seconds=seconds,
                 fingerprint=fingerprint)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The experiment for a config that passed `config_checks.check_config` (as the CLI does first)."""
    start = time.monotonic()
    mesh = sharding.make_mesh()
    data = load_labelled(config.data)
    cache_features = feature_cache.use_cache(config.heads, stream_feature(config, data.train.arrays["image"].shape[1:]),
                                             len(data.train), len(data.test), len(ROLES))
    input_files = provenance.input_digests(config)
    results = {seed: run_seed(config, data, seed, os.path.join(workdir, f"seed_{seed}"), mesh, cache_features,
                              input_files)
               for seed in config.seeds}
    if jax.process_index() == 0:
        write_outputs(config, data, results, workdir, time.monotonic() - start)
    return {seed: r.rows for seed, r in results.items()}
