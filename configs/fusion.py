"""Contextual fusion (seed 000): the main job.

    python -m ctxfuse_jax.main --config=configs/fusion.py --workdir=workdirs/fusion        # embedded data, CPU
    python -m ctxfuse_jax.main --config=configs/fusion.py:smoke --workdir=/tmp/fusion_smoke  # ~1 minute
    python -m ctxfuse_jax.main --config=configs/fusion.py:coco --workdir=workdirs/coco \\
        --config.data.data_dir=~/tensorflow_datasets \\
        --config.streams.fg.weights=resnet18_imagenet.npz --config.streams.bg.weights=resnet18_places365.npz

On the embedded dataset the two streams are pretrained here (FG on object crops, BG on object-free
scenes); with `:coco` they are converted PyTorch weights (ImageNet FG, Places365 BG).
"""

import ml_collections

from ctxfuse_jax import config_defaults as defaults

PRESETS = ("default", "smoke", "coco")

# The paper cuts both streams before their last conv stage and head: ResNet18's `layer3` output
# (256 channels, 1/16 resolution) keeps object- and scene-specific features at a spatial size the
# two fusion convolutions can still work on.
CUT = "layer3"
SIGMAS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0)


def blur(sigmas, region: str) -> dict:
    return dict(kind="gaussian_blur", sigmas=sigmas, reference_size=224, region=region)


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
    preset = defaults.preset_name(preset, PRESETS, "configs/fusion.py")
    config = ml_collections.ConfigDict()
    config.experiment = "fusion"
    config.seeds = (0, 1, 2)
    # "bfloat16": mixed precision for streams, their pretraining and the heads (float32 params,
    # optimizer and BN statistics) on GPUs and TPUs; slower on CPUs without native bf16.
    config.compute_dtype = "float32"
    config.data = defaults.embedded_data("objects", image_size=64)
    config.streams = ml_collections.ConfigDict(dict(
        arch="resnet18", width=0.25, cut=CUT, conv="auto",  # conv (streams and head): auto|cpu|xla
        fg=dict(weights="", data=defaults.embedded_data("object_crops", image_size=64),
                train=defaults.train(num_epochs=6, batch_size=64, learning_rate=0.1)),
        bg=dict(weights="", data=defaults.embedded_data("scenes", image_size=64),
                train=defaults.train(num_epochs=3, batch_size=64, learning_rate=0.1)),
    ))
    # feature_cache: auto|on|off. The frozen streams' features depend on the image alone, so with no
    # augmentation but flips they are computed once per image and mirror and kept on the host for all
    # three heads and all epochs (bench/README.md: "Cached stream features"); 'auto' does so when the
    # cache fits in feature_cache_max_gib, 'on' always (an error under crop augmentation), 'off' never.
    config.heads = ml_collections.ConfigDict(dict(
        fusion_features=64, feature_cache="auto", feature_cache_max_gib=4.0,
        train=defaults.train(num_epochs=8, batch_size=64, learning_rate=0.05, crop_padding=0),
    ))
    # The evaluator's conditions by name (evaluate/conditions.py): Gaussian blur of the object only
    # and of the whole image, sigmas at the paper's 224 px scale (its Figure 5 sweep), scaled to the
    # actual image size. `seed` keys any random condition; blur has none.
    config.eval = ml_collections.ConfigDict(dict(batch_size=128, seed=0, conditions=dict(
        blur_foreground=blur(SIGMAS, "foreground"), blur_all=blur(SIGMAS, "all"))))
    # Figures 2 and 4: Grad-CAM on each classifier's last conv layer; PCA of the last BN kept in a stream.
    config.analysis = ml_collections.ConfigDict(dict(
        gradcam_images=6, joint_cam_layer="fuse_relu2", pca_feature="layer3_1/bn2", pca_classes=4,
        pca_images_per_class=25, pca_sigma=12.0))
    config.loop = defaults.loop(log_every=25, checkpoint_every=200)

    if preset == "smoke":
        config.seeds = (0,)
        tiny = dict(image_size=32, num_examples=256)
        config.data.update(tiny)
        config.streams.width = 0.125
        for role in ("fg", "bg"):
            config.streams[role].data.update(tiny)
            config.streams[role].train.update(num_epochs=1, batch_size=32)
            config.streams[role].train.optimizer.warmup_epochs = 0.0
        config.heads.fusion_features = 16
        config.heads.train.update(num_epochs=1, batch_size=32)
        config.heads.train.optimizer.warmup_epochs = 0.0
        for condition in config.eval.conditions.values():
            condition.sigmas = (0.0, 6.0, 12.0)
        config.eval.batch_size = 64
        config.loop.log_every = 2
    elif preset == "coco":
        config.data = defaults.coco_data(image_size=224)
        config.streams.width = 1.0
        config.streams.fg.weights = "resnet18_imagenet.npz"
        config.streams.bg.weights = "resnet18_places365.npz"
        config.heads.fusion_features = 256
        config.heads.train = defaults.train(num_epochs=20, batch_size=64, learning_rate=0.01, crop_padding=0)
        config.eval.batch_size = 64
    return config
