"""A workdir holds one run: one experiment, one config, one set of input files.

Results in a workdir are only meaningful beside the config that produced them, so a run is refused,
before it writes a byte, when the workdir holds another experiment's run, another config (settings
that only steer logging and checkpointing aside) or other input files (compared by content).
"""

import json
import os
from typing import Any, Mapping

import ml_collections

from ctxfuse_jax.errors import WorkdirError
from ctxfuse_jax.files import write_json_atomic

CONFIG_FILE = "config.json"
INPUTS_FILE = "inputs.json"
STAGE_RESULT_FILE = "eval.json"  # A stage's final result; its presence marks the stage finished.
# Settings that change when a run logs and checkpoints, never what it computes.
NOT_RESULTS = ("loop.",)
_MAX_LISTED = 6


def workdir_and_choices(spec: str) -> tuple[str, dict[str, str]]:
    """`PATH` or `PATH:DATASET` (a ':' in the last path component, as configs take `file.py:preset`):
    the workdir and the `read_finished` choices that name one dataset of a run holding several."""
    head, tail = os.path.split(spec)
    if ":" not in tail:
        return spec, {}
    tail, _, dataset = tail.rpartition(":")
    return os.path.join(head, tail), {"dataset": dataset}


def claim(workdir: str, config: ml_collections.ConfigDict, inputs: Mapping[str, Any], write: bool = True) -> None:
    """Refuses `workdir` if it holds another run, else records this run's config and inputs there.

    `inputs` are the run's input files by content (`provenance.input_digests`). `write=False` on
    processes other than 0 of a multi-host run: they check, process 0 writes.
    """
    current = {"config": _plain(config.to_dict()), "inputs": _plain(dict(inputs))}
    stored = _stored_run(workdir)
    if stored is not None:
        _refuse_other_run(workdir, stored, current)
    if write:
        os.makedirs(workdir, exist_ok=True)
        write_json_atomic(os.path.join(workdir, CONFIG_FILE), current["config"])
        write_json_atomic(os.path.join(workdir, INPUTS_FILE), current["inputs"])


def finished_stages(workdir: str) -> list[str]:
    """The stages under `workdir` (relative paths) whose final result is saved."""
    return sorted(os.path.relpath(root, workdir) for root, _, files in os.walk(workdir) if STAGE_RESULT_FILE in files)


def _stored_run(workdir: str) -> dict[str, Any] | None:
    """The run recorded in `workdir`; None for a new or empty directory."""
    if not os.path.exists(workdir):
        return None
    if not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir={workdir} is a file, not a directory; pass a directory")
    entries = os.listdir(workdir)
    if not entries:
        return None
    config_path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise WorkdirError(f"--workdir={workdir} is not empty and holds no {CONFIG_FILE}, so it is not a "
                           "ctxfuse_jax workdir; pass a new or empty directory")
    try:
        with open(config_path) as f:
            config = json.load(f)
        inputs_path = os.path.join(workdir, INPUTS_FILE)
        inputs = {}
        if os.path.isfile(inputs_path):
            with open(inputs_path) as f:
                inputs = json.load(f)
    except (OSError, ValueError) as error:
        raise WorkdirError(f"{workdir}: cannot read the recorded run ({error}); pass another --workdir") from error
    return {"config": config, "inputs": inputs}


def _refuse_other_run(workdir: str, stored: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    before, now = stored["config"].get("experiment"), current["config"].get("experiment")
    if before != now:
        raise WorkdirError(f"--workdir={workdir} holds a {before!r} run, this is {now!r}; pass another --workdir")
    diffs = [d for d in differences(stored["config"], current["config"]) if not d[0].startswith(NOT_RESULTS)]
    diffs += [(f"input {key}", *values) for key, *values in differences(stored["inputs"], current["inputs"])]
    if diffs:
        listed = "; ".join(f"{key}: saved {old!r}, now {new!r}" for key, old, new in diffs[:_MAX_LISTED])
        more = f" and {len(diffs) - _MAX_LISTED} more" if len(diffs) > _MAX_LISTED else ""
        raise WorkdirError(f"--workdir={workdir} holds a run of another configuration ({listed}{more}); "
                           "pass another --workdir, or restore those settings to resume it")


def differences(saved: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, current value) for every leaf that differs; missing leaves are None."""
    diffs = []
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key), now.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            diffs += differences(old, new, f"{prefix}{key}.")
        elif old != new:
            diffs.append((f"{prefix}{key}", old, new))
    return diffs


def _plain(value: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists), so saved and current compare."""
    return json.loads(json.dumps(value, default=str))

