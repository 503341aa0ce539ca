"""Shared test set-up: CPU only, quiet TensorFlow, no GPU memory grabbed by tf.data; compilation counters."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Tests run tiny programs, so compiling them costs more than running them: LLVM's level-0 codegen halves the
# suite's compile time (bg_invariant's smoke run: 94 s -> 44 s). The HLO passes still run; results agree
# with numpy, PyTorch and recorded values at the tests' tolerances. Subprocesses inherit it.
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()

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


def _record_condition_steps(monkeypatch) -> list:
    """The list every condition-scoring program the evaluator builds from now on is added to, while
    `monkeypatch` holds."""
    from ctxfuse_jax.evaluate import evaluator

    steps = []
    build = evaluator.make_condition_step

    def recorded(*args, **kwargs):
        steps.append(build(*args, **kwargs))
        return steps[-1]

    monkeypatch.setattr(evaluator, "make_condition_step", recorded)
    return steps


@pytest.fixture
def condition_steps(monkeypatch):
    """Every condition-scoring program the evaluator builds during the test, to count compilations."""
    return _record_condition_steps(monkeypatch)


@pytest.fixture(scope="session")
def record_condition_steps():
    """`record(monkeypatch) -> steps`: `condition_steps` for a module-scoped fixture's own patch
    (`pytest.MonkeyPatch.context()`), e.g. one smoke run shared by a file's tests."""
    return _record_condition_steps


@pytest.fixture(scope="session")
def finished_scores():
    """`scores(models, split, batch_size) -> {classifier: {accuracy, loss, entropy}}`: the classifiers of
    a finished workdir (`experiments.finished.FinishedModels`) run by a plain jitted forward over every
    example of `split` in batches, images in [0, 1] as every stage evaluates them; the means of top-1,
    cross-entropy and prediction entropy (nats), as a stage's eval.json holds them."""
    import numpy as np

    from ctxfuse_jax.data.pipeline import eval_batches, to_unit_float
    from ctxfuse_jax.evaluate.evaluator import frozen_players
    from ctxfuse_jax.train import losses
    from ctxfuse_jax.train.forward import Forward

    def scores(models, split, batch_size: int) -> dict[str, dict[str, float]]:
        @jax.jit
        def per_example(players, images, labels):
            logits = models.logits_fn(Forward(models.specs, players), to_unit_float(images))
            return {name: {"accuracy": losses.correct(v, labels), "loss": losses.softmax_cross_entropy(v, labels),
                           "entropy": losses.entropy(v)} for name, v in logits.items()}

        players = frozen_players(models.variables)
        found = {}
        for batch in eval_batches(split, batch_size):
            for name, values in per_example(players, batch["image"], batch["label"]).items():
                for metric, value in values.items():
                    found.setdefault(name, {}).setdefault(metric, []).append(np.asarray(value)[batch["valid"]])
        return {name: {metric: float(np.mean(np.concatenate(v), dtype=np.float64)) for metric, v in metrics.items()}
                for name, metrics in found.items()}

    return scores


@pytest.fixture(scope="session")
def matches_recorded():
    """`check(scores, recorded, what)`: one classifier's `finished_scores` equal what its run recorded
    for it: top-1 to 1e-6 (counts), and the mean cross-entropy (`loss`) and entropy where recorded,
    to 1e-5 relative (float sums in another order). The means tell weights apart where near-chance
    smoke models tie on top-1. Returns the metrics compared."""

    def check(scores: dict[str, float], recorded: dict[str, float], what: str) -> list[str]:
        assert scores["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-6), what
        compared = ["accuracy"]
        for metric in ("loss", "entropy"):
            if metric in recorded:
                assert scores[metric] == pytest.approx(recorded[metric], rel=1e-5, abs=1e-6), (what, metric)
                compared.append(metric)
        return compared

    return check


@pytest.fixture
def refused_without_stage(tmp_path):
    """`check(workdir, stage, **choices)`: a copy of the finished `workdir` with `stage`'s eval.json
    removed is refused by `read_finished`, with a DataError naming the stage."""
    import shutil

    from ctxfuse_jax.errors import DataError
    from ctxfuse_jax.experiments.finished import read_finished

    def check(workdir, stage: str, **choices) -> None:
        copy = tmp_path / "unfinished"
        shutil.copytree(workdir, copy)
        os.remove(copy / stage / "eval.json")
        with pytest.raises(DataError, match=f"{stage} has no eval.json"):
            read_finished(str(copy), **choices)

    return check


@pytest.fixture(scope="session")
def classifier_names():
    """`names(models, split) -> [classifier]`: what a `FinishedModels`' logits_fn returns, traced on
    one image of `split`'s shape, nothing computed."""
    from ctxfuse_jax.evaluate.evaluator import frozen_players
    from ctxfuse_jax.train.forward import Forward

    def names(models, split) -> list[str]:
        players = frozen_players(models.variables)
        image = jax.ShapeDtypeStruct((1, *split.arrays["image"].shape[1:]), jax.numpy.float32)
        return list(jax.eval_shape(lambda p, x: models.logits_fn(Forward(models.specs, p), x), players, image))

    return names


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


@pytest.fixture(scope="session")
def snapshot():
    return _files_and_bytes
