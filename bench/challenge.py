"""The backgrounds challenge's throughput: composites scored per second, ours against its authors' loop.

Ours (`bench.challenge_workloads`) is the project's evaluator of conditions: `composite_family`
over B backgrounds of the bank, every foreground of a split of F images, through
`make_condition_step` + `evaluate_conditions` (one compiled program for the whole challenge).
The reference (`bench.challenge_torch`) is MadryLab/backgrounds_challenge's method: per foreground,
a DataLoader over the backgrounds in batches of 32, `fg * mask + bg * (1 - mask)` in torch, a
forward pass, and whether any background moves the prediction off the label. Both score the same
F x B composites with the same random ResNet18 (width 0.25, 24 classes, 64 px: the zoo's model,
its weights copied into `bench.torch_models.resnet18` through `ctxfuse_jax.weights.layout`), each
in its own process on the same CPUs, interleaved (`bench.harness`). First, on a small case, both
must give the same prediction for every (foreground, background) pair, or the bench stops.

    PYTHONPATH=. python -m bench.challenge                                       # F=256, B=128: ~4 min
    PYTHONPATH=. python -m bench.challenge --foregrounds 40 --backgrounds 40     # a quick check
"""

import argparse
import multiprocessing
import os
import tempfile
from typing import Mapping

import numpy as np

from bench import harness

W, T = "bench.challenge_workloads", "bench.challenge_torch"
OURS, REFERENCE = "ours: evaluator of conditions (JAX)", "reference: per-foreground loop (PyTorch)"
NUM_CLASSES, WIDTH = 24, 0.25  # `challenge_workloads.NUM_CLASSES, WIDTH`, named here to keep JAX out of this process.
OUR_BATCH, REFERENCE_BATCH = 128, 32  # the fusion job's eval.batch_size; challenge_eval.py's --batch_size
FOREGROUNDS, BACKGROUNDS, CHECK = 256, 128, 40  # CHECK: foregrounds = backgrounds of the equality check


def _prepare_here(path: str, num_images: int, num_backgrounds: int) -> None:
    from bench.challenge_workloads import prepare
    prepare(path, num_images, num_backgrounds)


def prepare(path: str, num_images: int, num_backgrounds: int) -> None:
    """`challenge_workloads.prepare` in a process of its own (it loads TensorFlow, JAX and PyTorch)."""
    process = multiprocessing.get_context("spawn").Process(target=_prepare_here,
                                                           args=(path, num_images, num_backgrounds))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"preparing the challenge's data failed (exit code {process.exitcode})")


def workloads(data_path: str, composites: int, predictions: Mapping[str, str]) -> dict[str, harness.Workload]:
    """Ours (host memory tuned, as `python -m ctxfuse_jax.main` runs) and the reference (as PyTorch ships)."""
    return {
        OURS: harness.Workload(f"{W}:challenge_step", {"data_path": data_path, "batch_size": OUR_BATCH,
                                                       "predictions_path": predictions[OURS]}, composites),
        REFERENCE: harness.Workload(f"{T}:challenge_step",
                                    {"data_path": data_path, "num_classes": NUM_CLASSES, "width": WIDTH,
                                     "batch_size": REFERENCE_BATCH, "predictions_path": predictions[REFERENCE]},
                                    composites, tune_host_memory=False),
    }


def _run(workdir: str, name: str, num_foregrounds: int, num_backgrounds: int,
         rounds: int) -> tuple[dict[str, harness.Result], np.ndarray, np.ndarray, np.ndarray]:
    """Results, ours' and the reference's (F, B) predictions, and the labels, of one challenge."""
    data_path = os.path.join(workdir, f"{name}.npz")
    prepare(data_path, num_foregrounds, num_backgrounds)
    paths = {OURS: os.path.join(workdir, f"{name}_ours.npy"), REFERENCE: os.path.join(workdir, f"{name}_ref.npy")}
    results = harness.compare(workloads(data_path, num_foregrounds * num_backgrounds, paths), rounds=rounds, steps=1)
    with np.load(data_path) as data:
        labels = data["label"]
    return results, np.load(paths[OURS]).T, np.load(paths[REFERENCE]), labels


def check_same_predictions(ours: np.ndarray, reference: np.ndarray) -> str:
    """Raises unless both methods predicted the same class for every (foreground, background) pair,
    and the predictions vary (a model predicting one class everywhere would prove nothing)."""
    if ours.shape != reference.shape:
        raise AssertionError(f"prediction shapes differ: ours {ours.shape}, reference {reference.shape}")
    differ = int((ours != reference).sum())
    if differ:
        raise AssertionError(f"ours and the reference differ on {differ} of {ours.size} composites")
    classes = len(np.unique(reference))
    if classes < 2:
        raise AssertionError("the model predicts one class for every composite: the check would prove nothing")
    return (f"same prediction on all {ours.size} (foreground, background) pairs ({ours.shape[0]} x "
            f"{ours.shape[1]}; {classes} classes predicted)")


