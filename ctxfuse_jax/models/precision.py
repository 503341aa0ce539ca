"""Compute precision by name, so every experiment reads `config.compute_dtype` the same way.

'bfloat16' is mixed precision: layers compute in bf16 while parameters, optimizer state and
batch-norm statistics stay float32 (the models' `param_dtype`) and logits come out float32 for
the losses and metrics. Worth it on GPUs and TPUs; on CPUs without native bf16 it is slower.
"""

import jax.numpy as jnp

COMPUTE_DTYPES: dict[str, jnp.dtype] = {
    "float32": jnp.dtype(jnp.float32),
    "bfloat16": jnp.dtype(jnp.bfloat16),
}


def compute_dtype(name: str) -> jnp.dtype:
    """The dtype a config names in `compute_dtype`; an unknown name lists the valid ones."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"unknown compute_dtype {name!r}; choose one of {sorted(COMPUTE_DTYPES)}")
    return COMPUTE_DTYPES[name]
