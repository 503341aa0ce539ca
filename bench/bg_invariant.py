"""Seed 002's phase-3 training step (adversarial backgrounds), JAX against PyTorch, img/s side by side.

The workload: digits 28 x 28 x 1, batch 32; the small CNN classifier (width 1, 10 classes), the
frozen U-Net mask generator (width 0.5, forward only) and the background generator (2 x 2 tiles,
width 1). One step: U-Net forward -> binarise at 0.5 -> noise -> generator forward -> composite
m x + b (1 - m) -> classifier update (Adam 1e-3; ce on the composites + 1.0 x ce on the clean
images, one pass over both) -> generator update against the updated classifier (Adam 1e-4;
-ce + relu(mean(b) - 0.5)): the alternating schedule, two forward passes.

JAX (`bench.bg_invariant_workloads`) is the experiment's own code, in two variants: (a) *same
step*, the U-Net inside the jitted step (a frozen player; a wrapper puts its binarised masks in the
batch's learned-mask field before the production Updates), and (b) *production step*, as
`Seed.background` trains: the masks computed once before training, read from the batch by
`game.masked_inputs`. PyTorch (`bench.bg_invariant_torch`) does (a)'s work with torch.optim.Adam.
Each in its own process on the same CPUs, interleaved round by round (`bench.harness`). Before
timing, both frameworks run the first steps from the same weights on the same batch with the
same noise, and their losses must agree, or the bench stops. Then the U-Net alone, forward and
gradient, with the config's convolution ('xla', `configs/bg_invariant.py:UNET_CONV`), with 'auto'
and in PyTorch.

    PYTHONPATH=. python -m bench.bg_invariant            # ~2 min on 2 quiet cores
    PYTHONPATH=. python -m bench.bg_invariant --quick    # a sanity run: 1 round of 2 steps
"""

import argparse
import json
import multiprocessing
import os
import tempfile
from typing import Mapping

from bench import harness

W, T = "bench.bg_invariant_workloads", "bench.bg_invariant_torch"
BATCH = 32  # `bg_invariant_workloads.BATCH`, named here to keep JAX out of this process.
SAME, PRODUCTION = "JAX (a): same step, U-Net inside", "JAX (b): production step, masks precomputed"
TORCH = "PyTorch: same step, U-Net inside"
UNET_XLA, UNET_AUTO, UNET_TORCH = "JAX, conv 'xla' (the config's)", "JAX, conv 'auto'", "PyTorch"
CHECK_STEPS, ATOL = 3, 1e-3
ROUNDS, STEPS = 5, 10  # interleaved rounds, steps per workload and round


def _prepare_and_check_here(data_path: str, steps: int, report_path: str) -> None:
    """Writes the data and weights, then runs `steps` steps of JAX's two variants and of PyTorch with
    JAX's noise, and writes their metrics (this one-off process holds both frameworks)."""
    import jax
    import numpy as np
    import torch

    from bench import bg_invariant_torch, bg_invariant_workloads as workloads

    workloads.prepare(data_path)
    jax_metrics = {variant: workloads.metrics_of_steps(data_path, variant, steps) for variant in ("same", "production")}
    phase3 = workloads.Phase3(data_path)
    with np.load(data_path) as data:
        reference = bg_invariant_torch.Phase3({k: data[k] for k in data.files})
    # The networks alone, on the batch: masks, backgrounds, logits.
    images = np.asarray(phase3.images["image"])
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32)) / 255
    soft = np.asarray(phase3.nets["mask_net"].apply({"params": phase3.params["mask_net"]}, images / 255.0))
    z = phase3.noise(0, 0)
    backgrounds = np.asarray(phase3.nets["generator"].apply({"params": phase3.params["generator"]}, z))
    logits = np.asarray(phase3.nets["classifier"].apply({"params": phase3.params["classifier"]}, images / 255.0))
    with torch.no_grad():
        torch_soft = reference.unet(x).numpy().transpose(0, 2, 3, 1)
        torch_backgrounds = reference.generator(torch.from_numpy(np.array(z))).numpy().transpose(0, 2, 3, 1)
        torch_logits = reference.classifier(x).numpy()
    learned = np.asarray(phase3.batch("production")[workloads.game.LEARNED_MASK]) / 255
    networks = {"U-Net mask": float(np.abs(soft - torch_soft).max()),
                "generator backgrounds": float(np.abs(backgrounds - torch_backgrounds).max()),
                "classifier logits": float(np.abs(logits - torch_logits).max())}
    torch_metrics = [reference.step(torch.from_numpy(np.array(phase3.noise(step, 0))),
                                    torch.from_numpy(np.array(phase3.noise(step, 1)))) for step in range(steps)]
    with open(report_path, "w") as f:
        json.dump({"jax": jax_metrics, "torch": torch_metrics, "networks": networks,
                   "mask_area": float(learned.mean()),
                   "mask_pixels_differ": int(((torch_soft >= 0.5) != (learned > 0.5)).sum()),
                   "versions": {"jax": jax.__version__, "torch": torch.__version__}}, f)


def prepare_and_check(data_path: str, steps: int) -> dict:
    """`_prepare_and_check_here` in a process of its own; its report."""
    report_path = data_path + ".json"
    process = multiprocessing.get_context("spawn").Process(target=_prepare_and_check_here,
                                                           args=(data_path, steps, report_path))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"preparing and checking the workload failed (exit code {process.exitcode})")
    with open(report_path) as f:
        return json.load(f)


