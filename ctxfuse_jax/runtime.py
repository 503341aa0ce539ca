"""Process set-up shared by every experiment: multi-host JAX, TensorFlow kept off accelerators,
the host allocator tuned for XLA:CPU."""

import json
import os

import jax
import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from ctxfuse_jax import host_memory


def setup(distributed: bool, tune_host_memory: bool = True) -> None:
    """Call once before touching devices. tf.data only feeds the host, so TF must not grab GPU/TPU memory.

    Library INFO logs (Orbax, TFDS) are silenced so the progress lines stay readable. With
    `tune_host_memory`, XLA:CPU schedules programs to use less memory and, when JAX computes on the
    CPU, freed host memory is kept for reuse (`host_memory`: ~1.3x faster steps, lower peak).
    """
    if tune_host_memory:
        host_memory.use_memory_saving_schedule()  # Before anything starts XLA.
    logging.set_verbosity(logging.WARNING)
    tfds.disable_progress_bar()
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
    if distributed:
        jax.distributed.initialize()  # Reads the coordinator from the cluster environment (TPU pods, SLURM).
    if tune_host_memory and jax.default_backend() == "cpu":
        host_memory.keep_freed_memory()


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes the resolved config (overrides applied) next to the results it produced."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    if jax.process_index() == 0:
        with open(path, "w") as f:
            json.dump(config.to_dict(), f, indent=2, sort_keys=True, default=str)
    return path
