"""Contextual fusion (seed 000) end to end.

Per seed: obtain a foreground (FG) and a background (BG) feature stream — converted pretrained
weights, or pretraining on the embedded object crops / scenes — freeze them, train three heads
(FG probe, BG probe, Joint fusion head), then measure accuracy under Gaussian blur of the object
only and of the whole image, on the All and Dissimilar test sets. Every stage is resumable; the
report, tables and figures are rewritten from the results at the end of every run.
"""

import dataclasses
import functools
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ctxfuse_jax import provenance
from ctxfuse_jax.data import test_sets
from ctxfuse_jax.data.sources import Labelled, load_labelled
from ctxfuse_jax.evaluate.sweep import make_sweep_step, run_blur_sweep
from ctxfuse_jax.experiments import feature_cache, fusion_analysis
from ctxfuse_jax.experiments.classification import classification_stage, optimizer_for
from ctxfuse_jax.experiments.feature_cache import StreamFeatures
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.models.fusion import FusionHead, LinearProbe
from ctxfuse_jax.models.precision import compute_dtype
from ctxfuse_jax.models.registry import build_model
from ctxfuse_jax.models.variables import restrict_variables
from ctxfuse_jax.ops.conv import conv_module
from ctxfuse_jax.report import severity_figure, tables
from ctxfuse_jax.report.fusion_report import REGION_TITLES, write_report
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.loop import LoopOptions, run_stage
from ctxfuse_jax.train.state import Player, PlayerSpec, init_variables, new_train_state
from ctxfuse_jax.weights import load_pretrained

ROLES = ("fg", "bg")
MODELS = ("FG", "BG", "Joint")
STREAMS_OF = {"FG": ("fg",), "BG": ("bg",), "Joint": ("fg", "bg")}


@dataclasses.dataclass
class SeedResult:
    streams: dict  # role -> frozen stream variables
    heads: dict  # model -> head variables
    metrics: dict  # stage -> final test metrics
    sweep: dict  # region -> test set -> model -> accuracy per sigma


def backbone_module(config: ml_collections.ConfigDict, **kwargs) -> nn.Module:
    """The streams' backbone as configured (architecture, width, convolution, compute precision)."""
    return build_model(config.streams.arch, width=config.streams.width, conv=config.streams.conv,
                       dtype=compute_dtype(config.compute_dtype), **kwargs)


def stream_module(config: ml_collections.ConfigDict):
    """A stream: the backbone with its head and last conv stage removed (cut at `streams.cut`)."""
    return backbone_module(config, num_classes=None, stop_at=config.streams.cut)


def head_module(model: str, config: ml_collections.ConfigDict, num_classes: int):
    dtype = compute_dtype(config.compute_dtype)
    if model == "Joint":
        return FusionHead(num_classes, features=config.heads.fusion_features, conv=conv_module(config.streams.conv),
                          dtype=dtype)
    return LinearProbe(num_classes, dtype=dtype)


