"""What the blur study scores, and with which compiled programs.

Every model output is named '{model}@{scales}' (e.g. 'original@72+144') and is the mean over its
scales of the position-averaged log-probabilities of a fully convolutional pass. Three programs,
one compile each, share one pass per (model, scale) among their outputs:

- Table 1: the original at every network scale and combination, on every condition. Tables 2-5
  read the original's columns from it.
- Base models: the mixtures fine-tuned at the base scale, on `eval.model_conditions` (Tables 2, 3, 5).
- Scale models: the mixtures fine-tuned at other scales and the per-scale ensembles, on
  `eval.scale_conditions` (Table 4); absent when the config has none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from ctxfuse_jax import degrade
from ctxfuse_jax.degrade import kernels, presets, protocol
from ctxfuse_jax.evaluate.conditions import Family, build_families
from ctxfuse_jax.evaluate.evaluator import ConditionScorer, ConditionScores, frozen_players
from ctxfuse_jax.experiments.blur_study.choices import DEBLURRED, ORIGINAL, SHARP
from ctxfuse_jax.experiments.blur_study.geometry import Geometry, at_scale, combined, position_log_probs, scale_label
from ctxfuse_jax.experiments.blur_study.mixtures import level_blurs
from ctxfuse_jax.train.state import PlayerSpec

TABLE1, BASE, SCALES = "table1", "base", "scales"  # the programs, and the results' keys of their scores
SHARP_FAMILY = Family(SHARP, (SHARP,), lambda images, batch, bank, level, key: images)

Pass = tuple[str, tuple[int, ...]]  # (model, scales)


def output_name(model: str, scales: Sequence[int]) -> str:
    return f"{model}@{scale_label(scales)}"


@dataclasses.dataclass(frozen=True)
class Program:
    """One compiled scoring program: `outputs` {name: pass}, `ensembles` {name: passes averaged},
    scored on the conditions `only` (None: all)."""

    outputs: dict[str, Pass]
    ensembles: dict[str, tuple[Pass, ...]]
    only: tuple[str, ...] | None

    @property
    def players(self) -> list[str]:
        passes = [*self.outputs.values(), *(p for members in self.ensembles.values() for p in members)]
        return list(dict.fromkeys(model for model, _ in passes))

    @property
    def names(self) -> list[str]:
        return [*self.outputs, *self.ensembles]

    def logits(self, forward, images: jax.Array) -> dict[str, jax.Array]:
        """Every output's log-probabilities; each (model, scale) pass runs once."""
        passes: dict[tuple[str, int], jax.Array] = {}

        def output(model: str, scales: tuple[int, ...]) -> jax.Array:
            for s in scales:
                if (model, s) not in passes:
                    passes[model, s] = position_log_probs(forward(model, at_scale(images, s)))
            return combined({s: passes[model, s] for s in scales}, scales)

        outs = {name: output(*p) for name, p in self.outputs.items()}
        outs.update({name: jnp.mean(jnp.stack([output(*p) for p in members]), axis=0)
                     for name, members in self.ensembles.items()})
        return outs


def programs(config: ml_collections.ConfigDict) -> dict[str, Program]:
    """Table 1's, the base models' and (when any) the scale models' programs of a config."""
    protocol_config, fine_tune = config.protocol, config.fine_tune
    base = (protocol_config.base_scale,)
    table1 = [(s,) for s in protocol_config.scales] + [tuple(c) for c in protocol_config.combinations]
    found = {TABLE1: Program({output_name(ORIGINAL, s): (ORIGINAL, s) for s in table1}, {}, None)}
    trained_at = {name: tuple(m.target_scales) for name, m in fine_tune.mixtures.items()}
    found[BASE] = Program({output_name(n, s): (n, s) for n, s in trained_at.items() if s == base}, {},
                          tuple(config.eval.model_conditions))
    others = {output_name(n, s): (n, s) for n, s in trained_at.items() if s != base}
    ensembles = {}
    for name, members in fine_tune.ensembles.items():
        passes = tuple((m, trained_at[m]) for m in members)
        ensembles[output_name(name, sorted({s for _, scales in passes for s in scales}))] = passes
    if others or ensembles:
        found[SCALES] = Program(others, ensembles, tuple(config.eval.scale_conditions))
    return found


def every_output(config: ml_collections.ConfigDict) -> Program:
    """All the programs' outputs and ensembles as one program, on every condition: each classifier
    the study scores, for scoring them all elsewhere (`experiment.finished`)."""
    found = programs(config).values()
    return Program({name: p for program in found for name, p in program.outputs.items()},
                   {name: members for program in found for name, members in program.ensembles.items()}, None)


def sources(config: ml_collections.ConfigDict) -> dict[str, str]:
    """{output name: the program (results key) that scores it}."""
    return {name: key for key, program in programs(config).items() for name in program.names}


def blur_families(config: ml_collections.ConfigDict, geometry: Geometry, num_test: int) -> list[Family]:
    """Sharp, every configured blur at the canonical scale (kernels times canonical / 384), and the
    deconvolved D8 of Table 5."""
    specs = {name: {**spec, "scale": geometry.canonical, "kernel_scale": geometry.kernel_scale}
             for name, spec in config.eval.conditions.to_dict().items()}
    families = [SHARP_FAMILY, *build_families(specs, geometry.canonical, num_test, config.eval.seed)]
    return families + [deblurred_family(config.deblur, geometry)]


def deblurred_family(settings: ml_collections.ConfigDict, geometry: Geometry) -> Family:
    """Images blurred by the level `settings.level` (8-bit), then deconvolved with the true kernel."""
    blur = presets.at_scale(level_blurs()[settings.level], geometry.canonical, geometry.kernel_scale)
    params = dict(blur.params)
    kernel = kernels.kernel(blur.family, support=blur.support,
                            **kernels.scale_sizes(kernels.get_family(blur.family), params, blur.kernel_scale))
    options = dict(settings.options)

    def transform(images, batch, bank, level, key):
        blurred = blur(images, key)
        kernel_batch = jnp.broadcast_to(kernel, (images.shape[0], *kernel.shape))
        return protocol.quantize(degrade.deconvolve(settings.method, blurred, kernel_batch, **options))

    # Its own label: tables key rows by level, and 'D8' is the blurred images' row.
    return Family(DEBLURRED, (f"{settings.level} deblurred",), transform)


class Scorers:
    """The config's programs over the blur families, every model a fully convolutional `dense` VGG."""

    def __init__(self, config: ml_collections.ConfigDict, dense, data, families: Sequence[Family], mesh):
        self.programs = programs(config)
        self.scorer = ConditionScorer(families, data.test, data.num_classes, config.eval.batch_size,
                                      config.eval.seed, mesh)
        for key, program in self.programs.items():
            self.scorer.add_architecture(key, {p: PlayerSpec(dense) for p in program.players}, program.logits)

    def score(self, variables: Mapping[str, dict]) -> dict[str, ConditionScores]:
        """{program: its scores} for the models' variables (by model name)."""
        return {key: self.scorer.score(key, frozen_players({p: variables[p] for p in program.players}),
                                       only=program.only)
                for key, program in self.programs.items()}
