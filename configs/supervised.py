"""Supervised training of any zoo backbone on the embedded dataset.

    python -m ctxfuse_jax.main --config=configs/supervised.py --workdir=/tmp/sup
    python -m ctxfuse_jax.main --config=configs/supervised.py:smoke --workdir=/tmp/sup_smoke
    python -m ctxfuse_jax.main --config=configs/supervised.py --config.model.name=vgg16 --workdir=/tmp/vgg
    python -m ctxfuse_jax.main --config=configs/supervised.py --config.compute_dtype=bfloat16 --workdir=/tmp/bf16
"""

import ml_collections

from ctxfuse_jax import config_defaults as defaults

PRESETS = ("default", "smoke")


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
    preset = defaults.preset_name(preset, PRESETS, "configs/supervised.py")
    config = ml_collections.ConfigDict()
    config.experiment = "supervised"
    config.seed = 0
    # "bfloat16": mixed precision (bf16 compute; float32 params, optimizer and BN statistics) for
    # GPUs and TPUs; slower on CPUs without native bf16.
    config.compute_dtype = "float32"
    config.data = defaults.embedded_data()
    config.model = ml_collections.ConfigDict(dict(name="resnet18", width=0.25, conv="auto"))  # conv: auto|cpu|xla
    config.train = defaults.train(num_epochs=8, batch_size=64)
    config.loop = defaults.loop()
    if preset == "smoke":
        config.data.image_size = 32
        config.model.width = 0.125
        config.train.num_epochs = 1
        config.train.optimizer.warmup_epochs = 0.0
        config.loop.log_every = 10
    return config