def check_table(report: dict, atol: float = ATOL) -> str:
    """Per step and loss, JAX's (a) and PyTorch's values; raises unless JAX's variants are equal and
    PyTorch agrees with them within `atol`."""
    same, production, torch_metrics = report["jax"]["same"], report["jax"]["production"], report["torch"]
    lines = ["| step | metric | JAX (a) | JAX (b) | PyTorch | abs. difference (a) - PyTorch |",
             "|---:|---|---:|---:|---:|---:|"]
    worst = 0.0
    for step, (a, b, t) in enumerate(zip(same, production, torch_metrics)):
        for key in t:
            if abs(a[key] - b[key]) > 1e-5:
                raise AssertionError(f"step {step}: JAX's variants differ on {key}: {a[key]} vs {b[key]}")
            difference = abs(a[key] - t[key])
            worst = max(worst, difference)
            lines.append(f"| {step} | {key} | {a[key]:.5f} | {b[key]:.5f} | {t[key]:.5f} | {difference:.1e} |")
    if worst > atol:
        raise AssertionError(f"JAX and PyTorch differ by up to {worst:.2e} (> {atol}) on the losses:\n"
                             + "\n".join(lines))
    networks = ", ".join(f"{k} {v:.1e}" for k, v in report["networks"].items())
    lines += ["", f"Networks alone, max abs. difference: {networks}; binarised masks cover "
                  f"{report['mask_area']:.1%} of the pixels, {report['mask_pixels_differ']} pixels differ "
                  f"between the frameworks. Losses agree within {worst:.1e}."]
    return "\n".join(lines)


def step_workloads(data_path: str) -> dict[str, harness.Workload]:
    """JAX's two variants (host memory tuned, as `python -m ctxfuse_jax.main` runs) and PyTorch (as it ships)."""
    return {SAME: harness.Workload(f"{W}:train_step", {"data_path": data_path, "variant": "same"}, BATCH),
            PRODUCTION: harness.Workload(f"{W}:train_step", {"data_path": data_path, "variant": "production"}, BATCH),
            TORCH: harness.Workload(f"{T}:train_step", {"data_path": data_path}, BATCH, tune_host_memory=False)}


def unet_workloads(data_path: str) -> dict[str, harness.Workload]:
    return {UNET_XLA: harness.Workload(f"{W}:unet_pieces", {"data_path": data_path, "conv": "xla"}, BATCH),
            UNET_AUTO: harness.Workload(f"{W}:unet_pieces", {"data_path": data_path, "conv": "auto"}, BATCH),
            UNET_TORCH: harness.Workload(f"{T}:unet_pieces", {"data_path": data_path}, BATCH,
                                         tune_host_memory=False)}


def step_table(results: Mapping[str, harness.Result]) -> str:
    table = harness.table(list(results.values()), TORCH)
    same, production = results[SAME], results[PRODUCTION]
    return (f"{table}\n\nJAX (b) / JAX (a): {production.per_s / same.per_s:.2f}x (what computing the masks "
            f"once before training saves); fastest step (s): "
            + ", ".join(f"{r.name.split(':')[0]} {min(r.step_times):.4f}" for r in results.values()) + ".")


def unet_table(results: Mapping[str, harness.Result]) -> str:
    """Per implementation: median ms and img/s of the U-Net's forward and of its gradient; time ratio to 'xla'."""
    xla = results[UNET_XLA]
    lines = ["| U-Net (width 0.5, 32 x 28 x 28 x 1) | fwd (ms) | fwd img/s | fwd vs 'xla' | grad (ms) | grad img/s | "
             "grad vs 'xla' | peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results.values():
        cells = []
        for piece in ("fwd", "grad"):
            seconds = r.part_median_s(piece)
            cells += [f"{1e3 * seconds:.2f}", f"{BATCH / seconds:.0f}", f"{xla.part_median_s(piece) / seconds:.2f}x"]
        lines.append(f"| {r.name} | " + " | ".join(cells) + f" | {r.peak_rss_mib:.0f} |")
    return "\n".join(lines)


def main(rounds: int = ROUNDS, steps: int = STEPS, check_steps: int = CHECK_STEPS) -> str:
    start_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as workdir:
        data_path = os.path.join(workdir, "phase3.npz")
        report = prepare_and_check(data_path, check_steps)
        checked = check_table(report)
        steps_results = harness.compare(step_workloads(data_path), rounds=rounds, steps=steps)
        unet_results = harness.compare(unet_workloads(data_path), rounds=rounds, steps=steps)
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    return (f"{os.cpu_count()} CPUs, {versions}; load average {start_load:.1f} at start, {os.getloadavg()[0]:.1f} "
            f"at the end; {rounds} rounds x {steps} steps per workload.\n\n"
            f"Check, {check_steps} steps from the same weights, batch and noise:\n\n{checked}\n\n"
            f"Phase-3 step (img/s = {BATCH} images per step / median step):\n\n{step_table(steps_results)}\n\n"
            f"The U-Net alone ('grad': forward + gradient in its params):\n\n{unet_table(unet_results)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=STEPS, help="timed steps per workload and round")
    parser.add_argument("--check-steps", type=int, default=CHECK_STEPS, help="steps of the JAX/PyTorch check")
    parser.add_argument("--quick", action="store_true", help="a sanity run: 1 round of 2 steps, 2 check steps")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.check_steps = 1, 2, 2
    print(main(args.rounds, args.steps, args.check_steps))
