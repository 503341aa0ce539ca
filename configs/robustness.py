"""A robustness report for any finished classifier: every degradation family and severity, each region.

    python -m ctxfuse_jax.main --config=configs/robustness.py --config.workdirs='("/tmp/sup",)' --workdir=/tmp/rob
    python -m ctxfuse_jax.main --config=configs/robustness.py:smoke --config.workdirs='("/tmp/sup",)' \\
        --workdir=/tmp/rob_smoke
    python -m ctxfuse_jax.main --config=configs/robustness.py --workdir=/tmp/rob_two \\
        --config.workdirs='("/tmp/sup", "/tmp/vgg")' --config.baseline=vgg/classifier/vgg16

A bg_invariant workdir holding several datasets is named with one of them, `PATH:DATASET` (e.g.
`"/tmp/bg:objects"`): each dataset has its own test split. Every classifier each workdir holds (`experiments.finished`) is scored on its own test split: clean,
under every level of every corruption (ImageNet-C's severities 1-5; JPEG and JPEG 2000 round trips
run on the host), each in the whole image and, where the split has object masks, in the foreground
or the background only, and on the IN-9 background variants. `baseline` is the classifier the
corruption errors (mCE) are relative to, named as in the report (`<workdir>/<models>/<classifier>`);
'' takes the first one scored.
"""

import ml_collections

from ctxfuse_jax import config_defaults as defaults

PRESETS = ("default", "smoke")
REGIONS = ("all", "foreground", "background")
VARIANTS = ("original", "only_bg_b", "only_bg_t", "no_fg", "only_fg", "mixed_same", "mixed_rand", "mixed_next")
# Five of seed 003's compression ratios, so JPEG 2000 has five severities as ImageNet-C's families do.
JPEG2000_LEVELS = ("r10", "r25", "r50", "r100", "r200")


def _corruption(preset: str, levels: tuple[str, ...] = ()) -> dict:
    return dict(preset=preset, levels=levels)  # levels (): all of the preset's


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
    preset = defaults.preset_name(preset, PRESETS, "configs/robustness.py")
    config = ml_collections.ConfigDict()
    config.experiment = "robustness"
    config.workdirs = ()  # finished workdirs of any experiment (PATH or PATH:DATASET): name at least one
    config.baseline = ""  # the mCE reference, e.g. "sup/classifier/resnet18"; '': the first classifier scored
    # name -> a degradation preset (`degrade.presets`) and its levels, in increasing severity.
    config.corruptions = ml_collections.ConfigDict(dict(
        gaussian_blur=_corruption("imagenet_c/gaussian_blur"),
        defocus_blur=_corruption("imagenet_c/defocus_blur"),
        motion_blur=_corruption("imagenet_c/motion_blur"),
        gaussian_noise=_corruption("imagenet_c/gaussian_noise"),
        jpeg_compression=_corruption("imagenet_c/jpeg_compression"),
        camera_shake=_corruption("vasiljevic/camera_shake"),
        jpeg2000=_corruption("ghosh/jpeg2000", JPEG2000_LEVELS)))
    config.regions = REGIONS  # foreground / background: only where the test split has masks
    config.variants = VARIANTS  # IN-9 background variants, where the test split has masks and boxes; (): none
    # seed: the random degradations' draws (noise, motion angles, shake kernels) and the mixed_* donors;
    # num_images: test images scored (0: all), drawn by the seed.
    config.eval = ml_collections.ConfigDict(dict(batch_size=128, seed=0, num_images=0))
    if preset == "smoke":
        config.corruptions = ml_collections.ConfigDict(dict(
            gaussian_blur=_corruption("imagenet_c/gaussian_blur", ("1", "3")),
            jpeg_compression=_corruption("imagenet_c/jpeg_compression", ("1", "3"))))
        config.variants = ("original", "only_fg", "mixed_rand")
        config.eval.update(batch_size=64, num_images=128)
    return config
