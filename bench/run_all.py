"""Every benchmark, as the markdown tables of bench/README.md.

JAX against its PyTorch reference, then the costs around the train step (degradations, input
pipeline, compilation), the backgrounds challenge's throughput against its authors' PyTorch loop and
seed 002's phase-3 step against PyTorch.

    PYTHONPATH=. python -m bench.run_all                      # 30-50 min on 2 CPU cores
    PYTHONPATH=. python -m bench.run_all --sections resnet18 conv_layers --rounds 2

JAX rows: 'before' is `lax.conv_general_dilated` on glibc's default heap, as at the start of the
work; 'after' is `ops.conv.cpu_conv` (what `fast_conv`, the models' default, compiles to on CPU)
with the host memory settings of `ctxfuse_jax.host_memory`, as `python -m ctxfuse_jax.main` runs on
CPU. Batch 64, 64 px unless a section says 224.
"""

import argparse
import dataclasses
import datetime
import os
import platform
from typing import Callable

from bench import (bg_invariant, challenge, conv_layers, degrade_share, harness, input_pipeline, master_slave_input,
                   mixed_precision, sweep_compiles)

BATCH, SIZE = 64, 64
VGG_WIDTH = 0.5  # VGG16 at half width in both frameworks, so a step fits the time.
ONE_CPU = (0,)
J, T = "bench.jax_workloads", "bench.torch_workloads"


def _jax(factory: str, cpus=None, tune_host_memory: bool = True, **kwargs) -> harness.Workload:
    """A JAX workload; by default set up as `python -m ctxfuse_jax.main` runs on CPU (host memory tuned)."""
    return harness.Workload(f"{J}:{factory}", kwargs, BATCH, cpus, tune_host_memory)


def _torch(factory: str, cpus=None, **kwargs) -> harness.Workload:
    """A PyTorch reference, run as PyTorch ships (glibc's default heap)."""
    return harness.Workload(f"{T}:{factory}", kwargs, BATCH, cpus, tune_host_memory=False)


def _before_after(jax_factory: str, torch_factory: str, cpus=None, **kwargs) -> dict[str, harness.Workload]:
    """PyTorch; JAX as it was (XLA conv, default XLA flags and heap); JAX as it is now."""
    return {"PyTorch": _torch(torch_factory, cpus, **kwargs),
            "JAX before (XLA conv)": _jax(jax_factory, cpus, tune_host_memory=False, conv="xla", **kwargs),
            "JAX after (CPU conv, host memory tuned)": _jax(jax_factory, cpus, conv="cpu", **kwargs)}


def _compared(workloads: dict[str, harness.Workload], baseline: str, rounds: int) -> str:
    return harness.table(list(harness.compare(workloads, rounds=rounds, steps=1).values()), baseline)


def _resnet18_host_memory_effect(cpus, include_before: bool) -> dict[str, harness.Workload]:
    """Before/after, plus each framework with the other host memory setting, to separate the fixes."""
    model = dict(model="resnet18", batch=BATCH, size=SIZE)
    workloads = _before_after("classifier_train_step", "classifier_train_step", cpus, **model)
    if not include_before:
        del workloads["JAX before (XLA conv)"]
    workloads["PyTorch, heap kept"] = dataclasses.replace(workloads["PyTorch"], tune_host_memory=True)
    workloads["JAX, CPU conv, host memory not tuned"] = _jax("classifier_train_step", cpus, tune_host_memory=False,
                                                             conv="cpu", **model)
    return workloads


def resnet18(rounds: int) -> str:
    return _compared(_resnet18_host_memory_effect(None, include_before=True), "PyTorch", rounds)


def resnet18_one_cpu(rounds: int) -> str:
    return _compared(_resnet18_host_memory_effect(ONE_CPU, include_before=False), "PyTorch", 2 * rounds)


def vgg16(rounds: int) -> str:
    model = dict(model="vgg16", batch=BATCH, size=SIZE, width=VGG_WIDTH)
    return _compared(_before_after("classifier_train_step", "classifier_train_step", **model), "PyTorch", rounds)


def fusion(rounds: int) -> str:
    return _compared(_before_after("fusion_train_step", "fusion_train_step", batch=BATCH, size=SIZE),
                     "PyTorch", rounds)


