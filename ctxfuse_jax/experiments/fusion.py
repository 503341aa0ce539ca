"""Contextual fusion (seed 000) end to end.

Per seed: obtain a foreground (FG) and a background (BG) feature stream — converted pretrained
weights, or pretraining on the embedded object crops / scenes — freeze them, train three heads
(FG probe, BG probe, Joint fusion head), then measure accuracy under Gaussian blur of the object
only and of the whole image, on the All and Dissimilar test sets. Every stage is resumable.
"""

import functools
import os
from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ctxfuse_jax.data import test_sets
from ctxfuse_jax.data.sources import Labelled, load_labelled
from ctxfuse_jax.evaluate.sweep import make_sweep_step, run_blur_sweep
from ctxfuse_jax.experiments.classification import classification_stage, optimizer_for
from ctxfuse_jax.models.fusion import FusionHead, LinearProbe
from ctxfuse_jax.models.registry import build_model
from ctxfuse_jax.models.variables import restrict_variables
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.loop import LoopOptions, run_stage
from ctxfuse_jax.train.state import Player, PlayerSpec, init_variables, new_train_state
from ctxfuse_jax.weights import load_pretrained

ROLES = ("fg", "bg")
MODELS = ("FG", "BG", "Joint")


def stream_module(config: ml_collections.ConfigDict):
    """A stream: the backbone with its head and last conv stage removed (cut at `streams.cut`)."""
    return build_model(config.streams.arch, num_classes=None, width=config.streams.width,
                       stop_at=config.streams.cut)


def stream_variables(config: ml_collections.ConfigDict, role: str, seed: int, seed_dir: str,
                     mesh: jax.sharding.Mesh) -> dict:
    """The frozen stream's variables: from converted weights if given, else pretrained here."""
    stream_config = config.streams[role]
    stream = stream_module(config)
    if stream_config.weights:
        return load_pretrained(stream_config.weights, stream)
    data = load_labelled(stream_config.data)
    backbone = build_model(config.streams.arch, num_classes=data.num_classes, width=config.streams.width)
    specs = {"backbone": PlayerSpec(backbone, optimizer_for(stream_config.train, len(data.train)))}
    init_rng, train_rng = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), ROLES.index(role)))
    sample = jnp.zeros((1, *data.train.arrays["image"].shape[1:]), jnp.float32)
    stage = classification_stage(
        f"pretrain_{role}", specs, lambda fw, x, train: fw("backbone", x, train=train), ("backbone",),
        lambda: new_train_state(specs, {"backbone": init_variables(backbone, init_rng, sample)}, train_rng),
        data.train, data.test, stream_config.train, seed, mesh,
        fingerprint={"arch": config.streams.arch, "width": config.streams.width,
                     "data": stream_config.data.to_dict()})
    result = run_stage(stage, seed_dir, mesh, LoopOptions(**config.loop))
    player = jax.device_get(result.state.players["backbone"])
    return restrict_variables({"params": player.params, "batch_stats": player.batch_stats}, stream)


def predict_fns():
    """How each classifier maps images to logits, given its players."""
    return {
        "FG": lambda fw, x, train: fw("head", fw("fg_stream", x), train=train),
        "BG": lambda fw, x, train: fw("head", fw("bg_stream", x), train=train),
        "Joint": lambda fw, x, train: fw("head", fw("fg_stream", x), fw("bg_stream", x), train=train),
    }


def head_module(model: str, config: ml_collections.ConfigDict, num_classes: int):
    if model == "Joint":
        return FusionHead(num_classes, features=config.heads.fusion_features)
    return LinearProbe(num_classes)


