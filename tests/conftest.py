"""Shared test set-up: CPU only, quiet TensorFlow, no GPU memory grabbed by tf.data; compilation counter."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax  # noqa: E402 - after the environment above
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def compilations():
    """The XLA compilations since the fixture started, as jax's monitoring reports them."""
    events = []
    listening = [True]

    def listen(event, duration, **kwargs):
        if listening[0] and event == "/jax/core/compile/backend_compile_duration":
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    yield events
    listening[0] = False


def _files_and_bytes(directory) -> dict[str, bytes]:
    """Every file under `directory` (relative path -> bytes), to prove a refused run changed nothing."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = f.read()
    return found


@pytest.fixture
def snapshot():
    return _files_and_bytes
