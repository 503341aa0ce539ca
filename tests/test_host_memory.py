"""`host_memory`: freed large blocks are reused instead of faulted in again; XLA:CPU programs
scheduled to hold fewer temporaries. Each case runs in a fresh process: both are process settings."""

import platform
import subprocess
import sys

import pytest

# Allocates and frees a 64 MiB block (above glibc's largest mmap threshold, 32 MiB) five times after a
# first round, and prints the minor page faults of those five rounds.
FAULTS_PER_CYCLE = """
import resource, sys
import numpy as np
from ctxfuse_jax import host_memory
if sys.argv[1] == "keep":
    assert host_memory.keep_freed_memory()
elif sys.argv[1] == "runtime":  # What every experiment gets through `python -m ctxfuse_jax.main` on CPU.
    from ctxfuse_jax import runtime
    runtime.setup()
def touch():
    block = np.empty(64 << 20, np.uint8)
    block[::4096] = 1
    del block
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_CYCLE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc only")
@pytest.mark.parametrize("mode", ["keep", "runtime"])
def test_freed_memory_is_reused_instead_of_faulted_in_again(mode):
    system, kept = _faults("system"), _faults(mode)
    # glibc's default maps the block afresh every cycle: at least one fault per page, or per 2 MiB
    # page where numpy asks for transparent huge pages.
    assert system >= 5 * (64 << 20) // (2 << 20)
    assert kept * 50 < system  # kept: the pages faulted in by the first cycle serve all five


# Peak temporaries (MiB) of a small ResNet18 train step as compiled for CPU.
TRAIN_STEP_TEMPORARIES = """
import sys
if sys.argv[1] == "runtime":
    from ctxfuse_jax import runtime
    runtime.setup()
import jax, jax.numpy as jnp, optax
from ctxfuse_jax.models import build_model
from ctxfuse_jax.train import losses
from ctxfuse_jax.train.state import PlayerSpec, init_variables, new_train_state
from ctxfuse_jax.train.steps import Update, make_train_step
net = build_model("resnet18", num_classes=10, width=0.125)
batch = {"image": jnp.ones((32, 32, 32, 3)), "label": jnp.zeros((32,), jnp.int32)}
specs = {"net": PlayerSpec(net, optax.sgd(0.1))}
state = new_train_state(specs, {"net": init_variables(net, jax.random.PRNGKey(0), batch["image"][:1])},
                        jax.random.PRNGKey(1))
def loss(forward, batch, rng):
    logits = forward("net", batch["image"], train=True)
    return jnp.mean(losses.softmax_cross_entropy(logits, batch["label"])), {}
step = jax.jit(make_train_step(specs, [Update(("net",), loss)])).lower(state, batch).compile()
print(step.memory_analysis().temp_size_in_bytes / 2**20)
"""


def test_runtime_compiles_cpu_programs_with_fewer_temporaries():
    def temporaries(mode):
        out = subprocess.run([sys.executable, "-c", TRAIN_STEP_TEMPORARIES, mode], capture_output=True, text=True,
                             check=True)
        return float(out.stdout)

    default, tuned = temporaries("default"), temporaries("runtime")
    assert tuned < default / 2, (default, tuned)  # 31.9 -> 6.3 MiB when measured
