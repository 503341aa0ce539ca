"""Applying players by name inside a loss, with the right gradient, batch-norm and random behaviour."""

from typing import Any, Mapping

import jax

from ctxfuse_jax.train.state import Player, PlayerSpec


class Forward:
    """Calls `players[name]` as a function: `forward('classifier', images, train=True)`.

    Players listed in `moving_params` use those (differentiated) params and, when `train=True`,
    record their new batch-norm statistics in `new_batch_stats`. Every other player is a constant
    for this loss (`stop_gradient`); frozen players always run in inference mode (running stats).

    A player may be called several times in one loss (a classifier on clean and on composited
    images): each training call starts from the statistics the previous one left, so all of its
    batch-norm updates are kept, in call order, as two forward passes in PyTorch would keep them.
    Every call draws its own dropout key, and `key()` gives the loss a fresh key per use (a
    generator's noise), all derived from the step's key: a resumed run draws the same numbers.
    """

    def __init__(self, specs: Mapping[str, PlayerSpec], players: Mapping[str, Player],
                 moving_params: Mapping[str, Any] | None = None, rng: jax.Array | None = None):
        self._specs = specs
        self._players = players
        self._moving_params = dict(moving_params or {})
        self._rng = rng
        self._draws = 0
        self._batch_stats = {name: player.batch_stats for name, player in players.items()}
        self.new_batch_stats: dict[str, Any] = {}

    def key(self) -> jax.Array:
        """A key no other call of this loss gets (the n-th draw of the step's key)."""
        if self._rng is None:
            raise ValueError("this Forward has no random key: evaluation steps draw no random numbers")
        self._draws += 1
        return jax.random.fold_in(self._rng, self._draws)

    def __call__(self, name: str, *args: Any, train: bool = False, **kwargs: Any) -> Any:
        if name not in self._specs:
            raise KeyError(f"unknown player {name!r}; players are {sorted(self._specs)}")
        spec, player = self._specs[name], self._players[name]
        moving = name in self._moving_params
        params = self._moving_params[name] if moving else jax.lax.stop_gradient(player.params)
        train = train and not spec.frozen
        batch_stats = self._batch_stats[name]
        variables = {"params": params}
        if batch_stats:
            variables["batch_stats"] = batch_stats
        update_stats = train and bool(batch_stats)
        rngs = {"dropout": self.key()} if train and self._rng is not None else None
        out = spec.module.apply(variables, *args, train=train, rngs=rngs,
                                mutable=["batch_stats"] if update_stats else False, **kwargs)
        if not update_stats:
            return out
        out, updates = out
        self._batch_stats[name] = updates["batch_stats"]
        if moving:
            self.new_batch_stats[name] = updates["batch_stats"]
        return out
