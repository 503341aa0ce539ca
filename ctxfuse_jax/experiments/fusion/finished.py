"""The classifiers of a finished fusion workdir, read without training or writing anything there.

Other experiments evaluate them (seed 004's variants see seed 000's claim through its lens), and
`finished` gives them to any later scoring (`experiments.finished`). The workdir's own
`config.json` says how the models were built; every stage must be finished, and every array must
fit the model it is read into (`train.checkpoint.read_players`).
"""

import os
from collections.abc import Callable

import jax
import ml_collections

from ctxfuse_jax.data.sources import load_labelled
from ctxfuse_jax.errors import DataError
from ctxfuse_jax.experiments.finished import Finished, FinishedModels, workdir_config
from ctxfuse_jax.experiments.fusion.networks import (MODELS, ROLES, STREAMS_OF, all_logits, head_module,
                                                     stream_feature, stream_module)
from ctxfuse_jax.models.variables import restrict_variables
from ctxfuse_jax.train.checkpoint import check_fits, read_players
from ctxfuse_jax.train.state import PlayerSpec, init_variables
from ctxfuse_jax.weights import load_pretrained
from ctxfuse_jax.workdir import STAGE_RESULT_FILE

REQUIRED = ("FG", "BG", "Joint")  # FG-conv is read when present (older workdirs lack it)


def fusion_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a fusion workdir was run with; a missing or foreign one is a DataError."""
    return workdir_config(workdir, "fusion")


def _finished(stage_dir: str, workdir: str) -> None:
    if not os.path.isfile(os.path.join(stage_dir, STAGE_RESULT_FILE)):
        raise DataError(f"fusion_workdir={workdir} is not finished: {os.path.relpath(stage_dir, workdir)} has no "
                        f"{STAGE_RESULT_FILE}; run configs/fusion.py there to the end first")


def load_models(workdir: str, num_classes: int) -> tuple[ml_collections.ConfigDict, dict[int, tuple[dict, dict]]]:
    """(the fusion config, {seed: (streams by role, heads by model)}) of a finished fusion workdir."""
    config = fusion_config(workdir)
    stream = stream_module(config)
    image_shape = (config.data.image_size, config.data.image_size, 3)
    stream_shapes = jax.eval_shape(lambda: init_variables(stream, jax.random.PRNGKey(0),
                                                          jax.numpy.zeros((1, *image_shape))))
    feature = stream_feature(config, image_shape)
    models = {}
    for seed in config.seeds:
        seed_dir = os.path.join(workdir, f"seed_{seed}")
        streams = {}
        for role in ROLES:
            if config.streams[role].weights:
                streams[role] = load_pretrained(config.streams[role].weights, stream)
                continue
            stage_dir = os.path.join(seed_dir, f"pretrain_{role}")
            _finished(stage_dir, workdir)
            backbone = read_players(os.path.join(stage_dir, "checkpoints"), ("backbone",))["backbone"]
            streams[role] = restrict_variables(backbone, stream)
            check_fits(streams[role], stream_shapes, f"{stage_dir} (the {role.upper()} stream)")
        heads = {}
        for model in MODELS:
            stage_dir = os.path.join(seed_dir, f"head_{model.lower()}")
            if model not in REQUIRED and not os.path.isdir(stage_dir):
                continue
            _finished(stage_dir, workdir)
            head = head_module(model, config, num_classes)
            zeros = [jax.numpy.zeros(feature.shape, feature.dtype)] * len(STREAMS_OF[model])
            shapes = jax.eval_shape(lambda: init_variables(head, jax.random.PRNGKey(0), *zeros))
            heads[model] = read_players(os.path.join(stage_dir, "checkpoints"), ("head",))["head"]
            check_fits(heads[model], shapes, f"{stage_dir} (the {model} head)")
        models[seed] = (streams, heads)
    return config, models


def seed_models(workdir: str, num_classes: int, name: Callable[[str], str] = str
                ) -> tuple[ml_collections.ConfigDict, dict[int, FinishedModels]]:
    """(the fusion config, {seed: its classifiers}) of a finished fusion workdir: per seed the two
    streams (players `<role>_stream`) and every head it holds (`head_<model>`), whose logits
    `fusion.networks.all_logits` gives under `name(model)` (e.g. in9's "fusion FG")."""
    config, models = load_models(workdir, num_classes)
    stream = PlayerSpec(stream_module(config))
    found = {}
    for seed, (streams, heads) in models.items():
        specs = {f"{role}_stream": stream for role in ROLES}
        specs.update({f"head_{m}": PlayerSpec(head_module(m, config, num_classes)) for m in heads})

        def logits(forward, images, heads=tuple(heads)):
            return {name(m): v for m, v in all_logits(forward, images, heads).items()}

        variables = {**{f"{role}_stream": streams[role] for role in ROLES},
                     **{f"head_{m}": v for m, v in heads.items()}}
        found[int(seed)] = FinishedModels(f"seed_{seed}", specs, logits, variables)
    return config, found


def finished(workdir: str, config: ml_collections.ConfigDict) -> Finished:
    """Every seed's FG, BG, Joint (and FG-conv) classifiers of a finished fusion workdir, on its
    test split (`experiments.finished`)."""
    data = load_labelled(config.data)
    _, models = seed_models(workdir, data.num_classes)
    return Finished(workdir, config, data, tuple(models.values()))
