"""Results as long-format rows (one per seed, model, condition, level, test set, metric), CSV and JSON.

Long rows are what pandas, spreadsheets and plotting code all read without reshaping; every
experiment writes the evaluator's rows (`evaluate.evaluator.long_table`) and summarises them here.
"""

import csv
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

VALUE = "value"


def summarize(rows: Iterable[Mapping[str, Any]], over: str = "seed") -> list[dict[str, Any]]:
    """Mean, sample standard deviation and count of `value` over `over`, per group of the other keys."""
    groups: dict[tuple, list[float]] = {}
    keys: tuple[str, ...] = ()
    for row in rows:
        keys = tuple(k for k in row if k not in (over, VALUE))
        groups.setdefault(tuple((k, row[k]) for k in keys), []).append(row[VALUE])
    return [dict(key, mean=float(np.mean(values)),
                 std=float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, seeds=len(values))
            for key, values in groups.items()]


def select(rows: Iterable[Mapping[str, Any]], **match: Any) -> list[Mapping[str, Any]]:
    """The rows whose keys equal every `match` value."""
    return [row for row in rows if all(row[k] == v for k, v in match.items())]


def seed_matrix(rows: Iterable[Mapping[str, Any]], levels: Sequence[str], **match: Any) -> np.ndarray:
    """(seeds, levels) of `value` for the rows matching `match`, seeds in sorted order."""
    chosen = select(rows, **match)
    seeds = sorted({row["seed"] for row in chosen})
    by_key = {(row["seed"], row["level"]): row[VALUE] for row in chosen}
    missing = [(s, l) for s in seeds for l in levels if (s, l) not in by_key]
    if not chosen or missing:
        raise ValueError(f"no complete rows for {match}: missing (seed, level) {missing[:3] or 'all'}")
    return np.array([[by_key[s, l] for l in levels] for s in seeds], np.float64)


def write_csv(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
