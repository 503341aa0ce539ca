"""Markdown pieces every experiment's report shares."""

from typing import Any, Mapping

import numpy as np


def mean_std(values: np.ndarray, scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± std' over seeds (sample std; none for one seed), in percent by default; '—' for no value."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        return "—"
    mean = f"{scale * values.mean():.{digits}f}"
    return f"{mean} ± {scale * values.std(ddof=1):.{digits}f}" if len(values) > 1 else mean


def stage_table(stage_metrics: Mapping[Any, Mapping[str, Mapping[str, float]]], stage_title: str = "stage") -> str:
    """One row per (seed, stage): the stage's own test accuracy, loss and prediction entropy."""
    lines = [f"| seed | {stage_title} | accuracy (%) | loss | entropy |", "|---|---|---|---|---|"]
    for seed, stages in stage_metrics.items():
        for stage, m in stages.items():
            if m:
                lines.append(f"| {seed} | {stage} | {100 * m['accuracy']:.1f} | {m['loss']:.3f} | {m['entropy']:.3f} |")
    return "\n".join(lines)


def fingerprint_line(fingerprint: Mapping[str, Any]) -> str:
    """Which config and input files produced these numbers, by content."""
    inputs = ", ".join(f"`{key}` {v['path']} (sha256 {v['sha256'][:12]})" for key, v in fingerprint["inputs"].items())
    return (f"Config sha256 `{fingerprint['config_sha256'][:12]}`; input files: {inputs or 'none'} "
            "(full hashes in `results.json`).")


def figure_lines(figures: Mapping[str, str]) -> list[str]:
    """One image and caption per figure; `figures` maps a caption to a path relative to the report."""
    return [f"![{caption}]({path})\n\n*{caption}*" for caption, path in figures.items()]
