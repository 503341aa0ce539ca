"""Training and test images degraded on the host at qualities drawn from *quality bins*.

Ghosh et al. 2018 (`shared/seeds/003`) train each branch of a slave network on images compressed
at a quality drawn from a range (JPEG 20 to 5, JPEG 2000 "quality factors" 10 to 2, or clean),
and a master network to predict which range an image came from. JPEG and JPEG 2000 are host
codecs (`degrade.compress`: libjpeg, OpenJPEG), so they run here, in a `tf.data` stage, and not
in the jitted step. Gaussian noise and Gaussian blur run here too, alone or before a codec, since
the combined degradations (noise then JPEG, blur then JPEG 2000) must be made before encoding.

    bins = QualityBins((Bin("clean"), Bin("jpeg", 5, 20), Bin("jpeg2000", 10, 50)), (0.5, 0.25, 0.25))
    for batch in degraded.train_batches(split, bins, global_batch_size=64, seed=0, start_step=s):
        ...  # batch["image"] uint8, batch["quality_bin"] (the master's target), batch["quality"]
    test_sets = degraded.DegradedTestSets(test_split, seed=0)
    by_quality = test_sets.sweep("jpeg", presets.GHOSH_JPEG_QUALITIES)  # {90: ArraySplit, ...}

Determinism and resume. Train batch `s` is a pure function of (seed, s), as in
`pipeline.train_batches`, whose example order it shares (the permutation `[seed, epoch]`), so every
field but the image is the same batch for batch. What each example gets (its bin, its quality, its
noise) is drawn by example index from `[seed, epoch, DRAWS]` once per epoch on the host, so it does
not depend on the batch size, the number of hosts, the parallel map's scheduling, or the step a run
resumed from. The map is parallel (`AUTOTUNE`) but `deterministic=True`, keeping the order.

JPEG 2000's quality is a compression ratio (N:1, Pillow's `quality_mode='rates'`), not a PSNR
target. A ratio is an encoder setting fixed before seeing the image, like JPEG's quality; it is
the unit of the evaluator's sweep (`presets.GHOSH_JPEG2000_RATES`), so a training bin and the test
levels it covers share one scale; and every ratio is met. The paper's "quality factors 10 to 2"
has no unit. Encoders disagree: ImageMagick 7 reads a JPEG 2000 quality q as a q dB PSNR target,
and 10 to 2 dB are below what OpenJPEG reaches (at 64 px both give the same 244-byte image,
10.4 dB); JasPer-era tools (ImageMagick 5, digiKam) keep q percent of the raw size, a ratio of
100 / q. We read it that way (`quality_bins.jpeg2000_ratio`): 10 to 2 is 10:1 to 50:1, which at 64 px spans
23.6 to 12.3 dB on a photo, where JPEG 20 to 5 spans 23.8 to 19.2 dB. Beyond about 45:1 a
64 px image is all header: higher ratios give the same image.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

import jax
import numpy as np
import tensorflow as tf

from ctxfuse_jax.data import pipeline
from ctxfuse_jax.data.quality_bins import BIN, BLUR, CLEAN, JPEG, JPEG2000, NOISE, QUALITY, Bin, QualityBins
from ctxfuse_jax.degrade import compress, kernels
from ctxfuse_jax.degrade.protocol import MAX_8BIT

DRAWS = 1  # the draws' random stream, beside the example order's (`pipeline.train_batches`)
TEST_DRAWS = 2  # the test sets' noise


def _gaussian_blur(image: tf.Tensor, sigma: tf.Tensor, support: int) -> tf.Tensor:
    """Separable Gaussian blur of one HWC float image, reflect border, as `degrade.gaussian_blur`
    (its taps: `kernels.gaussian_weights`, cut at round(4 sigma); sigma 0 leaves the image)."""
    r = support // 2
    x = tf.range(-r, r + 1, dtype=tf.float32)
    z = x / tf.maximum(sigma, 1e-12)
    taps = tf.where(tf.abs(x) <= tf.floor(kernels.TRUNCATE * sigma + 0.5), tf.exp(-0.5 * z * z), 0.0)
    taps /= tf.reduce_sum(taps)
    channels = image.shape[-1]
    padded = tf.pad(image, [[r, r], [r, r], [0, 0]], mode="SYMMETRIC")[None]
    down = tf.tile(tf.reshape(taps, (support, 1, 1, 1)), (1, 1, channels, 1))
    across = tf.reshape(down, (1, support, channels, 1))
    out = tf.nn.depthwise_conv2d(padded, down, (1, 1, 1, 1), "VALID")
    return tf.nn.depthwise_conv2d(out, across, (1, 1, 1, 1), "VALID")[0]


def _noise(image: tf.Tensor, std: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """clip(x + std N(0, 1), 0, 1), the noise drawn from the example's own seed."""
    return tf.clip_by_value(image + std * tf.random.stateless_normal(tf.shape(image), seed), 0.0, 1.0)


