"""Building blocks of experiment configs, so every config spells the same section the same way.

Configs hold only choices; derived numbers (steps per epoch, warm-up steps, number of classes) are
computed at run time from the data.
"""

from typing import Sequence

import ml_collections


def preset_name(preset: str | None, presets: Sequence[str], config_file: str) -> str:
    """The chosen preset (`default` when none is given); an unknown one lists the valid choices."""
    preset = preset or "default"
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r} for {config_file}; choose one of {tuple(presets)}")
    return preset


def optimizer(name: str = "sgd", learning_rate: float = 0.1, momentum: float = 0.9, nesterov: bool = True,
              weight_decay: float = 5e-4, schedule: str = "cosine",
              warmup_epochs: float = 1.0) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name=name, learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
        weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs))


def train(num_epochs: float = 10.0, batch_size: int = 64, label_smoothing: float = 0.0, flip: bool = True,
          crop_padding: int = 4, **optimizer_kwargs) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        num_epochs=num_epochs, batch_size=batch_size, label_smoothing=label_smoothing,
        augment=dict(flip=flip, crop_padding=crop_padding),
        optimizer=optimizer(**optimizer_kwargs)))


def loop(log_every: int = 50, checkpoint_every: int = 500, eval_every: int = 0) -> ml_collections.ConfigDict:
    """train=False: every stage must be finished already (rebuilding a report); none trains."""
    return ml_collections.ConfigDict(dict(log_every=log_every, checkpoint_every=checkpoint_every,
                                          eval_every=eval_every, train=True))


def embedded_data(variant: str = "objects", image_size: int = 64, num_examples: int = 0, context: float = 0.7,
                  seed: int = 0, data_dir: str = "") -> ml_collections.ConfigDict:
    """The offline embedded dataset. `num_examples=0`: the variant's default size; `data_dir=''`:
    TFDS's default directory; `context`: how strongly scenes follow the object's supercategory."""
    return ml_collections.ConfigDict(dict(name="embedded", variant=variant, image_size=image_size,
                                          num_examples=num_examples, context=context, seed=seed,
                                          data_dir=data_dir))


def coco_data(image_size: int = 224, seed: int = 0, data_dir: str = "", cache_dir: str = "") -> ml_collections.ConfigDict:
    """Pruned MS COCO 2017 from a prepared TFDS `data_dir`; the subset index is cached in `cache_dir`."""
    return ml_collections.ConfigDict(dict(name="coco", image_size=image_size, seed=seed, data_dir=data_dir,
                                          cache_dir=cache_dir))


def digits_data(name: str = "digits", image_size: int = 28, seed: int = 0, num_examples: int = 0, data_dir: str = "",
                test_fraction: float = 0.25) -> ml_collections.ConfigDict:
    """Digits on black with true masks (seed 002): `digits` (embedded, offline), `mnist` or `fashion_mnist`
    (from a prepared TFDS `data_dir`; `''`: TFDS's default). `num_examples=0`: all, else the total over both
    splits. `seed` (jitter, subset, split) and `test_fraction` (per class) apply to `digits` only; the TFDS
    datasets keep their own splits."""
    return ml_collections.ConfigDict(dict(name=name, image_size=image_size, seed=seed, num_examples=num_examples,
                                          data_dir=data_dir, test_fraction=test_fraction))


def tfds_data(name: str, image_size: int, num_examples: int = 0, data_dir: str = "",
              seed: int = 0) -> ml_collections.ConfigDict:
    """A TFDS dataset read from a prepared `data_dir` (`''`: TFDS's default), each image brought to
    `image_size` (the blur study's `imagenet2012` and `oxford_iiit_pet`: short side, then centre crop).
    `num_examples=0`: every record, else at most that many of each split (the first in file order).
    `seed` is not used by these loaders (they keep TFDS's order); every data section has one."""
    return ml_collections.ConfigDict(dict(name=name, image_size=image_size, num_examples=num_examples,
                                          data_dir=data_dir, seed=seed))
