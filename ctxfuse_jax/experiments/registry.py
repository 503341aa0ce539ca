"""Experiments by name: a new study is a config naming an experiment, not a forked trainer."""

import importlib
from typing import Callable

import ml_collections

from ctxfuse_jax.errors import ConfigError

Experiment = Callable[[ml_collections.ConfigDict, str], dict]

# name -> module defining `run(config, workdir) -> results`; imported only when chosen.
EXPERIMENTS = {
    "bg_invariant": "ctxfuse_jax.experiments.bg_invariant.experiment",
    "blur_study": "ctxfuse_jax.experiments.blur_study.experiment",
    "fusion": "ctxfuse_jax.experiments.fusion.experiment",
    "in9": "ctxfuse_jax.experiments.in9.experiment",
    "master_slave": "ctxfuse_jax.experiments.master_slave.experiment",
    "robustness": "ctxfuse_jax.experiments.robustness.experiment",
    "supervised": "ctxfuse_jax.experiments.supervised",
}


def experiment_module(name: str) -> str:
    """The module running experiment `name`, without importing it; an unknown name lists the valid ones."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def get_experiment(name: str) -> Experiment:
    """The `run(config, workdir)` of experiment `name` (importing its module, which may be heavy)."""
    return importlib.import_module(experiment_module(name)).run
