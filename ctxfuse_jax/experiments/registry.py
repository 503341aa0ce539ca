"""Experiments by name: a new study is a config naming an experiment, not a forked trainer."""

import importlib
from typing import Callable

import ml_collections

Experiment = Callable[[ml_collections.ConfigDict, str], dict]

# name -> module defining `run(config, workdir) -> results`; imported only when chosen.
EXPERIMENTS = {
    "fusion": "ctxfuse_jax.experiments.fusion",
    "supervised": "ctxfuse_jax.experiments.supervised",
}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name]).run
