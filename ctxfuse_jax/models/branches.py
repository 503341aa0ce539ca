"""A Backbone cut after one stage into a shared trunk and a branch: seed 003's slave network.

Ghosh et al. share "the first eleven layers of VGG-16" between K branches, each branch the rest of
the network, fine-tuned for one range of degradations. `split_at(model, stage)` gives the two
halves as modules, `model.clone(stop_at=stage)` and `model.clone(start_at=stage)`, and splits the
whole model's variables between them (e.g. ImageNet weights: one copy for the trunk, one per
branch), so the trunk runs once per batch and each branch on its output.

Where to cut VGG-16: its stages end at its max-pools. Counted as weight layers (the 16 of
"VGG-16"), the paper's eleven end at conv5_1 (torchvision's `features_24`, ReLU `features_25`);
the stage boundary nearest to it is pool4, one conv earlier: 'features_23' ('features_33' with BN).
The trunk is then conv1_1..conv4_3 with four pools (10 convs), each branch conv5_1..conv5_3,
pool5, fc6, fc7 and the head.
"""

from collections.abc import Mapping, Sequence
import dataclasses
from typing import Any

from ctxfuse_jax.models.layers import Backbone
from ctxfuse_jax.models.variables import flatten, restrict_variables


@dataclasses.dataclass(frozen=True)
class Split:
    """A model as `trunk` (images -> the output of stage `stage`) and `branch` (that output -> the
    model's output): `branch.apply(vb, trunk.apply(vt, x))` is `model.apply(v, x)` when
    `vt, vb = split.variables(v)`. Variables are traced on `input_shape` images."""

    trunk: Backbone
    branch: Backbone
    stage: str
    input_shape: tuple[int, ...] = (1, 224, 224, 3)

    def variables(self, variables: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(trunk variables, branch variables) from the whole model's: each the subset its module
        uses, every leaf in exactly one of them. Raises ValueError naming the keys that do not fit,
        or that neither half uses (variables of another model)."""
        trunk = restrict_variables(variables, self.trunk, self.input_shape)
        branch = restrict_variables(variables, self.branch, self.input_shape)
        whole, trunk_keys, branch_keys = (flatten(tree).keys() for tree in (variables, trunk, branch))
        shared, unused = sorted(trunk_keys & branch_keys), sorted(whole - trunk_keys - branch_keys)
        if shared or unused:
            raise ValueError(f'variables do not split at {self.stage!r} into {type(self.trunk).__name__}\'s '
                             f'trunk and branch: used by both {shared[:8]}, by neither {unused[:8]}')
        return trunk, branch


def split_at(model: Backbone, stage: str, input_shape: tuple[int, ...] = (1, 224, 224, 3)) -> Split:
    """`model` cut after its stage `stage` (the trunk's last); see `Split`. The branch keeps the
    model's `stop_at` and `outputs`, the trunk its `start_at`. Raises the model's ValueError
    listing its stages if it has no stage `stage`, or it starts after or stops before it."""
    trunk, branch = model.clone(stop_at=stage, outputs=()), model.clone(start_at=stage)
    names = [name for name, _ in model.stages(train=False)]
    for half in (branch, trunk):  # the branch first: an unknown `stage` is one it cannot start at
        half.first_stage(names)
    return Split(trunk, branch, stage, tuple(input_shape))


def cut_at(model: Backbone, stages: Sequence[str]) -> tuple[tuple[str, Backbone], ...]:
    """`model` cut after each of `stages` (any order; the model's order is used): ((stage, piece),
    ..., ('', tail)), each piece running from the previous cut to its stage, so running them in turn
    is the whole model and every intermediate output is at hand. Where several models share the
    layers before a cut (seed 003's baselines fine-tune only the layers after one), those layers run
    once for all of them. Raises the model's ValueError for a stage it does not have."""
    names = [name for name, _ in model.stages(train=False)]
    for stage in stages:
        model.clone(start_at=stage).first_stage(names)
    ordered = sorted(set(stages), key=names.index)
    starts = [model.start_at, *ordered]
    pieces = [(stop, model.clone(start_at=start, stop_at=stop, outputs=())) for start, stop in zip(starts, ordered)]
    return (*pieces, ("", model.clone(start_at=starts[-1])))
