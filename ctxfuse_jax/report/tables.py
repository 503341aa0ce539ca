"""Sweep results as long-format rows (one per seed, region, test set, model, strength), CSV and JSON.

Long rows are what pandas, spreadsheets and plotting code all read without reshaping.
"""

import csv
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

ROW_KEYS = ("region", "test_set", "model", "sigma")


def sweep_rows(per_seed: Mapping[int, Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]]],
               sigmas: Sequence[float]) -> list[dict[str, Any]]:
    """Flattens {seed: {region: {test_set: {model: accuracy per sigma}}}} into rows."""
    rows = []
    for seed, by_region in per_seed.items():
        for region, by_set in by_region.items():
            for test_set, by_model in by_set.items():
                for model, accuracies in by_model.items():
                    if len(accuracies) != len(sigmas):
                        raise ValueError(f"{model}/{region}/{test_set}: {len(accuracies)} accuracies "
                                         f"for {len(sigmas)} sigmas")
                    rows += [dict(seed=int(seed), region=region, test_set=test_set, model=model,
                                  sigma=float(sigma), accuracy=float(acc))
                             for sigma, acc in zip(sigmas, accuracies)]
    return rows


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean, sample standard deviation and count over seeds for each (region, test set, model, sigma)."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in ROW_KEYS), []).append(row["accuracy"])
    return [dict(zip(ROW_KEYS, key), mean=float(np.mean(values)),
                 std=float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, seeds=len(values))
            for key, values in groups.items()]


def write_csv(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
