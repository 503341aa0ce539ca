"""Is the input pipeline ever the bottleneck? Its throughput against the train steps it feeds.

Rows of the first table are the project's input paths (`bench.pipeline_workloads`): host batches
from the in-memory split, the same put on the device mesh (what the training loop does per step),
and the one-off read of a split into memory (TFDS at 64 px, COCO-sized JPEGs at 224 px). The ratio
is pipeline img/s over train-step img/s: far above 1 means the step never waits for data. The
second table runs the training loop's body fed by the pipeline and on one resident batch: the
loop dispatches the step asynchronously and then builds the next batch, so any feeding cost that
is not hidden behind the step shows up as fed < resident. Interleaved, one process each.

    PYTHONPATH=. python -m bench.input_pipeline               # default fusion job, 64 px, 2-4 min
    PYTHONPATH=. python -m bench.input_pipeline --size 224    # COCO sizes, 2-4 min
"""

import argparse
from typing import Mapping

from bench import harness

BATCH = 64
P = "bench.pipeline_workloads"
RESIDENT, FED = "resident batch", "fed by the pipeline"
# Train steps of `configs/fusion.py`: its FG stream pretraining (ResNet18 at the stream width) and
# its Joint head step; at 224 px the `coco` preset's head step (full-width streams, 256 features).
# (model, preset, steps per call, how fed): the Joint head step, the fastest, is also run fed.
STEPS = {64: {"ResNet18 (width 0.25) pretraining step": ("resnet18", "default", 4, (RESIDENT,)),
              "Joint head step (width 0.25 streams)": ("fusion", "default", 8, (RESIDENT, FED))},
         224: {"Joint head step (COCO: width 1 streams)": ("fusion", "coco", 2, (RESIDENT, FED))}}
HOST_BATCHES = {64: 20, 224: 5}  # Batches per timed call: enough to time, a fraction of a second.
JPEGS = 128


def workloads(size: int) -> tuple[dict[str, harness.Workload], dict[str, harness.Workload]]:
    """(pipeline paths, train steps resident and fed) at `size` px."""
    n = HOST_BATCHES[size]
    pipeline = {
        "train_batches (host numpy)": harness.Workload(f"{P}:host_batches", dict(size=size, batch=BATCH, batches=n),
                                                       n * BATCH),
        "train_batches + put_batch (on device)": harness.Workload(
            f"{P}:device_batches", dict(size=size, batch=BATCH, batches=n), n * BATCH)}
    if size == 64:
        pipeline["TFDS split -> materialize (once per run)"] = harness.Workload(f"{P}:tfds_materialize", {}, 1000)
    else:
        pipeline["COCO-sized JPEGs -> materialize at 224 (once per run)"] = harness.Workload(
            f"{P}:jpeg_materialize", dict(size=size, count=JPEGS), JPEGS)
    steps = {f"{name}, {how}": harness.Workload(f"{P}:loop_steps", dict(model=model, preset=preset, batch=BATCH,
                                                                         feed=how == FED, steps=count), count * BATCH)
             for name, (model, preset, count, hows) in STEPS[size].items() for how in hows}
    return pipeline, steps


def table(results: Mapping[str, harness.Result], size: int) -> str:
    """Pipeline img/s over each resident train step's; then the steps, fed against resident."""
    names = list(STEPS[size])
    step = {name: results[f"{name}, {RESIDENT}"].per_s for name in names}
    lines = ["| input path | img/s | " + " | ".join(f"/ {n}" for n in names) + " | peak RSS (MiB) |",
             "|---|---:|" + "---:|" * len(names) + "---:|"]
    for r in results.values():
        if not any(r.name.startswith(n) for n in names):
            lines.append(f"| {r.name} | {r.per_s:,.0f} | " + " | ".join(f"{r.per_s / step[n]:,.0f}x" for n in names)
                         + f" | {r.peak_rss_mib:.0f} |")
    lines += ["", "| train step (loop body, steps dispatched back to back) | img/s | fed / resident | "
              "median call (s) | first call (s) | peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|"]
    for name, (*_, hows) in STEPS[size].items():
        for how in hows:
            r = results[f"{name}, {how}"]
            lines.append(f"| {r.name} | {r.per_s:.1f} | {r.per_s / step[name]:.2f}x | {r.median_s:.3f} | "
                         f"{r.first_step_s:.1f} | {r.peak_rss_mib:.0f} |")
    return "\n".join(lines)


def main(rounds: int = 3, size: int = 64) -> str:
    pipeline, steps = workloads(size)
    results = harness.compare({**pipeline, **steps}, rounds=rounds, steps=1)
    return f"Batch {BATCH}, {size} px.\n\n" + table(results, size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, choices=sorted(STEPS), default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(main(args.rounds, args.size))
