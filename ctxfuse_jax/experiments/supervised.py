"""Supervised training of one zoo backbone: the simplest experiment, and a template for others."""

import os

import jax
import ml_collections

from ctxfuse_jax import provenance
from ctxfuse_jax.data.sources import load_labelled
from ctxfuse_jax.experiments.classification import Learner, classifier_module, image_sample, train_classifier
from ctxfuse_jax.experiments.finished import Finished, FinishedModels, stage_players
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.loop import LoopOptions
from ctxfuse_jax.train.state import PlayerSpec, count_params, init_variables

STAGE = "classifier"


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The experiment for a config that passed `config_checks.check_config` (as the CLI does first)."""
    mesh = sharding.make_mesh()
    data = load_labelled(config.data)
    model = classifier_module(config, data.num_classes)
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    trained = train_classifier(
        STAGE, lambda forward, images, train: forward("classifier", images, train=train),
        learners={"classifier": Learner(model, image_sample(data.train), init_rng)}, frozen={},
        train_split=data.train, test_split=data.test, train_config=config.train, seed=config.seed,
        train_rng=train_rng, workdir=workdir, mesh=mesh, loop=LoopOptions(**config.loop),
        fingerprint={"model": config.model.to_dict(), "data": config.data.to_dict(),
                     "compute_dtype": config.compute_dtype})
    results = {"test": trained.metrics,
               "num_params": count_params(trained.variables["classifier"]["params"]),
               "num_train": len(data.train), "num_test": len(data.test),
               "fingerprint": provenance.run_fingerprint(config)}
    if jax.process_index() == 0:
        write_json_atomic(os.path.join(workdir, "results.json"), results)
    return results


def finished(workdir: str, config: ml_collections.ConfigDict) -> Finished:
    """The one trained classifier of a finished supervised workdir (`experiments.finished`)."""
    data = load_labelled(config.data)
    model = classifier_module(config, data.num_classes)
    shapes = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0),
                                                   *(jax.numpy.zeros(s.shape) for s in image_sample(data.test))))
    variables = stage_players(workdir, STAGE, {"classifier": shapes})
    models = FinishedModels(STAGE, {"classifier": PlayerSpec(model)},
                            lambda forward, images: {config.model.name: forward("classifier", images)}, variables)
    return Finished(workdir, config, data, (models,))
