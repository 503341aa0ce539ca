"""PyTorch state dicts -> Flax variables of the zoo's models, and the CLI that does it once.

    python -m ctxfuse_jax.weights.convert --arch resnet18 --src resnet18-f37072fd.pth \
        --dst resnet18_imagenet.npz

The zoo names modules like torchvision, so keys map mechanically: an index joins its parent
with '_' and nesting becomes '/' ('layer1.0.downsample.1' -> 'layer1_0/downsample_1'); conv
weights OIHW -> HWIO, linear weights transpose, BN weight/bias/running_mean/running_var ->
params scale/bias and batch_stats mean/var; num_batches_tracked is dropped. The one layout
change that is not per tensor: VGG's classifier.0 reads the pooled map flattened as CHW, the
Flax model flattens HWC, so its input rows are permuted.
"""

import argparse
from collections.abc import Mapping, Sequence
import os
import re

import numpy as np

from ctxfuse_jax.models import VGG, Backbone, build_model, vgg
from ctxfuse_jax.models.variables import (SEP, check_structure, flatten, module_path,
                                         variable_shapes)
from ctxfuse_jax.weights.pretrained import save_weights
from ctxfuse_jax.weights.pth import read_state_dict

_BN_STATS = {'running_mean': 'mean', 'running_var': 'var'}
_TORCH_LEAVES = {'kernel': 'weight', 'scale': 'weight', 'mean': 'running_mean',
                 'var': 'running_var'}


def flax_key(torch_key: str, ndim: int) -> str:
    """'layer1.0.bn1.running_mean' -> 'batch_stats/layer1_0/bn1/mean'."""
    module, leaf = torch_key.rsplit('.', 1)
    module = re.sub(r'\.(\d+)(?=\.|$)', r'_\1', module).replace('.', SEP)
    if leaf in _BN_STATS:
        return SEP.join(('batch_stats', module, _BN_STATS[leaf]))
    if leaf == 'weight':
        leaf = {4: 'kernel', 2: 'kernel', 1: 'scale'}.get(ndim, leaf)
    return SEP.join(('params', module, leaf))


def torch_key(key: str) -> str:
    """The inverse of `flax_key`: 'params/layer1_0/conv1/kernel' -> 'layer1.0.conv1.weight'."""
    _, *modules, leaf = key.split(SEP)
    module = '.'.join(re.sub(r'_(\d+)$', r'.\1', m) for m in modules)
    return f'{module}.{_TORCH_LEAVES.get(leaf, leaf)}'


def convert_state_dict(state_dict: Mapping[str, np.ndarray],
                       model: Backbone) -> dict[str, np.ndarray]:
    """A torch state dict as `model`'s flat Flax variables; any mismatch names the torch keys."""
    chw_inputs = {'classifier_0': vgg.POOL_SIZE} if isinstance(model, VGG) else {}
    converted = {}
    for key, value in state_dict.items():
        if key.endswith('num_batches_tracked'):
            continue
        key = flax_key(key, value.ndim)
        converted[key] = _to_flax_layout(value, chw_inputs.get(module_path(key)))
    expected = flatten(variable_shapes(model))
    check_structure(converted, expected, f'the state dict does not fit {type(model).__name__}',
                    key_name=lambda k: f'{torch_key(k)} [{k}]')
    return {k: v.astype(expected[k].dtype, copy=False) for k, v in converted.items()}


def _to_flax_layout(value: np.ndarray, chw_input: tuple[int, int] | None) -> np.ndarray:
    """OIHW conv kernels -> HWIO; (out, in) linear weights -> (in, out), CHW inputs -> HWC."""
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if value.ndim == 2:
        out, inputs = value.shape
        if chw_input and inputs % (chw_input[0] * chw_input[1]) == 0:
            value = value.reshape(out, -1, *chw_input).transpose(0, 2, 3, 1).reshape(out, inputs)
        return value.T
    return value


def main(argv: Sequence[str] | None = None) -> None:
    """Converts one checkpoint; the number of classes is read from the file's head."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', required=True, help='model name, e.g. resnet18, vgg16_bn')
    parser.add_argument('--src', required=True, help='torchvision or CSAIL .pth / .pth.tar file')
    parser.add_argument('--dst', required=True, help='.npz file to write')
    args = parser.parse_args(argv)

    try:
        state_dict = read_state_dict(args.src)
        model = build_model(args.arch)
        head = torch_key(SEP.join(('params', model.head_name, 'kernel')))
        if head in state_dict:
            model = model.clone(num_classes=state_dict[head].shape[0])
        variables = convert_state_dict(state_dict, model)
    except (OSError, ValueError) as error:
        parser.exit(1, f'error: {error}\n')
    save_weights(args.dst, variables, {'arch': args.arch, 'num_classes': model.num_classes,
                                       'source': os.path.basename(args.src)})
    print(f'wrote {args.dst}: {args.arch}, {model.num_classes} classes, {len(variables)} arrays')


if __name__ == '__main__':
    main()
