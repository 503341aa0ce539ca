"""What a blur-study run leaves in its workdir: results.json, table.csv, figures and report.md."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctxfuse_jax import provenance
from ctxfuse_jax.data.pipeline import to_unit_float
from ctxfuse_jax.evaluate import invariance
from ctxfuse_jax.experiments.blur_study import report, tables
from ctxfuse_jax.experiments.blur_study.geometry import scale_label
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.report import curves_figure, image_grid
from ctxfuse_jax.report import tables as report_tables

FIGURES = {
    "table1": "Table 1 as curves: the original model's top-1 under defocus of growing radius, one line per network "
              "scale; and Table 3's models under defocus at the base scale (first seed's test set, seed mean)",
    "invariance": "Figure 4: where sharp and D8 activations differ (Hamming distance of binarised pool1..pool5 "
                  "activations, fraction of channels, upsampled to one size; white = the largest distance in the figure); a row per model, titles: the map's mean",
    "examples": "Figure 3: D8 and camera-shake test images, with the models that classify them correctly (top-1; "
                "the paper's top-5 is near its ceiling with 24 classes): "
                "O original, M fine-tuned on sharp & D2-8, S fine-tuned on sharp & camera shake",
}
DEPARTURES = [
    "Embedded object crops (procedural pictograms on scenes) stand in for ImageNet: stored square at the canonical "
    "scale, centre-cropped where ImageNet images would not be; every scale and kernel is the paper's times "
    "canonical / 384, so small kernels (D2 at 108 px: radius 0.56) blur less than a pixel at the network.",
    "The original model is trained here from scratch (VGG-16 with batch norm, narrow) at VGG's scale jitter, not "
    "ImageNet's VGG-16; the `imagenet` preset loads the converted torchvision VGG-16 instead.",
    "Multi-scale evaluation averages each scale's position-averaged log-probabilities with equal weight per scale.",
    "Fine-tuning crops the training window before blurring (one static shape per batch); borders of the crop are "
    "reflected, so kernels see a slightly different border than in a full-image blur.",
    "Table 5 deconvolves with a Wiener filter (closed form, batched on device), not EPLL; all test images are used, "
    "not 10 per class.",
    "Table 6: a hypercolumn head on a frozen trunk (the original model, or the one fine-tuned on sharp & D2-8 with "
    "its head trained on the same mixture), on the embedded objects' exact masks (object class vs background), "
    "not Zoom-out fine-tuned end to end on VOC.",
]


def _per_level(table: tables.Table, rows: list[str], column: str) -> np.ndarray:
    return np.asarray([np.mean(table[r][column]) for r in rows])


def context(config, study, results: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """Every number the report and figures show, from the per-seed results."""
    from ctxfuse_jax.experiments.blur_study.experiment import model_outputs, per_scale_ensembles

    protocol = config.protocol
    base = str(protocol.base_scale)
    large = str(max(protocol.scales))
    columns = list(report_tables_columns(config))
    t1 = {m: tables.table1(results, m) for m in ("top1", "top5")}
    names = {name.split("@")[0]: name for name in model_outputs(config)}
    outs = list(model_outputs(config)) + list(per_scale_ensembles(config))
    first = next(iter(results.values()))["models"]
    rows = [(family, level) for family, level in tables.conditions_of(first)]
    t3_all = tables.models_table(results, "top1", outs, rows)
    at_base = [name for name in outs if name.endswith(f"@{base}")]
    t3 = {level: {name.split("@")[0]: values[name] for name in at_base} for level, values in t3_all.items()}
    ent = tables.models_table(results, "entropy", at_base, rows)
    ce = tables.models_table(results, "cross_entropy", at_base, rows)
    mix = config.segmentation.fine_tuned_trunk
    table2 = {}
    for level in ("sharp", "D4", "D8"):
        if level in ent and f"{mix}@{base}" in ent[level]:
            table2[level] = {"original entropy": ent[level][f"original@{base}"],
                             f"{mix} entropy": ent[level][f"{mix}@{base}"],
                             "original cross-entropy": ce[level][f"original@{base}"],
                             f"{mix} cross-entropy": ce[level][f"{mix}@{base}"]}
    table4 = {}
    combination = scale_label(tuple(protocol.combinations[0])) if protocol.combinations else None
    for name in (f"original@{base}", f"{mix}@{base}", f"original@{large}", names.get("large_d2468", ""),
                 f"original@{combination}", names.get("both_d2468", ""), next(iter(per_scale_ensembles(config)), "")):
        if name and name in t3_all["sharp"]:
            table4[name] = [t3_all[level][name] for level in ("sharp", "D4", "D8")]
    table5 = {}
    table5_rows = []
    if "D8" in t3_all and f"{mix}@{base}" in t3_all["D8"]:
        original = f"original@{base}"
        table5 = {"deblurred": float(np.mean(t3_all.get(config.deblur.level, {}).get(original, np.nan)))}
        deblurred_row = next((level for family, level in rows if family == "deblurred"), None)
        table5 = {"deblurred": tables.mean(t3_all, deblurred_row, original) if deblurred_row else np.nan,
                  "mix": tables.mean(t3_all, "D8", f"{mix}@{base}")}
        only = names.get("only_d8")
        table5_rows = [t3_all["sharp"][original], t3_all["D8"][original],
                       t3_all[deblurred_row][original] if deblurred_row else np.full(len(results), np.nan),
                       t3_all["D8"][f"{mix}@{base}"],
                       t3_all["D8"][only] if only else np.full(len(results), np.nan)]
    gaussians = [level for family, level in tables.conditions_of(next(iter(results.values()))["table1"])
                 if family == "gaussian"]
    return {
        "seeds": list(results), "num_test": len(study.data.test), "num_classes": study.data.num_classes,
        "canonical": study.geometry.canonical, "kernel_scale": study.geometry.kernel_scale,
        "table1_columns": columns, "table1_top1": t1["top1"], "table1_top5": t1["top5"],
        "base": base, "large": large, "mix": mix, "shake": "sharp_shake", "only_d8": "only_d8",
        "table2": table2, "table3_top1": t3, "table3_models": [n.split("@")[0] for n in at_base], "table4": table4,
        "table5": table5, "table5_rows": table5_rows, "invariance": tables.invariance_table(results),
        "segmentation": tables.segmentation_table(results), "gaussians": gaussians, "departures": DEPARTURES}


def report_tables_columns(config) -> list[str]:
    from ctxfuse_jax.experiments.blur_study.experiment import table1_outputs

    order = sorted(table1_outputs(config), key=lambda c: (sum(int(s) for s in c.split("+")) / len(c.split("+")),
                                                           len(c)))
    return order


def table1_figure(ctx: Mapping[str, Any], path: str) -> None:
    defocus = [level for level in ("sharp", "D2", "D4", "D6", "D8") if level in ctx["table1_top1"]]
    radii = [0 if level == "sharp" else int(level[1:]) for level in defocus]
    panels = {"original at each network scale": {s: (radii, _per_level(ctx["table1_top1"], defocus, s))
                                                 for s in ctx["table1_columns"]}}
    models = {m: (radii, _per_level(ctx["table3_top1"], defocus, m)) for m in ctx["table3_models"]
              if all(level in ctx["table3_top1"] for level in defocus)}
    if models:
        panels["fine-tuned models at the base scale"] = models
    curves_figure(panels, xlabel="defocus radius (paper's px at 384)", ylabel="top-1 accuracy", path=path)


def invariance_figure(study, results: Mapping[Any, Mapping[str, Any]], path: str) -> None:
    first = next(iter(results.values()))["invariance"]
    rows, titles, labels = [], [], []
    image = to_unit_float(jnp.asarray(study.data.test.arrays["image"][:1]))[0]
    brightest = max(float(np.max(values["maps"][layer][0])) for values in first.values() for layer in study.pools)
    for model, values in first.items():
        maps = [np.asarray(values["maps"][layer][0]) for layer in study.pools]
        size = max(m.shape[0] for m in maps)
        rows.append([np.asarray(image)] + [np.asarray(invariance.resize_maps(m[None], size))[0, ..., None]
                                           / max(brightest, 1e-9) for m in maps])
        titles.append(["test image"] + [f"pool{i + 1}: mean {float(m.mean()):.3f}" for i, m in enumerate(maps)])
        labels.append(model)
    image_grid(rows, titles, labels, path=path)


def examples_figure(config, study, results: Mapping[Any, Mapping[str, Any]], path: str) -> None:
    from ctxfuse_jax.experiments.blur_study.experiment import blur_families

    scores = next(iter(results.values()))["models"]
    base = config.protocol.base_scale
    families = {f.name: f for f in blur_families(config, study.geometry, len(study.data.test))}
    count = config.analysis.figure_images
    images = to_unit_float(jnp.asarray(study.data.test.arrays["image"][:count]))
    letters = dict(zip(config.analysis.example_models, "OMS"))
    rows, titles = [], []
    for family_name, level in (("defocus", "D8"), ("camera_shake", "shake")):
        if family_name not in scores.families:
            continue
        family = families[family_name]
        blurred = np.asarray(family.transform(images, {}, {}, jnp.int32(family.levels.index(level)),
                                              jax.random.PRNGKey(config.eval.seed)))
        scored = scores.family(family_name)
        i = scored.levels.index(level)
        rows.append(list(blurred))
        correct = {model: scores.correct(f"{model}@{base}", family_name)[i] for model in letters
                   if f"{model}@{base}" in scored.predictions}
        titles.append([f"{level}: " + ("".join(letters[m] for m, right in correct.items() if right[n]) or "none")
                       for n in range(count)])
    image_grid(rows, titles, path=path)


def write_outputs(config, study, scorers, results: Mapping[Any, Mapping[str, Any]], workdir: str,
                  seconds: float) -> None:
    figures_dir = os.path.join(workdir, "figures")
    os.makedirs(figures_dir, exist_ok=True)
    ctx = context(config, study, results)
    rows = tables.long_rows(results)
    report_tables.write_csv(os.path.join(workdir, "table.csv"), rows)
    figures = {}
    for name, draw in (("table1", lambda p: table1_figure(ctx, p)),
                       ("invariance", lambda p: invariance_figure(study, results, p)),
                       ("examples", lambda p: examples_figure(config, study, results, p))):
        draw(os.path.join(figures_dir, f"{name}.png"))
        figures[FIGURES[name]] = f"figures/{name}.png"
    fingerprint = provenance.run_fingerprint(config)
    write_json_atomic(os.path.join(workdir, "results.json"),
                      {"summary": summary(config, results), "stages": {s: r["stages"] for s, r in results.items()},
                       "fingerprint": fingerprint, "seconds": seconds})
    report.write_report(os.path.join(workdir, "report.md"), config.to_dict(), ctx, figures, seconds, fingerprint)


def summary(config, results: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """Per seed, every (scored, model, condition, level, metric) mean: what results.json keeps."""
    out: dict[str, Any] = {}
    for row in tables.long_rows(results):
        key = f"{row['scored']}/{row['model']}/{row['condition']}/{row['level']}/{row['metric']}"
        out.setdefault(str(row["seed"]), {})[key] = row["value"]
    return out
