"""Shared test set-up: CPU only, quiet TensorFlow, no GPU memory grabbed by tf.data; compilation counters."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax  # noqa: E402 - after the environment above
import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory, worker_id):
    """The on-disk compilation cache that runs have (`runtime.use_compilation_cache`), fresh for each
    session and shared by its workers: the stages of a smoke run, and tests building the same model,
    reuse one program instead of compiling it again."""
    from ctxfuse_jax import runtime

    session_dir = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # each xdist worker has its own basetemp inside the session's
        session_dir = session_dir.parent
    os.environ[runtime.COMPILATION_CACHE_ENV] = str(session_dir / "xla_cache")
    runtime.use_compilation_cache()


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


@pytest.fixture(scope="session")
def random_variables():
    """`draw(model, seed=0, input_shape=(1, 224, 224, 3))`: variables of `model`'s shapes drawn with numpy
    (`model.init` on XLA:CPU spends seconds compiling its random number generation), small enough that
    activations stay tame; batch-norm variances in [0.5, 2], so running statistics matter."""
    import numpy as np

    from ctxfuse_jax.models import variable_shapes

    def draw(model, seed: int = 0, input_shape: tuple[int, ...] = (1, 224, 224, 3)) -> dict:
        rng = np.random.default_rng(seed)

        def leaf(path, shape):
            if path[-1].key == "var":
                return rng.uniform(0.5, 2.0, shape.shape).astype(np.float32)
            return (0.1 * rng.normal(size=shape.shape)).astype(np.float32)

        return jax.tree_util.tree_map_with_path(leaf, variable_shapes(model, input_shape))

    return draw


@pytest.fixture
def condition_steps(monkeypatch):
    """Every condition-scoring program the evaluator builds during the test, to count compilations."""
    from ctxfuse_jax.evaluate import evaluator

    steps = []
    build = evaluator.make_condition_step

    def recorded(*args, **kwargs):
        steps.append(build(*args, **kwargs))
        return steps[-1]

    monkeypatch.setattr(evaluator, "make_condition_step", recorded)
    return steps


@pytest.fixture
def torch_parity(tmp_path):
    """`check(net, model, checkpoint, size=32, tolerance=1e-4)`: the eval-mode torch `net`'s
    `checkpoint` (a .pth), converted and loaded by the zoo's own code, makes `model` give `net`'s
    logits on random images, within `tolerance` of the largest (or of 1, if they are smaller)."""
    torch = pytest.importorskip("torch")
    import numpy as np

    from ctxfuse_jax.models.layers import IMAGENET_MEAN, IMAGENET_STD
    from ctxfuse_jax.weights import convert_state_dict, load_pretrained, read_state_dict, save_weights

    def check(net, model, checkpoint, size: int = 32, tolerance: float = 1e-4):
        weights = tmp_path / "converted.npz"
        save_weights(weights, convert_state_dict(read_state_dict(checkpoint), model), {})
        images = np.random.default_rng(0).uniform(size=(2, size, size, 3)).astype(np.float32)
        logits = model.apply(load_pretrained(weights, model), images)
        standardised = (images - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
        with torch.no_grad():
            expected = net(torch.from_numpy(standardised.transpose(0, 3, 1, 2))).numpy()
        scale = np.abs(expected).max()
        assert scale > 100 * tolerance  # the comparison means something
        np.testing.assert_allclose(logits, expected, atol=tolerance * max(1.0, scale), rtol=0)

    return check


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
