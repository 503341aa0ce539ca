"""Process set-up shared by every experiment: multi-host JAX, TensorFlow kept off accelerators."""

import json
import os

import jax
import ml_collections
import tensorflow as tf


def setup(distributed: bool) -> None:
    """Call once before touching devices. tf.data only feeds the host, so TF must not grab GPU/TPU memory."""
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
    if distributed:
        jax.distributed.initialize()  # Reads the coordinator from the cluster environment (TPU pods, SLURM).


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes the resolved config (overrides applied) next to the results it produced."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    if jax.process_index() == 0:
        with open(path, "w") as f:
            json.dump(config.to_dict(), f, indent=2, sort_keys=True, default=str)
    return path
