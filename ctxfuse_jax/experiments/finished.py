"""The trained classifiers a finished workdir holds, read back without training or writing there.

Any experiment can be scored again later (the robustness report, the Colab notebook): its module
defines `finished(workdir, config) -> Finished`, saying which stages hold classifiers, how their
players are built and which test split they were made for. The workdir's own `config.json` says
how the models were built; every stage read must be finished, and every array must fit the model
it is read into (`train.checkpoint.check_fits`), so nothing is ever scored with the wrong weights.
"""

import dataclasses
import importlib
import json
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from ctxfuse_jax.data.sources import Labelled
from ctxfuse_jax.errors import DataError
from ctxfuse_jax.evaluate.evaluator import LogitsFn
from ctxfuse_jax.experiments.registry import EXPERIMENTS
from ctxfuse_jax.train.checkpoint import check_fits, read_players
from ctxfuse_jax.train.state import PlayerSpec
from ctxfuse_jax.workdir import CONFIG_FILE, STAGE_RESULT_FILE

Variables = Mapping[str, Any]  # {"params": ..., "batch_stats": ...}


@dataclasses.dataclass(frozen=True)
class FinishedModels:
    """Classifiers of one workdir that share players and one forward pass (fusion's heads share
    its streams); `logits_fn(forward, images in [0, 1])` gives {classifier name: logits}."""

    name: str  # unique in its workdir, e.g. "seed_0"
    specs: Mapping[str, PlayerSpec]
    logits_fn: LogitsFn
    variables: Mapping[str, Variables]  # player -> trained params and batch_stats


@dataclasses.dataclass(frozen=True)
class Finished:
    """A finished workdir's config, the data its classifiers were trained and tested on, and them."""

    workdir: str
    config: ml_collections.ConfigDict
    data: Labelled
    models: tuple[FinishedModels, ...]


def workdir_config(workdir: str, experiment: str | None = None) -> ml_collections.ConfigDict:
    """The config a workdir was run with (of `experiment`, when given); missing or foreign: a DataError."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise DataError(f"{workdir} holds no {CONFIG_FILE}, so no finished run: train there first with "
                        f"`python -m ctxfuse_jax.main --config=configs/<experiment>.py --workdir={workdir}`")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if experiment is not None and config.get("experiment") != experiment:
        raise DataError(f"{workdir} holds a {config.get('experiment')!r} run, not a {experiment!r} one")
    return config


def stage_players(workdir: str, stage: str, players: Mapping[str, Any]) -> dict[str, Variables]:
    """The trained variables of `players` (name -> their variables' shapes, e.g. from `jax.eval_shape`)
    in the finished `stage` of `workdir`; an unfinished stage or a misfit is refused."""
    stage_dir = os.path.join(workdir, stage)
    if not os.path.isfile(os.path.join(stage_dir, STAGE_RESULT_FILE)):
        raise DataError(f"{workdir} is not finished: {stage} has no {STAGE_RESULT_FILE}; run its config "
                        "there to the end first")
    variables = read_players(os.path.join(stage_dir, "checkpoints"), tuple(players))
    for name, shapes in players.items():
        check_fits(variables[name], shapes, f"{stage_dir} (player {name})")
    return variables


def read_finished(workdir: str, **choices: Any) -> Finished:
    """Every classifier of the finished run in `workdir`, whatever experiment made it; `choices` go to
    the experiment's `finished` (bg_invariant's `dataset`, when its run has several)."""
    config = workdir_config(workdir)
    experiment = config.get("experiment")
    if experiment not in EXPERIMENTS:
        raise DataError(f"{workdir} holds a {experiment!r} run, which ctxfuse_jax does not know")
    module = importlib.import_module(EXPERIMENTS[experiment])
    if not hasattr(module, "finished"):
        raise DataError(f"{workdir} holds a {experiment!r} run, whose classifiers cannot be read back yet")
    return module.finished(workdir, config, **choices)
