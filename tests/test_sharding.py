"""Data parallelism: the same training on 1 and on 8 (fake CPU) devices gives the same model."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from tests.test_train import TinyNet
    from ctxfuse_jax.train import sharding
    from ctxfuse_jax.train.state import PlayerSpec, init_variables, new_train_state
    from ctxfuse_jax.train.steps import Update, make_train_step

    mesh = sharding.make_mesh()
    specs = {"clf": PlayerSpec(TinyNet(), optax.sgd(0.1))}
    variables = {"clf": init_variables(TinyNet(), jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))}
    state = sharding.put_replicated(new_train_state(specs, variables, jax.random.PRNGKey(1)), mesh)

    def loss(forward, batch, rng):
        logits = forward("clf", batch["image"], train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), {}

    step = jax.jit(make_train_step(specs, [Update(("clf",), loss)]))
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = {"image": rng.normal(size=(16, 8, 8, 3)).astype(np.float32), "label": rng.integers(0, 3, 16)}
        state, _ = step(state, sharding.put_batch(batch, mesh))
    leaves = jax.tree.leaves(jax.device_get(state.players["clf"]))
    print(json.dumps({"devices": len(jax.devices()), "leaves": [np.asarray(x).tolist() for x in leaves]}))
""")


def _run(num_devices: int) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={num_devices}"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_one_and_eight_devices_train_the_same_model():
    one, eight = _run(1), _run(8)
    assert (one["devices"], eight["devices"]) == (1, 8)
    # Batch norm statistics and gradients are global on the mesh: only summation order differs.
    for a, b in zip(one["leaves"], eight["leaves"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
