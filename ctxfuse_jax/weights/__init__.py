"""PyTorch checkpoints (torchvision, CSAIL Places365) -> Flax variables, without torch."""

from ctxfuse_jax.weights.convert import convert_state_dict
from ctxfuse_jax.weights.pretrained import SOURCES, load_pretrained, read_weights, save_weights
from ctxfuse_jax.weights.pth import read_pth, read_state_dict
