"""Optimizers and learning-rate schedules by name, from a config; derived step counts come in at run time."""

from typing import Callable

import ml_collections
import optax

SCHEDULES = ("constant", "cosine", "step")
# "step": the rate for the first two thirds of the steps, a tenth of it for the last third (seed 001:
# "two epochs at a learning rate of 1e-3 followed by one epoch at 1e-4").
STEP_AT, STEP_FACTOR = 2 / 3, 0.1


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int,
                           warmup_steps: int) -> optax.Schedule:
    """Linear warm-up to `learning_rate`, then constant, cosine decay to zero at `total_steps`, or a
    tenfold step down after two thirds of the steps."""
    if config.learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {config.learning_rate}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warm-up of {warmup_steps} steps must be shorter than the {total_steps} training steps")
    peak = config.learning_rate
    if config.schedule == "constant":
        decay = optax.constant_schedule(peak)
    elif config.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, total_steps - warmup_steps)
    elif config.schedule == "step":
        decay = optax.piecewise_constant_schedule(peak, {int(STEP_AT * (total_steps - warmup_steps)): STEP_FACTOR})
    else:
        raise ValueError(f"unknown schedule {config.schedule!r}; choose one of {SCHEDULES}")
    if not warmup_steps:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup_steps), decay], [warmup_steps])


def _sgd(config, lr):
    return optax.chain(optax.add_decayed_weights(config.weight_decay),
                       optax.sgd(lr, momentum=config.momentum or None, nesterov=config.nesterov))


def _adam(config, lr):
    return optax.chain(optax.add_decayed_weights(config.weight_decay), optax.adam(lr))


def _adamw(config, lr):
    return optax.adamw(lr, weight_decay=config.weight_decay)


OPTIMIZERS: dict[str, Callable[[ml_collections.ConfigDict, optax.Schedule], optax.GradientTransformation]] = {
    "sgd": _sgd,  # weight decay as L2 on the gradient, as torch.optim.SGD does.
    "adam": _adam,
    "adamw": _adamw,
}


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int,
                   steps_per_epoch: int) -> optax.GradientTransformation:
    """Builds `config.name` with its schedule; `warmup_epochs` becomes steps here, not in the config."""
    if config.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config.name!r}; choose one of {sorted(OPTIMIZERS)}")
    if config.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {config.weight_decay}")
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    schedule = learning_rate_schedule(config, total_steps, warmup_steps)
    return OPTIMIZERS[config.name](config, schedule)
