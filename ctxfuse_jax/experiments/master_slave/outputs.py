"""What a master-slave run leaves in its workdir: results.json, sweeps.csv, table1.csv, figures and report.md.

Everything here reads the per-seed results alone (`experiment.run` gives them, `results.json`
keeps them), so the report can be rebuilt from a finished workdir without training.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ctxfuse_jax import provenance
from ctxfuse_jax.data import quality_bins
from ctxfuse_jax.experiments.master_slave import decisions, report
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.report import curves_figure, matrix_figure, receptive_field_figure
from ctxfuse_jax.report import tables as report_tables

BASE_MODELS = "base_models"  # context key: the labels of the Section-3 networks, the slave's base first
X_LABELS = {"noise": "noise std (of [0, 1] pixels)", "blur": "Gaussian blur sigma (px)",
            "jpeg": "JPEG quality", "jpeg2000": "JPEG 2000 compression ratio (x:1)"}
FIGURES = {
    "fig1a": "Fig. 1a: the base VGG-16's top-1 under each degradation against the degraded images' PSNR (the "
             "paper's point: at equal error, noise costs less than compression)",
    "fig1b": "Fig. 1b: VGG-16 and AlexNet under JPEG and JPEG 2000 over the whole quality range",
    "fig1c": "Fig. 1c: each model's receptive field at its first pooling output (red) over 8x8 JPEG blocks (grey: "
             "one block)",
    "fig3": "Fig. 3: every method under JPEG and JPEG 2000 (MS: master-switched slave, AMS: max over branches, "
            "MAP: master-weighted branches; DA: augmentation, ST: stability training, DC: feature masking)",
    "fig4": "Fig. 4: combined degradations, blur or noise before the codec: the base model and the slave's "
            "decisions, beside the base model under the codec alone",
    "confusion": "The master's confusion matrix over the quality bins (test images, each degraded by a bin drawn "
                 "for it; counts summed over seeds)",
}


def _seeds(results: Mapping[Any, Mapping[str, Any]]) -> list[str]:
    return [str(seed) for seed in results]


def base_labels(config) -> list[str]:
    """The Section-3 networks' labels, the slave's base model first."""
    base = config.slave.base
    return [config.models[base].label] + [m.label for key, m in config.models.items() if key != base]


def methods(results: Mapping[Any, Mapping[str, Any]], config) -> list[str]:
    """Table 1's rows: every scored method that is not one of the base networks."""
    first = next(iter(results.values()))["table"]["clean"]
    order = list(report.PAPER_ORDER)
    found = [m for m in first if m not in base_labels(config)]
    return sorted(found, key=lambda m: (order.index(m) if m in order else len(order), m))


