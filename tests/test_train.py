"""The trainer on tiny models: frozen players, min-max updates, resume, NaN stop, exact eval."""

import json
import os
import shutil
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ctxfuse_jax.data.pipeline import ArraySplit
from ctxfuse_jax.evaluate.scoring import score_split
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.checkpoint import CheckpointError
from ctxfuse_jax.train.loop import Interrupted, LoopOptions, Stage, run_stage
from ctxfuse_jax.train.state import PlayerSpec, init_variables, new_train_state
from ctxfuse_jax.train.steps import Update, make_eval_step, make_train_step


class TinyNet(nn.Module):
    """Conv + BN + dense: enough to exercise params, batch stats and dropout-free training."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(self.num_classes)(jnp.mean(nn.relu(x), axis=(1, 2)))


class Scalar(nn.Module):
    """A player that is a single number, for hand-worked game dynamics."""

    init_value: float

    @nn.compact
    def __call__(self, train: bool = False):
        return self.param("value", lambda _: jnp.asarray(self.init_value))


def _toy_split(n=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 50, (n, 8, 8, 3)).astype(np.uint8) + (labels * 60)[:, None, None, None].astype(np.uint8)
    return ArraySplit({"image": images, "label": labels})


def _supervised_stage(name="clf", split=None, num_steps=12, lr=0.1, frozen_extra=True):
    split = split or _toy_split()
    net = TinyNet()
    specs = {"clf": PlayerSpec(net, optax.sgd(lr, momentum=0.9))}
    if frozen_extra:
        specs["frozen"] = PlayerSpec(TinyNet())
    sample = jnp.zeros((1, 8, 8, 3))

    def init_state():
        variables = {n: init_variables(s.module, jax.random.PRNGKey(i), sample) for i, (n, s) in enumerate(specs.items())}
        return new_train_state(specs, variables, jax.random.PRNGKey(42))

    def loss(forward, batch, rng):
        x = batch["image"].astype(jnp.float32) / 255.0
        logits = forward("clf", x, train=True)
        if frozen_extra:
            logits = logits + 0.1 * forward("frozen", x, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), {}

    def batches(start):
        from ctxfuse_jax.data.pipeline import train_batches
        return train_batches(split, 8, seed=0, start_step=start)

    return Stage(name=name, specs=specs, updates=[Update(("clf",), loss)], init_state=init_state,
                 batches=batches, num_steps=num_steps, fingerprint={"model": "tiny", "lr": lr})


def test_frozen_player_is_bit_identical_and_has_no_optimizer_state(tmp_path):
    stage = _supervised_stage()
    initial = stage.init_state()
    result = run_stage(stage, str(tmp_path), sharding.make_mesh(), LoopOptions(log_every=5, checkpoint_every=100))
    frozen = jax.device_get(result.state.players["frozen"])
    assert frozen.opt_state is None
    for a, b in zip(jax.tree.leaves(initial.players["frozen"]), jax.tree.leaves(frozen)):
        np.testing.assert_array_equal(a, b)
    moved = jax.device_get(result.state.players["clf"])
    assert not np.array_equal(moved.params["Dense_0"]["kernel"], initial.players["clf"].params["Dense_0"]["kernel"])
    # The moving player's BN statistics were updated from the batches.
    assert not np.array_equal(moved.batch_stats["BatchNorm_0"]["mean"],
                              initial.players["clf"].batch_stats["BatchNorm_0"]["mean"])


def test_min_max_updates_follow_hand_worked_dynamics():
    # f(a, b) = a * b; `a` descends f, then `b` ascends f against the *updated* a. SGD, lr 0.1.
    specs = {"a": PlayerSpec(Scalar(1.0), optax.sgd(0.1)), "b": PlayerSpec(Scalar(1.0), optax.sgd(0.1))}
    value = lambda forward: forward("a") * forward("b")
    updates = [Update(("a",), lambda fw, batch, rng: (value(fw), {}), name="min"),
               Update(("b",), lambda fw, batch, rng: (-value(fw), {}), name="max")]
    variables = {n: s.module.init(jax.random.PRNGKey(0)) for n, s in specs.items()}
    state = new_train_state(specs, variables, jax.random.PRNGKey(0))
    step = jax.jit(make_train_step(specs, updates))
    state, metrics = step(state, {})
    a1, b1 = 1.0 - 0.1 * 1.0, 1.0 + 0.1 * 0.9
    assert float(state.players["a"].params["value"]) == pytest.approx(a1)
    assert float(state.players["b"].params["value"]) == pytest.approx(b1)
    assert float(metrics["min/loss"]) == pytest.approx(1.0)
    assert float(metrics["max/loss"]) == pytest.approx(-0.9)
    state, _ = step(state, {})
    a2 = a1 - 0.1 * b1
    assert float(state.players["a"].params["value"]) == pytest.approx(a2)
    assert float(state.players["b"].params["value"]) == pytest.approx(b1 + 0.1 * a2)
    assert int(state.step) == 2


def test_moving_a_frozen_or_unknown_player_is_refused():
    specs = {"a": PlayerSpec(Scalar(1.0))}
    with pytest.raises(ValueError, match="frozen player 'a'"):
        make_train_step(specs, [Update(("a",), lambda fw, b, r: (fw("a"), {}))])
    with pytest.raises(ValueError, match="unknown player 'z'"):
        make_train_step(specs, [Update(("z",), lambda fw, b, r: (fw("a"), {}))])


class Normalised(nn.Module):
    """A batch norm with a learnable shift: its running mean shows every training call it saw."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        shift = self.param("shift", nn.initializers.zeros, (1,))
        return nn.BatchNorm(use_running_average=not train, momentum=0.5)(x + shift)


