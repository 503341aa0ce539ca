"""The command line: config files, presets, overrides and a real (tiny) training run that resumes.

Bad inputs are in test_cli_errors.py."""

import json
import os
import shutil
import subprocess
import sys

from ctxfuse_jax import provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    return subprocess.run([sys.executable, "-m", "ctxfuse_jax.main", f"--workdir={tmp_path / 'run'}", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_supervised_smoke_run_writes_checkpoints_metrics_and_results(tmp_path):
    result = _main("--config=configs/supervised.py:smoke", "--config.data.num_examples=160",
                   "--config.train.batch_size=16", "--config.loop.checkpoint_every=5", "--config.loop.log_every=2",
                   "--config.model.conv=xla",
                   tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    assert "[classifier] step 7/7 (100%)" in result.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["batch_size"] == 16 and config["data"]["num_examples"] == 160  # overrides recorded
    assert config["model"]["conv"] == "xla"
    assert sorted(int(d) for d in os.listdir(run / "classifier" / "checkpoints") if d.isdigit()) == [5, 7]
    metrics = [json.loads(line) for line in (run / "classifier" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "train/loss" in m] == [2, 4, 6, 7]
    results = json.loads((run / "results.json").read_text())
    assert results["num_train"] == 120 and results["num_test"] == 40  # the 75/25 split
    assert results["test"]["count"] == 40 and 0 <= results["test"]["accuracy"] <= 1
    assert os.listdir(run / "classifier" / "tb")  # TensorBoard event files

    # Run again after a crash left an empty latest step: it is set aside with a warning and nothing is lost.
    (run / "classifier" / "checkpoints" / "99").mkdir()
    before = (run / "results.json").read_bytes()
    again = _main("--config=configs/supervised.py:smoke", "--config.data.num_examples=160",
                  "--config.train.batch_size=16", "--config.loop.checkpoint_every=5", "--config.loop.log_every=2",
                  "--config.model.conv=xla", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"checkpoint {run / 'classifier' / 'checkpoints' / '99'} is unusable" in again.stderr
    assert "[classifier] already complete at step 7: skipping" in again.stdout
    assert "Traceback" not in again.stderr and "Event loop is closed" not in again.stderr
    assert (run / "results.json").read_bytes() == before
    # The fingerprint is the hash of the config recorded beside it, and no input files.
    assert results["fingerprint"] == {"experiment": "supervised", "config_sha256": provenance.sha256_of(config),
                                      "inputs": {}}

    _check_report_rebuilds_the_run_without_training(tmp_path)


def _check_report_rebuilds_the_run_without_training(tmp_path) -> None:
    """`python -m ctxfuse_jax.report` on the finished run above (checkpoints 5 and 7): its results come
    back without training; stopped at step 5 it is refused, not trained on."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    run = tmp_path / "run"
    before = json.loads((run / "results.json").read_text())
    (run / "results.json").unlink()

    def report(workdir) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ctxfuse_jax.report", f"--workdir={workdir}"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)

    rebuilt = report(run)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert "[classifier] already complete at step 7: skipping" in rebuilt.stdout
    after = json.loads((run / "results.json").read_text())
    assert {k: v for k, v in after.items() if k != "fingerprint"} == {k: v for k, v in before.items()
                                                                      if k != "fingerprint"}
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["loop"]["train"] is False
    assert after["fingerprint"]["config_sha256"] == provenance.sha256_of(recorded)

    shutil.rmtree(run / "classifier" / "checkpoints" / "7")
    (run / "classifier" / "eval.json").unlink()
    refused = report(run)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "is not finished (step 5 of 7) and loop.train is off" in refused.stderr.splitlines()[-1]
    assert sorted(d for d in os.listdir(run / "classifier" / "checkpoints") if d.isdigit()) == ["5"]
    assert report(tmp_path / "nothing").returncode == 2
