"""The robustness report end to end: read finished workdirs, score every classifier, measure, write.

Each workdir's classifiers come from `experiments.finished.read_finished` (whatever experiment made
them), with the test split they were made for. Workdirs testing on the same images share one
`ConditionScorer`: one compiled program per architecture scores the clean images, every on-device
corruption in every region, the IN-9 variants and, fed the images a host codec made, every JPEG and
JPEG 2000 level. Predictions stay per example until `outcome` reduces them to accuracy, mean
entropy and ECE; `summarize` adds the corruption errors against the baseline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ctxfuse_jax import provenance
from ctxfuse_jax.data.pipeline import ArraySplit
from ctxfuse_jax.degrade import backgrounds
from ctxfuse_jax.errors import DataError
from ctxfuse_jax.evaluate.conditions import chosen_examples
from ctxfuse_jax.evaluate.evaluator import ConditionScorer, ConditionScores, frozen_players
from ctxfuse_jax.experiments.finished import Finished, FinishedModels, read_finished
from ctxfuse_jax.experiments.in9.data import has_background_strip
from ctxfuse_jax.experiments.robustness import conditions, measures, report
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.forward import Forward
from ctxfuse_jax.train.state import Player
from ctxfuse_jax.workdir import CONFIG_FILE, workdir_and_choices

METRICS = ("accuracy", "entropy", "ece")
Key = tuple[str, str, str]  # (condition, severity, region)


@dataclasses.dataclass
class Classifier:
    """One scored classifier: where it came from and its measures per (condition, severity, region)."""

    name: str  # <workdir label>/<models>/<classifier>, unique in the report
    workdir: str
    experiment: str
    test_split: str  # which test images (a digest): mCE compares classifiers scored on the same ones
    test_images: int
    regions: tuple[str, ...]
    outcomes: dict[Key, dict[str, float]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Source:
    """One workdir read back: its label in classifier names and its finished run."""

    label: str
    finished: Finished


def workdir_labels(paths: Sequence[str]) -> list[str]:
    """Each workdir's folder name, or its whole path where two share a folder name."""
    names = [os.path.basename(os.path.normpath(p)) for p in paths]
    return [n if names.count(n) == 1 else os.path.normpath(p) for n, p in zip(names, paths)]


def classifier_names(models: FinishedModels, split: ArraySplit) -> tuple[str, ...]:
    """The classifiers `models.logits_fn` returns, found by tracing it (nothing computed)."""
    players = {name: Player(v["params"], v.get("batch_stats", {}), None) for name, v in models.variables.items()}
    images = jax.ShapeDtypeStruct((1, *split.arrays["image"].shape[1:]), jnp.float32)
    return tuple(jax.eval_shape(lambda p, x: models.logits_fn(Forward(models.specs, p), x), players, images))


def split_digest(split: ArraySplit) -> str:
    """The test images and labels by content: two workdirs with the same digest test on the same images."""
    digest = hashlib.sha256()
    for key in ("image", "label"):
        array = np.ascontiguousarray(split.arrays[key])
        digest.update(f"{key}{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def outcome(correct: np.ndarray, entropy: np.ndarray, confidence: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(np.mean(correct)), "entropy": float(np.mean(entropy)),
            "ece": measures.expected_calibration_error(confidence, correct)}


def record(scores: ConditionScores, family_keys: Mapping[str, tuple[str, str]], classifiers: Mapping[str, Classifier],
           prefix: str, override: tuple[str, str, str] | None = None) -> None:
    """Each model's measures under each level of each scored family, into `classifiers` (named
    `prefix` + model); `override` files the one clean level under a host condition instead."""
    for family_name, family in scores.families.items():
        condition, region = family_keys[family_name]
        labels = scores.labels[family.examples]
        for model, predictions in family.predictions.items():
            for i, level in enumerate(family.levels):
                key = override or (condition, level, region)
                classifiers[prefix + model].outcomes[key] = outcome(
                    predictions[i] == labels, family.entropy[model][i], family.confidence[model][i])


def scored_split(finished: Finished, num_images: int, seed: int) -> ArraySplit:
    """The test split scored: all of it, or `num_images` of it drawn by `seed`."""
    split = finished.data.test
    return split.subset(chosen_examples(len(split), num_images, seed, stream=0)) if num_images else split


def available(split: ArraySplit, config: ml_collections.ConfigDict, num_classes: int, where: str
              ) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """(regions, variants) the split allows, and a line for each the config wants but it cannot take."""
    regions, variants, skipped = tuple(config.regions), tuple(config.variants), []
    if "mask" not in split.arrays:
        skipped.append(f"{where}: the test split has no object masks; foreground / background regions and the "
                       "IN-9 variants are skipped")
        return tuple(r for r in regions if r == conditions.ALL), (), skipped
    height, width = split.arrays["image"].shape[1:3]
    if variants and ("bbox" not in split.arrays or height != width):
        skipped.append(f"{where}: the IN-9 variants need object boxes and square images; skipped")
        variants = ()
    if variants and not has_background_strip(split).all():
        skipped.append(f"{where}: some test boxes cover the whole image (no background to tile); the IN-9 "
                       "variants are skipped")
        variants = ()
    for variant in sorted(set(variants) & set(backgrounds.MIXED)):
        try:  # A mixed_* image takes its background from another image (of the same class for mixed_same).
            backgrounds.donor_indices(variant, split.arrays["label"], num_classes, config.eval.seed)
        except ValueError as error:
            skipped.append(f"{where}: the IN-9 variant {variant} is skipped ({error})")
            variants = tuple(v for v in variants if v != variant)
    return regions, variants, skipped


