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

from ctxfuse_jax.errors import MissingWeightsError, WeightsError
from ctxfuse_jax.models import Backbone
from ctxfuse_jax.models.variables import (SEP, check_structure, flatten, module_path, unflatten,
                                         variable_shapes)

SOURCES = {
    'resnet18': 'https://download.pytorch.org/models/resnet18-f37072fd.pth',
    'resnet34': 'https://download.pytorch.org/models/resnet34-b627a593.pth',
    'resnet50': 'https://download.pytorch.org/models/resnet50-0676ba61.pth',
    'vgg16': 'https://download.pytorch.org/models/vgg16-397923af.pth',
    'vgg16_bn': 'https://download.pytorch.org/models/vgg16_bn-6c64b313.pth',
    'alexnet': 'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth',
    'resnet18 (Places365)':
        'http://places2.csail.mit.edu/models_places365/resnet18_places365.pth.tar',
}
_META = '__meta__'  # JSON: arch, num_classes, source file
_COLLECTIONS = ('params', 'batch_stats')


def save_weights(path: str | os.PathLike, variables: Mapping[str, np.ndarray],
                 meta: Mapping[str, Any]) -> None:
    """Writes flat variables and their provenance; atomically, so a crash leaves no half file."""
    partial = f'{os.fspath(path)}.partial'
    with open(partial, 'wb') as file:
        np.savez(file, **variables, **{_META: np.array(json.dumps(meta))})
    os.replace(partial, path)


def read_weights(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The flat variables and provenance in a file written by `save_weights`.

    The file is untrusted: anything but an .npz of numeric arrays under flat variable keys
    raises WeightsError naming it (a missing one, MissingWeightsError, says how to make it).
    """
    if not os.path.exists(path):
        raise MissingWeightsError(_missing_message(path))
    not_ours = f'{path}: not a weights file written by `python -m ctxfuse_jax.weights.convert`'
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise WeightsError(f'{not_ours} (it holds one array, not an .npz archive)')
        with npz:
            variables = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, WeightsError):
            raise
        if 'pickle' in str(error):  # numpy's own message suggests loading it unsafely
            raise WeightsError(f'{not_ours}: it holds pickled Python objects, which are refused '
                               '(unpickling can run code); convert the checkpoint again') from None
        raise WeightsError(f'{not_ours} ({error})') from None
    meta = _meta(variables.pop(_META, np.array('{}')), not_ours)
    bad_keys = [key for key in variables if not _is_variable_key(key)]
    if bad_keys:
        raise WeightsError(f'{not_ours}: {_listing(bad_keys)} are not flat variable keys '
                           "('params/<module>/.../<leaf>' or 'batch_stats/...')")
    not_numbers = [f'{key} ({value.dtype})' for key, value in variables.items()
                   if value.dtype.kind not in 'biuf']
    if not_numbers:
        raise WeightsError(f'{not_ours}: {_listing(not_numbers)} are not numeric arrays')
    return variables, meta


def _is_variable_key(key: str) -> bool:
    """'collection/module/.../leaf', as `models.variables.flatten` makes them."""
    collection, *names = key.split(SEP)
    return collection in _COLLECTIONS and len(names) >= 2 and all(names)


def _meta(value: np.ndarray, not_ours: str) -> dict[str, Any]:
    """The provenance JSON object in `_META`."""
    try:
        meta = json.loads(str(value)) if value.dtype.kind in 'SU' and value.ndim == 0 else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise WeightsError(f'{not_ours}: its {_META} entry is not a JSON object')
    return meta


def _listing(items: list[str], shown: int = 5) -> str:
    more = f' (+{len(items) - shown} more)' if len(items) > shown else ''
    return ', '.join(repr(item) for item in items[:shown]) + more


def load_pretrained(path: str | os.PathLike, model: Backbone, *, drop_head: bool = False,
                    into: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """{'params', 'batch_stats'} for `model` from a converted file, checked key by key.

    The file must fit the full model; a model truncated by `stop_at` or `outputs`, or started at a
    stage (`start_at`: a branch on a shared trunk), takes the part it uses.
    `drop_head=True` ignores the classifier head on both sides (ImageNet weights for a model
    with another `num_classes`, or none); the model's own head then comes from `into`, e.g. a
    fresh `model.init`, whose entries the file's replace. Arrays stay on the host (numpy):
    the caller places them as its sharding says.
    """
    variables, meta = read_weights(path)
    expected = flatten(variable_shapes(model.clone(stop_at=None, outputs=(), start_at=None)))
    needed = flatten(variable_shapes(model))
    if drop_head:
        variables, expected = (
            {k: v for k, v in tree.items() if module_path(k) != model.head_name}
            for tree in (variables, expected))
    source = f' (converted from {meta["source"]})' if 'source' in meta else ''
    try:
        check_structure(variables, expected, f'{path}{source} does not fit {type(model).__name__}')
    except ValueError as error:  # check_structure's own kind; here it is the file's fault
        raise WeightsError(str(error)) from None
    loaded = {k: variables[k].astype(v.dtype, copy=False)
              for k, v in needed.items() if k in variables}
    if into is not None:
        loaded = {**flatten(into), **loaded}
    unloaded = sorted(needed.keys() - loaded.keys())
    if unloaded:
        raise WeightsError(f'{path}: nothing to load into {", ".join(unloaded)}; '
                         'pass into=<freshly initialised variables> to keep their initial values')
    return unflatten(loaded)


def _missing_message(path: str | os.PathLike) -> str:
    sources = '\n'.join(f'  {arch:22} {url}' for arch, url in SOURCES.items())
    return (f'pretrained weights not found: {path}\n'
            'Download the PyTorch checkpoint on a machine with internet access:\n'
            f'{sources}\n'
            'then convert it once (torch is not needed):\n'
            f'  python -m ctxfuse_jax.weights.convert --arch ARCH --src FILE --dst {path}')
