"""The launch scripts: what `DRY_RUN=1` prints is exactly what they run.

Each case runs the real script with bash in a subprocess. `gcloud` and `srun` are fakes put first on
PATH that record their argv, so nothing reaches a cloud or a cluster: a dry run must record nothing,
and a real run must record, command for command, what the dry run printed.
"""

import json
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU_POD = os.path.join(ROOT, "launch", "tpu_pod.sh")
SLURM = os.path.join(ROOT, "launch", "slurm_gpus.sh")

CONFIG, WORKDIR = "configs/fusion.py:coco", "/mnt/shared/run 1"
# One plain flag, one with a space, one full of characters a shell would act on.
FLAGS = ["--config.seeds=3", "--config.name=two words", "--config.note=it's $HOME; `id` * \"q\""]
MAIN = ["-m", "ctxfuse_jax.main", "--distributed", f"--config={CONFIG}", f"--workdir={WORKDIR}"]

FAKE = """#!{python} -I
import json, os, sys
with open({log!r}, "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
sys.exit(int(os.environ.get("FAKE_STATUS", "0")))
"""


@pytest.fixture
def launch(tmp_path):
    """Runs a launch script with fake gcloud/srun first on PATH; returns (process, recorded argvs)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    for name in ("gcloud", "srun"):
        fake = bin_dir / name
        fake.write_text(FAKE.format(python=sys.executable, log=str(log)))
        fake.chmod(0o755)

    def call(script, *args, dry=True, **env):
        full_env = {k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "REMOTE_DIR")}
        full_env.update(env, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        if dry:
            full_env["DRY_RUN"] = "1"
        proc = subprocess.run(["bash", script, *args], env=full_env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return proc, calls

    return call


def printed(proc):
    """The commands a dry run printed, each split back into its argv as a shell would."""
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return [shlex.split(line) for line in proc.stdout.splitlines()]


def remote(argv):
    """The --command of a `gcloud compute tpus tpu-vm ssh` argv, checked to target every worker."""
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-pod"]
    assert argv[6:11] == ["--zone", "us-central2-b", "--worker=all", "--command", argv[10]]
    assert len(argv) == 11
    return argv[10]


@pytest.mark.parametrize("remote_dir", [None, "my checkout"])
def test_tpu_setup_dry_run(launch, remote_dir):
    env = {} if remote_dir is None else {"REMOTE_DIR": remote_dir}
    remote_dir = remote_dir or "ctxfuse_jax"
    proc, calls = launch(TPU_POD, "setup", "my-pod", "us-central2-b", **env)
    scp, ssh = printed(proc)
    assert calls == []  # printed, not run
    assert scp == ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", ROOT, f"my-pod:{remote_dir}",
                   "--zone", "us-central2-b", "--worker=all"]
    assert shlex.split(remote(ssh)) == ["cd", remote_dir, "&&", "python3", "-m", "venv", ".venv", "&&",
                                        ".venv/bin/pip", "install", "-q", "-e", ".[tpu]"]


def test_tpu_run_dry_run(launch, tmp_path):
    proc, calls = launch(TPU_POD, "run", "my-pod", "us-central2-b", CONFIG, WORKDIR, *FLAGS)
    (ssh,) = printed(proc)
    assert calls == []
    command = remote(ssh)
    assert shlex.split(command) == ["cd", "ctxfuse_jax", "&&", ".venv/bin/python", *MAIN, *FLAGS]

    # What each worker's shell makes of --command: a fake python in the remote checkout gets every
    # flag as one argument, untouched ($HOME, backquotes and * not expanded).
    python = tmp_path / "ctxfuse_jax" / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!{sys.executable} -I\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    python.chmod(0o755)
    worker = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=True)
    assert json.loads(worker.stdout) == [*MAIN, *FLAGS]


def test_slurm_dry_run(launch):
    proc, calls = launch(SLURM, CONFIG, WORKDIR, *FLAGS)
    assert printed(proc) == [["srun", "python", *MAIN, *FLAGS]]
    assert calls == []


@pytest.mark.parametrize("script,args", [
    (TPU_POD, ["setup", "my-pod", "us-central2-b"]),
    (TPU_POD, ["run", "my-pod", "us-central2-b", CONFIG, WORKDIR, *FLAGS]),
    (TPU_POD, ["run", "my-pod", "us-central2-b", CONFIG, WORKDIR]),
    (SLURM, [CONFIG, WORKDIR, *FLAGS]),
    (SLURM, [CONFIG, WORKDIR]),
], ids=["tpu-setup", "tpu-run", "tpu-run-no-flags", "slurm", "slurm-no-flags"])
def test_dry_run_prints_what_runs(launch, script, args):
    """Without DRY_RUN the same commands really execute, argv for argv."""
    dry, _ = launch(script, *args)
    proc, calls = launch(script, *args, dry=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert calls == printed(dry)
    _, calls_off = launch(script, *args, dry=False, DRY_RUN="0")
    assert calls_off == calls


def test_failed_command_stops_the_script(launch):
    """set -e still holds through run: a failing scp leaves the venv ssh unrun."""
    proc, calls = launch(TPU_POD, "setup", "my-pod", "us-central2-b", dry=False, FAKE_STATUS="1")
    assert proc.returncode != 0
    assert [call[:5] for call in calls] == [["gcloud", "compute", "tpus", "tpu-vm", "scp"]]


@pytest.mark.parametrize("script,args,message", [
    (TPU_POD, [], "usage: tpu_pod.sh setup TPU_NAME ZONE"),
    (TPU_POD, ["setup"], "TPU_NAME missing"),
    (TPU_POD, ["setup", "my-pod"], "ZONE missing"),
    (TPU_POD, ["run", "my-pod", "us-central2-b"], "CONFIG missing"),
    (TPU_POD, ["run", "my-pod", "us-central2-b", CONFIG], "WORKDIR missing"),
    (TPU_POD, ["deploy", "my-pod", "us-central2-b"], "unknown action 'deploy'; use setup or run"),
    (SLURM, [], "CONFIG missing"),
    (SLURM, [CONFIG], "WORKDIR (a directory all nodes see) missing"),
], ids=lambda value: os.path.basename(value) if value in (TPU_POD, SLURM) else None)
@pytest.mark.parametrize("dry", [True, False], ids=["dry", "real"])
def test_bad_arguments(launch, script, args, message, dry):
    proc, calls = launch(script, *args, dry=dry)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "usage: " + os.path.basename(script) in proc.stderr
    assert proc.stdout == ""
    assert calls == []
