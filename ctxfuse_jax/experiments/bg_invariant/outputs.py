"""What a bg_invariant run leaves in its workdir: results.json, the long table, figures and report.md."""

import glob
import os
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from ctxfuse_jax import provenance
from ctxfuse_jax.data.pipeline import to_unit_float
from ctxfuse_jax.experiments.bg_invariant import masks, report
from ctxfuse_jax.experiments.bg_invariant.choices import TABLE
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.report import bar_chart, curves_figure, image_grid, tables

FIGURES = {  # file suffix -> caption
    "test_backgrounds": "Test objects under every test background (Table 1's columns)",
    "masks": "Learned masks beside the true masks (first seed): image, true mask, U-Net mask, binarised; IoU",
    "generated": "Generated backgrounds behind fixed test objects as phase 3 trains (the paper's Figure 4; "
                 "first seed, rows: evaluations in order)",
    "table1": "Table 1 as bars: accuracy per test background and method (bars: mean, whiskers: min to max)",
    "curves": "While training: mask IoU (phase 2) and accuracy on the object alone / on generated backgrounds "
              "(phase 3), test set, first seed",
}

CURVES = {"mask IoU (phase 2)": "iou", "accuracy on the object alone": "accuracy_object",
          "accuracy on generated backgrounds": "accuracy_generated"}  # panel title -> eval metric


def long_rows(results: Mapping[str, Mapping[Any, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """(dataset, seed, model, condition, level, metric, value) rows of every model's accuracies and measures."""
    rows = []
    for dataset, per_seed in results.items():
        for seed, r in per_seed.items():
            for model, m in r["models"].items():
                rows += [dict(dataset=dataset, seed=seed, model=model, condition="table1", level=level,
                              metric="accuracy", value=v) for level, v in m["table"].items()]
                if "reliance" in m:
                    rows += [dict(dataset=dataset, seed=seed, model=model, condition="in9", level=level,
                                  metric="accuracy", value=v) for level, v in m["reliance"]["accuracy"].items()]
                    scalars = {"bg_gap": m["reliance"].get("bg_gap"),
                               "challenge_accuracy": m["reliance"].get("challenge", {}).get("accuracy")}
                    rows += [dict(dataset=dataset, seed=seed, model=model, condition="measure", level="", metric=k,
                                  value=v) for k, v in scalars.items() if v is not None]
    return rows


def _examples(part, count: int) -> np.ndarray:
    """The first test image of each of `count` classes."""
    return np.unique(part.data.test.arrays["label"], return_index=True)[1][:count]


def _test_backgrounds(part, family, count: int) -> list[list[np.ndarray]]:
    chosen = _examples(part, count)
    test = part.data.test.arrays
    batch = {"mask": jnp.asarray(test["mask"][chosen])}
    images = to_unit_float(jnp.asarray(test["image"][chosen]))
    return [list(np.asarray(family.transform(images, batch, {}, jnp.int32(level), None)))
            for level in range(len(family.levels))]


def _mask_rows(part, mask_module, mask_variables, binarize, count: int) -> tuple[list, list]:
    chosen = _examples(part, count)
    test = part.data.test.arrays
    images = to_unit_float(jnp.asarray(test["image"][chosen]))
    soft = mask_module.apply({"params": mask_variables["params"]}, images)
    used = binarize(soft)
    iou = np.asarray(masks.iou(used, jnp.asarray(test["mask"][chosen])))
    rows = [[np.asarray(images[i]), test["mask"][chosen][i].astype(np.float32), np.asarray(soft[i]),
             np.asarray(used[i])] for i in range(len(chosen))]
    titles = [["image", "true mask", "U-Net", f"IoU {iou[i]:.2f}"] for i in range(len(chosen))]
    return rows, titles


def _generated_rows(stage_dir: str, count: int) -> tuple[list[list[np.ndarray]], list[str]]:
    """Composites and two bare backgrounds per saved evaluation (at most 10 rows), labelled by step."""
    files = sorted(glob.glob(os.path.join(stage_dir, "samples", "step_*.npz")))
    rows, labels = [], []
    for file in files[:: max(1, -(-len(files) // 10))]:
        with np.load(file) as saved:
            rows.append(list(saved["composites"][:count]) + list(saved["backgrounds"][:2]))
        labels.append(f"step {int(os.path.basename(file)[5:-4])}")
    return rows, labels


def write_outputs(config, parts: Mapping[str, Any], results: Mapping[str, Mapping[Any, Mapping[str, Any]]],
                  workdir: str, seconds: float, scorers: Mapping[str, Any], mask_modules: Mapping[str, Any]) -> None:
    """results.json, table.csv / summary.csv, the figures and report.md, all rewritten from `results`."""
    fingerprint = provenance.run_fingerprint(config)
    rows = long_rows(results)
    tables.write_csv(os.path.join(workdir, "table.csv"), rows)
    tables.write_csv(os.path.join(workdir, "summary.csv"), tables.summarize(rows))
    stored = {name: {seed: {k: v for k, v in r.items() if k != "mask_net"} for seed, r in per_seed.items()}
              for name, per_seed in results.items()}
    write_json_atomic(os.path.join(workdir, "results.json"), {"datasets": stored, "seconds": seconds,
                                                               "fingerprint": fingerprint})
    figures, levels = {}, {}
    count = config.analysis.figure_images
    for name, part in parts.items():
        part_config = config.datasets[name]
        family = scorers[name].scorers[TABLE].family(TABLE)
        levels[name] = family.levels
        first_seed = next(iter(results[name]))
        first = results[name][first_seed]

        def save(kind: str, draw) -> None:
            file = f"{name}_{kind}.png"
            draw(os.path.join(workdir, file))
            figures[f"{name}: {FIGURES[kind]}"] = file

        save("test_backgrounds", lambda p: image_grid(_test_backgrounds(part, family, count), row_labels=family.levels,
                                                      path=p))
        binarize = masks.binarizer(part_config.background.binarize, part_config.background.area)
        mask_images, mask_titles = _mask_rows(part, mask_modules[name], first["mask_net"], binarize, count)
        save("masks", lambda p: image_grid(mask_images, mask_titles, path=p))
        generated, steps = _generated_rows(os.path.join(workdir, name, f"seed_{first_seed}", "adversarial"), count)
        if generated:
            save("generated", lambda p: image_grid(generated, row_labels=steps, path=p))
        values = {level: {report.NAMES.get(m, m): report.per_seed(results[name], m, lambda r, l=level: r["table"][l])
                          for m in first["models"]} for level in family.levels}
        save("table1", lambda p: bar_chart(values, chance=1.0 / part.data.num_classes, path=p))
        panels = {title: {report.NAMES.get(stage, stage): ([p["epoch"] for p in points], [p[metric] for p in points])
                          for stage, points in first["curves"].items() if points and metric in points[0]}
                  for title, metric in CURVES.items()}
        panels = {title: lines for title, lines in panels.items() if lines}
        if panels:
            save("curves", lambda p: curves_figure(panels, ylabel="test value", path=p))
    report.write_report(os.path.join(workdir, "report.md"), results=stored, levels=levels,
                        single_channel={name: part.channels == 1 for name, part in parts.items()}, figures=figures,
                        seconds=seconds, fingerprint=fingerprint, settings=config.datasets.to_dict(),
                        num_train={name: len(part.data.train) for name, part in parts.items()})
