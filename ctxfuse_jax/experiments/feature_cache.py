"""Features of frozen streams computed once per distinct input, reused by every head and epoch.

A frozen stream runs in inference mode (running BN statistics), so its features are a pure
function of its input. When the heads' only augmentation is a flip, every input a head can see is
a training image or its mirror: the streams then run once over each (and once over the test
images), the features stay on the host in the stream's dtype, and a head step gathers a batch of
them instead of running the streams. `select_flipped`, shared with the image augmentation, picks
image or mirror per example, so a head sees exactly the flips it would have seen on images.

Checkpoints hold only the head. The cache is not saved: a resumed run recomputes it, bit for bit
(the same program on the same data), for one forward pass over the data, where saving it would
cost disk the size of the cache (tens of GiB for COCO at 224 px) and a way to tell stale files.
"""

import functools
import math
import time
from typing import Callable, Mapping, Sequence

import dm_pix
import flax.linen as nn
import jax
import ml_collections
import numpy as np

from ctxfuse_jax.data.augment import select_flipped
from ctxfuse_jax.data.pipeline import ArraySplit, to_unit_float
from ctxfuse_jax.data.sources import Labelled
from ctxfuse_jax.evaluate.scoring import per_example_outputs
from ctxfuse_jax.experiments.classification import Inputs
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.state import Variables

GIB = 2 ** 30


def _readable(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / 2 ** 20:.1f} MiB"


def mirror_field(role: str) -> str:
    """The split field holding the features of the mirrored images for stream `role`."""
    return f"{role}_mirror"


def use_cache(heads_config: ml_collections.ConfigDict, feature: jax.ShapeDtypeStruct, num_train: int,
              num_test: int, num_streams: int) -> bool:
    """Whether the heads train from cached stream features (`feature`: one image's); prints why.

    `heads_config` is checked (`config_checks.check_heads`): a known mode, and no 'on' under crops.
    """
    mode, augment = heads_config.feature_cache, heads_config.train.augment
    views = 2 if augment.flip else 1
    size = num_streams * (num_train * views + num_test) * math.prod(feature.shape[1:]) * feature.dtype.itemsize
    budget = heads_config.feature_cache_max_gib * GIB
    described = (f"{num_streams} streams x ({num_train} train x {views} (image{', mirror' if views == 2 else ''}) "
                 f"+ {num_test} test) x {tuple(feature.shape[1:])} {feature.dtype} = {_readable(size)}")
    if mode == "off":
        cached, why = False, "heads.feature_cache='off'"
    elif augment.crop_padding:
        cached, why = False, f"crop augmentation (crop_padding={augment.crop_padding}) makes every input new"
    elif mode == "auto" and size > budget:
        cached, why = False, f"{described} exceeds heads.feature_cache_max_gib={heads_config.feature_cache_max_gib:g}"
    else:
        cached, why = True, f"{described} on the host"
    print(f"[feature_cache] {mode}: stream features {'cached' if cached else 'recomputed every step'} ({why})",
          flush=True)
    return cached


@functools.partial(jax.jit, static_argnums=(0, 3))
def _stream_views(stream: nn.Module, variables: Variables, batch: Mapping[str, jax.Array], mirrored: bool):
    """The stream's features of the batch's images, and of their mirror images when `mirrored`."""
    images = to_unit_float(batch["image"])
    views = {"image": stream.apply(variables, images)}
    if mirrored:
        views["mirror"] = stream.apply(variables, dm_pix.flip_left_right(images))
    return views


class _LazySplit:
    """Stands in for an `ArraySplit` where only its length and arrays are read (`train_batches`,
    `eval_batches`), and builds it on the first read of the arrays."""

    def __init__(self, size: int, build: Callable[[], ArraySplit]):
        self._size, self._build = size, build

    def __len__(self) -> int:
        return self._size

    @functools.cached_property
    def arrays(self) -> Mapping[str, np.ndarray]:
        return self._build().arrays


class StreamFeatures:
    """A seed's head splits as frozen-stream features, each stream's computed on first use."""

    def __init__(self, stream: nn.Module, streams: Mapping[str, Variables], data: Labelled, mirrored: bool,
                 batch_size: int, mesh: jax.sharding.Mesh):
        self._stream, self._streams, self._data = stream, streams, data
        self._mirrored, self._batch_size, self._mesh = mirrored, batch_size, mesh
        self._computed: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def splits(self, roles: Sequence[str]) -> tuple["_LazySplit", "_LazySplit"]:
        """(train, test) with `label` and, per stream role, its features (train also `mirror_field(role)`).

        Computed when a stage first reads them, so re-running a finished stage costs no stream pass.
        """

        def split(name: str, images: ArraySplit) -> ArraySplit:
            fields = {k: v for role in roles for k, v in self._features(role, name, images).items()}
            return ArraySplit({"label": images.arrays["label"], **fields})

        return (_LazySplit(len(self._data.train), lambda: split("train", self._data.train)),
                _LazySplit(len(self._data.test), lambda: split("test", self._data.test)))

    def inputs(self, roles: Sequence[str]) -> Inputs:
        """What a head takes, {role: features}, flipped per example in training as images would be."""
        mirrored = self._mirrored

        def inputs(batch, rng):
            features = {role: batch[role] for role in roles}
            if rng is None or not mirrored:
                return features
            return select_flipped(rng, features, {role: batch[mirror_field(role)] for role in roles})

        return inputs

    def _features(self, role: str, split_name: str, images: ArraySplit) -> dict[str, np.ndarray]:
        """{role: features} of the split's images, and {mirror_field(role): ...} of their mirrors in training."""
        key = (role, split_name)
        if key not in self._computed:
            start = time.monotonic()
            variables = sharding.put_replicated(self._streams[role], self._mesh)
            mirrored = self._mirrored and split_name == "train"
            views = per_example_outputs(lambda batch: _stream_views(self._stream, variables, batch, mirrored),
                                        images, self._batch_size, self._mesh)
            fields = {"image": role, "mirror": mirror_field(role)}
            self._computed[key] = {fields[view]: features for view, features in views.items()}
            size = sum(v.nbytes for v in self._computed[key].values())
            print(f"[feature_cache] {role} stream on {len(images)} {split_name} images"
                  f"{' and their mirrors' if mirrored else ''}: {_readable(size)} in "
                  f"{time.monotonic() - start:.1f} s", flush=True)
        return self._computed[key]
