"""What a robustness run leaves in its workdir: results.json, table.csv, the figures and report.md."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from ctxfuse_jax.experiments.robustness import conditions
from ctxfuse_jax.experiments.robustness.figures import accuracy_heatmap
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.report import curves_figure, tables
from ctxfuse_jax.report.markdown import figure_lines, fingerprint_line

SEVERITY_FIGURE = "accuracy_vs_severity.png"


def nested(outcomes: Mapping[tuple[str, str, str], Mapping[str, float]]) -> dict[str, Any]:
    """{(condition, severity, region): measures} as {condition: {region: {severity: measures}}} for JSON."""
    out: dict[str, Any] = {}
    for (condition, severity, region), values in outcomes.items():
        out.setdefault(condition, {}).setdefault(region, {})[severity] = dict(values)
    return out


def heatmap_file(name: str) -> str:
    return "heatmap_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".png"


def _percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _accuracy(metrics: Mapping[str, Any], condition: str, region: str, levels: Sequence[str]) -> list[float]:
    return [metrics[condition][region][level]["accuracy"] for level in levels]


def summary_table(results: Mapping[str, Any]) -> list[str]:
    lines = ["| classifier | clean acc. (%) | mean acc. corrupted (%) | mCE (%) | relative mCE (%) | clean ECE (%) | "
             "corrupted ECE (%) | clean entropy | corrupted entropy |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, c in results["classifiers"].items():
        errors = c["corruption_errors"].get(conditions.ALL, {})
        lines.append(f"| {name} | {_percent(100 * c['clean_accuracy'])} | {_percent(100 * c['corrupted_accuracy'])} | "
                     f"{_percent(errors.get('mce'))} | {_percent(errors.get('relative_mce'))} | "
                     f"{_percent(100 * c['clean_ece'])} | {_percent(100 * c['corrupted_ece'])} | "
                     f"{c['clean_entropy']:.3f} | {c['corrupted_entropy']:.3f} |")
    return lines


def error_table(results: Mapping[str, Any], names: Sequence[str], kind: str, region: str) -> list[str]:
    """Classifiers x corruptions of CE_c (`kind` 'ce') or relative CE_c ('relative_ce') in `region`."""
    lines = [f"| classifier | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for name, c in results["classifiers"].items():
        errors = c["corruption_errors"].get(region)
        if errors:
            lines.append(f"| {name} | {' | '.join(_percent(errors[kind][n]) for n in names)} |")
    return lines


def region_table(results: Mapping[str, Any], regions: Sequence[str]) -> list[str]:
    lines = [f"| classifier | {' | '.join(f'mCE {r} (%)' for r in regions)} | "
             f"{' | '.join(f'relative mCE {r} (%)' for r in regions)} |", "|---|" + "---:|" * (2 * len(regions))]
    for name, c in results["classifiers"].items():
        errors = c["corruption_errors"]
        cells = [_percent(errors[r]["mce"]) if r in errors else "—" for r in regions]
        cells += [_percent(errors[r]["relative_mce"]) if r in errors else "—" for r in regions]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def variant_table(results: Mapping[str, Any], variants: Sequence[str]) -> list[str]:
    lines = [f"| classifier | {' | '.join(variants)} |", "|---|" + "---:|" * len(variants)]
    for name, c in results["classifiers"].items():
        scored = c["metrics"].get(conditions.VARIANTS, {}).get(conditions.ALL, {})
        if scored:
            cells = [_percent(100 * scored[v]["accuracy"]) if v in scored else "—" for v in variants]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def write_figures(workdir: str, results: Mapping[str, Any], corruptions: Sequence[conditions.Corruption]
                  ) -> dict[str, str]:
    """A heat map per classifier and the accuracy-vs-severity lines; {caption: file}."""
    levels = {c.name: c.levels for c in corruptions}
    severities = {c.name: c.severities for c in corruptions}
    figures = {}
    curves = {}
    for name, c in results["classifiers"].items():
        metrics, clean = c["metrics"], c["clean_accuracy"]
        accuracy = {r: {k: _accuracy(metrics, k, r, v) for k, v in levels.items()} for r in c["regions"]}
        file = heatmap_file(name)
        accuracy_heatmap(accuracy, levels, severities, f"{name}: accuracy (%), clean {100 * clean:.1f}%",
                         path=os.path.join(workdir, file))
        figures[f"{name}: accuracy (%) per corruption and severity, each region corrupted alone"] = file
        curves[name] = {k: ([0, *severities[k]], [clean, *accuracy[conditions.ALL][k]]) for k in levels}
    fig = curves_figure(curves, xlabel="severity (0: clean)", ylabel="accuracy")
    for ax in fig.axes:
        ax.set_xticks(range(max(max(s) for s in severities.values()) + 1))
    fig.savefig(os.path.join(workdir, SEVERITY_FIGURE), dpi=fig.dpi)
    figures["Accuracy against severity, whole image corrupted: a panel per classifier, a line per corruption"] = \
        SEVERITY_FIGURE
    return figures


def write_report(path: str, config: ml_collections.ConfigDict, results: Mapping[str, Any],
                 corruptions: Sequence[conditions.Corruption], figures: Mapping[str, str]) -> None:
    classifiers = results["classifiers"]
    names = [c.name for c in corruptions]
    regions = list(dict.fromkeys(r for c in classifiers.values() for r in c["regions"]))
    lines = ["# Robustness report", "",
             f"{len(classifiers)} classifiers of {len(results['sources'])} finished workdirs, scored clean and under "
             f"{sum(len(c.levels) for c in corruptions)} corruption levels ({len(corruptions)} corruptions) in "
             f"{len(regions)} regions ({', '.join(regions)}). The corruption errors (CE, mCE; Hendrycks & Dietterich "
             f"2019) are relative to **{results['baseline']}** (100%); ECE: 15 equal-width confidence bins "
             "(Guo et al. 2017); entropy of the predicted distribution in nats.", "",
             "## Classifiers", "", "| classifier | workdir | experiment | test images |", "|---|---|---|---:|"]
    lines += [f"| {n} | `{c['workdir']}` | {c['experiment']} | {c['test_images']} |" for n, c in classifiers.items()]
    lines += ["", "## Conditions", "", "| corruption | preset | levels | runs on |", "|---|---|---|---|"]
    lines += [f"| {c.name} | `{c.preset}` | {', '.join(c.levels)} | "
              f"{'device (jitted step)' if c.on_device else 'host codec'} |" for c in corruptions]
    lines += ["", f"Regions: {', '.join(regions)} (foreground / background: the corruption kept inside the object "
              "mask or outside it, clean pixels elsewhere). Random draws (noise, motion angles, shake kernels) "
              f"by `eval.seed={config.eval.seed}`, the same for every classifier."]
    if results["skipped"]:
        lines += ["", *[f"- Skipped: {line}" for line in results["skipped"]]]
    lines += ["", "## Summary (whole image)", "", *summary_table(results), "",
              "Mean accuracy and ECE under corruption: over every level of every corruption. mCE: mean over "
              "corruptions of CE_c = sum_s E(f, s, c) / sum_s E(baseline, s, c); relative mCE uses E - E_clean. "
              "'—': not defined (a classifier tested on other images than the baseline, or a zero denominator).",
              "", "## Corruption error per corruption (CE_c, %, whole image)", "",
              *error_table(results, names, "ce", conditions.ALL), "",
              "## Relative corruption error per corruption (%, whole image)", "",
              *error_table(results, names, "relative_ce", conditions.ALL)]
    if len(regions) > 1:
        lines += ["", "## mCE per corrupted region", "", *region_table(results, regions)]
    scored = [c["metrics"].get(conditions.VARIANTS, {}).get(conditions.ALL, {}) for c in classifiers.values()]
    variants = [v for v in config.variants if any(v in s for s in scored)]
    if variants:
        lines += ["", "## IN-9 background variants (accuracy, %)", "", *variant_table(results, variants)]
    lines += ["", "## Figures", "", *figure_lines(figures), "", "## Provenance", "",
              fingerprint_line(results["fingerprint"]),
              "Source workdirs by content (config.json and the checkpoint files read, sha256 in `results.json`): "
              + "; ".join(f"`{p}` config {d['config_sha256'][:12]}, {len(d['checkpoints'])} checkpoint files"
                          for p, d in results["sources"].items()) + ".",
              "", f"Written in {results['seconds']:.0f} s."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_outputs(workdir: str, config: ml_collections.ConfigDict, results: Mapping[str, Any],
                  rows: Sequence[Mapping[str, Any]], corruptions: Sequence[conditions.Corruption]) -> None:
    """results.json, table.csv (long: model, condition, severity, region, metric, value), figures, report.md."""
    write_json_atomic(os.path.join(workdir, "results.json"), dict(results))
    tables.write_csv(os.path.join(workdir, "table.csv"), rows)
    figures = write_figures(workdir, results, corruptions)
    write_report(os.path.join(workdir, "report.md"), config, results, corruptions, figures)