def table1(config, results: Mapping[Any, Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """Per method, over seeds: c, d (the base model clean and at Table 1's condition), c', d' (the
    method's) and the % change (d' - d) / (c - d), all in [0, 1] units but % change in percent."""
    base = base_labels(config)[0]
    rows = {}
    for method in methods(results, config):
        values = {k: [] for k in ("c", "d", "c'", "d'", "change")}
        for result in results.values():
            clean, worse = result["table"]["clean"], result["table"]["degraded"]
            cells = (clean[base], worse[base], clean[method], worse[method])
            for key, value in zip(("c", "d", "c'", "d'"), cells):
                values[key].append(value)
            values["change"].append(decisions.percent_change(*cells) if cells[0] != cells[1] else np.nan)
        rows[method] = {k: np.asarray(v, np.float64) for k, v in values.items()}
    return rows


def sweeps(results: Mapping[Any, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per sweep: its kind, qualities, mean PSNR and each method's top-1 as (seeds, levels)."""
    first = next(iter(results.values()))["sweeps"]
    out = {}
    for label, sweep in first.items():
        per_seed = [r["sweeps"][label] for r in results.values()]
        out[label] = {"kind": sweep["kind"], "unit": sweep["unit"], "qualities": list(sweep["qualities"]),
                      "blur_sigma": sweep["blur_sigma"], "noise_std": sweep["noise_std"],
                      "psnr": np.mean([s["psnr"] for s in per_seed], axis=0),
                      "top1": {m: np.asarray([s["top1"][m] for s in per_seed], np.float64) for m in sweep["top1"]}}
    return out


def context(config, results: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """Every number the report and the figures show, from the per-seed results."""
    first = next(iter(results.values()))
    confusion = np.sum([r["master"]["confusion"] for r in results.values()], axis=0)
    return {
        "seeds": _seeds(results), BASE_MODELS: base_labels(config), "methods": methods(results, config),
        "condition": first["table"]["condition"], "table1": table1(config, results), "sweeps": sweeps(results),
        "clean": {m: np.asarray([r["table"]["clean"][m] for r in results.values()]) for m in base_labels(config)},
        "bins": first["master"]["bins"], "confusion": confusion,
        "master_accuracy": np.asarray([r["master"]["accuracy"] for r in results.values()]),
        "bin_ranges": [(kind, low, high) for kind, low, high in first["master"]["ranges"] if kind != quality_bins.CLEAN],
        "receptive_fields": first["receptive_fields"], "jpeg_block": first["jpeg_block"],
        "stages": {seed: r["stages"] for seed, r in zip(_seeds(results), results.values())}}


def _mean_curve(sweep: Mapping[str, Any], method: str, x: Sequence[float]) -> tuple[list[float], np.ndarray]:
    return list(x), sweep["top1"][method].mean(axis=0)


def _sweeps_of(ctx: Mapping[str, Any], kind: str, combined: bool) -> dict[str, Mapping[str, Any]]:
    """The sweeps of one kind, alone (no blur or noise before it) or combined."""
    return {label: s for label, s in ctx["sweeps"].items()
            if s["kind"] == kind and bool(s["blur_sigma"] or s["noise_std"]) == combined}


def fig1a(ctx: Mapping[str, Any], path: str) -> bool:
    base = ctx[BASE_MODELS][0]
    lines = {label: _mean_curve(s, base, s["psnr"]) for kind in X_LABELS for label, s in _sweeps_of(ctx, kind, False).items()}
    if not lines:
        return False
    curves_figure({f"{base}, each degradation": lines}, xlabel="PSNR of the degraded images (dB)",
                  ylabel="top-1 accuracy", path=path)
    return True


def _codec_curves(ctx: Mapping[str, Any], methods: Sequence[str], path: str) -> bool:
    """A panel per codec sweep (nothing before the codec), a line per method; False if there is none."""
    panels, labels = {}, {}
    for kind in ("jpeg", "jpeg2000"):
        for label, s in _sweeps_of(ctx, kind, False).items():
            panels[label] = {m: _mean_curve(s, m, s["qualities"]) for m in methods}
            labels[label] = X_LABELS[kind]
    if not panels:
        return False
    curves_figure(panels, xlabel=labels, ylabel="top-1 accuracy", path=path)
    return True


def fig1b(ctx: Mapping[str, Any], path: str) -> bool:
    return _codec_curves(ctx, ctx[BASE_MODELS], path)


def fig1c(ctx: Mapping[str, Any], path: str) -> bool:
    receptive_field_figure({m: f["size"] for m, f in ctx["receptive_fields"].items()}, ctx["jpeg_block"], path=path)
    return True


def fig3(ctx: Mapping[str, Any], path: str) -> bool:
    return _codec_curves(ctx, [ctx[BASE_MODELS][0], *ctx["methods"]], path)


def fig4(ctx: Mapping[str, Any], path: str) -> bool:
    base = ctx[BASE_MODELS][0]
    panels, labels = {}, {}
    for kind in ("jpeg", "jpeg2000"):
        alone = next(iter(_sweeps_of(ctx, kind, False).values()), None)
        for label, s in _sweeps_of(ctx, kind, True).items():
            lines = {m: _mean_curve(s, m, s["qualities"]) for m in (base, "MS", "AMS") if m in s["top1"]}
            if alone is not None:
                lines[f"{base}, {kind} alone"] = _mean_curve(alone, base, alone["qualities"])
            panels[label], labels[label] = lines, X_LABELS[kind]
    if not panels:
        return False
    curves_figure(panels, xlabel=labels, ylabel="top-1 accuracy", path=path)
    return True


def confusion_figure(ctx: Mapping[str, Any], path: str) -> bool:
    matrix_figure(ctx["confusion"], ctx["bins"], ctx["bins"], xlabel="predicted bin", ylabel="true bin", path=path)
    return True


def rows(results: Mapping[Any, Mapping[str, Any]], config) -> tuple[list[dict], list[dict]]:
    """(sweep rows, Table 1 rows) for the CSV files: one row per seed, sweep level and method; one
    per seed and method."""
    sweep_rows = [{"seed": seed, "sweep": label, "kind": s["kind"], "quality": q, "psnr": p, "method": m,
                   "top1": value}
                  for seed, r in zip(_seeds(results), results.values()) for label, s in r["sweeps"].items()
                  for m, values in s["top1"].items() for q, p, value in zip(s["qualities"], s["psnr"], values)]
    rows1 = [{"seed": seed, "method": m, "c": v["c"][i], "d": v["d"][i], "c_prime": v["c'"][i],
              "d_prime": v["d'"][i], "percent_change": v["change"][i]}
             for m, v in table1(config, results).items() for i, seed in enumerate(_seeds(results))]
    return sweep_rows, rows1


def write_outputs(config, results: Mapping[Any, Mapping[str, Any]], workdir: str, seconds: float) -> None:
    """results.json first (so a report can always be rebuilt from it), then the CSVs, figures and report."""
    fingerprint = provenance.run_fingerprint(config)
    write_json_atomic(os.path.join(workdir, "results.json"),
                      {"summary": summary(config, results), "results": {str(s): r for s, r in results.items()},
                       "fingerprint": fingerprint, "seconds": seconds})
    sweep_rows, rows1 = rows(results, config)
    report_tables.write_csv(os.path.join(workdir, "sweeps.csv"), sweep_rows)
    report_tables.write_csv(os.path.join(workdir, "table1.csv"), rows1)
    figures_dir = os.path.join(workdir, "figures")
    os.makedirs(figures_dir, exist_ok=True)
    ctx = context(config, results)
    figures = {}
    for name, draw in (("fig1a", fig1a), ("fig1b", fig1b), ("fig1c", fig1c), ("fig3", fig3), ("fig4", fig4),
                       ("confusion", confusion_figure)):
        if draw(ctx, os.path.join(figures_dir, f"{name}.png")):
            figures[FIGURES[name]] = f"figures/{name}.png"
    report.write_report(os.path.join(workdir, "report.md"), config.to_dict(), ctx, figures, seconds, fingerprint)


def summary(config, results: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """Per seed: Table 1's cells and % change per method, the master's accuracy."""
    rows = table1(config, results)
    return {seed: {**{f"table1/{m}/{k}": float(v[k][i]) for m, v in rows.items() for k in v},
                   "master/accuracy": result["master"]["accuracy"]}
            for i, (seed, result) in enumerate(zip(_seeds(results), results.values()))}
