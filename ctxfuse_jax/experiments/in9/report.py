"""`report.md` for the ImageNet-9 study: the paper's claims, our numbers beside its, computed verdicts.

Every verdict is a rule on the numbers, stated in the report next to its outcome; "reproduced"
means the effect has the paper's direction in every seed (its size is set beside the paper's, not
required to match: a 24-class synthetic dataset at 64 px is not ImageNet).
"""

import json
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ctxfuse_jax.experiments.in9.data import NAMES
from ctxfuse_jax.report.markdown import figure_lines, fingerprint_line, mean_std, stage_table

# Published numbers (Xiao et al. 2021; MadryLab/backgrounds_challenge), in %.
PAPER = {
    "bg_gap": "ResNet-50 pre-trained on ImageNet 7.3 (Mixed-Same 86.2, Mixed-Rand 78.9); trained on Mixed-Rand 0.2; "
              "trained on IN-9L 14.3",
    "only_bg_t_on_original": "models trained on Only-BG-T score over 40% on Original (IN-9L: 41.5-45.7%)",
    "challenge": "ResNet-50: 22.3% challenge accuracy; 87.5% of foregrounds can be fooled by some background",
    "gradcam": "Mixed-Rand-trained models put more saliency on foreground pixels than Original-trained ones",
    "follows": "on Mixed-Rand, most errors follow the background's class",
}
ORIGINAL, MIXED_RAND, ONLY_BG_T = "Original-trained", "Mixed-Rand-trained", "Only-BG-T-trained"
Z_ABOVE_CHANCE = 3.0  # one-sided binomial z-score an accuracy needs to count as above chance


def values(per_seed: Mapping[Any, Mapping[str, Any]], model: str, get: Callable[[Mapping], float]) -> np.ndarray:
    """One measure of `model` in every seed that has it."""
    return np.array([get(models[model]) for models in per_seed.values() if model in models], np.float64)


def reproduced(holds: bool) -> str:
    return "**reproduced**" if holds else "**not reproduced**"


