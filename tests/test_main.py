"""The command line: config files, presets, overrides, clear errors, and a real (tiny) training run."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    return subprocess.run([sys.executable, "-m", "ctxfuse_jax.main", f"--workdir={tmp_path / 'run'}", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_bad_choices_fail_with_the_valid_ones(tmp_path):
    cases = {
        ("--config=configs/fusion.py:huge",): "unknown preset 'huge' for configs/fusion.py; choose one of "
                                              "('default', 'smoke', 'coco')",
        ("--config=configs/supervised.py", "--config.experiment=nope"): "unknown experiment 'nope'; choose one of "
                                                                        "['fusion', 'supervised']",
        ("--config=configs/supervised.py", "--config.model.name=resnet7"): "unknown model 'resnet7'; available: "
                                                                           "resnet18, resnet34",
        ("--config=configs/supervised.py", "--config.train.batch_size=big"): "big",
        ("--config=configs/supervised.py", "--config.model.conv=fast"): "unknown convolution 'fast'; choose one of "
                                                                       "['auto', 'cpu', 'xla']",
        ("--config=configs/supervised.py", "--config.compute_dtype=float16"): "unknown compute_dtype 'float16'; "
                                                                          "choose one of ['bfloat16', 'float32']",
        ("--config=configs/fusion.py", "--config.compute_dtype=bf16"): "unknown compute_dtype 'bf16'; choose one of "
                                                                      "['bfloat16', 'float32']",
        ("--config=configs/supervised.py", "--config.no_such_field=1"): "no_such_field",
    }
    for args, message in cases.items():
        result = _main(*args, tmp_path=tmp_path)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr[-2000:])


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
