"""`python -m ctxfuse_jax.report --workdir=DIR`: rebuilds a finished run's report, figures and tables.

Nothing trains. The run's own `config.json` is read from the workdir and run again by the same
code as the first time, with `loop.train=False`, so every stage is read back from its last
checkpoint, and a stage that is not finished is refused (status 2) instead of trained. Use it after
an upgrade changed how reports are written, or when a report or figure was deleted. Finished
models are scored again where the experiment scores them, so this takes as long as that scoring;
`eval.json` of each finished stage is reused. The rebuilt results' fingerprint is of the config
with `loop.train=False`, as the rewritten `config.json` records it (loop settings never change a
result, so the next ordinary run of the same command accepts the workdir).
"""

import sys

import ml_collections
from absl import app, flags

from ctxfuse_jax import runs
from ctxfuse_jax.errors import UserError, exit_user_error

flags.DEFINE_string("workdir", None, "A finished run's directory (holding config.json).")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def recorded_config(workdir: str) -> ml_collections.ConfigDict:
    """The config the run in `workdir` was made with, as its config file gave it (JSON lists back
    to tuples), set to train nothing."""
    from ctxfuse_jax.experiments.finished import workdir_config

    config = ml_collections.ConfigDict(_tuples(workdir_config(workdir).to_dict()))
    config.loop.train = False
    return config


def _tuples(value):
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        runs.run(recorded_config(FLAGS.workdir), FLAGS.workdir)
    except UserError as error:
        exit_user_error(error)
    print(f"rebuilt the outputs of {FLAGS.workdir}; nothing was trained", file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