def score_group(sources: Sequence[Source], split: ArraySplit, num_classes: int, config: ml_collections.ConfigDict,
                corruptions: Sequence[conditions.Corruption], mesh: jax.sharding.Mesh
                ) -> tuple[dict[str, Classifier], list[str]]:
    """Every classifier of `sources` (which test on `split`) under every condition; lines on what was skipped."""
    from ctxfuse_jax.data import degraded  # TensorFlow: the host codecs

    where = ", ".join(s.finished.workdir for s in sources)
    regions, variants, skipped = available(split, config, num_classes, where)
    families = conditions.families(corruptions, regions, variants, split.arrays["image"].shape[1])
    family_keys = {conditions.CLEAN: (conditions.CLEAN, conditions.ALL), conditions.VARIANTS: (conditions.VARIANTS,
                                                                                                conditions.ALL)}
    family_keys.update({conditions.family_name(c.name, r): (c.name, r) for c in corruptions for r in regions})
    scorer = ConditionScorer(families, split, num_classes, config.eval.batch_size, config.eval.seed, mesh)
    digest = split_digest(split)
    classifiers, architectures = {}, {}
    for source in sources:
        for models in source.finished.models:
            architecture = f"{source.label}/{models.name}"
            scorer.add_architecture(architecture, models.specs, models.logits_fn)
            architectures[architecture] = frozen_players(models.variables)
            for name in classifier_names(models, split):
                classifiers[f"{architecture}/{name}"] = Classifier(
                    f"{architecture}/{name}", source.finished.workdir, source.finished.config.experiment, digest,
                    len(split), regions)
    for architecture, players in architectures.items():
        record(scorer.score(architecture, players), family_keys, classifiers, architecture + "/")
    test_sets = degraded.DegradedTestSets(split, seed=config.eval.seed)
    for corruption in corruptions:
        if corruption.on_device:
            continue
        for level, condition in zip(corruption.levels, corruption.host_bins()):
            start = time.monotonic()
            worse = test_sets.at(condition.kind, condition.low, blur_sigma=condition.blur_sigma,
                                 noise_std=condition.noise_std).arrays["image"]
            print(f"[robustness] {corruption.name} {level} ({condition.name}) made on the host in "
                  f"{time.monotonic() - start:.1f} s", flush=True)
            for region in regions:
                images = conditions.in_region(split.arrays["image"], worse, split.arrays.get("mask"), region)
                region_split = ArraySplit({**split.arrays, "image": images})
                for architecture, players in architectures.items():
                    scores = scorer.score(architecture, players, only=(conditions.CLEAN,), split=region_split)
                    record(scores, family_keys, classifiers, architecture + "/",
                           override=(corruption.name, level, region))
            test_sets.clear()
    return classifiers, skipped


def read_sources(specs: Sequence[str]) -> list[Source]:
    """Each `PATH` or `PATH:DATASET` of `config.workdirs`, labelled by its workdir."""
    paths, choices = zip(*map(workdir_and_choices, specs))
    return [Source(label, read_finished(path, **chosen))
            for label, path, chosen in zip(workdir_labels(paths), paths, choices)]


def choose_baseline(config: ml_collections.ConfigDict, names: Sequence[str]) -> str:
    if not config.baseline:
        return names[0]
    if config.baseline not in names:
        raise DataError(f"config.baseline={config.baseline!r} is none of the classifiers scored: {list(names)}")
    return config.baseline


def errors_of(classifier: Classifier, corruptions: Sequence[conditions.Corruption], region: str) -> dict[str, list]:
    """{corruption: top-1 error per severity} in `region`."""
    return {c.name: [1.0 - classifier.outcomes[c.name, level, region]["accuracy"] for level in c.levels]
            for c in corruptions}


