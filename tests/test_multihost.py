"""Multi-host training for real: two processes on 127.0.0.1 joined by `jax.distributed` (gloo CPU
collectives), each feeding its own half of every global batch, against one process.

Both processes are killed mid-run, as a preempted pod is, and started again: the run resumes from
its last checkpoint and must end with the model one uninterrupted process trains.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The supervised smoke preset at 16 px: 120 training images, 7 steps of 16. At its learning rate of
# 0.1 this tiny run is chaotic: summation order alone (1e-7) grows to 1e-3 in two steps. At 0.01
# two runs that differ only in how they add stay within 1e-5.
CONFIG = ["--config=configs/supervised.py:smoke", "--config.data.num_examples=160", "--config.data.image_size=16",
          "--config.train.batch_size=16", "--config.train.optimizer.learning_rate=0.01", "--config.loop.log_every=1",
          "--config.loop.checkpoint_every=3"]
NUM_STEPS, KILLED_AFTER = 7, 3
STARTUP_LIMIT_S = 300


def _command(workdir, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ctxfuse_jax.main", *CONFIG, f"--workdir={workdir}", *extra]


def _env(devices_per_process: int = 1) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={devices_per_process}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_processes(workdir, logs) -> list[subprocess.Popen]:
    """Both processes of a two-process run, logging to `logs[i]`."""
    address = f"127.0.0.1:{_free_port()}"
    return [subprocess.Popen(_command(workdir, "--distributed", f"--coordinator_address={address}",
                                      "--num_processes=2", f"--process_id={i}"),
                             cwd=ROOT, env=_env(), stdout=open(logs[i], "w"), stderr=subprocess.STDOUT)
            for i in range(2)]


def _finish(processes, logs) -> None:
    for process, log in zip(processes, logs):
        if process.wait(timeout=STARTUP_LIMIT_S) != 0:
            raise AssertionError(f"process exited with {process.returncode}:\n{open(log).read()[-3000:]}")


def _kill_after_checkpoint(processes, checkpoint_dir, logs) -> None:
    """Kills process 1 once step KILLED_AFTER is saved, then process 0: a survivor of a lost peer
    would only give up at its heartbeat timeout (100 s), so a pod's restart kills every worker."""
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while not os.path.isdir(os.path.join(checkpoint_dir, str(KILLED_AFTER))):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            for p in processes:
                p.kill()
            raise AssertionError(f"no checkpoint at step {KILLED_AFTER} before the run ended:\n" + open(logs[0]).read()[-3000:])
        time.sleep(0.05)
    for process in reversed(processes):
        process.send_signal(signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(workdir of one process with two devices, two-process workdir killed after step KILLED_AFTER and resumed, the resumed logs)."""
    base = tmp_path_factory.mktemp("multihost")
    one, two = base / "one", base / "two"
    # The reference trains beside the run that is killed: they share nothing but the CPU.
    reference = subprocess.Popen(_command(one), cwd=ROOT, env=_env(devices_per_process=2),
                                 stdout=open(base / "one.log", "w"), stderr=subprocess.STDOUT)
    killed = [base / f"killed_{i}.log" for i in range(2)]
    _kill_after_checkpoint(_start_processes(two, killed), two / "classifier" / "checkpoints", killed)
    _finish([reference], [base / "one.log"])
    resumed = [base / f"resumed_{i}.log" for i in range(2)]
    _finish(_start_processes(two, resumed), resumed)
    return one, two, [open(log).read() for log in resumed]


def _trained(workdir) -> dict:
    from ctxfuse_jax.train.checkpoint import read_players

    return read_players(str(workdir / "classifier" / "checkpoints"), ("classifier",))["classifier"]


def _metrics(workdir) -> list[dict]:
    with open(workdir / "classifier" / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def test_two_processes_train_and_evaluate_as_one_does(runs):
    import jax

    one, two, _ = runs
    flat_one, flat_two = (jax.tree_util.tree_leaves_with_path(_trained(w)) for w in (one, two))
    assert [path for path, _ in flat_one] == [path for path, _ in flat_two]
    for (path, a), (_, b) in zip(flat_one, flat_two):
        # Gradients and batch-norm statistics are reduced across processes: only summation order differs.
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6, err_msg=str(path))
    evals = [json.load(open(w / "classifier" / "eval.json")) for w in (one, two)]
    assert evals[0]["step"] == evals[1]["step"] == NUM_STEPS
    # Each process scores its slice of every test batch; the counts and accuracy are exact.
    assert evals[1]["metrics"]["count"] == evals[0]["metrics"]["count"] == 40
    assert evals[1]["metrics"]["accuracy"] == evals[0]["metrics"]["accuracy"]
    np.testing.assert_allclose(evals[1]["metrics"]["loss"], evals[0]["metrics"]["loss"], rtol=1e-4)
    results = [json.load(open(w / "results.json")) for w in (one, two)]
    assert results[1]["test"]["accuracy"] == results[0]["test"]["accuracy"]


def test_only_process_zero_writes_metrics(runs):
    one, two, _ = runs
    # Two writers would log every step twice; a metric line lost to the kill would leave a gap.
    assert [m["step"] for m in _metrics(two)] == [m["step"] for m in _metrics(one)]
    train_one, train_two = ([m for m in _metrics(w) if "train/loss" in m] for w in (one, two))
    np.testing.assert_allclose([m["train/loss"] for m in train_two], [m["train/loss"] for m in train_one],
                               rtol=1e-4)


def test_killed_run_resumes_both_processes_from_the_last_checkpoint(runs):
    _, two, logs = runs
    for log in logs:
        assert f"[classifier] resuming from step {KILLED_AFTER} of {NUM_STEPS}" in log
        assert f"[classifier] step {NUM_STEPS}/{NUM_STEPS} (100%)" in log
    assert sorted(int(s) for s in os.listdir(two / "classifier" / "checkpoints") if s.isdigit())[-1] == NUM_STEPS
