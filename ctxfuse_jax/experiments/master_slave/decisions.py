"""Seed 003's decisions: one class distribution per image from the slave's K branches and the master.

Shapes: `branch_probs` (K, N, C) holds the branches' p_k(y|x) (softmax outputs) on N images,
`master_probs` (N, B) the master's p(b|x) over B quality bins, and `branch_of_bin` (B,) the branch
(0..K-1) trained for each bin; several bins may share a branch. `branch_of_bin` is configuration,
not data: a list or numpy array, checked on every call (a traced array is refused).

- `switched`, Eq. 2, what the paper uses: each image takes the distribution of the branch of its
  most probable bin (the first of tied bins).
- `max_pooled`, Eq. 3, the alternative without a master: per class, the largest probability any
  branch gives it. Not renormalised: its rows sum to between 1 and K, and the paper's prediction is
  their arg-max over classes.
- `map_combined`, the MAP scheme the paper names and sets aside as too costly: the branches'
  distributions weighted by the master's belief in their bins, sum_b p(b|x) p_{branch(b)}(y|x).
All return (N, C); `switched` and `map_combined` rows are distributions. The evaluator scores
logits: `as_logits` turns any of them into logits with the same arg-max and top-5 (its softmax
renormalises `max_pooled`'s rows, which changes their entropy, not their ranking).

All elementwise (no matrix product), so every backend computes them in full float32.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def switched(branch_probs: jax.Array, master_probs: jax.Array, branch_of_bin: Sequence[int] | np.ndarray
             ) -> jax.Array:
    """Eq. 2: image n gets branch `branch_of_bin[argmax_b master_probs[n, b]]`'s distribution."""
    branches = jnp.asarray(_checked_branches(branch_probs, master_probs, branch_of_bin))
    chosen = branches[jnp.argmax(master_probs, axis=-1)]  # (N,)
    return jnp.take_along_axis(branch_probs, chosen[None, :, None], axis=0)[0]


def max_pooled(branch_probs: jax.Array) -> jax.Array:
    """Eq. 3: the elementwise maximum over branches of p_k(y|x), not renormalised (see the module)."""
    _check_branch_probs(branch_probs)
    return jnp.max(branch_probs, axis=0)


def map_combined(branch_probs: jax.Array, master_probs: jax.Array, branch_of_bin: Sequence[int] | np.ndarray
                 ) -> jax.Array:
    """The MAP combination: sum over bins b of p(b|x) * p_{branch_of_bin[b]}(y|x)."""
    branches = _checked_branches(branch_probs, master_probs, branch_of_bin)
    per_bin = branch_probs[jnp.asarray(branches)]  # (B, N, C): each bin's branch
    return jnp.sum(master_probs.T[:, :, None] * per_bin, axis=0)


def as_logits(probs: jax.Array) -> jax.Array:
    """log `probs`, floored at the smallest normal float: an underflowed 0 gives a finite logit (the
    evaluator's entropy and cross-entropy stay finite), and the ranking of classes is kept."""
    return jnp.log(jnp.maximum(probs, jnp.finfo(probs.dtype).tiny))


def percent_change(c: float, d: float, c_prime: float, d_prime: float) -> float:
    """Table 1's "% Change (d' - d) / (c - d)": the share (in %) of the base model's loss from clean
    to degraded that the method wins back, 100 * (d' - d) / (c - d).

    c, d: the base model's clean and degraded (JPEG-10) top-1 accuracy; c', d': the method's. The
    paper's header labels c, d "With Method" and c', d' "Without Method", but its numbers are the
    other way round: c, d are 70.2 / 61.2 in every VGG-16 row (the base VGG-16), and only c', d'
    change with the method (MS: d' = 66.7 gives (66.7 - 61.2) / (70.2 - 61.2) = 61.1%, printed
    60.5; all its rows agree within a point). c' is not in the formula: it is the table's check
    that the method keeps clean accuracy, taken here so that a row of the table is the argument list.
    """
    del c_prime  # in the table beside the metric, not in it
    if c == d:
        raise ValueError(f'% change is undefined: the base model is as accurate degraded as clean ({c})')
    return 100.0 * (d_prime - d) / (c - d)


def _check_branch_probs(branch_probs: jax.Array) -> None:
    if branch_probs.ndim != 3:
        raise ValueError(f'branch_probs must be (branches, images, classes); got shape {branch_probs.shape}')


def _checked_branches(branch_probs: jax.Array, master_probs: jax.Array,
                      branch_of_bin: Sequence[int] | np.ndarray) -> np.ndarray:
    """`branch_of_bin` as a numpy int array, after checking the three shapes fit together."""
    _check_branch_probs(branch_probs)
    branches, images, _ = branch_probs.shape
    if master_probs.ndim != 2 or master_probs.shape[0] != images:
        raise ValueError(f'master_probs must be ({images} images, bins) like branch_probs {branch_probs.shape}; '
                         f'got shape {master_probs.shape}')
    mapping = np.asarray(branch_of_bin)
    bins = master_probs.shape[1]
    if (mapping.shape != (bins,) or mapping.dtype.kind not in 'iu'
            or (mapping < 0).any() or (mapping >= branches).any()):
        raise ValueError(f'branch_of_bin must give each of the master\'s {bins} bins a branch in '
                         f'0..{branches - 1}; got {mapping.tolist()}')
    return mapping
