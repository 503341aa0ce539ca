"""The paper's tables as numbers (seeds stacked), from the per-example scores of every seed.

Each table is {row: {column: array over seeds}}, so the report writes mean ± std and the
verdicts compare means; `long_rows` flattens everything for table.csv.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ctxfuse_jax.evaluate.evaluator import ConditionScores

Table = dict[str, dict[str, np.ndarray]]
METRICS = ("top1", "top5", "entropy", "cross_entropy")


def condition_metric(scores: ConditionScores, model: str, family: str, level: str, metric: str) -> float:
    """One model's mean metric under one condition level."""
    scored = scores.family(family)
    i = scored.levels.index(level)
    if metric == "top1":
        return float(scores.correct(model, family)[i].mean())
    values = {"top5": scored.in_top5, "entropy": scored.entropy, "cross_entropy": scored.cross_entropy}[metric]
    return float(values[model][i].mean())


def conditions_of(scores: ConditionScores) -> list[tuple[str, str]]:
    """Every (family, level) scored, in config order."""
    return [(name, level) for name, family in scores.families.items() for level in family.levels]


def _stack(per_seed: Sequence[Table]) -> Table:
    return {row: {col: np.asarray([t[row][col] for t in per_seed]) for col in per_seed[0][row]} for row in per_seed[0]}


def table1(results: Mapping[Any, Mapping[str, Any]], metric: str) -> Table:
    """Rows: every test condition; columns: network scale (and combination); the original model."""
    per_seed = []
    for r in results.values():
        scores = r["table1"]
        models = list(next(iter(scores.families.values())).predictions)
        per_seed.append({level: {m: condition_metric(scores, m, family, level, metric) for m in models}
                         for family, level in conditions_of(scores)})
    return _stack(per_seed)


def models_table(results: Mapping[Any, Mapping[str, Any]], metric: str, models: Sequence[str],
                 rows: Sequence[tuple[str, str]]) -> Table:
    """Rows: (family, level) test conditions; columns: the named model outputs ('name@scales')."""
    per_seed = [{level: {m: condition_metric(r["models"], m, family, level, metric) for m in models}
                 for family, level in rows} for r in results.values()]
    return _stack(per_seed)


def invariance_table(results: Mapping[Any, Mapping[str, Any]]) -> Table:
    """Rows: models; columns: pool layers; mean Hamming distance (fraction of channels flipped)."""
    per_seed = [{model: dict(v["means"]) for model, v in r["invariance"].items()} for r in results.values()]
    return _stack(per_seed)


def segmentation_table(results: Mapping[Any, Mapping[str, Any]]) -> Table:
    """Rows: test conditions; columns: '{model} {all|boundary}' mIoU."""
    per_seed = []
    for r in results.values():
        table: dict[str, dict[str, float]] = {}
        for model, levels in r["segmentation"].items():
            for level, values in levels.items():
                table.setdefault(level, {})[f"{model} all"] = values["miou_all"]
                table[level][f"{model} boundary"] = values["miou_boundary"]
        per_seed.append(table)
    return _stack(per_seed) if per_seed and per_seed[0] else {}


def mean(table: Table, row: str, column: str) -> float:
    return float(np.mean(table[row][column]))


def long_rows(results: Mapping[Any, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """(seed, scored, model, condition, level, metric, value) for every score of every seed."""
    rows = []
    for seed, r in results.items():
        for scored in ("table1", "models"):
            scores = r[scored]
            for family, level in conditions_of(scores):
                for model in scores.family(family).predictions:
                    for metric in METRICS:
                        rows.append(dict(seed=seed, scored=scored, model=model, condition=family, level=level,
                                         metric=metric,
                                         value=condition_metric(scores, model, family, level, metric)))
        for model, v in r["invariance"].items():
            rows += [dict(seed=seed, scored="invariance", model=model, condition="hamming", level=layer,
                          metric="hamming", value=float(value)) for layer, value in v["means"].items()]
        for model, levels in r["segmentation"].items():
            for level, values in levels.items():
                rows += [dict(seed=seed, scored="segmentation", model=model, condition="segmentation", level=level,
                              metric=metric, value=float(value)) for metric, value in values.items()]
    return rows
