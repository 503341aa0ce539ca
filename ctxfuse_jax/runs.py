"""An experiment run in-process, exactly as the command line runs it: for notebooks and scripts.

    from ctxfuse_jax import runs
    config = runs.load_config("configs/fusion.py:smoke")
    results = runs.run(config, "/content/fusion_smoke")

A user error raises (`errors.UserError`, one readable line) instead of exiting, and a run that
finds its stages finished in the workdir reads them back instead of training again.
"""

import importlib.util
import os

import ml_collections

from ctxfuse_jax import config_checks


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config `--config=spec` gives the command line: a config file, then `:preset` optionally."""
    path, _, preset = spec.partition(":")
    if not os.path.isfile(path):
        raise config_checks.ConfigError(f"{path}: no such config file; the configs are in configs/ "
                                        "(e.g. configs/fusion.py)")
    module_spec = importlib.util.spec_from_file_location(f"ctxfuse_config_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(preset or None)


def run(config: ml_collections.ConfigDict, workdir: str, distributed=None, tune_host_memory: bool = True) -> dict:
    """Checks `config`, the devices and the workdir (refusing before anything is written), then runs
    the experiment; returns its results. `distributed`: a `runtime.Distributed` for multi-process runs.
    Devices, inputs and the workdir are checked before TensorFlow is imported: a refused run is quick."""
    import jax

    from ctxfuse_jax import provenance, runtime
    from ctxfuse_jax import workdir as workdirs
    from ctxfuse_jax.experiments.registry import get_experiment

    config_checks.check_config(config)
    runtime.setup_jax(distributed, tune_host_memory)
    config_checks.check_devices(config, jax.device_count())
    workdirs.claim(workdir, config, provenance.input_digests(config), write=jax.process_index() == 0)
    runtime.setup_input_pipeline()
    return get_experiment(config.experiment)(config, workdir)