def stream_inference(rounds: int) -> str:
    return _compared(_before_after("stream_inference_step", "stream_inference_step", batch=BATCH, size=SIZE),
                     "PyTorch", 2 * rounds)


def cached_features(rounds: int) -> str:
    kwargs = dict(batch=BATCH, size=SIZE)
    workloads = {
        "JAX, streams recomputed": _jax("fusion_train_step", conv="auto", **kwargs),
        "JAX, cached features": _jax("cached_head_train_step", conv="auto", **kwargs),
        "PyTorch, streams recomputed": _torch("fusion_train_step", **kwargs),
        "PyTorch, cached features": _torch("cached_head_train_step", **kwargs),
    }
    return _compared(workloads, "JAX, streams recomputed", 2 * rounds)


def bf16_throughput(rounds: int) -> str:
    model = dict(model="resnet18", conv="auto", batch=BATCH, size=SIZE)
    workloads = {dtype: _jax("classifier_train_step", dtype=dtype, **model) for dtype in mixed_precision.DTYPES}
    return _compared(workloads, "float32", rounds)


SECTIONS: dict[str, tuple[str, Callable[[int], str]]] = {
    "conv_layers": ("Per-layer convolution time, ResNet18 shapes, 1 CPU",
                    lambda rounds: conv_layers.main(ONE_CPU, rounds)),
    "resnet18": ("ResNet18 train step", resnet18),
    "resnet18_one_cpu": ("ResNet18 train step, each worker pinned to 1 CPU", resnet18_one_cpu),
    "vgg16": (f"VGG16 (width {VGG_WIDTH}) train step", vgg16),
    "fusion": ("Fusion model train step (two frozen ResNet18 streams to layer3, trainable head)", fusion),
    "stream_inference": ("Frozen stream inference (ResNet18 to layer3)", stream_inference),
    "cached_features": ("Fusion head step: cached stream features vs recomputed streams", cached_features),
    "bf16": ("Mixed precision (bf16 compute, f32 params): ResNet18 train step throughput", bf16_throughput),
    "bf16_parity": ("Mixed precision: loss curves of the same training in f32 and bf16",
                    lambda rounds: mixed_precision.main()),
    "degrade_share": ("Degrading a training batch on device: share of a ResNet18 train step",
                      lambda rounds: degrade_share.main(rounds, 64, "ResNet18")),
    "degrade_share_fusion": ("Degrading a training batch on device: share of a fusion train step",
                             lambda rounds: degrade_share.main(rounds, 64, "fusion")),
    "degrade_share_224": ("Degrading a training batch on device at 224 px: share of a fusion train step",
                          lambda rounds: degrade_share.main(rounds, 224, "fusion")),
    "input_pipeline": ("Input pipeline against the train steps it feeds (default fusion job, 64 px)",
                       lambda rounds: input_pipeline.main(rounds, 64)),
    "input_pipeline_224": ("Input pipeline against the train step it feeds (COCO sizes, 224 px)",
                           lambda rounds: input_pipeline.main(rounds, 224)),
    "sweep_compiles": ("Compilations of the default fusion job: the evaluation of its conditions and the stages' "
                       "train steps", lambda rounds: sweep_compiles.main()),
    "challenge": ("Backgrounds challenge: composites scored per second, the evaluator of conditions against "
                  "MadryLab's per-foreground PyTorch loop", lambda rounds: challenge.main()),
    "bg_invariant": ("Seed 002's phase-3 step (adversarial backgrounds, digits, batch 32) against PyTorch, and its "
                     "U-Net's convolution", lambda rounds: bg_invariant.main(rounds)),
    "master_slave_input": ("Seed 003's host codecs (tf.data) against its VGG-16 train and eval steps",
                           lambda rounds: master_slave_input.main(rounds)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per comparison")
    parser.add_argument("--out", help="also write the markdown here")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    report = [f"Run {datetime.date.today()} on {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, load average {load:.1f} at start; batch {BATCH}, {SIZE} px."]
    for name in args.sections:
        title, run = SECTIONS[name]
        report.append(f"### {title}\n\n{run(args.rounds)}")
        print(report[-1] + "\n", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n\n".join(report) + "\n")


if __name__ == "__main__":
    main()
