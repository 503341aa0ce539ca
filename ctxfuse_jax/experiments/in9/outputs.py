"""What an in9 run leaves in its workdir: results.json, the long table, five figures and report.md."""

import os
from typing import Any, Mapping

import numpy as np

from ctxfuse_jax import degrade, provenance
from ctxfuse_jax.evaluate.conditions import BACKGROUNDS
from ctxfuse_jax.data.sources import Labelled
from ctxfuse_jax.experiments.in9 import measures, report
from ctxfuse_jax.experiments.in9.data import NAMES
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.report import bar_chart, gradcam_figure, image_grid, progress_figure, tables

FIGURES = {  # file -> caption
    "variants.png": "One test image under every variant",
    "accuracy.png": "Accuracy on every test variant, per training set (bars: mean, whiskers: min to max over seeds)",
    "adversarial_backgrounds.png": "Most adversarial backgrounds per class (Original-trained model, first seed): "
                                   "share of the other classes' foregrounds each one makes it misclassify",
    "gradcam.png": "Grad-CAM on Original test images: Original-trained vs Mixed-Rand-trained (first seed)",
    "progress.png": "Benchmark progress: accuracy on each variant against Original accuracy as the Original-trained "
                    "model trains (mean over seeds)",
}


def long_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(seed, model, condition, level, metric, value) rows of every model's variant accuracies and measures."""
    rows = []
    for source in ("trained", "fusion"):
        for seed, per_seed in results[source].items():
            models = per_seed["models"] if source == "trained" else per_seed
            for model, m in models.items():
                rows += [dict(seed=seed, model=model, condition="in9", level=v, metric="accuracy", value=a)
                         for v, a in m["accuracy"].items()]
                scalars = {"bg_gap": m.get("bg_gap"), "gradcam_mass": m.get("gradcam_mass"),
                           **{f"challenge_{k}": m["challenge"][k] for k in ("accuracy", "fooled_share")
                              if "challenge" in m},
                           **{f"mixed_rand_follows_{k}": m["follows"][k] for k in ("foreground", "background",
                                                                                   "neither") if "follows" in m}}
                rows += [dict(seed=seed, model=model, condition="measure", level="", metric=k, value=v)
                         for k, v in scalars.items() if v is not None]
    return rows


def _variant_images(data: Labelled, variants: tuple[str, ...], count: int, seed: int) -> list[list[np.ndarray]]:
    """`count` test images (of different classes) under every variant, as the evaluator shows them."""
    test = data.test.arrays
    first_of_class = np.unique(test["label"], return_index=True)[1][:count]
    pool = test["image"].astype(np.float32) / 255.0
    shown = {v: degrade.background_variant(v, pool, test["label"], test["bbox"], test["mask"], seed=seed,
                                           num_classes=data.num_classes)[first_of_class] for v in variants}
    return [[shown[v][i] for v in variants] for i in range(len(first_of_class))]


def _adversarial_rows(config, data: Labelled, scorer, measured: Mapping[str, Any]):
    """Per class (the first `figure_classes`), its `figure_backgrounds` most fooling bank backgrounds."""
    challenge = next(f for f in scorer.families if f.name == "challenge")
    bank_images = np.asarray(challenge.background_of_level)
    test = data.test.arrays
    bank = scorer.bank[BACKGROUNDS][bank_images] / 255.0
    labels = test["label"][bank_images]
    rates = np.asarray(measured["challenge"]["fooling_rates"])
    top = measures.most_adversarial(rates, labels, config.analysis.figure_backgrounds)
    classes = sorted(top)[: config.analysis.figure_classes]
    return ([[bank[i] for i in top[c]] for c in classes],
            [[f"fools {100 * rates[i]:.0f}%" for i in top[c]] for c in classes],
            [data.class_names[c] for c in classes])


def _progress(results: Mapping[str, Any], variants: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{variant: (Original accuracy, variant accuracy)} at each evaluation, averaged over seeds."""
    runs = [r["progress"] for r in results["trained"].values() if r["progress"]]
    length = min(len(points) for points in runs)
    mean = {v: np.mean([[p[v] for p in points[:length]] for points in runs], axis=0) for v in variants}
    return {NAMES[v]: (mean["original"], mean[v]) for v in variants if v != "original"}


def write_outputs(config, data: Labelled, scorer, results: Mapping[str, Any], cams: Mapping[str, np.ndarray],
                  cam_images: np.ndarray, workdir: str, seconds: float) -> None:
    """results.json, table.csv / summary.csv, the figures and report.md, all rewritten from `results`."""
    variants = scorer.variant_family.levels
    fingerprint = provenance.run_fingerprint(config)
    rows = long_rows(results)
    tables.write_csv(os.path.join(workdir, "table.csv"), rows)
    tables.write_csv(os.path.join(workdir, "summary.csv"), tables.summarize(rows))
    write_json_atomic(os.path.join(workdir, "results.json"), {**results, "seconds": seconds,
                                                               "fingerprint": fingerprint})
    first = results["trained"][config.seeds[0]]["models"]
    figures = {}

    def save(file: str, draw) -> None:
        draw(os.path.join(workdir, file))
        figures[FIGURES[file]] = file

    count = config.analysis.figure_images
    save("variants.png", lambda p: image_grid(_variant_images(data, variants, count, config.eval.seed),
                                              [[NAMES[v] for v in variants]] * count, path=p))
    trained = {s: r["models"] for s, r in results["trained"].items()}
    accuracy = {NAMES[v]: {m: report.values(trained, m, lambda r, v=v: r["accuracy"][v]) for m in first}
                for v in variants}
    save("accuracy.png", lambda p: bar_chart(accuracy, chance=1.0 / data.num_classes, path=p))
    if report.ORIGINAL in first and "challenge" in first[report.ORIGINAL]:
        images, titles, row_labels = _adversarial_rows(config, data, scorer, first[report.ORIGINAL])
        save("adversarial_backgrounds.png", lambda p: image_grid(images, titles, row_labels, path=p))
    shown = [m for m in (report.ORIGINAL, report.MIXED_RAND) if m in cams]
    if shown:
        chosen = cam_images[:count]
        test = data.test.arrays
        save("gradcam.png", lambda p: gradcam_figure(
            test["image"][chosen] / 255.0, {m: cams[m][:count] for m in shown},
            [data.class_names[c] for c in test["label"][chosen]], path=p))
    if any(r["progress"] for r in results["trained"].values()):
        save("progress.png", lambda p: progress_figure(_progress(results, variants), path=p))
    report.write_report(os.path.join(workdir, "report.md"), config=config.to_dict(), results=results,
                        variants=variants, num_classes=data.num_classes, num_test=len(data.test), figures=figures,
                        seconds=seconds, fingerprint=fingerprint)
