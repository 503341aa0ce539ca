"""Side-by-side timing of workloads, each in its own process, interleaved round by round.

The machine is shared and noisy, so workloads are never timed one after the other: each round
runs a few steps of every workload in turn (rotating who goes first), and results are medians
and ratios measured in the same rounds. Separate processes keep the thread pools of XLA and
PyTorch from spinning against each other and give each workload its own peak-memory figure.
"""

import dataclasses
import importlib
import multiprocessing
import os
import resource
import statistics
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

from ctxfuse_jax import host_memory

Step = Callable[[], Any]  # Runs one step and blocks until its results are ready.


class Parts(dict):
    """What a step may return to report its own measures of its parts: {name: seconds or a count}."""


@dataclasses.dataclass(frozen=True)
class Workload:
    """`factory(**kwargs)` builds a `Step` in the worker; `items` is what one step processes.

    `factory` is named as 'module:function', so only the worker imports its framework (a JAX
    worker never loads PyTorch). `cpus` pins the worker to those CPUs before any thread pool
    starts (None: all CPUs); `tune_host_memory` sets up the worker's XLA flags and malloc as
    `python -m ctxfuse_jax.main` does on CPU (`ctxfuse_jax.host_memory`); references that should
    run as their framework ships (PyTorch) turn it off.
    """

    factory: str
    kwargs: Mapping[str, Any]
    items: int
    cpus: tuple[int, ...] | None = None
    tune_host_memory: bool = True


@dataclasses.dataclass(frozen=True)
class Result:
    name: str
    items: int
    setup_s: float  # Building the model and data.
    first_step_s: float  # Compilation (JAX) or warm-up (PyTorch), plus one step.
    step_times: tuple[float, ...]
    peak_rss_mib: float
    parts: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    first_parts: Mapping[str, float] = dataclasses.field(default_factory=dict)  # The first step's (compiling).

    @property
    def median_s(self) -> float:
        return statistics.median(self.step_times)

    @property
    def per_s(self) -> float:
        return self.items / self.median_s

    def part_median_s(self, name: str) -> float:
        return statistics.median(self.parts[name])


def _serve(conn, workload: Workload) -> None:
    try:
        if workload.cpus is not None:
            os.sched_setaffinity(0, workload.cpus)
        if workload.tune_host_memory:
            host_memory.use_memory_saving_schedule()
            host_memory.keep_freed_memory()
        start = time.perf_counter()
        module, function = workload.factory.split(":")
        step = getattr(importlib.import_module(module), function)(**workload.kwargs)
        built = time.perf_counter()
        first = step()
        conn.send(("ready", built - start, time.perf_counter() - built, first if isinstance(first, Parts) else {}))
        while (message := conn.recv()) != "stop":
            times, parts = [], []
            for _ in range(message):
                start = time.perf_counter()
                out = step()
                times.append(time.perf_counter() - start)
                if isinstance(out, Parts):
                    parts.append(out)
            conn.send((times, parts))
        conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    except EOFError:
        pass  # The parent stopped the comparison (another worker failed).
    except Exception:  # noqa: BLE001 - reported to the parent, which raises.
        conn.send(("error", traceback.format_exc()))


def _receive(conn, name: str) -> Any:
    message = conn.recv()
    if isinstance(message, tuple) and message[0] == "error":
        raise RuntimeError(f"workload {name!r} failed in its worker:\n{message[1]}")
    return message


def compare(workloads: Mapping[str, Workload], rounds: int = 3, steps: int = 2) -> dict[str, Result]:
    """Times every workload for `rounds` x `steps` steps, interleaved; returns results by name.

    Workers start one at a time (compilation is timed alone) and stay alive between rounds.
    """
    context = multiprocessing.get_context("spawn")
    workers, setup = {}, {}
    try:
        for name, workload in workloads.items():
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(child, workload), daemon=True)
            process.start()
            workers[name] = (process, parent)
            _, setup_s, first_s, first_parts = _receive(parent, name)
            setup[name] = (setup_s, first_s, first_parts)
        times: dict[str, list[float]] = {name: [] for name in workloads}
        parts: dict[str, dict[str, list[float]]] = {name: {} for name in workloads}
        names = list(workloads)
        for round_index in range(rounds):
            for name in names[round_index % len(names):] + names[:round_index % len(names)]:
                workers[name][1].send(steps)
                step_times, step_parts = _receive(workers[name][1], name)
                times[name] += step_times
                for part in step_parts:
                    for key, seconds in part.items():
                        parts[name].setdefault(key, []).append(seconds)
        results = {}
        for name, (_, conn) in workers.items():
            conn.send("stop")
            setup_s, first_s, first_parts = setup[name]
            results[name] = Result(name, workloads[name].items, setup_s, first_s, tuple(times[name]),
                                   _receive(conn, name), {k: tuple(v) for k, v in parts[name].items()},
                                   dict(first_parts))
        return results
    finally:
        for process, conn in workers.values():
            conn.close()  # A worker still waiting for work sees the end of its pipe and exits.
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()


def table(results: Sequence[Result], baseline: str, unit: str = "img/s") -> str:
    """A markdown table: throughput, ratio to `baseline`, first step (compilation), peak memory."""
    base = next(r for r in results if r.name == baseline)
    lines = [f"| workload | {unit} | vs {baseline} | median step (s) | first step (s) | "
             "first - median (compile, s) | peak RSS (MiB) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {r.per_s:.1f} | {r.per_s / base.per_s:.2f}x | {r.median_s:.3f} | "
                     f"{r.first_step_s:.1f} | {r.first_step_s - r.median_s:.1f} | {r.peak_rss_mib:.0f} |")
    return "\n".join(lines)