def _apply(b: Bin, image: tf.Tensor, quality: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Bin `b`'s degradation of one uint8 HWC image at `quality`, back to uint8."""
    x = tf.cast(image, tf.float32) / MAX_8BIT
    if b.blur_sigma:
        x = _gaussian_blur(x, tf.constant(b.blur_sigma, tf.float32), b.blur_support)
    if b.noise_std:
        x = _noise(x, b.noise_std, seed)
    if b.kind == NOISE:
        x = _noise(x, quality, seed)
    elif b.kind == BLUR:
        x = _gaussian_blur(x, quality, b.blur_support)
    elif b.kind == JPEG:
        x = compress.jpeg(x, tf.cast(quality, tf.int32))
    elif b.kind == JPEG2000:
        x = compress.jpeg2000(x, rate=quality)
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * MAX_8BIT), tf.uint8)


def _check_blur_fits(bins: Sequence[Bin], image_shape: Sequence[int]) -> None:
    reach = max(b.blur_support // 2 for b in bins)
    if reach > min(image_shape[:2]):
        raise ValueError(
            f"a Gaussian blur of these bins reaches {reach} px, more than the images' "
            f"{image_shape[0]} x {image_shape[1]}: the host blur reflects the border once"
        )


def _degrade_examples(
    split: pipeline.ArraySplit, bins: Sequence[Bin], plan: tf.data.Dataset
) -> tf.data.Dataset:
    """Each element of `plan` (`index`, its bin, quality and noise seed) as the split's example at
    `index` with its image degraded by its bin, and the bin and quality added."""
    _check_blur_fits(bins, split.arrays["image"].shape[1:])
    fields = {k: tf.constant(v) for k, v in split.arrays.items()}  # A copy of the split, held by the dataset.

    def degrade(drawn):
        example = {k: tf.gather(v, drawn["index"]) for k, v in fields.items()}
        image, quality, seed = example["image"], drawn[QUALITY], drawn["noise_seed"]
        branches = [lambda b=b: _apply(b, image, quality, seed) for b in bins]
        example["image"] = tf.switch_case(drawn[BIN], branches)
        return {**example, BIN: drawn[BIN], QUALITY: quality}

    return plan.map(degrade, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# What `_degrade_examples` reads per example: one epoch's worth of it is one `epoch_plan`.
PLAN = {
    "index": tf.TensorSpec((None,), tf.int64),
    BIN: tf.TensorSpec((None,), tf.int32),
    QUALITY: tf.TensorSpec((None,), tf.float32),
    "noise_seed": tf.TensorSpec((None, 2), tf.int64),
}


def train_dataset(
    split: pipeline.ArraySplit, bins: QualityBins, global_batch_size: int, seed: int, start_step: int = 0
) -> tf.data.Dataset:
    """This host's part of train batch `start_step`, `start_step + 1`, ... (endless), each
    example degraded by a bin drawn for it; uint8 images, `quality_bin` and `quality` added."""
    per_epoch = pipeline.steps_per_epoch(len(split), global_batch_size)
    local = global_batch_size // jax.process_count()
    offset = jax.process_index() * local
    first_epoch, first_step = divmod(start_step, per_epoch)

    def epoch_plan(epoch: np.int64) -> tuple[np.ndarray, ...]:
        # The order of `pipeline.train_batches`; this host's slice of every global batch.
        order = np.random.default_rng([seed, int(epoch)]).permutation(len(split))
        index = order[: per_epoch * global_batch_size].reshape(per_epoch, -1)[:, offset : offset + local]
        drawn = bins.draw(len(split), np.random.default_rng([seed, int(epoch), DRAWS]))
        index = index.reshape(-1)
        return index.astype(np.int64), drawn[BIN][index], drawn[QUALITY][index], drawn["noise_seed"][index]

    def epoch_examples(epoch):
        columns = tf.numpy_function(epoch_plan, [epoch], [s.dtype for s in PLAN.values()], stateful=False)
        return tf.data.Dataset.from_tensor_slices(
            {k: tf.ensure_shape(c, s.shape) for (k, s), c in zip(PLAN.items(), columns, strict=True)}
        )

    plan = tf.data.Dataset.range(first_epoch, sys.maxsize).flat_map(epoch_examples).skip(first_step * local)
    examples = _degrade_examples(split, bins.bins, plan)
    return examples.batch(
        local, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    ).prefetch(tf.data.AUTOTUNE)


def train_batches(
    split: pipeline.ArraySplit, bins: QualityBins, global_batch_size: int, seed: int, start_step: int = 0
) -> Iterator[dict[str, np.ndarray]]:
    """`train_dataset` as numpy batches: what `pipeline.train_batches` yields, images degraded."""
    return train_dataset(split, bins, global_batch_size, seed, start_step).as_numpy_iterator()


def degrade_split(split: pipeline.ArraySplit, condition: Bin, seed: int) -> pipeline.ArraySplit:
    """`split` with every image degraded by `condition` at its one quality (low == high); the noise
    of image i comes from (seed, i), the same at every quality. Other fields are shared, not copied."""
    if condition.low != condition.high:
        raise ValueError(f"{condition}: a test condition has one quality (low == high)")
    if condition.kind == CLEAN and not condition.blur_sigma and not condition.noise_std:
        return split
    rng = np.random.default_rng([seed, TEST_DRAWS])
    plan = {
        "index": np.arange(len(split), dtype=np.int64),
        BIN: np.zeros(len(split), np.int32),
        QUALITY: np.full(len(split), condition.low, np.float32),
        "noise_seed": rng.integers(0, 2**31 - 1, (len(split), 2)),
    }
    examples = _degrade_examples(
        pipeline.ArraySplit({"image": split.arrays["image"]}),
        (condition,),
        tf.data.Dataset.from_tensor_slices(plan),
    )
    images = examples.map(lambda ex: ex["image"]).batch(256).prefetch(tf.data.AUTOTUNE)
    return pipeline.ArraySplit({**split.arrays, "image": np.concatenate(list(images.as_numpy_iterator()))})


class DegradedTestSets:
    """One test split degraded at fixed conditions, each computed once on the host and kept in
    memory as uint8 (the evaluator scores many models on the same images). Each condition held
    costs the split's image bytes (N x H x W x C); `clear` lets them go."""

    def __init__(self, split: pipeline.ArraySplit, seed: int = 0):
        self.split, self.seed = split, seed
        self._cache: dict[Bin, pipeline.ArraySplit] = {}

    def at(
        self, kind: str, quality: float = 0.0, *, blur_sigma: float = 0.0, noise_std: float = 0.0
    ) -> pipeline.ArraySplit:
        """The split degraded by `kind` at `quality`, after a fixed blur / noise if given."""
        condition = Bin(kind, quality, quality, blur_sigma=blur_sigma, noise_std=noise_std)
        if condition not in self._cache:
            self._cache[condition] = degrade_split(self.split, condition, self.seed)
        return self._cache[condition]

    def sweep(
        self, kind: str, qualities: Sequence[float], *, blur_sigma: float = 0.0, noise_std: float = 0.0
    ) -> dict[float, pipeline.ArraySplit]:
        """{quality: split degraded at it} for every quality of a sweep, in the sweep's order."""
        return {q: self.at(kind, q, blur_sigma=blur_sigma, noise_std=noise_std) for q in qualities}

    def clear(self) -> None:
        self._cache.clear()
