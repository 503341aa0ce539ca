"""The backgrounds-challenge release scored as it is stored: every variant folder, and its challenge.

Nothing is trained: each configured pretrained model (converted weights; 1000-class ImageNet models
through a class map such as MadryLab's `in_to_in9.json`, 9-class models directly) is scored on each
released test variant and on the challenge (every original foreground, by its released mask, on
the released Only-BG-T backgrounds), one compiled program per model.
"""

import os
import time
from typing import Any

import jax
import ml_collections

from ctxfuse_jax import provenance
from ctxfuse_jax.data import image_folders
from ctxfuse_jax.evaluate.class_map import load_class_map
from ctxfuse_jax.evaluate.conditions import Family, chosen_examples, composite_family
from ctxfuse_jax.evaluate.evaluator import evaluate_conditions, frozen_players, make_condition_step
from ctxfuse_jax.experiments.in9 import data as in9_data
from ctxfuse_jax.experiments.in9 import measures, report
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.models.precision import compute_dtype
from ctxfuse_jax.models.registry import build_model
from ctxfuse_jax.report import tables
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.state import PlayerSpec
from ctxfuse_jax.weights import load_pretrained

STORED = Family("in9", ("as stored",), lambda images, batch, bank, level, key: images)


def score_model(config, name: str, variants: dict, challenge_inputs, mesh) -> dict[str, Any]:
    """One pretrained model's accuracy per released variant, BG-gap and challenge."""
    spec = config.pretrained[name]
    module = build_model(spec.arch, num_classes=spec.num_classes, width=spec.width,
                         dtype=compute_dtype(config.compute_dtype))
    class_names = image_folders.class_names(config.data.root)
    class_map = load_class_map(spec.class_map, spec.num_classes, len(class_names)) if spec.class_map else None
    players = frozen_players({"model": load_pretrained(spec.weights, module)})
    split, bank, background_labels = challenge_inputs
    challenge = config.eval.conditions.get("challenge")
    families = [STORED]
    if challenge is not None:
        foregrounds = chosen_examples(len(split), challenge.num_foregrounds, config.eval.seed, stream=0)
        chosen = chosen_examples(len(background_labels), challenge.num_backgrounds, config.eval.seed, stream=1)
        families.append(composite_family("challenge", chosen, foregrounds))
    step = make_condition_step({"model": PlayerSpec(module)}, lambda fw, x: {name: fw("model", x)}, families,
                               class_map)

    def evaluate(on, only):
        return evaluate_conditions(step, players, on, families, config.eval.batch_size, mesh,
                                   num_classes=len(class_names), seed=config.eval.seed, bank=bank, only=only)

    correct = {v: evaluate(s, ("in9",)).correct(name, "in9")[0] for v, s in variants.items()}
    result: dict[str, Any] = {"accuracy": {v: float(c.mean()) for v, c in correct.items()}}
    if {"mixed_same", "mixed_rand"} <= set(correct):
        result["bg_gap"] = measures.bg_gap(result["accuracy"])
    if challenge is not None:
        scores = evaluate(split, ("challenge",))
        grid = scores.correct(name, "challenge")
        labels = split.arrays["label"]
        recognised = correct["original"][scores.family("challenge").examples]
        result["challenge"] = {
            "accuracy": measures.challenge_accuracy(grid),
            "fooled_share": float((~grid.all(axis=0))[recognised].mean()) if recognised.any() else float("nan"),
            "foregrounds": grid.shape[1], "backgrounds": grid.shape[0],
            "fooling_rates": measures.fooling_rates(grid, labels[scores.family("challenge").examples],
                                                    background_labels[chosen]).tolist()}
    return result


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Scores every configured pretrained model on the release; writes results.json, table.csv, report.md."""
    start = time.monotonic()
    mesh = sharding.make_mesh()
    variants = tuple(config.eval.conditions.in9.variants)
    stored = in9_data.release_variants(config.data.root, variants, config.data.image_size)
    challenge_inputs = in9_data.release_challenge(config.data.root, config.data.image_size)
    models = {name: score_model(config, name, stored, challenge_inputs, mesh) for name in config.pretrained}
    results = {"trained": {0: {"models": models, "stages": {}, "progress": []}}, "fusion": {}}
    if jax.process_index() == 0:
        rows = [dict(seed=0, model=m, condition="in9", level=v, metric="accuracy", value=a)
                for m, r in models.items() for v, a in r["accuracy"].items()]
        tables.write_csv(os.path.join(workdir, "table.csv"), rows)
        fingerprint = provenance.run_fingerprint(config)
        write_json_atomic(os.path.join(workdir, "results.json"), {**results, "fingerprint": fingerprint,
                                                                   "seconds": time.monotonic() - start})
        report.write_report(os.path.join(workdir, "report.md"), config=config.to_dict(), results=results,
                            variants=variants, num_classes=len(image_folders.class_names(config.data.root)),
                            num_test=len(stored["original"]), figures={}, seconds=time.monotonic() - start,
                            fingerprint=fingerprint)
    return results
