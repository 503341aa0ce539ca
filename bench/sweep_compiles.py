"""Compilations and compile time of the default fusion job: its evaluation and its train steps.

The default job (`configs/fusion.py`, 64 px, streams at width 0.25) evaluates 9 sigmas x 2 blur
regions over the test split, jitted once as the project's evaluator does
(`evaluate.evaluator.make_condition_step`: family and level traced), against a naive jit with
family and level static (one program per condition and level, 18); and each stage's train step.
Counted with `jax.monitoring` (`bench.compile_events`), each variant in its own process
(`bench.sweep_workloads`), interleaved.

    PYTHONPATH=. python -m bench.sweep_compiles                   # 3-6 min on 2 shared cores
    PYTHONPATH=. python -m bench.sweep_compiles --preset smoke    # a quick check (3 sigmas, 32 px)
"""

import argparse
import statistics
from typing import Mapping

from bench import harness

S = "bench.sweep_workloads"
ONCE = "once"
# `bench.sweep_workloads.CONDITION_JITS`, named here to keep JAX out of this process.
SWEEP_JITS = (ONCE, "per condition")
STAGE = "stage "  # Prefix of the stages' train-step compile seconds in the first call's Parts.


def workloads(preset: str = "default") -> dict[str, harness.Workload]:
    """One worker per condition jit; the project's one also compiles the stages' train steps."""
    return {name: harness.Workload(f"{S}:fusion_job",
                                   {"sweep_jit": name, "compile_stages": name == ONCE, "preset": preset}, 1)
            for name in SWEEP_JITS}


def _row(name: str, when: str, wall_s: float, parts: Mapping[str, float], once_compile_s: float,
         rss_mib: float) -> str:
    compile_s = parts["compile s"]
    return (f"| {name} | {when} | {parts['compilations']:.0f} | {compile_s:.1f} ({parts['trace s']:.1f} / "
            f"{parts['lower s']:.1f} / {parts['XLA compile s']:.1f}) | {wall_s - compile_s:.1f} | {wall_s:.1f} | "
            f"{compile_s / wall_s:.0%} | {compile_s / once_compile_s:.1f}x | {rss_mib:.0f} |")


def table(results: Mapping[str, harness.Result]) -> str:
    """The evaluation per jit, first in a fresh process and again (as for the next seed); then the stages."""
    later = {name: {k: statistics.median(v) for k, v in r.parts.items()} for name, r in results.items()}
    once = results[ONCE].first_parts["compile s"]
    lines = ["| condition jit | evaluation | compilations | compile s (trace / lower / XLA) | execution s | wall s | "
             "compile / wall | compile vs once | peak RSS (MiB) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(_row(name, "first (fresh process)", r.first_step_s, r.first_parts, once, r.peak_rss_mib))
        lines.append(_row(name, "again (next seed)", r.median_s, later[name], once, r.peak_rss_mib))
    lines += ["", "| stage of the default job | train-step compile (s) |", "|---|---:|"]
    stages = {k[len(STAGE):-len(" compile s")]: v for k, v in results[ONCE].first_parts.items() if k.startswith(STAGE)}
    lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in stages.items()]
    lines.append(f"| total | {sum(stages.values()):.1f} |")
    return "\n".join(lines)


def main(rounds: int = 1, preset: str = "default") -> str:
    return table(harness.compare(workloads(preset), rounds=rounds, steps=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="evaluations per variant after the first")
    parser.add_argument("--preset", default="default", help="configs/fusion.py preset (smoke: a quick check)")
    args = parser.parse_args()
    print(main(args.rounds, args.preset))
