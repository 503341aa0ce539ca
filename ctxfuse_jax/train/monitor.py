"""What a long run tells the world: metrics to TensorBoard and JSONL, a progress line to a person."""

import json
import os
import sys
import time
from typing import Mapping, TextIO

import jax
import tensorflow as tf


METRICS_FILE = "metrics.jsonl"


def discard_metrics_after(workdir: str, step: int, prefix: str = "") -> None:
    """Drops the records of `workdir/metrics.jsonl` after `step` (with `prefix`: only those whose
    metrics all start with it), so steps that a resumed stage logs again do not appear twice.

    TensorBoard shows the newest value of a repeated step, so event files are left as they are.
    """
    path = os.path.join(workdir, METRICS_FILE)
    if jax.process_index() != 0 or not os.path.exists(path):
        return
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    kept = [r for r in records if r["step"] <= step or not all(k.startswith(prefix) for k in r if k != "step")]
    if len(kept) < len(records):
        partial = f"{path}.partial"
        with open(partial, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(partial, path)


class MetricWriter:
    """Writes scalars to `workdir/metrics.jsonl` and to TensorBoard event files under `workdir/tb`.

    Only host 0 writes: every host holds the same (globally reduced) numbers.
    """

    def __init__(self, workdir: str):
        self._active = jax.process_index() == 0
        if not self._active:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl_path = os.path.join(workdir, METRICS_FILE)
        self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tb"))

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self._active:
            return
        with open(self._jsonl_path, "a") as f:
            f.write(json.dumps({"step": step, **{k: float(v) for k, v in scalars.items()}}) + "\n")
        with self._tb.as_default():
            for name, value in scalars.items():
                tf.summary.scalar(name, float(value), step=step)
        self._tb.flush()


class Progress:
    """A progress line with steps/s and ETA, timed from `start` (call it after the compiling step)."""

    def __init__(self, name: str, total_steps: int, stream: TextIO = sys.stderr):
        self._name, self._total, self._stream = name, total_steps, stream
        self._start_step, self._start_time = None, None

    def start(self, step: int) -> None:
        self._start_step, self._start_time = step, time.monotonic()

    def report(self, step: int, scalars: Mapping[str, float]) -> str:
        elapsed = time.monotonic() - self._start_time if self._start_time is not None else 0.0
        rate = (step - self._start_step) / elapsed if elapsed > 0 else 0.0
        eta = (self._total - step) / rate if rate > 0 else float("nan")
        values = "  ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        line = (f"[{self._name}] step {step}/{self._total} ({100 * step / self._total:.0f}%)  {values}  "
                f"| {rate:.2f} steps/s  ETA {_clock(eta)}")
        print(line, file=self._stream, flush=True)
        return line


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: no rate measured yet.
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
