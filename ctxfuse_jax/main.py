"""Entry point: `python -m ctxfuse_jax.main --config=configs/fusion.py[:preset] --workdir=DIR`.

Any config value can be overridden on the command line, e.g. `--config.train.batch_size=32`.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from ctxfuse_jax import runtime
from ctxfuse_jax.experiments.registry import get_experiment
from ctxfuse_jax.train.loop import Interrupted

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/fusion.py or configs/fusion.py:smoke.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, figures and the report.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host GPU/TPU runs).")
flags.DEFINE_bool("tune_host_memory", True, "XLA:CPU programs scheduled for low memory; on CPU, freed host "
                  "memory kept for reuse (faster steps). See ctxfuse_jax/host_memory.py.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup(FLAGS.distributed, FLAGS.tune_host_memory)
    config = FLAGS.config
    experiment = get_experiment(config.experiment)
    runtime.save_config(config, FLAGS.workdir)
    try:
        experiment(config, FLAGS.workdir)
    except Interrupted as stop:
        logging.warning("%s", stop)
        sys.exit(stop.exit_code)


if __name__ == "__main__":
    app.run(main)
