"""What degrading a training batch on device costs, as a share of a train step.

Each degradation (`bench.degradations`) is timed alone on the batch, and fused into the train
step's jit (degrade, then forward and backward, one program), against the same train step
without it; every workload in its own process, interleaved (`bench.harness`). The fused
difference is the honest share: what a degrade-while-training step really adds.

    PYTHONPATH=. python -m bench.degrade_share                           # ResNet18 step, 64 px, 2-4 min
    PYTHONPATH=. python -m bench.degrade_share --model fusion            # fusion step, 64 px, 1-2 min
    PYTHONPATH=. python -m bench.degrade_share --model fusion --size 224 # COCO sizes, 2-4 min
"""

import argparse
from typing import Mapping, Sequence

from bench import harness

BATCH = 64
J = "bench.jax_workloads"
# Train steps as the other tables run them (`bench.run_all`): ResNet18 learning, or the Joint
# fusion model (two frozen full-width ResNet18 streams, head of 256 channels) at the paper's sizes.
MODELS = {"ResNet18": ("classifier_train_step", {"model": "resnet18"}),
          "fusion": ("fusion_train_step", {})}
# Fused into the step: the blurs (noise and JPEG are timed alone: noise is cheap, JPEG runs on the host).
FUSED = {64: ("gaussian blur", "gaussian blur, foreground only", "camera shake (train bank)",
              "defocus D8, seed 001 protocol"),
         224: ("gaussian blur", "gaussian blur, foreground only")}  # A 224 px fusion step takes seconds.
ALONE = "degradations alone"


def workloads(size: int, model: str, degradations: Sequence[str]) -> dict[str, harness.Workload]:
    """The degradations alone, and the model's train step without and with each of `degradations`."""
    factory, kwargs = MODELS[model]
    out = {ALONE: harness.Workload(f"{J}:degradation_pieces", {"batch": BATCH, "size": size}, BATCH)}
    out.update({f"{model} + {d}" if d else model: harness.Workload(
        f"{J}:{factory}", {"conv": "auto", "batch": BATCH, "size": size, "degradation": d, **kwargs}, BATCH)
        for d in ("", *degradations)})
    return out


def table(results: Mapping[str, harness.Result], models: Sequence[str]) -> str:
    """ms per batch alone; per model the fused step, what it adds and its share of the train step."""
    alone = results[ALONE]
    head = "| degradation | alone (ms) |" + "".join(
        f" {m} step + it (ms) | added (ms) | added / {m} step | alone / {m} step |" for m in models)
    lines = [head, "|---|---:|" + "---:|---:|---:|---:|" * len(models)]
    train = {m: 1e3 * results[m].median_s for m in models}
    lines.append("| (train step alone) | |" + "".join(f" {train[m]:.0f} | | | |" for m in models))
    for name in alone.parts:  # Every `bench.degradations` entry, as the worker timed them.
        ms = 1e3 * alone.part_median_s(name)
        row = f"| {name} | {ms:.1f} |"
        for m in models:
            fused = results.get(f"{m} + {name}")
            if fused is None:
                row += f" - | - | - | {ms / train[m]:.1%} |"
            else:
                added = 1e3 * fused.median_s - train[m]
                row += f" {1e3 * fused.median_s:.0f} | {added:+.0f} | {added / train[m]:+.1%} | {ms / train[m]:.1%} |"
        lines.append(row)
    rss = ", ".join(f"{r.name} {r.peak_rss_mib:.0f}" for r in results.values())
    compile_s = ", ".join(f"{r.name} {r.first_step_s - r.median_s:.1f}" for r in results.values() if r.name != ALONE)
    return "\n".join(lines) + f"\n\nPeak RSS (MiB): {rss}.\n\nFirst step - median (compilation, s): {compile_s}."


def main(rounds: int = 3, size: int = 64, model: str = "ResNet18") -> str:
    results = harness.compare(workloads(size, model, FUSED[size]), rounds=rounds, steps=1)
    return f"Batch {BATCH}, {size} px.\n\n" + table(results, (model,))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, choices=sorted(FUSED), default=64)
    parser.add_argument("--model", choices=list(MODELS), default="ResNet18")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(main(args.rounds, args.size, args.model))
