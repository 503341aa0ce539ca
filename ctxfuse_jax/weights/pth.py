"""Reads PyTorch `.pth` files into numpy without torch, unpickling only tensors and containers.

Both on-disk formats of `torch.save` are read:
- zip (torch >= 1.6): `<dir>/data.pkl` plus one `<dir>/data/<key>` record per storage;
- legacy (`_use_new_zipfile_serialization=False`, e.g. CSAIL's Places365 models, pickled by
  Python 2 and so read with encoding='latin1'): magic, protocol and system-info pickles, the
  object pickle, the list of storage keys, then each storage as an int64 count and raw bytes.
Tensors in the pickle refer to storages by key; they are rebuilt (offset, shape, strides) once
the storages are read. Any global outside the allow-list (classes, functions) is refused, so a
file cannot run code.
"""

import collections
from collections.abc import Callable
import dataclasses
import functools
import os
import pickle
import sys
from typing import Any, BinaryIO
import zipfile

import ml_dtypes
import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'HalfStorage': np.float16, 'DoubleStorage': np.float64,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands for a global such as torch.FloatStorage: all we need of it is its dtype."""

    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _Storage:
    """Elements [start, start + numel) of the storage `key`, whose bytes lie outside the pickle."""

    key: str
    dtype: np.dtype
    numel: int
    start: int = 0


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """A strided view of a storage, made into an array once the storage's bytes are read."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def to_array(self, data: np.ndarray) -> np.ndarray:
        data = data[self.storage.start:self.storage.start + self.storage.numel]
        extent = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        if all(self.shape) and self.offset + extent > data.size:
            raise ValueError(f'a tensor {self.shape} needs {self.offset + extent} elements of '
                             f'storage {self.storage.key}, which has {data.size}')
        strides = [s * data.itemsize for s in self.stride]
        return np.lib.stride_tricks.as_strided(data[self.offset:], self.shape, strides).copy()


def _rebuild_tensor(storage: _Storage, offset: int, shape, stride, *_) -> _Tensor:
    """torch._utils._rebuild_tensor(_v2): requires_grad, hooks and metadata do not matter here."""
    return _Tensor(storage, offset, tuple(shape), tuple(stride))


def _parameter_data(data: _Tensor, *_) -> _Tensor:
    """torch._utils._rebuild_parameter(_with_state): a Parameter is its data."""
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch', 'Size'): tuple,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _parameter_data,
    ('torch._utils', '_rebuild_parameter_with_state'): _parameter_data,
    **{('torch', name): _StorageType(np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    """Unpickles tensors and plain containers only; records the storages they refer to."""

    def __init__(self, file: BinaryIO):
        super().__init__(file, encoding='latin1')
        self.storages: dict[str, np.dtype] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f'refusing to unpickle {module}.{name}: only tensors and containers are read '
                '(save `model.state_dict()`, not the model object)')
        return _ALLOWED_GLOBALS[module, name]

    def persistent_load(self, pid: Any) -> _Storage:
        kind, storage_type, key, _, numel, *view = pid
        if kind != 'storage' or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(
                f'unsupported persistent object {kind!r} (a pickled module?)')
        self.storages[str(key)] = storage_type.dtype
        if view and view[0] is not None:  # legacy storage view: (view key, offset, size)
            _, start, numel = view[0]
            return _Storage(str(key), storage_type.dtype, numel, start)
        return _Storage(str(key), storage_type.dtype, numel)


def read_pth(path: str | os.PathLike) -> Any:
    """The object saved by `torch.save`, with tensors as numpy arrays and dicts as plain dicts."""
    with open(path, 'rb') as file:
        head = file.read(4)
        file.seek(0)
        try:
            if head.startswith(b'PK'):
                return _read_zip(file)
            if head.startswith(b'\x80'):
                return _read_legacy(file)
        except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, AttributeError, KeyError,
                IndexError, TypeError, ValueError) as error:  # what malformed input raises
            raise ValueError(f'{path}: not a readable PyTorch checkpoint: {error}') from error
    hint = ' (an HTML page: did the download fail?)' if head.lstrip().startswith(b'<') else ''
    raise ValueError(f'{path}: not a PyTorch checkpoint, it starts with {head!r}{hint}')


