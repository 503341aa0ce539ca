"""Applying players by name inside a loss, with the right gradient and batch-norm behaviour."""

from typing import Any, Mapping

import jax

from ctxfuse_jax.train.state import Player, PlayerSpec


class Forward:
    """Calls `players[name]` as a function: `forward('classifier', images, train=True)`.

    Players listed in `moving_params` use those (differentiated) params and, when `train=True`,
    record their new batch-norm statistics in `new_batch_stats`. Every other player is a constant
    for this loss (`stop_gradient`); frozen players always run in inference mode (running stats).
    """

    def __init__(self, specs: Mapping[str, PlayerSpec], players: Mapping[str, Player],
                 moving_params: Mapping[str, Any] | None = None, rng: jax.Array | None = None):
        self._specs = specs
        self._players = players
        self._moving_params = dict(moving_params or {})
        self._rng = rng
        self.new_batch_stats: dict[str, Any] = {}

    def __call__(self, name: str, *args: Any, train: bool = False, **kwargs: Any) -> Any:
        if name not in self._specs:
            raise KeyError(f"unknown player {name!r}; players are {sorted(self._specs)}")
        spec, player = self._specs[name], self._players[name]
        moving = name in self._moving_params
        params = self._moving_params[name] if moving else jax.lax.stop_gradient(player.params)
        train = train and not spec.frozen
        variables = {"params": params}
        if player.batch_stats:
            variables["batch_stats"] = player.batch_stats
        update_stats = train and bool(player.batch_stats)
        rngs = None
        if train and self._rng is not None:
            rngs = {"dropout": jax.random.fold_in(self._rng, sorted(self._specs).index(name))}
        out = spec.module.apply(variables, *args, train=train, rngs=rngs,
                                mutable=["batch_stats"] if update_stats else False, **kwargs)
        if not update_stats:
            return out
        out, updates = out
        if moving:
            self.new_batch_stats[name] = updates["batch_stats"]
        return out