def early_exit_composites(predictions: np.ndarray, labels: np.ndarray, batch: int = REFERENCE_BATCH) -> int:
    """How many composites MadryLab's loop scores when it returns at the first fooling batch."""
    total = 0
    for row, label in zip(predictions, labels):
        fooled = np.flatnonzero(row != label)
        total += len(row) if not len(fooled) else min(len(row), (fooled[0] // batch + 1) * batch)
    return total


def table(results: Mapping[str, harness.Result]) -> str:
    """Per method: composites/s at the median and at the fastest of the timed challenges (a shared
    machine slows some calls; the fastest is the least disturbed), the first call (ours: with its
    compilation), ours' compilations."""
    ours, reference = results[OURS], results[REFERENCE]
    best = {name: min(r.step_times) for name, r in results.items()}
    lines = ["| method | batch | composites/s (median) | vs reference | composites/s (fastest) | vs reference | "
             "median / fastest challenge (s) | first call (s) | compile (s) | programs compiled | peak RSS (MiB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r, batch in ((ours, OUR_BATCH), (reference, REFERENCE_BATCH)):
        compiled = r.first_parts.get("compile s")
        programs = r.first_parts.get("step programs")
        fastest = r.items / best[r.name]
        lines.append(f"| {r.name} | {batch} | {r.per_s:.0f} | {r.per_s / reference.per_s:.2f}x | {fastest:.0f} | "
                     f"{best[REFERENCE] / best[r.name]:.2f}x | {r.median_s:.1f} / {best[r.name]:.1f} | "
                     f"{r.first_step_s:.1f} | {'-' if compiled is None else f'{compiled:.1f}'} | "
                     f"{'-' if programs is None else f'{programs:.0f}'} | {r.peak_rss_mib:.0f} |")
    later = ours.parts.get("compilations", ())
    calls = ", ".join(f"{r.name.split(':')[0]} " + " / ".join(f"{t:.1f}" for t in r.step_times)
                      for r in results.values())
    lines.append("")
    first = ours.first_parts
    lines.append(f"Timed challenges, in round order (s): {calls}. Ours, first call: "
                 f"{first['compilations']:.0f} backend compilations in {first['compile s']:.2f} s "
                 f"(XLA {first['XLA compile s']:.2f} s), of which the condition step is "
                 f"{first['step programs']:.0f} program (the others: the bank's box bounds and a key "
                 f"scalar); timed calls: {sum(later):.0f} compilations.")
    return "\n".join(lines)


def main(rounds: int = 3, num_foregrounds: int = FOREGROUNDS, num_backgrounds: int = BACKGROUNDS,
         check_size: int = CHECK) -> str:
    with tempfile.TemporaryDirectory() as workdir:
        _, ours, reference, _ = _run(workdir, "check", check_size, check_size, rounds=1)
        checked = check_same_predictions(ours, reference)
        results, ours, reference, labels = _run(workdir, "run", num_foregrounds, num_backgrounds, rounds)
    differ = int((ours != reference).sum())
    agreement = (f"identical on all {ours.size}" if not differ else f"DIFFERENT on {differ} of {ours.size}")
    vulnerable = int((reference != labels[:, None]).any(axis=1).sum())
    early = early_exit_composites(reference, labels)
    return (f"{num_foregrounds} foregrounds x {num_backgrounds} backgrounds = {num_foregrounds * num_backgrounds} "
            f"composites, 64 px, ResNet18 width {WIDTH}, {NUM_CLASSES} classes (random weights, BN statistics of the "
            f"images); {os.cpu_count()} CPUs.\n\n{table(results)}\n\nCheck ({check_size} x {check_size}): {checked}. "
            f"Measured run: predictions {agreement} composites; {vulnerable} of {num_foregrounds} foregrounds "
            f"fooled by some background. With its early return at the first fooling batch, the reference would "
            f"have scored {early} of the {ours.size} composites for this model.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--foregrounds", type=int, default=FOREGROUNDS, help="F: test images, foregrounds of the split")
    parser.add_argument("--backgrounds", type=int, default=BACKGROUNDS, help="B <= F: backgrounds of the bank")
    parser.add_argument("--check", type=int, default=CHECK, help="F = B of the equality check run first")
    parser.add_argument("--rounds", type=int, default=3, help="timed challenges per method after the first")
    args = parser.parse_args()
    print(main(args.rounds, args.foregrounds, args.backgrounds, args.check))