def _read_zip(file: BinaryIO) -> Any:
    with zipfile.ZipFile(file) as archive:
        pickles = [n for n in archive.namelist() if n.endswith('/data.pkl')]
        if len(pickles) != 1:
            raise ValueError(f'expected one <dir>/data.pkl in the archive, found {pickles}')
        root = pickles[0][:-len('data.pkl')]
        names = set(archive.namelist())
        byteorder = (archive.read(root + 'byteorder').decode()
                     if root + 'byteorder' in names else 'little')
        with archive.open(pickles[0]) as data_pkl:
            unpickler = _Unpickler(data_pkl)
            obj = unpickler.load()

        @functools.cache  # each storage is read once, however many tensors share it
        def storage(key: str) -> np.ndarray:
            data = archive.read(f'{root}data/{key}')
            return _from_bytes(data, unpickler.storages[key], byteorder)

        return _materialize(obj, storage)


def _read_legacy(file: BinaryIO) -> Any:
    magic = _Unpickler(file).load()
    if magic != _LEGACY_MAGIC:
        raise ValueError(f'bad magic number {magic!r}')
    protocol = _Unpickler(file).load()
    if protocol != _LEGACY_PROTOCOL:
        raise ValueError(f'unsupported legacy protocol {protocol!r}')
    byteorder = 'little' if _Unpickler(file).load().get('little_endian', True) else 'big'
    unpickler = _Unpickler(file)
    obj = unpickler.load()
    data = {}
    for key in _Unpickler(file).load():
        key, dtype = str(key), unpickler.storages[str(key)]
        count = int.from_bytes(_read_exactly(file, 8, key), byteorder)
        data[key] = _from_bytes(_read_exactly(file, count * dtype.itemsize, key), dtype, byteorder)
    return _materialize(obj, data.__getitem__)


def _read_exactly(file: BinaryIO, size: int, key: str) -> bytes:
    left = os.fstat(file.fileno()).st_size - file.tell()
    if size > left:
        raise ValueError(f'truncated: storage {key} needs {size} bytes, {left} are left')
    return file.read(size)


def _from_bytes(data: bytes, dtype: np.dtype, byteorder: str) -> np.ndarray:
    if byteorder not in ('little', 'big'):
        raise ValueError(f'unknown byte order {byteorder!r}')
    if byteorder == sys.byteorder:
        return np.frombuffer(data, dtype)
    return np.frombuffer(data, dtype.newbyteorder()).astype(dtype)


def _materialize(obj: Any, storage: Callable[[str], np.ndarray]) -> Any:
    """Replaces every tensor reference in `obj` by its array."""
    if isinstance(obj, _Tensor):
        return obj.to_array(storage(obj.storage.key))
    if isinstance(obj, dict):
        return {key: _materialize(value, storage) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(value, storage) for value in obj)
    return obj


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The {name: array} state dict in a checkpoint.

    Accepts torchvision's plain state dicts and training checkpoints that wrap one as
    {'state_dict': ...}, with the 'module.' prefix of nn.DataParallel (CSAIL Places365) removed.
    """
    obj = read_pth(path)
    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
        obj = obj['state_dict']
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f'{path}: holds a {type(obj).__name__}, not a state dict')
    not_tensors = [key for key, value in obj.items() if not isinstance(value, np.ndarray)]
    if not_tensors:
        raise ValueError(f'{path}: not a state dict, these entries are not tensors: {not_tensors}')
    if all(key.startswith('module.') for key in obj):
        obj = {key[len('module.'):]: value for key, value in obj.items()}
    return obj
