"""What a blur-study run leaves in its workdir: results.json, table.csv, figures and report.md."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctxfuse_jax import provenance
from ctxfuse_jax.data.pipeline import to_unit_float
from ctxfuse_jax.evaluate import invariance
from ctxfuse_jax.experiments.blur_study import report, scoring, tables
from ctxfuse_jax.experiments.blur_study.choices import DEBLURRED, ORIGINAL
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


def _same_mixture_at(config, mix: str, scales: tuple[int, ...]) -> str:
    """The output of the first mixture with `mix`'s weights fine-tuned at `scales` ('' if none)."""
    weights = config.fine_tune.mixtures[mix].weights.to_dict() if mix in config.fine_tune.mixtures else None
    return next((scoring.output_name(name, scales) for name, m in config.fine_tune.mixtures.items()
                 if tuple(m.target_scales) == scales and m.weights.to_dict() == weights), "")


def _base_mixture(config, has: Callable[[dict], bool]) -> str:
    """The first mixture fine-tuned at the base scale whose weights satisfy `has` ('' if none)."""
    base = (config.protocol.base_scale,)
    return next((name for name, m in config.fine_tune.mixtures.items()
                 if tuple(m.target_scales) == base and has(m.weights.to_dict())), "")


def _paper_order(model: str) -> tuple[int, str]:
    """Table 3's columns in the paper's order, then the config's other mixtures by name."""
    order = report.PAPER_TABLE3_MODELS
    return (order.index(model) if model in order else len(order)), model


def context(config, study, results: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """Every number the report and figures show, from the per-seed results. Table 4 compares the
    mixed-blur model (`segmentation.fine_tuned_trunk`) with the mixtures of the same weights at the
    other scales; Table 5's FT-D8 is the mixture of the deblurred level alone."""
    protocol = config.protocol
    base, large = (protocol.base_scale,), (max(protocol.scales),)
    found = scoring.programs(config)
    top1, top5, entropy, cross_entropy = (tables.scored_table(results, metric) for metric in tables.METRICS)
    original = functools.partial(scoring.output_name, ORIGINAL)
    first = next(iter(results.values()))["scores"]
    # Table 1: the original at each scale (columns by mean scale), every condition but the deblurred images.
    scales = sorted((s for _, s in found[scoring.TABLE1].outputs.values()), key=lambda s: (np.mean(s), len(s)))
    t1_columns = {scale_label(s): original(s) for s in scales}
    t1_rows = report.paper_order([level for family, level in tables.conditions_of(first[scoring.TABLE1])
                                  if family != DEBLURRED])
    # Tables 2, 3, 5: the base-scale models, the original's column from Table 1's program.
    tuned = sorted(found[scoring.BASE].outputs.items(), key=lambda item: _paper_order(item[1][0]))
    at_base = {ORIGINAL: original(base), **{model: name for name, (model, _) in tuned}}
    t3_rows = report.paper_order([level for _, level in tables.conditions_of(first[scoring.BASE])])
    mix, level = config.segmentation.fine_tuned_trunk, config.deblur.level
    only = _base_mixture(config, lambda weights: set(weights) == {level})
    table2 = {}
    for row in ("sharp", "D4", "D8"):
        cells = {f"{model} {metric}": values[row][at_base[model]]
                 for metric, values in (("entropy", entropy), ("cross-entropy", cross_entropy))
                 for model in (ORIGINAL, mix) if at_base.get(model) in values.get(row, {})}
        if len(cells) == 4:
            table2[row] = cells
    combination = tuple(protocol.combinations[0]) if protocol.combinations else ()
    ensembles = found[scoring.SCALES].ensembles if scoring.SCALES in found else {}
    table4_outputs = dict(zip(report.PAPER_TABLE4, (
        original(base), at_base.get(mix, ""), original(large), _same_mixture_at(config, mix, large),
        original(combination) if combination else "", _same_mixture_at(config, mix, combination),
        next(iter(ensembles), ""))))
    table5_cells = [("sharp", original(base)), (level, original(base)), (f"{level} deblurred", original(base)),
                    (level, at_base.get(mix, "")), (level, at_base.get(only, ""))]
    return {
        "seeds": list(results), "num_test": len(study.data.test), "num_classes": study.data.num_classes,
        "canonical": study.geometry.canonical, "kernel_scale": study.geometry.kernel_scale,
        "table1_columns": list(t1_columns), "table1_top1": tables.select(top1, t1_rows, t1_columns),
        "table1_top5": tables.select(top5, t1_rows, t1_columns),
        "base": scale_label(base), "large": scale_label(large), "mix": mix, "only_d8": only,
        "shake": _base_mixture(config, lambda weights: "shake" in weights),
        "table2": table2, "table3_top1": tables.select(top1, t3_rows, at_base), "table3_models": list(at_base),
        "table4": {label: (name, [top1.get(row, {}).get(name) for row in ("sharp", "D4", "D8")])
                   for label, name in table4_outputs.items()},
        "table5_rows": [top1.get(row, {}).get(name) for row, name in table5_cells],
        "invariance": tables.invariance_table(results), "segmentation": tables.segmentation_table(results),
        "gaussians": [level for family, level in tables.conditions_of(first[scoring.TABLE1]) if family == "gaussian"],
        "departures": DEPARTURES}


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
    scores = next(iter(results.values()))["scores"]
    sources = scoring.sources(config)
    outputs = {model: scoring.output_name(model, (config.protocol.base_scale,)) for model in config.analysis.example_models}
    families = {f.name: f for f in scoring.blur_families(config, study.geometry, len(study.data.test))}
    count = config.analysis.figure_images
    images = to_unit_float(jnp.asarray(study.data.test.arrays["image"][:count]))
    letters = dict(zip(config.analysis.example_models, "OMS"))
    rows, titles = [], []
    for family_name, level in (("defocus", "D8"), ("camera_shake", "shake")):
        scored = {model: scores[sources[name]] for model, name in outputs.items()
                  if name in sources and family_name in scores[sources[name]].families}
        if not scored:
            continue
        family = families[family_name]
        i = family.levels.index(level)
        blurred = np.asarray(family.transform(images, {}, {}, jnp.int32(i), jax.random.PRNGKey(config.eval.seed)))
        rows.append(list(blurred))
        correct = {model: s.correct(outputs[model], family_name)[i] for model, s in scored.items()}
        titles.append([f"{level}: " + ("".join(letters[m] for m, right in correct.items() if right[n]) or "none")
                       for n in range(count)])
    image_grid(rows, titles, path=path)


def write_outputs(config, study, results: Mapping[Any, Mapping[str, Any]], workdir: str,
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