def verdicts(per_seed: Mapping[Any, Mapping[str, Any]], fusion: Mapping[Any, Mapping[str, Any]], num_classes: int,
             num_test: int) -> list[str]:
    """One line per claim of the paper that this run can test, each with its rule and outcome."""
    lines = []
    chance = 1.0 / num_classes
    models = list(dict.fromkeys(m for r in per_seed.values() for m in r))
    if ORIGINAL not in models:  # pretrained models scored on the release: the claims about them
        for model in models:
            gap = values(per_seed, model, lambda m: m.get("bg_gap", math.nan))
            challenge = values(per_seed, model, lambda m: m["challenge"]["accuracy"] if "challenge" in m else math.nan)
            lines.append(f"- *{model} exploits background signal* (paper: {PAPER['bg_gap']}; {PAPER['challenge']}): "
                         f"BG-gap {mean_std(gap)} points, challenge accuracy {mean_std(challenge)}%; rule: BG-gap "
                         f"positive: {reproduced(bool((gap > 0).all()))}.")
        return lines
    suffice = values(per_seed, ONLY_BG_T, lambda m: m["accuracy"]["original"])
    if len(suffice):
        z = (suffice - chance) / math.sqrt(chance * (1 - chance) / num_test)
        lines.append(f"1. *Backgrounds suffice for classification* (paper: {PAPER['only_bg_t_on_original']}): the "
                     f"Only-BG-T-trained model scores {mean_std(suffice)}% on Original images, chance is "
                     f"{100 * chance:.1f}%; rule: above chance by z > {Z_ABOVE_CHANCE:g} in every seed (lowest z "
                     f"{z.min():.1f}): {reproduced(bool((z > Z_ABOVE_CHANCE).all()))}.")
    gap = values(per_seed, ORIGINAL, lambda m: m["bg_gap"])
    if len(gap):
        lines.append(f"2. *Models exploit background signal* (paper: {PAPER['bg_gap']}): BG-gap of the Original-"
                     f"trained model {mean_std(gap)} points; rule: positive in every seed: "
                     f"{reproduced(bool((gap > 0).all()))}.")
    fooled = values(per_seed, ORIGINAL, lambda m: m["challenge"]["fooled_share"])
    if len(fooled):
        accuracy = values(per_seed, ORIGINAL, lambda m: m["challenge"]["accuracy"])
        lines.append(f"3. *Models are vulnerable to adversarial backgrounds* (paper: {PAPER['challenge']}): the "
                     f"Original-trained model's challenge accuracy is {mean_std(accuracy)}%, and some background "
                     f"flips {mean_std(fooled)}% of the foregrounds it recognises on their own image; rule: most of "
                     f"them (> 50%) in every seed: {reproduced(bool((fooled > 0.5).all()))}.")
    mixed_gap = values(per_seed, MIXED_RAND, lambda m: m["bg_gap"])
    if len(gap) and len(mixed_gap):
        shrink = np.array([models[ORIGINAL]["bg_gap"] - models[MIXED_RAND]["bg_gap"]
                           for models in per_seed.values() if ORIGINAL in models and MIXED_RAND in models])
        lines.append(f"4. *Training on Mixed-Rand reduces background dependence* (paper: {PAPER['bg_gap']}): "
                     f"BG-gap {mean_std(gap)} (Original-trained) -> {mean_std(mixed_gap)} (Mixed-Rand-trained), a "
                     f"reduction of {mean_std(shrink)} points; rule: the Original-trained gap is positive and the "
                     f"Mixed-Rand-trained one smaller, in every seed: {reproduced(bool((gap > 0).all() and (shrink > 0).all()))}.")
    cam_original = values(per_seed, ORIGINAL, lambda m: m["gradcam_mass"])
    cam_mixed = values(per_seed, MIXED_RAND, lambda m: m["gradcam_mass"])
    if len(cam_original) and len(cam_mixed):
        more = cam_mixed - cam_original
        lines.append(f"5. *Mixed-Rand training moves the models' weight onto the foreground* (paper: "
                     f"{PAPER['gradcam']}): Grad-CAM mass inside the foreground mask {mean_std(cam_original)}% "
                     f"(Original-trained) vs {mean_std(cam_mixed)}% (Mixed-Rand-trained); rule: larger in every "
                     f"seed: {reproduced(bool((more > 0).all()))}.")
    follows = values(per_seed, ORIGINAL, lambda m: m["follows"]["background"])
    if len(follows):
        fg = values(per_seed, ORIGINAL, lambda m: m["follows"]["foreground"])
        neither = values(per_seed, ORIGINAL, lambda m: m["follows"]["neither"])
        wrong_bg = follows / np.maximum(follows + neither, 1e-12)
        lines.append(f"6. *A fine-grained look* (paper: {PAPER['follows']}): on Mixed-Rand the Original-trained "
                     f"model predicts the foreground's class {mean_std(fg)}%, the background's {mean_std(follows)}%, "
                     f"neither {mean_std(neither)}%; of its errors {mean_std(wrong_bg)}% follow the background "
                     f"(chance would be {100 / (num_classes - 1):.1f}%); rule: more than chance in every seed: "
                     f"{reproduced(bool((wrong_bg > 1 / (num_classes - 1)).all()))}.")
    if fusion:
        gaps = {m: values(fusion, m, lambda r: r["bg_gap"]) for m in next(iter(fusion.values()))}
        text = ", ".join(f"{m} {mean_std(g)}" for m, g in gaps.items())
        joint, fg = gaps.get("fusion Joint"), gaps.get("fusion FG")
        if joint is not None and fg is not None:
            more = joint.mean() > fg.mean()
            text += (f". Joint relies on the background's class {'more' if more else 'less'} than FG "
                     f"({100 * (joint.mean() - fg.mean()):+.1f} points of BG-gap)")
            if more:
                text += ": the context that makes it robust to object blur is a signal the IN-9 variants remove"
        lines.append(f"7. *Seed 000's models through seed 004's lens*: BG-gap of the fusion workdir's classifiers: "
                     f"{text}.")
    return lines


