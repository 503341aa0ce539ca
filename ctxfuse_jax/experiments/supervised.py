"""Supervised training of one zoo backbone: the simplest experiment, and a template for others."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ctxfuse_jax import provenance
from ctxfuse_jax.data.sources import load_labelled
from ctxfuse_jax.experiments.classification import classification_stage, optimizer_for
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.models.precision import compute_dtype
from ctxfuse_jax.models.registry import build_model
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.loop import LoopOptions, run_stage
from ctxfuse_jax.train.state import PlayerSpec, count_params, init_variables, new_train_state


def model_kwargs(model_config: ml_collections.ConfigDict) -> dict:
    return {k: v for k, v in model_config.items() if k != "name"}


def classifier_module(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """The configured zoo model, computing in the configured precision."""
    return build_model(config.model.name, num_classes=num_classes, dtype=compute_dtype(config.compute_dtype),
                       **model_kwargs(config.model))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The experiment for a config that passed `config_checks.check_config` (as the CLI does first)."""
    mesh = sharding.make_mesh()
    data = load_labelled(config.data)
    model = classifier_module(config, data.num_classes)
    specs = {"classifier": PlayerSpec(model, optimizer_for(config.train, len(data.train)))}
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    sample = jnp.zeros((1, *data.train.arrays["image"].shape[1:]), jnp.float32)

    def init_state():
        return new_train_state(specs, {"classifier": init_variables(model, init_rng, sample)}, train_rng)

    stage = classification_stage(
        "classifier", specs, lambda forward, images, train: forward("classifier", images, train=train),
        ("classifier",), init_state, data.train, data.test, config.train, config.seed, mesh,
        fingerprint={"model": config.model.to_dict(), "data": config.data.to_dict(),
                     "compute_dtype": config.compute_dtype})
    result = run_stage(stage, workdir, mesh, LoopOptions(**config.loop))
    results = {"test": result.metrics,
               "num_params": count_params(result.state.players["classifier"].params),
               "num_train": len(data.train), "num_test": len(data.test),
               "fingerprint": provenance.run_fingerprint(config)}
    if jax.process_index() == 0:
        write_json_atomic(os.path.join(workdir, "results.json"), results)
    return results
