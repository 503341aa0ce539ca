"""Orbax checkpoints of a whole `TrainState` plus JSON metadata, restored from the workdir first.

A step that cannot be read (an empty step directory, a file cut short by a full disk) costs only the
steps since the one before it: it is moved aside to `<stage>/unusable_checkpoints/` with a warning
and the stage resumes from the last good step. A readable step written with other settings is
refused, never skipped: resuming from an older one would mix two configurations.
"""

import os
import shutil
import sys
from typing import Any, Mapping

import jax
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util

from ctxfuse_jax.errors import CheckpointError
from ctxfuse_jax.train.state import TrainState

__all__ = ["CheckpointError", "Checkpointer"]
UNUSABLE_DIR = "unusable_checkpoints"


class Checkpointer:
    """One stage's checkpoints: `fingerprint` names what must match for a checkpoint to be resumed."""

    def __init__(self, directory: str, fingerprint: Mapping[str, Any], max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        self._fingerprint = jsonable(dict(fingerprint))
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, template: TrainState, sharding: jax.sharding.Sharding) -> TrainState | None:
        """The latest usable saved state, shaped like `template` and placed by `sharding` (whatever
        devices saved it: a preempted pod's run resumes on fewer hosts); None when there is none."""
        for step in sorted(self._manager.all_steps(), reverse=True):
            where = os.path.join(self.directory, str(step))
            try:
                metadata = self._manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
            except Exception as err:  # Orbax raises many types for unreadable files.
                self._set_aside(step, err)
                continue
            self._check_fingerprint(where, metadata["metadata"].get("fingerprint", {}))
            abstract = _placed(template, sharding)
            try:
                restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
            except Exception as err:
                self._set_aside(step, err)
                continue
            return restored["state"]
        return None

    def _check_fingerprint(self, where: str, stored: Mapping[str, Any]) -> None:
        diffs = sorted(k for k in set(stored) | set(self._fingerprint) if stored.get(k) != self._fingerprint.get(k))
        if diffs:
            details = "; ".join(f"{k}: saved {stored.get(k)!r}, now {self._fingerprint.get(k)!r}" for k in diffs)
            raise CheckpointError(f"checkpoint {where} was written by a different configuration ({details}); "
                                  "pass another --workdir or restore the original settings")

    def _set_aside(self, step: int, error: Exception) -> None:
        """Moves an unreadable step out of Orbax's sight, keeping its files for a post-mortem."""
        source = os.path.join(self.directory, str(step))
        target = os.path.join(os.path.dirname(self.directory), UNUSABLE_DIR, str(step))
        reason = " ".join(str(error).split())[:300]
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(source, target)
        print(f"warning: checkpoint {source} is unusable ({type(error).__name__}: {reason}); moved it to "
              f"{target} and resuming from the step before it", file=sys.stderr, flush=True)
        self._manager.reload()

    def save(self, state: TrainState, extra_metadata: Mapping[str, Any] | None = None) -> None:
        """Saves synchronously: a run that saves and then exits must find the files complete."""
        step = int(jax.device_get(state.step))
        if step in self._manager.all_steps():
            return
        metadata = {"fingerprint": self._fingerprint, "step": step, **jsonable(dict(extra_metadata or {}))}
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         metadata=ocp.args.JsonSave(metadata)))
        self._manager.wait_until_finished()

    def reached_preemption(self, step: int) -> bool:
        return self._manager.reached_preemption(step)

    def close(self) -> None:
        self._manager.close()


def read_players(directory: str, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Another run's trained variables: each named player's params and batch_stats at the latest step.

    Read-only (nothing is written under `directory`), for evaluating a finished workdir; check
    what comes back with `check_fits` before using it.
    """
    directory = os.path.abspath(directory)  # Orbax reads arrays only from absolute paths
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # Orbax warns that a read-only manager saves nothing
    try:
        manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True),
                                        item_handlers={"state": ocp.StandardCheckpointHandler()})
        step = manager.latest_step()
        if step is None:
            raise CheckpointError(f"{directory} holds no checkpoint; finish that run first")
        # Onto this process's first device, whatever devices saved it (a pod's, another machine's).
        here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = _placed(manager.item_metadata(step)["state"].tree, here)
        saved = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]["players"]
    finally:
        logging.set_verbosity(verbosity)
    missing = [name for name in names if name not in saved]
    if missing:
        raise CheckpointError(f"{directory}/{step} has no players {missing}; it holds {sorted(saved)}")
    return {name: jax.device_get({k: saved[name].get(k) or {} for k in ("params", "batch_stats")})
            for name in names}


def _placed(shapes: Any, sharding: jax.sharding.Sharding) -> Any:
    """What Orbax restores into: the arrays' shapes and dtypes on the devices of this run, not the
    ones recorded at save time (a run saved by two processes is read back by one)."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), shapes)


def check_fits(variables: Mapping[str, Any], shapes: Mapping[str, Any], where: str) -> None:
    """Refuses variables whose structure or shapes differ from the model's (`shapes`: its variables
    or their ShapeDtypeStructs), so nothing is ever loaded into the wrong model."""
    want, got = (traverse_util.flatten_dict(jax.tree.map(lambda x: tuple(x.shape), dict(tree)), sep="/")
                 for tree in (shapes, variables))
    diffs = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    if diffs:
        detail = ", ".join(f"{k}: saved {got.get(k)}, expected {want.get(k)}" for k in diffs[:3])
        raise CheckpointError(f"{where} does not fit the model it is read into ({detail}); was it written with "
                              "other settings?")


def jsonable(value: Any) -> Any:
    """Normalises tuples to lists etc., so a fingerprint compares equal after a JSON round trip."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