class Noisy(nn.Module):
    """Returns its dropout key's draw: shows which key each call got."""

    @nn.compact
    def __call__(self, train: bool = False):
        self.param("unused", nn.initializers.zeros, (1,))
        return jax.random.normal(self.make_rng("dropout"), ())


def test_a_player_called_twice_keeps_both_batch_norm_updates():
    specs = {"net": PlayerSpec(Normalised(), optax.sgd(0.0))}
    clean, shifted = jnp.full((4, 1), 2.0), jnp.full((4, 1), 6.0)
    loss = lambda fw, batch, rng: (jnp.sum(fw("net", clean, train=True)) + jnp.sum(fw("net", shifted, train=True)),
                                   {})
    variables = init_variables(Normalised(), jax.random.PRNGKey(0), clean)
    state = new_train_state(specs, {"net": variables}, jax.random.PRNGKey(0))
    state, _ = jax.jit(make_train_step(specs, [Update(("net",), loss)]))(state, {})
    # Momentum 0.5 from 0: after the clean batch 0.5 * 2 = 1, after the shifted one 0.5 * 1 + 0.5 * 6 = 3.5
    # (the second call alone would give 3).
    mean = state.players["net"].batch_stats["BatchNorm_0"]["mean"]
    np.testing.assert_allclose(np.asarray(mean), [3.5])


def test_every_call_and_every_key_of_a_loss_draws_its_own_numbers():
    specs = {"noise": PlayerSpec(Noisy(), optax.sgd(0.0))}
    variables = {"noise": Noisy().init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)})}

    def loss(fw, batch, rng):
        first, second = fw("noise", train=True), fw("noise", train=True)
        keys = jnp.stack([fw.key(), fw.key()])
        return 0.0 * (first + second), {"first": first, "second": second,
                                         "keys_differ": jnp.any(keys[0] != keys[1]).astype(jnp.float32)}

    state = new_train_state(specs, variables, jax.random.PRNGKey(0))
    step = jax.jit(make_train_step(specs, [Update(("noise",), loss)]))
    _, metrics = step(state, {})
    assert float(metrics["first"]) != float(metrics["second"])
    assert float(metrics["keys_differ"]) == 1.0
    _, again = step(state, {})  # the same step of a resumed run draws the same numbers
    assert float(again["first"]) == float(metrics["first"])


@pytest.mark.parametrize("names", [("", "max"), ("min", "min")])
def test_updates_of_a_game_need_distinct_names(names):
    specs = {"a": PlayerSpec(Scalar(1.0), optax.sgd(0.1)), "b": PlayerSpec(Scalar(1.0), optax.sgd(0.1))}
    updates = [Update((player,), lambda fw, b, r: (fw("a"), {}), name=name) for player, name in zip("ab", names)]
    with pytest.raises(ValueError, match="distinct, non-empty names"):
        make_train_step(specs, updates)


def test_interrupted_run_resumes_to_identical_params(tmp_path):
    mesh = sharding.make_mesh()
    options = LoopOptions(log_every=3, checkpoint_every=4)
    straight = run_stage(_supervised_stage(), str(tmp_path / "straight"), mesh, options)

    stage = _supervised_stage()
    original = stage.batches

    def batches_with_sigterm(start):
        for i, batch in enumerate(original(start)):
            if start + i == 6:  # The signal lands while step 7 is being prepared.
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    interrupted = Stage(**{**stage.__dict__, "batches": batches_with_sigterm})
    with pytest.raises(Interrupted) as stop:
        run_stage(interrupted, str(tmp_path / "resumed"), mesh, options)
    assert stop.value.exit_code == 128 + signal.SIGTERM
    saved_steps = sorted(int(d) for d in os.listdir(tmp_path / "resumed" / "clf" / "checkpoints") if d.isdigit())
    assert saved_steps[-1] == 7
    resumed = run_stage(_supervised_stage(), str(tmp_path / "resumed"), mesh, options)
    for a, b in zip(jax.tree.leaves(jax.device_get(straight.state)), jax.tree.leaves(jax.device_get(resumed.state))):
        np.testing.assert_array_equal(a, b)
    # A complete stage is skipped, not retrained.
    again = run_stage(_supervised_stage(), str(tmp_path / "resumed"), mesh, options)
    assert int(again.state.step) == 12


def _steps(directory) -> list[int]:
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def _assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))):
        np.testing.assert_array_equal(x, y)