def train_heads(config, data: Labelled, streams: Mapping[str, dict], seed: int, seed_dir: str,
                mesh) -> dict[str, dict]:
    """Trains the FG probe, BG probe and Joint head on frozen streams; returns each head's variables."""
    stream = stream_module(config)
    sample = jnp.zeros((1, *data.train.arrays["image"].shape[1:]), jnp.float32)
    features = {role: jax.eval_shape(functools.partial(stream.apply, streams[role]), sample) for role in ROLES}
    heads = {}
    for index, (model, predict) in enumerate(predict_fns().items()):
        needed = {"FG": ("fg",), "BG": ("bg",), "Joint": ROLES}[model]
        head = head_module(model, config, data.num_classes)
        specs = {f"{role}_stream": PlayerSpec(stream) for role in needed}
        specs["head"] = PlayerSpec(head, optimizer_for(config.heads.train, len(data.train)))
        init_rng, train_rng = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 10 + index))
        head_inputs = [jnp.zeros(features[role].shape, features[role].dtype) for role in needed]

        def init_state(specs=specs, head=head, head_inputs=head_inputs, needed=needed, init_rng=init_rng,
                       train_rng=train_rng):
            variables = {f"{role}_stream": streams[role] for role in needed}
            variables["head"] = init_variables(head, init_rng, *head_inputs)
            return new_train_state(specs, variables, train_rng)

        stage = classification_stage(
            f"head_{model.lower()}", specs, predict, ("head",), init_state, data.train, data.test,
            config.heads.train, seed, mesh,
            fingerprint={"model": model, "streams": config.streams.to_dict(), "data": config.data.to_dict(),
                         "fusion_features": config.heads.fusion_features})
        result = run_stage(stage, seed_dir, mesh, LoopOptions(**config.loop))
        player = jax.device_get(result.state.players["head"])
        heads[model] = {"params": player.params, "batch_stats": player.batch_stats}
    return heads


def sweep_players(config, data: Labelled, streams, heads):
    """All five networks as players of one inference-only game, for a single compiled sweep."""
    stream = stream_module(config)
    specs = {"fg_stream": PlayerSpec(stream), "bg_stream": PlayerSpec(stream)}
    players = {f"{role}_stream": streams[role] for role in ROLES}
    for model in MODELS:
        specs[f"head_{model}"] = PlayerSpec(head_module(model, config, data.num_classes))
        players[f"head_{model}"] = heads[model]

    def logits(fw, images):
        fg, bg = fw("fg_stream", images), fw("bg_stream", images)
        return {"FG": fw("head_FG", fg), "BG": fw("head_BG", bg), "Joint": fw("head_Joint", fg, bg)}

    as_players = {name: Player(v["params"], v.get("batch_stats", {}), None) for name, v in players.items()}
    return specs, as_players, logits


def sigmas_in_pixels(config, image_size: int) -> np.ndarray:
    """The sweep's sigmas are given at the paper's 224 px scale; scale them to this image size."""
    return np.asarray(config.sweep.sigmas, np.float32) * image_size / config.sweep.reference_size


def sweep_accuracy(config, data: Labelled, streams, heads, mesh) -> dict:
    """{region: {test_set: {model: accuracy per sigma}}} under foreground-only and whole-image blur."""
    specs, players, logits = sweep_players(config, data, streams, heads)
    players = sharding.put_replicated(players, mesh)
    step = make_sweep_step(specs, logits)
    image_size = data.test.arrays["image"].shape[1]
    correct = run_blur_sweep(step, players, data.test, sigmas_in_pixels(config, image_size),
                             config.sweep.regions, config.sweep.batch_size, mesh)
    subsets = test_sets.masks(data.test.arrays["label"], data.class_supercategory)
    return {region: {name: {model: per_example[:, subset].mean(axis=1).tolist()
                            for model, per_example in by_model.items()}
                     for name, subset in subsets.items()}
            for region, by_model in correct.items()}


def run_seed(config, data: Labelled, seed: int, seed_dir: str, mesh) -> dict:
    streams = {role: stream_variables(config, role, seed, seed_dir, mesh) for role in ROLES}
    heads = train_heads(config, data, streams, seed, seed_dir, mesh)
    return {"sweep": sweep_accuracy(config, data, streams, heads, mesh), "streams": streams, "heads": heads}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    mesh = sharding.make_mesh()
    for batch_size in (config.heads.train.batch_size, config.sweep.batch_size,
                       *(config.streams[r].train.batch_size for r in ROLES)):
        sharding.check_batch_size(batch_size, mesh)
    data = load_labelled(config.data)
    per_seed = {seed: run_seed(config, data, seed, os.path.join(workdir, f"seed_{seed}"), mesh)
                for seed in config.seeds}
    return {seed: result["sweep"] for seed, result in per_seed.items()}
