"""Orbax checkpoints of a whole `TrainState` plus JSON metadata, restored from the workdir first."""

import os
from typing import Any, Mapping

import jax
import orbax.checkpoint as ocp

from ctxfuse_jax.train.state import TrainState


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used for this run (corrupt, or another configuration)."""


class Checkpointer:
    """One stage's checkpoints: `fingerprint` names what must match for a checkpoint to be resumed."""

    def __init__(self, directory: str, fingerprint: Mapping[str, Any], max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        self._fingerprint = _jsonable(dict(fingerprint))
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, template: TrainState) -> TrainState | None:
        """The latest saved state, shaped like `template`; None when nothing was saved yet."""
        step = self.latest_step()
        if step is None:
            return None
        where = os.path.join(self.directory, str(step))
        try:
            metadata = self._manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))["metadata"]
        except Exception as err:  # Orbax raises many types for unreadable files.
            raise CheckpointError(f"checkpoint {where} is unreadable ({err}); delete it to restart the stage") from err
        stored = metadata.get("fingerprint", {})
        diffs = sorted(k for k in set(stored) | set(self._fingerprint) if stored.get(k) != self._fingerprint.get(k))
        if diffs:
            details = "; ".join(f"{k}: saved {stored.get(k)!r}, now {self._fingerprint.get(k)!r}" for k in diffs)
            raise CheckpointError(f"checkpoint {where} was written by a different configuration ({details}). "
                                  "Use a new --workdir or restore the original settings.")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as err:
            raise CheckpointError(f"checkpoint {where} does not match the model's state ({err}); "
                                  "it is corrupt or from other code: use a new --workdir") from err
        return restored["state"]

    def save(self, state: TrainState, extra_metadata: Mapping[str, Any] | None = None) -> None:
        """Saves synchronously: a run that saves and then exits must find the files complete."""
        step = int(jax.device_get(state.step))
        if step in self._manager.all_steps():
            return
        metadata = {"fingerprint": self._fingerprint, "step": step, **_jsonable(dict(extra_metadata or {}))}
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         metadata=ocp.args.JsonSave(metadata)))
        self._manager.wait_until_finished()

    def reached_preemption(self, step: int) -> bool:
        return self._manager.reached_preemption(step)

    def close(self) -> None:
        self._manager.close()


def _jsonable(value: Any) -> Any:
    """Normalises tuples to lists etc., so a fingerprint compares equal after a JSON round trip."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
