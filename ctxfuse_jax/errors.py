"""Errors that are the user's to fix, told apart from bugs.

`python -m ctxfuse_jax.main` prints a `UserError` as one line (what is wrong, which value, what to
do) and exits with status 2; any other exception is a bug and keeps its traceback. Set
`CTXFUSE_TRACEBACK=1` to see the traceback of a user error too. Each kind subclasses the builtin
error a caller would catch without knowing this module (ValueError, FileNotFoundError), so library
use stays ordinary Python. `Interrupted` is neither: training stopped by a signal, its state saved.
"""

import os
import signal
import sys

USER_ERROR_STATUS = 2
TRACEBACK_VARIABLE = "CTXFUSE_TRACEBACK"  # set: a user error shows its traceback too


class UserError(Exception):
    """Something the user gave (config, data, weights, workdir, checkpoint) cannot be used."""


class ConfigError(UserError, ValueError):
    """A config value is invalid: the message names the dotted key, the value and what is allowed."""


class DataError(UserError, FileNotFoundError):
    """A dataset is missing or unusable: the message names it and how to provide it."""


class WeightsError(UserError, ValueError):
    """A weights file is missing, malformed, hostile or does not fit the model."""


class WorkdirError(UserError):
    """The workdir holds another run (another experiment, config or inputs), or is not ours."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint exists but cannot be used for this run (corrupt, or another configuration)."""


class MissingWeightsError(WeightsError, FileNotFoundError):
    """A weights file does not exist: the message says where to download and how to convert it."""


class Interrupted(Exception):
    """Raised after SIGINT/SIGTERM once the state is saved; re-running the command resumes."""

    def __init__(self, stage: str, step: int, signum: int, checkpoint_dir: str):
        super().__init__(f"[{stage}] interrupted by {signal.Signals(signum).name} at step {step}; saved "
                         f"{checkpoint_dir}/{step}. Run the same command again to resume from there.")
        self.exit_code = 128 + signum


def exit_user_error(error: UserError) -> None:
    """What the command-line tools do with a user error: one line on stderr, status 2."""
    if os.environ.get(TRACEBACK_VARIABLE):
        raise error
    print(f"error: {error}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_STATUS)
