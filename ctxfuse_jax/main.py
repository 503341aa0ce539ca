"""Entry point: `python -m ctxfuse_jax.main --config=configs/fusion.py[:preset] --workdir=DIR`.

Any config value can be overridden on the command line, e.g. `--config.train.batch_size=32`.
The whole config is checked before anything heavy is imported or any file is written; a user
error (config, data, weights, workdir, checkpoint) prints one line and exits with status 2
(`CTXFUSE_TRACEBACK=1` shows its traceback too); a bug keeps its traceback.
"""

import os
import re
import signal
import sys

from absl import app, flags
from ml_collections import config_flags

from ctxfuse_jax import runs
from ctxfuse_jax.errors import TRACEBACK_VARIABLE, USER_ERROR_STATUS, ConfigError, Interrupted, UserError, exit_user_error

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/fusion.py or configs/fusion.py:smoke.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, figures and the report.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host GPU/TPU runs).")
flags.DEFINE_string("coordinator_address", None, "With --distributed: host:port of process 0 (default: read "
                    "from the cluster, as on TPU pods and under SLURM).")
flags.DEFINE_integer("num_processes", None, "With --distributed: how many processes run (default: from the cluster).")
flags.DEFINE_integer("process_id", None, "With --distributed: this process's index, 0 to num_processes - 1 "
                     "(default: from the cluster).")
flags.DEFINE_bool("tune_host_memory", True, "XLA:CPU programs scheduled for low memory; on CPU, freed host "
                  "memory kept for reuse (faster steps). See ctxfuse_jax/host_memory.py.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS



def _exit_on_sigterm(workdir: str) -> None:
    """SIGTERM outside a training loop (which saves and stops by itself) ends the process at once,
    after saying what is kept. Exiting in the handler, not raising from it: an exception raised
    there can land in a garbage-collector callback, which swallows it, and the run goes on.
    Every file a run writes outside the loop is written atomically, so stopping anywhere is safe."""

    def handler(signum, frame):
        sys.stdout.flush()
        print(_interrupted_message(workdir, signum), file=sys.stderr, flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config, workdir = FLAGS.config, FLAGS.workdir
    _exit_on_sigterm(workdir)
    try:
        runs.run(config, workdir, _distributed_options(), FLAGS.tune_host_memory)
    except Interrupted as stop:  # Training saved its state and stopped on a signal.
        print(stop, file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except UserError as error:
        exit_user_error(error)
    except KeyboardInterrupt:
        print(_interrupted_message(workdir, signal.SIGINT), file=sys.stderr, flush=True)
        sys.exit(128 + signal.SIGINT)


def _distributed_options():
    """`runtime.Distributed` from the flags; None for a one-process run (JAX not imported yet)."""
    given = {name: FLAGS[name].value for name in ("coordinator_address", "num_processes", "process_id")
             if FLAGS[name].value is not None}
    if not FLAGS.distributed:
        if given:
            raise ConfigError(f"--{next(iter(given))} is only read with --distributed; add --distributed or drop it")
        return None
    if "num_processes" in given and given["num_processes"] < 1:
        raise ConfigError(f"--num_processes={given['num_processes']}: give 1 or more processes")
    if "process_id" in given and not 0 <= given["process_id"] < given.get("num_processes", given["process_id"] + 1):
        raise ConfigError(f"--process_id={given['process_id']}: it must be in 0 .. num_processes - 1")
    from ctxfuse_jax import runtime

    return runtime.Distributed(**given)


def _interrupted_message(workdir: str, signum: int) -> str:
    """What a signal outside training leaves behind: every finished stage, and how to go on."""
    from ctxfuse_jax.workdir import finished_stages

    done = finished_stages(workdir) if os.path.isdir(workdir) else []
    saved = f"finished stages kept: {', '.join(done)}" if done else "no stage had finished"
    return (f"interrupted by {signal.Signals(signum).name} outside training; {saved} (in {workdir}). "
            "Run the same command again to resume.")


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a bad command line or config file told in one line (status 2)."""
    try:
        remaining = FLAGS(argv)
        if FLAGS.config is not None:
            FLAGS.config.keys()  # A config file that failed to load only says so when first read.
        return remaining
    except flags.Error as error:
        message = _last_line(str(error))
    except OSError as error:
        last = str(error).strip().splitlines()[-1].strip()
        message = f"--config={FLAGS['config'].config_filename}: {last}; the configs are in configs/ (e.g. configs/fusion.py)"
    except AttributeError as error:  # ml_collections: an override names a key the config lacks.
        message = _unknown_key_message(error, argv[1:])
    if os.environ.get(TRACEBACK_VARIABLE):
        raise
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_STATUS)


def _last_line(message: str) -> str:
    """A config file's own error is the last line of the traceback ml_collections embeds."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return message.strip()
    flag = lines[0].split(": Error whilst parsing config file")[0].removeprefix("flag ")
    return f"{flag}: {lines[-1]}"


def _unknown_key_message(error: AttributeError, args: list[str]) -> str:
    """Names the override that failed; ml_collections' own message holds the key and a suggestion."""
    detail = str(error)
    missing = re.search(r"'(\w+)", detail)
    suggestion = re.search(r'Did you mean "(\w+)"', detail)
    hint = f" Did you mean {suggestion.group(1)!r}?" if suggestion else ""
    for arg in args:
        name = arg.split("=", 1)[0].removeprefix("--")
        if missing and name.startswith("config.") and missing.group(1) in name.split("."):
            return f"--{name}: the config has no key {name.removeprefix('config.')!r}.{hint}"
    return f"unknown config key in the overrides: {detail}"

if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
