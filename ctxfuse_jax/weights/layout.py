"""PyTorch state dicts -> Flax variables of the zoo's models (the conversion, without its CLI).

The zoo names modules like torchvision, so keys map mechanically: an index joins its parent
with '_' and nesting becomes '/' ('layer1.0.downsample.1' -> 'layer1_0/downsample_1'); conv
weights OIHW -> HWIO, linear weights transpose, BN weight/bias/running_mean/running_var ->
params scale/bias and batch_stats mean/var; num_batches_tracked is dropped. The one layout
change that is not per tensor: a linear layer reading a flattened map (VGG's classifier.0,
AlexNet's classifier.1: the model's `flattened_inputs`) reads it as CHW in torch, HWC in Flax,
so its input rows are permuted.

Kept apart from `convert`, the CLI, so that importing the package never imports the module
`python -m ctxfuse_jax.weights.convert` runs (runpy warns when it finds it already imported).
"""

from collections.abc import Mapping
import re

import numpy as np

from ctxfuse_jax.errors import WeightsError
from ctxfuse_jax.models import Backbone
from ctxfuse_jax.models.variables import (SEP, check_structure, flatten, module_path,
                                         variable_shapes)

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
    """A torch state dict as `model`'s flat Flax variables.

    Raises WeightsError naming the torch keys that are missing, unexpected or misshapen.
    """
    chw_inputs = model.flattened_inputs()
    not_module_keys = [key for key in state_dict if '.' not in key.strip('.')]
    if not_module_keys:
        raise WeightsError(f'the state dict does not fit {type(model).__name__}: '
                           f'{not_module_keys[:8]} name no module (a torchvision key is '
                           "'<module>.<tensor>', e.g. 'layer1.0.conv1.weight')")
    converted = {}
    for key, value in state_dict.items():
        if key.endswith('num_batches_tracked'):
            continue
        key = flax_key(key, value.ndim)
        converted[key] = _to_flax_layout(value, chw_inputs.get(module_path(key)))
    expected = flatten(variable_shapes(model))
    try:
        check_structure(converted, expected, f'the state dict does not fit {type(model).__name__}',
                        key_name=lambda k: f'{torch_key(k)} [{k}]')
    except ValueError as error:  # check_structure's own kind; here it is the file's fault
        raise WeightsError(str(error)) from None
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
