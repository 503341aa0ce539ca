"""A per-pixel classifier on concatenated activations of several layers (hypercolumns / zoom-out).

Mostajabi et al.'s zoom-out features, as seed 001 segments with them: each chosen layer of a
classifier upsampled to the output resolution, concatenated, then a small per-pixel MLP (1x1
convolutions). The trunk giving the features is a separate (frozen) player, `Backbone(outputs=...)`.
"""

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from ctxfuse_jax.models.registry import register_model


@register_model("hypercolumn_head")
class HypercolumnHead(nn.Module):
    """features {layer: (N, h, w, c)} -> per-pixel logits (N, size, size, num_classes) for a `size` px input."""

    num_classes: int
    hidden: int = 64

    @nn.compact
    def __call__(self, features: Mapping[str, jax.Array], size: int, train: bool = False) -> jax.Array:
        columns = []
        for name in sorted(features):
            x = features[name].astype(jnp.float32)
            x = jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), method="linear")
            # Each layer normalised on its own: activations of deep layers are orders larger.
            columns.append(nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"norm_{name}")(x))
        x = nn.relu(nn.Dense(self.hidden, name="hidden")(jnp.concatenate(columns, axis=-1)))
        return nn.Dense(self.num_classes, name="classes")(x)
