"""What a user sees when something is wrong: one line, status 2, and a workdir left exactly as it was.

Every case runs the real command line in a subprocess. Config mistakes are caught before TensorFlow
is imported, so most cases take about two seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FUSION, SUPERVISED = "--config=configs/fusion.py", "--config=configs/supervised.py"

# (arguments, text the one-line message must contain)
BAD_INPUTS = [
    ((f"{FUSION}:huge",), "unknown preset 'huge' for configs/fusion.py; choose one of ('default', 'smoke', 'coco')"),
    (("--config=configs/no_such_experiment.py",), "no_such_experiment.py"),
    ((SUPERVISED, "--config.train.bogus=1"), "--config.train.bogus: the config has no key 'train.bogus'"),
    ((SUPERVISED, "--config.seeds=(0,1)"), "the config has no key 'seeds'. Did you mean 'seed'?"),
    ((SUPERVISED, "--config.train.batch_size=big"), "--config.train.batch_size=big"),
    ((SUPERVISED, "--config.experiment=nope"), "unknown experiment 'nope'"),
    ((SUPERVISED, "--config.model.name=resnet7"), "unknown model 'resnet7'"),
    ((SUPERVISED, "--config.model.conv=fast"), "unknown convolution 'fast'"),
    ((SUPERVISED, "--config.compute_dtype=float16"), "unknown compute_dtype 'float16'"),
    ((FUSION, "--config.compute_dtype=bf16"), "unknown compute_dtype 'bf16'"),
    ((SUPERVISED, "--config.model.width=0.0"), "config.model.width=0.0"),
    ((SUPERVISED, "--config.train.label_smoothing=5.0"), "config.train.label_smoothing=5.0"),
    ((SUPERVISED, "--config.train.num_epochs=-1"), "config.train.num_epochs=-1"),
    ((SUPERVISED, "--config.train.batch_size=0"), "config.train.batch_size=0"),
    ((SUPERVISED, "--config.train.optimizer.learning_rate=nan"), "config.train.optimizer.learning_rate=nan"),
    ((SUPERVISED, "--config.train.optimizer.name=lbfgs"), "lbfgs"),
    ((SUPERVISED, "--config.train.optimizer.schedule=zigzag"), "zigzag"),
    ((SUPERVISED, "--config.loop.log_every=0"), "config.loop.log_every=0"),
    ((SUPERVISED, "--config.loop.checkpoint_every=0"), "config.loop.checkpoint_every=0"),
    ((SUPERVISED, "--config.data.image_size=7"), "config.data.image_size=7"),
    ((SUPERVISED, "--config.data.name=imagenet9000"), "imagenet9000"),
    ((SUPERVISED, "--config.data.context=1.5"), "config.data.context=1.5"),
    ((FUSION, "--config.seeds=()"), "config.seeds"),
    ((FUSION, "--config.eval.conditions.blur_all.sigmas=(-6.0,0.0,6.0)"), "config.eval.conditions.blur_all.sigmas"),
    ((FUSION, "--config.eval.conditions.blur_all.reference_size=0"),
     "config.eval.conditions.blur_all.reference_size=0"),
    ((FUSION, "--config.eval.conditions.blur_all.region=sky"), "sky"),
    ((FUSION, "--config.heads.feature_cache=maybe"), "maybe"),
    ((FUSION, "--config.streams.cut=layer9"), "layer9"),
    ((FUSION, "--config.streams.fg.weights=/nonexistent/fg.npz"), "config.streams.fg.weights='/nonexistent/fg.npz'"),
    ((FUSION, "--config.heads.train.batch_size=0"), "config.heads.train.batch_size=0"),
    ((SUPERVISED, "--process_id=1"), "--process_id is only read with --distributed"),
    ((SUPERVISED, "--distributed", "--num_processes=2", "--process_id=2"), "--process_id=2"),
    ((SUPERVISED, "--distributed", "--num_processes=0"), "--num_processes=0"),
]


def _main(*args: str, workdir, tfds_dir, wait: bool = True, **popen) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CTXFUSE_TRACEBACK"}
    env.update(JAX_PLATFORMS="cpu", TFDS_DATA_DIR=str(tfds_dir))
    command = [sys.executable, "-m", "ctxfuse_jax.main", f"--workdir={workdir}", *args]
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **popen)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _assert_one_line_user_error(result, expected: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert expected in lines[0], lines[0]


@pytest.fixture
def existing_run(tmp_path):
    """A workdir holding a (recorded) supervised run, and its bytes."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"experiment": "supervised", "seed": 0}))
    (run / "results.json").write_text('{"test": {"accuracy": 0.139}}')
    return run


@pytest.mark.parametrize("args,expected", BAD_INPUTS, ids=[" ".join(a[1:]) or a[0] for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_status_2_and_touches_nothing(args, expected, existing_run, tmp_path, snapshot):
    before = snapshot(existing_run)
    result = _main(*args, workdir=existing_run, tfds_dir=tmp_path / "tfds")
    _assert_one_line_user_error(result, expected)
    assert snapshot(existing_run) == before
    assert not (tmp_path / "tfds").exists()  # no dataset directory left behind


def test_a_workdir_of_another_experiment_or_config_is_refused_unchanged(tmp_path, snapshot):
    from ctxfuse_jax import workdir
    from configs import supervised

    run = tmp_path / "run"
    workdir.claim(str(run), supervised.get_config("smoke"), {})
    (run / "results.json").write_text("{}")
    before = snapshot(run)
    cases = {(f"{FUSION}:smoke",): "holds a 'supervised' run, this is 'fusion'",
             (f"{SUPERVISED}:smoke", "--config.train.optimizer.learning_rate=0.5"):
                 "train.optimizer.learning_rate: saved 0.1, now 0.5",
             (f"{SUPERVISED}:smoke", "--config.model.width=0.25"): "model.width: saved 0.125, now 0.25"}
    for args, expected in cases.items():
        _assert_one_line_user_error(_main(*args, workdir=run, tfds_dir=tmp_path / "tfds"), expected)
        assert snapshot(run) == before


def test_a_foreign_or_file_workdir_is_refused(tmp_path, snapshot):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    result = _main(f"{SUPERVISED}:smoke", workdir=home, tfds_dir=tmp_path / "tfds")
    _assert_one_line_user_error(result, "is not empty and holds no config.json")
    assert snapshot(home) == {"notes.txt": b"mine"}
    result = _main(f"{SUPERVISED}:smoke", workdir=home / "notes.txt", tfds_dir=tmp_path / "tfds")
    _assert_one_line_user_error(result, "is a file, not a directory")


def test_traceback_on_request(tmp_path):
    env_run = subprocess.run(
        [sys.executable, "-m", "ctxfuse_jax.main", f"--workdir={tmp_path / 'run'}", SUPERVISED,
         "--config.loop.log_every=0"],
        cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu", "CTXFUSE_TRACEBACK": "1"},
        capture_output=True, text=True, timeout=300)
    assert env_run.returncode != 0 and "Traceback" in env_run.stderr and "ConfigError" in env_run.stderr


def test_sigterm_before_training_says_what_is_kept_and_how_to_resume(tmp_path):
    tfds_dir = tmp_path / "tfds"
    process = _main(f"{SUPERVISED}:smoke", workdir=tmp_path / "run", tfds_dir=tfds_dir, wait=False)
    deadline = time.monotonic() + 120
    while not (tfds_dir / "ctxfuse_embedded").exists():  # the dataset is being drawn: before any stage
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "interrupted by SIGTERM outside training; no stage had finished" in stderr
    assert "Run the same command again to resume." in stderr
