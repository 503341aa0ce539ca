"""Background reliance (seed 004, Xiao et al. 2021): ImageNet-9 variants, BG-gap, the backgrounds challenge.

    python -m ctxfuse_jax.main --config=configs/in9.py --workdir=workdirs/in9            # embedded data, CPU
    python -m ctxfuse_jax.main --config=configs/in9.py:smoke --workdir=/tmp/in9_smoke     # about a minute
    python -m ctxfuse_jax.main --config=configs/in9.py --workdir=workdirs/in9_fusion \\
        --config.fusion_workdir=workdirs/fusion       # also score a finished fusion run's FG, BG, Joint
    python -m ctxfuse_jax.main --config=configs/in9.py:coco --workdir=workdirs/in9_coco \\
        --config.data.data_dir=~/tensorflow_datasets  # IN-9-style variants from COCO boxes
    python -m ctxfuse_jax.main --config=configs/in9.py:release --workdir=workdirs/in9_release \\
        --config.data.root=backgrounds_challenge_data \\
        --config.pretrained.resnet50.weights=resnet50_imagenet.npz \\
        --config.pretrained.resnet50.class_map=in_to_in9.json   # the paper's released test sets

The variants are built from each image's exact mask and box (`degrade.background_variant`); the
mixed_* donors and the challenge's foregrounds and backgrounds are drawn by `eval.seed`, so every
model sees the same images.
"""

import ml_collections

from ctxfuse_jax import config_defaults as defaults

PRESETS = ("default", "smoke", "coco", "release")
VARIANTS = ("original", "only_bg_b", "only_bg_t", "no_fg", "only_fg", "mixed_same", "mixed_rand", "mixed_next")
# The paper's training sets (its Figure 3 and Table 4): backgrounds alone, foregrounds alone, ...
TRAIN_VARIANTS = ("original", "only_bg_t", "no_fg", "only_fg", "mixed_rand")


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
    preset = defaults.preset_name(preset, PRESETS, "configs/in9.py")
    config = ml_collections.ConfigDict()
    config.experiment = "in9"
    config.seeds = (0, 1, 2)
    config.compute_dtype = "float32"
    # The fusion experiment's data, so a fusion workdir's models can be scored on the same test images.
    config.data = defaults.embedded_data("objects", image_size=64)
    config.model = ml_collections.ConfigDict(dict(name="resnet18", width=0.25, conv="auto"))
    config.train = defaults.train(num_epochs=6, batch_size=64, learning_rate=0.1)
    config.train_variants = TRAIN_VARIANTS
    # The evaluator's conditions (evaluate/conditions.py): every test variant, and the challenge's
    # foregrounds pasted on each of a bank of Only-BG-T backgrounds (0: all test images).
    config.eval = ml_collections.ConfigDict(dict(batch_size=128, seed=0, conditions=dict(
        in9=dict(kind="variant", variants=VARIANTS),
        challenge=dict(kind="composite", num_foregrounds=128, num_backgrounds=72))))
    # cam_layer: the feature Grad-CAM reads (layer3: 4x4 at 64 px, where layer4 is 2x2);
    # progress_every_epochs: how often (0: never) the Original model is scored, while it trains, on
    # every variant of `progress_images` test images (0: all).
    config.analysis = ml_collections.ConfigDict(dict(
        cam_layer="layer3", gradcam_images=200, figure_images=6, figure_classes=6, figure_backgrounds=3,
        progress_every_epochs=1, progress_images=500))
    config.fusion_workdir = ""  # a finished configs/fusion.py run on the same data, or ''
    config.pretrained = ml_collections.ConfigDict()  # `release`: name -> dict(arch, width, num_classes, ...)
    config.loop = defaults.loop(log_every=25, checkpoint_every=200)

    if preset == "smoke":
        config.seeds = (0,)
        config.data.update(image_size=32, num_examples=256)
        config.model.width = 0.125
        config.train.update(num_epochs=1, batch_size=32)
        config.train.optimizer.warmup_epochs = 0.0
        config.eval.batch_size = 64
        config.eval.conditions.challenge.update(num_foregrounds=32, num_backgrounds=8)
        config.analysis.update(gradcam_images=16, figure_classes=3, progress_images=32)
        config.loop.log_every = 2
    elif preset == "coco":
        config.data = defaults.coco_data(image_size=224)
        config.model.width = 1.0
        config.train = defaults.train(num_epochs=20, batch_size=64, learning_rate=0.05)
        config.eval.batch_size = 64
    elif preset == "release":
        config.seeds = (0,)
        config.data = ml_collections.ConfigDict(dict(name="in9_folders", root="backgrounds_challenge_data",
                                                     image_size=224))
        config.train_variants = ()
        config.eval.batch_size = 32
        config.eval.conditions.challenge.update(num_foregrounds=0, num_backgrounds=0)
        config.pretrained = ml_collections.ConfigDict(dict(resnet50=dict(
            arch="resnet50", width=1.0, num_classes=1000, weights="resnet50_imagenet.npz",
            class_map="in_to_in9.json")))
    return config