def variant_table(per_seed: Mapping[Any, Mapping[str, Any]], models: Sequence[str], variants: Sequence[str]) -> str:
    """Accuracy (%) of each model on each test variant, BG-gap and challenge accuracy, mean ± std over seeds."""
    header = ["model", *[NAMES[v] for v in variants], "BG-gap", "challenge"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for model in models:
        cells = [mean_std(values(per_seed, model, lambda m, v=v: m["accuracy"][v])) for v in variants]
        cells.append(mean_std(values(per_seed, model, lambda m: m.get("bg_gap", math.nan))))
        cells.append(mean_std(values(per_seed, model, lambda m: m["challenge"]["accuracy"] if "challenge" in m
                                   else math.nan)))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_table(per_seed: Mapping[Any, Mapping[str, Any]], models: Sequence[str]) -> str:
    """The fine-grained Mixed-Rand split, the challenge's fooled share and the Grad-CAM mass, per model."""
    header = ["model", "Mixed-Rand: follows FG", "follows BG", "neither", "fooled share (challenge)",
              "Grad-CAM mass in FG"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for model in models:
        cells = [mean_std(values(per_seed, model, lambda m, k=k: m["follows"][k] if "follows" in m else math.nan))
                 for k in ("foreground", "background", "neither")]
        cells.append(mean_std(values(per_seed, model, lambda m: m["challenge"]["fooled_share"] if "challenge" in m
                                   else math.nan)))
        cells.append(mean_std(values(per_seed, model, lambda m: m.get("gradcam_mass", math.nan))))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(path: str, *, config: Mapping[str, Any], results: Mapping[str, Any], variants: Sequence[str],
                 num_classes: int, num_test: int, figures: Mapping[str, str], seconds: float,
                 fingerprint: Mapping[str, Any]) -> None:
    """Writes report.md from `results` ({'trained': {seed: ...}, 'fusion': {seed: {model: ...}}})."""
    trained = {seed: r["models"] for seed, r in results["trained"].items()}
    fusion = results["fusion"]
    models = list(dict.fromkeys(m for r in trained.values() for m in r))
    fusion_models = list(dict.fromkeys(m for r in fusion.values() for m in r))
    seeds = len(trained)
    trained_here = ", ".join(config["train_variants"]) or "none"
    parts = [
        "# Background reliance: ImageNet-9 variants, BG-gap and the backgrounds challenge",
        f"Data: `{config['data']['name']}` at {config['data']['image_size']} px, {num_classes} classes, {num_test} "
        f"test images; trained here: `{config['model']['name']}` width {config['model']['width']} on {trained_here}; "
        f"scored: {', '.join(models + fusion_models)}; seeds: {seeds} "
        f"(mean ± sample std over seeds where > 1); this invocation took {seconds / 60:.1f} min (stages found "
        "complete in the workdir are not retrained).",
        "## The paper's claims and what this run finds",
        "Xiao et al. 2021 (seed 004) build ImageNet-9 test sets that remove or swap the background and ask how "
        "much classifiers rely on it. Verdicts are computed from the numbers below; each states its rule.",
        *verdicts(trained, fusion, num_classes, num_test),
        "## Accuracy (%) on every test variant",
        "Rows: the training set of the model (or the fusion workdir's classifiers). BG-gap = Mixed-Same - "
        "Mixed-Rand; challenge = share of foregrounds classified correctly on every background of the bank.",
        variant_table(trained, models, variants),
    ]
    if fusion_models:
        parts += ["Fusion workdir's classifiers (seeds of that run):", variant_table(fusion, fusion_models, variants)]
    parts += ["## Which signal decides, and where the models look", detail_table(trained, models)]
    if fusion_models:
        parts.append(detail_table(fusion, fusion_models))
    parts += ["## Figures", *figure_lines(figures),
              "## Training stages (test split of the training variant, final)",
              stage_table({seed: r["stages"] for seed, r in results["trained"].items()},
                          "stage (tested on its own variant)"),
              "## Configuration", fingerprint_line(fingerprint), "```json",
              json.dumps(config, indent=2, sort_keys=True, default=str), "```"]
    with open(path, "w") as f:
        f.write("\n\n".join(parts) + "\n")
