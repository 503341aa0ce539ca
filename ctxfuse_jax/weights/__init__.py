"""PyTorch checkpoints (torchvision, CSAIL Places365) -> Flax variables, without torch.

The CLI, `python -m ctxfuse_jax.weights.convert`, is not imported here: runpy would warn that
it was imported before being run.
"""

from ctxfuse_jax.weights.layout import convert_state_dict
from ctxfuse_jax.weights.pretrained import SOURCES, load_pretrained, read_weights, save_weights
from ctxfuse_jax.weights.pth import read_pth, read_state_dict