def test_checkpoint_from_other_configuration_is_refused(tmp_path):
    mesh = sharding.make_mesh()
    run_stage(_supervised_stage(num_steps=4), str(tmp_path), mesh, LoopOptions(log_every=2, checkpoint_every=2))
    with pytest.raises(CheckpointError, match="lr: saved 0.1, now 0.5"):
        run_stage(_supervised_stage(num_steps=8, lr=0.5), str(tmp_path), mesh, LoopOptions())


@pytest.mark.parametrize("damage", ["garbage_state", "empty_step_dir"])
def test_unusable_latest_checkpoint_is_set_aside_and_the_stage_resumes_from_the_one_before(tmp_path, damage, capfd):
    mesh, options = sharding.make_mesh(), LoopOptions(log_every=2, checkpoint_every=2)
    straight = run_stage(_supervised_stage(num_steps=8), str(tmp_path / "straight"), mesh, options)
    run_stage(_supervised_stage(num_steps=4), str(tmp_path / "run"), mesh, options)
    checkpoints = tmp_path / "run" / "clf" / "checkpoints"
    if damage == "garbage_state":
        bad = checkpoints / "4"
        for root, _, files in os.walk(bad / "state"):
            for f in files:
                (bad / "state" / os.path.relpath(os.path.join(root, f), bad / "state")).write_bytes(b"garbage")
    else:
        bad = checkpoints / "99"
        bad.mkdir()
    capfd.readouterr()
    resumed = run_stage(_supervised_stage(num_steps=8), str(tmp_path / "run"), mesh, options)
    err = capfd.readouterr()
    assert f"checkpoint {bad} is unusable" in err.err
    expected_start = 2 if damage == "garbage_state" else 4
    assert f"[clf] resuming from step {expected_start} of 8" in err.out
    assert (tmp_path / "run" / "clf" / "unusable_checkpoints" / bad.name).is_dir()
    assert _steps(checkpoints) == [6, 8]
    _assert_same_state(straight.state, resumed.state)


def _evaluated_stage(**kwargs):
    stage = _supervised_stage(**kwargs)
    kernel = lambda state: float(jnp.sum(state.players["clf"].params["Dense_0"]["kernel"]))
    return Stage(**{**stage.__dict__, "evaluate": lambda state: {"kernel_sum": kernel(state)}})


def test_a_stored_evaluation_is_used_only_for_the_model_that_produced_it(tmp_path):
    mesh, options = sharding.make_mesh(), LoopOptions(log_every=4, checkpoint_every=4)
    first = run_stage(_evaluated_stage(lr=0.1), str(tmp_path / "run"), mesh, options)
    again = run_stage(_evaluated_stage(lr=0.1), str(tmp_path / "run"), mesh, options)
    assert again.metrics == first.metrics  # read back from eval.json
    # Checkpoints gone, settings changed: the stage retrains and its result is the new model's.
    shutil.rmtree(tmp_path / "run" / "clf" / "checkpoints")
    retrained = run_stage(_evaluated_stage(lr=0.5), str(tmp_path / "run"), mesh, options)
    fresh = run_stage(_evaluated_stage(lr=0.5), str(tmp_path / "fresh"), mesh, options)
    assert retrained.metrics == fresh.metrics != first.metrics
    saved = json.loads((tmp_path / "run" / "clf" / "eval.json").read_text())
    assert saved["fingerprint"]["lr"] == 0.5 and saved["metrics"] == fresh.metrics


def test_resumed_stage_logs_each_step_once(tmp_path):
    mesh, options = sharding.make_mesh(), LoopOptions(log_every=3, checkpoint_every=4)
    run_stage(_evaluated_stage(num_steps=12), str(tmp_path), mesh, options)
    # A kill after logging step 9 but before the checkpoint of step 12: the run resumes from 8.
    shutil.rmtree(tmp_path / "clf" / "checkpoints" / "12")
    (tmp_path / "clf" / "eval.json").unlink()
    run_stage(_evaluated_stage(num_steps=12), str(tmp_path), mesh, options)
    records = [json.loads(line) for line in (tmp_path / "clf" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == [3, 6, 9, 12]
    assert [r["step"] for r in records if "eval/kernel_sum" in r] == [12]


def test_nan_loss_stops_with_clear_error(tmp_path):
    split = _toy_split()
    stage = _supervised_stage(split=split, lr=1e30)
    with pytest.raises(FloatingPointError, match="non-finite"):
        run_stage(stage, str(tmp_path), sharding.make_mesh(), LoopOptions(log_every=1))


def test_eval_scores_every_example_exactly_once():
    split = _toy_split(n=21)  # Not a multiple of the batch size.
    specs = {"clf": PlayerSpec(TinyNet())}
    variables = {"clf": init_variables(TinyNet(), jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))}
    state = new_train_state(specs, variables, jax.random.PRNGKey(0))
    eval_step = jax.jit(make_eval_step(specs, lambda fw, b: {"label": b["label"], "first_pixel": b["image"][:, 0, 0, 0]}))
    result = score_split(eval_step, state, split, 8, sharding.make_mesh())
    assert result["count"] == 21
    assert result["label"] == pytest.approx(split.arrays["label"].mean())
    assert result["first_pixel"] == pytest.approx(split.arrays["image"][:, 0, 0, 0].mean())
