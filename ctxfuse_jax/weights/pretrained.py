"""Converted weights on disk (an .npz of flat '/'-joined variable keys), loaded into a model.

npz rather than an Orbax checkpoint: pretrained weights are a small read-once asset, not a
resumable training state, and one file readable by numpy alone is easy to copy, inspect
(`np.load(f).files`) and check against a model before anything touches a device.
"""

from collections.abc import Mapping
import json
import os
from typing import Any
import zipfile

import numpy as np

from ctxfuse_jax.models import Backbone
from ctxfuse_jax.models.variables import (check_structure, flatten, module_path, unflatten,
                                         variable_shapes)

SOURCES = {
    'resnet18': 'https://download.pytorch.org/models/resnet18-f37072fd.pth',
    'resnet34': 'https://download.pytorch.org/models/resnet34-b627a593.pth',
    'resnet50': 'https://download.pytorch.org/models/resnet50-0676ba61.pth',
    'vgg16': 'https://download.pytorch.org/models/vgg16-397923af.pth',
    'vgg16_bn': 'https://download.pytorch.org/models/vgg16_bn-6c64b313.pth',
    'resnet18 (Places365)':
        'http://places2.csail.mit.edu/models_places365/resnet18_places365.pth.tar',
}
_META = '__meta__'  # JSON: arch, num_classes, source file


def save_weights(path: str | os.PathLike, variables: Mapping[str, np.ndarray],
                 meta: Mapping[str, Any]) -> None:
    """Writes flat variables and their provenance; atomically, so a crash leaves no half file."""
    partial = f'{os.fspath(path)}.partial'
    with open(partial, 'wb') as file:
        np.savez(file, **variables, **{_META: np.array(json.dumps(meta))})
    os.replace(partial, path)


def read_weights(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The flat variables and provenance in a file written by `save_weights`."""
    if not os.path.exists(path):
        raise FileNotFoundError(_missing_message(path))
    try:
        with np.load(path, allow_pickle=False) as npz:
            variables = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f'{path}: not a weights file written by '
                         f'ctxfuse_jax.weights.convert ({error})') from error
    meta = json.loads(str(variables.pop(_META))) if _META in variables else {}
    return variables, meta


def load_pretrained(path: str | os.PathLike, model: Backbone, *, drop_head: bool = False,
                    into: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """{'params', 'batch_stats'} for `model` from a converted file, checked key by key.

    The file must fit the full model; a model truncated by `stop_at` takes the part it uses.
    `drop_head=True` ignores the classifier head on both sides (ImageNet weights for a model
    with another `num_classes`, or none); the model's own head then comes from `into`, e.g. a
    fresh `model.init`, whose entries the file's replace. Arrays stay on the host (numpy):
    the caller places them as its sharding says.
    """
    variables, meta = read_weights(path)
    expected = flatten(variable_shapes(model.clone(stop_at=None)))
    needed = flatten(variable_shapes(model))
    if drop_head:
        variables, expected = (
            {k: v for k, v in tree.items() if module_path(k) != model.head_name}
            for tree in (variables, expected))
    source = f' (converted from {meta["source"]})' if 'source' in meta else ''
    check_structure(variables, expected, f'{path}{source} does not fit {type(model).__name__}')
    loaded = {k: variables[k].astype(v.dtype, copy=False)
              for k, v in needed.items() if k in variables}
    if into is not None:
        loaded = {**flatten(into), **loaded}
    unloaded = sorted(needed.keys() - loaded.keys())
    if unloaded:
        raise ValueError(f'{path}: nothing to load into {", ".join(unloaded)}; '
                         'pass into=<freshly initialised variables> to keep their initial values')
    return unflatten(loaded)


def _missing_message(path: str | os.PathLike) -> str:
    sources = '\n'.join(f'  {arch:22} {url}' for arch, url in SOURCES.items())
    return (f'pretrained weights not found: {path}\n'
            'Download the PyTorch checkpoint on a machine with internet access:\n'
            f'{sources}\n'
            'then convert it once (torch is not needed):\n'
            f'  python -m ctxfuse_jax.weights.convert --arch ARCH --src FILE --dst {path}')
