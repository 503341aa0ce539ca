"""Building blocks of experiment configs, so every config spells the same section the same way.

Configs hold only choices; derived numbers (steps per epoch, warm-up steps, number of classes) are
computed at run time from the data.
"""

import ml_collections


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
    return ml_collections.ConfigDict(dict(log_every=log_every, checkpoint_every=checkpoint_every,
                                          eval_every=eval_every))


def embedded_data(variant: str = "objects", image_size: int = 64, data_dir: str = "") -> ml_collections.ConfigDict:
    """The offline embedded dataset; `data_dir=''` means the default cache directory."""
    return ml_collections.ConfigDict(dict(name="embedded", variant=variant, image_size=image_size,
                                          data_dir=data_dir))