def stream_feature(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    """Shape and dtype of a stream's features of one image, computing nothing."""
    stream = stream_module(config)
    sample = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    return jax.eval_shape(lambda x: stream.init_with_output(jax.random.PRNGKey(0), x)[0], sample)


def _head_logits(fw, features: dict, train: bool = False, *, model: str):
    """A classifier's logits: its head applied to the features of the streams it uses."""
    return fw("head", *[features[role] for role in STREAMS_OF[model]], train=train)


def _streams_then_head(fw, images, train: bool = False, *, model: str):
    """A classifier's logits from images: its frozen streams run, then its head."""
    return _head_logits(fw, {role: fw(f"{role}_stream", images) for role in STREAMS_OF[model]}, train, model=model)


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
    backbone = backbone_module(config, num_classes=data.num_classes)
    specs = {"backbone": PlayerSpec(backbone, optimizer_for(stream_config.train, len(data.train)))}
    init_rng, train_rng = _seed_rngs(seed, ROLES.index(role))
    sample = jnp.zeros((1, *data.train.arrays["image"].shape[1:]), jnp.float32)
    stage = classification_stage(
        f"pretrain_{role}", specs, lambda fw, x, train: fw("backbone", x, train=train), ("backbone",),
        lambda: new_train_state(specs, {"backbone": init_variables(backbone, init_rng, sample)}, train_rng),
        data.train, data.test, stream_config.train, seed, mesh,
        fingerprint={"arch": config.streams.arch, "width": config.streams.width,
                     "data": stream_config.data.to_dict(), "compute_dtype": config.compute_dtype})
    result = run_stage(stage, seed_dir, mesh, LoopOptions(**config.loop))
    player = jax.device_get(result.state.players["backbone"])
    variables = {"params": player.params, "batch_stats": player.batch_stats}
    return restrict_variables(variables, stream), result.metrics


def train_head(config, model: str, data: Labelled, streams: dict, seed: int, seed_dir: str, mesh, input_files: dict,
               features: StreamFeatures | None = None) -> tuple[dict, dict]:
    """Trains one classifier's head on its frozen streams; returns the head's variables and metrics.

    With `features` the head learns from the streams' cached features and the stage's players are
    the head alone; without, the streams are frozen players run at every step.
    """
    roles, head = STREAMS_OF[model], head_module(model, config, data.num_classes)
    feature = stream_feature(config, data.train.arrays["image"].shape[1:])
    init_rng, train_rng = _seed_rngs(seed, len(ROLES) + MODELS.index(model))
    if features is None:
        frozen = {f"{role}_stream": streams[role] for role in roles}
        predict, inputs = functools.partial(_streams_then_head, model=model), None
        train_split, test_split = data.train, data.test
    else:
        frozen = {}
        predict, inputs = functools.partial(_head_logits, model=model), features.inputs(roles)
        train_split, test_split = features.splits(roles)
    specs = {name: PlayerSpec(stream_module(config)) for name in frozen}
    specs["head"] = PlayerSpec(head, optimizer_for(config.heads.train, len(data.train)))

    def init_state():
        head_variables = init_variables(head, init_rng, *[jnp.zeros(feature.shape, feature.dtype) for _ in roles])
        return new_train_state(specs, {**frozen, "head": head_variables}, train_rng)

    stage = classification_stage(
        f"head_{model.lower()}", specs, predict, ("head",), init_state, train_split, test_split,
        config.heads.train, seed, mesh, inputs=inputs,
        fingerprint={"model": model, "streams": config.streams.to_dict(), "data": config.data.to_dict(),
                     "fusion_features": config.heads.fusion_features, "compute_dtype": config.compute_dtype,
                     "stream_features": "recomputed" if features is None else "cached",
                     "inputs": input_files})
    result = run_stage(stage, seed_dir, mesh, LoopOptions(**config.loop))
    player = jax.device_get(result.state.players["head"])
    return {"params": player.params, "batch_stats": player.batch_stats}, result.metrics


def in_pixels(sigmas, config, image_size: int) -> np.ndarray:
    """Sigmas are given at the paper's 224 px scale (`sweep.reference_size`); scale them to this size."""
    return np.asarray(sigmas, np.float32) * image_size / config.sweep.reference_size


def sweep_accuracy(config, data: Labelled, streams: dict, heads: dict, mesh) -> dict:
    """{region: {test_set: {model: accuracy per sigma}}}: all five networks in one compiled step."""
    stream = stream_module(config)
    specs = {f"{role}_stream": PlayerSpec(stream) for role in ROLES}
    specs.update({f"head_{m}": PlayerSpec(head_module(m, config, data.num_classes)) for m in MODELS})
    variables = {**{f"{r}_stream": streams[r] for r in ROLES}, **{f"head_{m}": heads[m] for m in MODELS}}
    players = sharding.put_replicated({n: Player(v["params"], v.get("batch_stats", {}), None)
                                       for n, v in variables.items()}, mesh)

    def logits(fw, images):  # The streams run once per batch and feed all three heads.
        fg, bg = fw("fg_stream", images), fw("bg_stream", images)
        return {"FG": fw("head_FG", fg), "BG": fw("head_BG", bg), "Joint": fw("head_Joint", fg, bg)}

    correct = run_blur_sweep(make_sweep_step(specs, logits), players, data.test,
                             in_pixels(config.sweep.sigmas, config, data.test.arrays["image"].shape[1]),
                             config.sweep.regions, config.sweep.batch_size, mesh)
    subsets = test_sets.masks(data.test.arrays["label"], data.class_supercategory)
    return {region: {name: {model: per_example[:, subset].mean(axis=1).tolist()
                            for model, per_example in by_model.items()}
                     for name, subset in subsets.items()}
            for region, by_model in correct.items()}


def run_seed(config, data: Labelled, seed: int, seed_dir: str, mesh, cache_features: bool,
             input_files: dict) -> SeedResult:
    """One seed's streams, heads and sweep; `input_files` by content (`provenance.input_digests`)."""
    streams, metrics = {}, {}
    for role in ROLES:
        streams[role], metrics[f"pretrain_{role}"] = stream_variables(config, role, seed, seed_dir, mesh)
    features = None
    if cache_features:  # One pass of each stream over the data serves all three heads.
        features = StreamFeatures(stream_module(config), streams, data, config.heads.train.augment.flip,
                                  config.heads.train.batch_size, mesh)
    heads = {}
    for model in MODELS:
        heads[model], metrics[f"head_{model.lower()}"] = train_head(config, model, data, streams, seed,
                                                                    seed_dir, mesh, input_files, features)
    return SeedResult(streams, heads, metrics, sweep_accuracy(config, data, streams, heads, mesh))


def write_outputs(config, data: Labelled, results: dict[int, SeedResult], workdir: str, seconds: float) -> None:
    """results.json, sweep CSVs, the three figures and report.md, from the first seed's models."""
    rows = tables.sweep_rows({s: r.sweep for s, r in results.items()}, config.sweep.sigmas)
    summary = tables.summarize(rows)
    tables.write_csv(os.path.join(workdir, "sweep.csv"), rows)
    tables.write_csv(os.path.join(workdir, "sweep_summary.csv"), summary)
    first = results[config.seeds[0]]
    stream = stream_module(config)
    heads = {m: head_module(m, config, data.num_classes) for m in MODELS}
    fusion_analysis.write_gradcam_figure(config, data, stream, heads, first.streams, first.heads,
                                         os.path.join(workdir, "gradcam.png"))
    pca_sigma_px = float(in_pixels(config.analysis.pca_sigma, config, data.test.arrays["image"].shape[1]))
    shifts = fusion_analysis.pca_analysis(config, data, stream, first.streams, pca_sigma_px,
                                          os.path.join(workdir, "pca.png"))
    accuracy = {REGION_TITLES[region]: {test_set: {m: np.array([r.sweep[region][test_set][m] for r in results.values()])
                                                   for m in MODELS}
                                        for test_set in first.sweep[region]}
                for region in first.sweep}
    severity_figure(config.sweep.sigmas, accuracy, xlabel="Gaussian blur σ (224 px scale)",
                    path=os.path.join(workdir, "sweep.png"))
    fingerprint = provenance.run_fingerprint(config)
    write_json_atomic(os.path.join(workdir, "results.json"), {
        "sweep": {str(s): r.sweep for s, r in results.items()}, "sigmas": list(config.sweep.sigmas),
        "stages": {str(s): r.metrics for s, r in results.items()}, "pca_blur_shift": shifts,
        "seconds": seconds, "fingerprint": fingerprint})
    shift_text = "\n".join(f"- {name}: mean shift {v['mean']:.2f} (blurred-vs-sharp centroid distance / sharp "
                           f"within-class spread, feature `{config.analysis.pca_feature}`, σ={config.analysis.pca_sigma:g})"
                           for name, v in shifts.items())
    write_report(os.path.join(workdir, "report.md"), config=config.to_dict(), summary=summary, models=MODELS,
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
    return {seed: r.sweep for seed, r in results.items()}
