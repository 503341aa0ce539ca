"""`report.md` for the fusion experiment: what was run, the numbers, the figures, and a verdict.

The verdict is computed, never written by hand: does Joint beat FG when the object is blurred?
"""

import json
from typing import Any, Mapping, Sequence

import numpy as np

REGION_TITLES = {"foreground": "only the foreground blurred", "all": "whole image blurred"}


def _curve(summary: Sequence[Mapping[str, Any]], region: str, test_set: str, model: str) -> list[Mapping[str, Any]]:
    return sorted((r for r in summary if (r["region"], r["test_set"], r["model"]) == (region, test_set, model)),
                  key=lambda r: r["sigma"])


def joint_vs_fg(summary: Sequence[Mapping[str, Any]], region: str, test_set: str) -> dict[str, Any]:
    """Joint minus FG accuracy (mean over seeds), averaged over the blurred strengths (sigma > 0)."""
    joint, fg = _curve(summary, region, test_set, "Joint"), _curve(summary, region, test_set, "FG")
    if not joint or [r["sigma"] for r in joint] != [r["sigma"] for r in fg]:
        raise ValueError(f"no matching Joint and FG curves for {region}/{test_set}")
    blurred = [(j, f) for j, f in zip(joint, fg) if j["sigma"] > 0]
    if not blurred:
        raise ValueError("the sweep has no blurred strength (sigma > 0)")
    gaps = np.array([j["mean"] - f["mean"] for j, f in blurred])
    return {"mean_gain": float(gaps.mean()), "wins": int((gaps > 0).sum()), "strengths": len(gaps),
            "at_max_sigma": {"sigma": blurred[-1][0]["sigma"], "Joint": blurred[-1][0]["mean"],
                             "FG": blurred[-1][1]["mean"]},
            "sharp": {"Joint": joint[0]["mean"], "FG": fg[0]["mean"]} if joint[0]["sigma"] == 0 else None}


def verdict_sentence(region: str, test_set: str, comparison: Mapping[str, Any]) -> str:
    beats = comparison["mean_gain"] > 0 and comparison["wins"] > comparison["strengths"] / 2
    top = comparison["at_max_sigma"]
    return (f"**{test_set}, {REGION_TITLES[region]}: Joint {'beats' if beats else 'does not beat'} FG** — "
            f"higher at {comparison['wins']} of {comparison['strengths']} blur strengths, "
            f"{100 * comparison['mean_gain']:+.1f} points on average; at sigma {top['sigma']:g}: "
            f"Joint {100 * top['Joint']:.1f}% vs FG {100 * top['FG']:.1f}%.")


def accuracy_table(summary: Sequence[Mapping[str, Any]], region: str, test_set: str,
                   models: Sequence[str]) -> str:
    """Markdown table: one row per sigma, one column per model, mean ± std over seeds (in %)."""
    curves = {m: _curve(summary, region, test_set, m) for m in models}
    sigmas = [r["sigma"] for r in curves[models[0]]]
    lines = ["| sigma (224 px scale) | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for i, sigma in enumerate(sigmas):
        cells = []
        for m in models:
            row = curves[m][i]
            spread = f" ± {100 * row['std']:.1f}" if row["seeds"] > 1 else ""
            cells.append(f"{100 * row['mean']:.1f}{spread}")
        lines.append(f"| {sigma:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_table(stage_metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """One row per (seed, stage): the stage's own test accuracy, loss and prediction entropy."""
    lines = ["| seed | stage | accuracy (%) | loss | entropy |", "|---|---|---|---|---|"]
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


def write_report(path: str, *, config: Mapping[str, Any], summary: Sequence[Mapping[str, Any]],
                 models: Sequence[str], stage_metrics: Mapping[str, Any], figures: Mapping[str, str],
                 extra_sections: Mapping[str, str], seconds: float,
                 fingerprint: Mapping[str, Any]) -> None:
    """Writes the Markdown report; `figures` maps a caption to a path relative to the report."""
    regions = sorted({r["region"] for r in summary}, key=list(REGION_TITLES).index)
    test_sets = sorted({r["test_set"] for r in summary})
    seeds = max(r["seeds"] for r in summary)
    parts = [
        "# Contextual fusion: robustness to blur",
        f"Data: `{config['data']['name']}` at {config['data']['image_size']} px; seeds: {seeds} (mean ± sample "
        f"std over seeds where > 1); this invocation took {seconds / 60:.1f} min (stages found complete in the "
        "workdir are not retrained).",
        "## Verdict",
        *[verdict_sentence(region, t, joint_vs_fg(summary, region, t)) for region in regions for t in test_sets],
    ]
    for region in regions:
        for test_set in test_sets:
            parts += [f"## Accuracy (%), {test_set}, {REGION_TITLES[region]}",
                      accuracy_table(summary, region, test_set, models)]
    parts += ["## Figures", *[f"![{caption}]({rel})\n\n*{caption}*" for caption, rel in figures.items()]]
    for title, body in extra_sections.items():
        parts += [f"## {title}", body]
    parts += ["## Training stages (test split, final)", stage_table(stage_metrics),
              "## Configuration", fingerprint_line(fingerprint), "```json", json.dumps(config, indent=2, sort_keys=True, default=str), "```"]
    with open(path, "w") as f:
        f.write("\n\n".join(parts) + "\n")