def summarize(classifier: Classifier, baseline: Classifier | None,
              corruptions: Sequence[conditions.Corruption]) -> dict[str, Any]:
    """Clean and mean corrupted accuracy, entropy and ECE (whole image), and per region the corruption
    errors against `baseline` (None: it tested on other images, so there are none)."""
    clean = classifier.outcomes[conditions.CLEAN, conditions.CLEAN_SEVERITY, conditions.ALL]
    corrupted = [classifier.outcomes[c.name, level, conditions.ALL] for c in corruptions for level in c.levels]
    summary: dict[str, Any] = {f"clean_{m}": clean[m] for m in METRICS}
    summary.update({f"corrupted_{m}": float(np.mean([o[m] for o in corrupted])) for m in METRICS})
    summary["corruption_errors"] = {}
    if baseline is None:
        return summary
    base_clean = 1.0 - baseline.outcomes[conditions.CLEAN, conditions.CLEAN_SEVERITY, conditions.ALL]["accuracy"]
    for region in classifier.regions:
        if region not in baseline.regions:
            continue
        errors, base = errors_of(classifier, corruptions, region), errors_of(baseline, corruptions, region)
        ce, mce = measures.mean_corruption_error(errors, base)
        relative_ce, relative_mce = measures.mean_corruption_error(errors, base, 1.0 - clean["accuracy"], base_clean)
        summary["corruption_errors"][region] = {"ce": ce, "mce": mce, "relative_ce": relative_ce,
                                                "relative_mce": relative_mce}
    return summary


def long_rows(classifiers: Mapping[str, Classifier]) -> list[dict[str, Any]]:
    """(model, condition, severity, region, metric, value): every measure, and the corruption errors."""
    rows = []
    for name, classifier in classifiers.items():
        for (condition, severity, region), values in classifier.outcomes.items():
            rows += [dict(model=name, condition=condition, severity=severity, region=region, metric=m, value=v)
                     for m, v in values.items()]
    return rows


def error_rows(summaries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, summary in summaries.items():
        for region, errors in summary["corruption_errors"].items():
            for kind in ("ce", "relative_ce"):
                rows += [dict(model=name, condition=c, severity="", region=region, metric=kind, value=v)
                         for c, v in errors[kind].items()]
            rows += [dict(model=name, condition="mean", severity="", region=region, metric=kind, value=errors[kind])
                     for kind in ("mce", "relative_mce")]
    return rows


def source_digests(workdir: str) -> dict[str, Any]:
    """What a source workdir's classifiers are, by content: its config.json and the files of the
    latest committed checkpoint of each stage (the step `train.checkpoint.read_players` reads)."""
    files = {}
    for root, dirs, _ in os.walk(workdir):
        dirs.sort()
        if os.path.basename(root) != "checkpoints":
            continue
        steps = [d for d in dirs if d.isdigit() and os.path.exists(os.path.join(root, d, "commit_success.txt"))]
        if steps:
            step_dir = os.path.join(root, max(steps, key=int))
            for inner, inner_dirs, names in os.walk(step_dir):
                inner_dirs.sort()
                for name in sorted(names):
                    path = os.path.join(inner, name)
                    files[os.path.relpath(path, workdir)] = provenance.file_sha256(path)
        dirs[:] = []  # nothing to read below a checkpoints folder but its steps
    return {"config_sha256": provenance.file_sha256(os.path.join(workdir, CONFIG_FILE)), "checkpoints": files}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The experiment for a config that passed `config_checks.check_config` (as the CLI does first)."""
    start = time.monotonic()
    mesh = sharding.make_mesh()
    corruptions = conditions.corruptions(config.corruptions.to_dict())
    sources = read_sources(config.workdirs)
    groups: dict[str, tuple[ArraySplit, int, list[Source]]] = {}  # sources by the test images they score
    names = []
    for source in sources:
        split = scored_split(source.finished, config.eval.num_images, config.eval.seed)
        entry = groups.setdefault(split_digest(split), (split, source.finished.data.num_classes, []))
        entry[2].append(source)
        names += [f"{source.label}/{m.name}/{c}" for m in source.finished.models for c in classifier_names(m, split)]
    baseline_name = choose_baseline(config, names)  # before scoring: a wrong name is told at once
    classifiers, skipped = {}, []
    for split, num_classes, group in groups.values():
        scored, lines = score_group(group, split, num_classes, config, corruptions, mesh)
        classifiers.update(scored)
        skipped += lines
    baseline = classifiers[baseline_name]
    summaries = {name: summarize(c, baseline if c.test_split == baseline.test_split else None, corruptions)
                 for name, c in classifiers.items()}
    results = {
        "baseline": baseline_name,
        "corruptions": [{"name": c.name, "preset": c.preset, "levels": list(c.levels),
                         "runs_on": "device" if c.on_device else "host"} for c in corruptions],
        "classifiers": {name: {"workdir": c.workdir, "experiment": c.experiment, "test_split": c.test_split,
                               "test_images": c.test_images, "regions": list(c.regions), **summaries[name],
                               "metrics": report.nested(c.outcomes)} for name, c in classifiers.items()},
        "skipped": skipped,
        "sources": {spec: source_digests(workdir_and_choices(spec)[0]) for spec in config.workdirs},
        "fingerprint": provenance.run_fingerprint(config),
    }
    results["seconds"] = time.monotonic() - start
    if jax.process_index() == 0:
        report.write_outputs(workdir, config, results, long_rows(classifiers) + error_rows(summaries), corruptions)
    return results
