"""Optimizers and schedules from config: closed-form learning rates and clear errors."""

import math
import re

import pytest

from ctxfuse_jax import config_defaults
from ctxfuse_jax.train.optim import learning_rate_schedule, make_optimizer


def test_warmup_then_cosine_matches_closed_form():
    config = config_defaults.optimizer(learning_rate=0.4, schedule="cosine", warmup_epochs=1.0)
    lr = learning_rate_schedule(config, total_steps=110, warmup_steps=10)
    assert float(lr(0)) == pytest.approx(0.0)
    assert float(lr(5)) == pytest.approx(0.2)
    for step in (10, 35, 60, 109):
        assert float(lr(step)) == pytest.approx(0.2 * (1 + math.cos(math.pi * (step - 10) / 100)), abs=1e-6)


def test_constant_schedule_without_warmup():
    config = config_defaults.optimizer(learning_rate=0.05, schedule="constant", warmup_epochs=0.0)
    lr = learning_rate_schedule(config, total_steps=20, warmup_steps=0)
    assert [float(lr(s)) for s in (0, 7, 19)] == pytest.approx([0.05] * 3)


@pytest.mark.parametrize("changes, message", [
    (dict(name="lamb"), "unknown optimizer 'lamb'; choose one of ['adam', 'adamw', 'sgd']"),
    (dict(schedule="linear"), "unknown schedule 'linear'; choose one of ('constant', 'cosine', 'step')"),
    (dict(learning_rate=0.0), "learning_rate must be positive"),
    (dict(weight_decay=-1.0), "weight_decay must be >= 0"),
    (dict(warmup_epochs=5.0), "warm-up of 50 steps must be shorter than the 40 training steps"),
])
def test_bad_optimizer_settings_are_refused(changes, message):
    config = config_defaults.optimizer(**changes)
    with pytest.raises(ValueError, match=re.escape(message)):
        make_optimizer(config, total_steps=40, steps_per_epoch=10)


def test_step_schedule_drops_tenfold_after_two_thirds():
    """Seed 001's fine-tuning: 2 epochs at the rate, 1 at a tenth (30 steps: the step is at 20)."""
    config = config_defaults.optimizer(learning_rate=1e-3, schedule="step", warmup_epochs=0.0)
    schedule = learning_rate_schedule(config, total_steps=30, warmup_steps=0)
    assert [float(schedule(s)) for s in (0, 19)] == pytest.approx([1e-3, 1e-3])
    assert [float(schedule(s)) for s in (20, 29)] == pytest.approx([1e-4, 1e-4])
