"""The paper's tables as numbers (seeds stacked), from the per-example scores of every seed.

Each table is {row: {column: array over seeds}}, so the report writes mean ± std and the
verdicts compare means; `long_rows` flattens everything for table.csv. A seed's result holds
`scores` {program: ConditionScores} (`scoring.programs`), `invariance` and `segmentation`.
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


def scored_table(results: Mapping[Any, Mapping[str, Any]], metric: str) -> Table:
    """{level: {output name: per-seed values}}: every output of every program on each condition its
    program scored, rows in the order first scored (Table 1's program scores every condition)."""
    per_seed = []
    for r in results.values():
        table: dict[str, dict[str, float]] = {}
        for scores in r["scores"].values():
            for family, level in conditions_of(scores):
                for name in scores.family(family).predictions:
                    table.setdefault(level, {})[name] = condition_metric(scores, name, family, level, metric)
        per_seed.append(table)
    return _stack(per_seed)


def select(table: Table, rows: Sequence[str], columns: Mapping[str, str]) -> Table:
    """`table`'s `rows`, its outputs renamed {column: output name}; cells never scored are left out."""
    return {row: {column: table[row][name] for column, name in columns.items() if name in table.get(row, {})}
            for row in rows}


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
        for scored, scores in r["scores"].items():
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
