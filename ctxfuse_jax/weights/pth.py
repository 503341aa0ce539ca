"""Reads PyTorch `.pth` files into numpy without torch, unpickling only tensors and containers.

Both on-disk formats of `torch.save` are read:
- zip (torch >= 1.6): `<dir>/data.pkl` plus one `<dir>/data/<key>` record per storage;
- legacy (`_use_new_zipfile_serialization=False`, e.g. CSAIL's Places365 models, pickled by
  Python 2 and so read with encoding='latin1'): magic, protocol and system-info pickles, the
  object pickle, the list of storage keys, then each storage as an int64 count and raw bytes.
Tensors in the pickle refer to storages by key; they are rebuilt (offset, shape, strides) once
the storages are read.

A file is untrusted input, so the pickle can reach only what this module hands it:
- any global outside the allow-list (classes, functions) is refused, so a file cannot run code;
- each allowed global is a fresh `_Sealed` object made by `find_class`, never a module-level
  object, and every object the pickle can reach refuses BUILD (`__setstate__`), so one file
  cannot change how the next is read; OrderedDict alone takes BUILD, and drops the state
  (torch's `_metadata`);
- a tensor's offset, shape and strides are checked, in Python ints, to address only elements of
  its storage before any numpy view is made, and each storage must hold exactly the bytes its
  tensors declare.
"""

from collections.abc import Callable
import functools
import math
import os
import pickle
import sys
from typing import Any, BinaryIO, NoReturn
import zipfile

import ml_dtypes
import numpy as np

from ctxfuse_jax.errors import MissingWeightsError, WeightsError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'HalfStorage': np.float16, 'DoubleStorage': np.float64,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
_MAX_INT = 2**62  # no sane size, offset or stride comes near; bounds numpy's int64 arithmetic
_MAX_NDIM = 64  # numpy's limit


class _Refused(pickle.UnpicklingError):
    """The pickle asks for something a state dict never needs."""


class _Sealed:
    """Every object the pickle can reach: its state cannot be set (the BUILD opcode)."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> NoReturn:
        raise _Refused(f'refusing to set the state of {self!r} (BUILD): a state dict never does')


class _Global(_Sealed):
    """An allow-listed function, e.g. torch._utils._rebuild_tensor_v2, made fresh per lookup."""

    __slots__ = ('_name', '_function')

    def __init__(self, name: str, function: Callable[..., Any]):
        self._name, self._function = name, function

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __repr__(self) -> str:
        return self._name


class _StorageType(_Sealed):
    """Stands for a global such as torch.FloatStorage: all we need of it is its dtype."""

    __slots__ = ('name', 'dtype')

    def __init__(self, name: str, dtype: np.dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f'torch.{self.name}'


class _Storage(_Sealed):
    """Elements [start, start + numel) of the storage `key`, whose bytes lie outside the pickle."""

    __slots__ = ('key', 'dtype', 'numel', 'start')

    def __init__(self, key: str, dtype: np.dtype, numel: int, start: int = 0):
        self.key, self.dtype, self.numel, self.start = key, dtype, numel, start

    def __repr__(self) -> str:
        return f'storage {self.key}'


class _Tensor(_Sealed):
    """A strided view of a storage, made into an array once the storage's bytes are read.

    Built only by `_rebuild_tensor`, which checks that it addresses elements of its storage only.
    """

    __slots__ = ('storage', 'offset', 'shape', 'stride')

    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...],
                 stride: tuple[int, ...]):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __repr__(self) -> str:
        return f'a tensor {self.shape} of {self.storage!r}'

    def to_array(self, data: np.ndarray) -> np.ndarray:
        """The tensor's elements, copied out of `data`, the whole storage (checked to fit)."""
        data = data[self.storage.start:self.storage.start + self.storage.numel]
        if not all(self.shape):
            return np.zeros(self.shape, self.storage.dtype)
        # A dimension of size 1 never moves: its stride, however large, is not used.
        strides = [s * data.itemsize if n > 1 else 0 for n, s in zip(self.shape, self.stride)]
        return np.lib.stride_tricks.as_strided(data[self.offset:], self.shape, strides).copy()


class _OrderedDict(dict):
    """collections.OrderedDict: its items are kept, its attributes (torch's _metadata) dropped."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise _Refused(f'refusing to set the state of an OrderedDict to a {type(state)}')


def _index(value: Any, what: str) -> int:
    """`value` if an int in [0, 2**62): bools, floats, negative and huge numbers are refused."""
    if type(value) is not int:
        raise _Refused(f'{what} is {value!r}, not an int')
    if value < 0:
        raise _Refused(f'{what} is negative ({value})')
    if value >= _MAX_INT:
        raise _Refused(f'{what} is {value}, too large for any real tensor')
    return value


def _indices(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > _MAX_NDIM:
        raise _Refused(f'{what} is {values!r}, not a tuple of at most {_MAX_NDIM} ints')
    return tuple(_index(v, f'entry {i} of {what} {tuple(values)!r}')
                 for i, v in enumerate(values))


def _rebuild_tensor(storage: Any, offset: Any, shape: Any, stride: Any, *_: Any) -> _Tensor:
    """torch._utils._rebuild_tensor(_v2): requires_grad, hooks and metadata do not matter here.

    Every element the tensor addresses, offset + sum(i_k * stride_k), is checked to lie in its
    storage, in exact Python ints, so no view ever reaches outside the storage's bytes.
    """
    if not isinstance(storage, _Storage):
        raise _Refused(f'a tensor needs a storage, not {storage!r}')
    offset = _index(offset, "a tensor's storage offset")
    shape, stride = _indices(shape, "a tensor's shape"), _indices(stride, "a tensor's strides")
    if len(shape) != len(stride):
        raise _Refused(f'a tensor of shape {shape} has strides {stride}')
    where = f'a tensor {shape} with offset {offset} and strides {stride} in {storage!r}'
    if not all(shape):  # empty: addresses nothing
        if offset > storage.numel:
            raise _Refused(f'{where}, which has {storage.numel} elements')
        return _Tensor(storage, offset, shape, stride)
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
    if last >= storage.numel:
        raise _Refused(f'{where} needs element {last}, the storage has {storage.numel}')
    if math.prod(shape) > storage.numel:  # only strides of 0 (expand) or overlaps do this
        raise _Refused(f'{where} has more elements than its storage (an expanded tensor: '
                       'save tensor.contiguous())')
    return _Tensor(storage, offset, shape, stride)


def _parameter_data(data: Any, *_: Any) -> _Tensor:
    """torch._utils._rebuild_parameter(_with_state): a Parameter is its data."""
    if not isinstance(data, _Tensor):
        raise _Refused(f'a Parameter holds a tensor, not {data!r}')
    return data


def _size(values: Any = ()) -> tuple:
    """torch.Size: a tuple (its entries are checked where it is used as a shape)."""
    return tuple(values)


def _ordered_dict(*args: Any) -> _OrderedDict:
    return _OrderedDict(*args)


_FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    ('collections', 'OrderedDict'): _ordered_dict,
    ('torch', 'Size'): _size,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _parameter_data,
    ('torch._utils', '_rebuild_parameter_with_state'): _parameter_data,
}


class _Unpickler(pickle.Unpickler):
    """Unpickles tensors and plain containers only; records the storages they refer to."""

    def __init__(self, file: BinaryIO):
        super().__init__(file, encoding='latin1')
        self.storages: dict[str, tuple[np.dtype, int]] = {}  # key -> (dtype, numel)

    def find_class(self, module: str, name: str) -> _Sealed:
        """A fresh stand-in for an allowed global, so nothing the pickle touches outlives it."""
        if module == 'torch' and name in _STORAGE_DTYPES:
            return _StorageType(name, np.dtype(_STORAGE_DTYPES[name]))
        if (module, name) in _FUNCTIONS:
            return _Global(f'{module}.{name}', _FUNCTIONS[module, name])
        raise _Refused(f'refusing to unpickle {module}.{name}: only tensors and containers are '
                       'read (save `model.state_dict()`, not the model object)')

    def persistent_load(self, pid: Any) -> _Storage:
        """('storage', type, key, location, numel[, legacy view (key, start, numel)])."""
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == 'storage'
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)):
            raise _Refused(f'unsupported persistent object {pid!r} (a pickled module?)')
        _, storage_type, key, _, numel, *view = pid
        dtype, numel = storage_type.dtype, _index(numel, f'the size of storage {key}')
        if self.storages.setdefault(key, (dtype, numel)) != (dtype, numel):
            raise _Refused(f'storage {key} is declared as {self.storages[key]} and as '
                           f'{(dtype, numel)}')
        if view and view[0] is not None:  # legacy storage view: (view key, start, numel)
            if not isinstance(view[0], tuple) or len(view[0]) != 3:
                raise _Refused(f'unsupported view {view[0]!r} of storage {key}')
            start = _index(view[0][1], f'the start of a view of storage {key}')
            size = _index(view[0][2], f'the size of a view of storage {key}')
            if start + size > numel:
                raise _Refused(f'a view of elements [{start}, {start + size}) of storage {key}, '
                               f'which has {numel}')
            return _Storage(key, dtype, size, start)
        return _Storage(key, dtype, numel)


def read_pth(path: str | os.PathLike) -> Any:
    """The object saved by `torch.save`, with tensors as numpy arrays and dicts as plain dicts.

    Raises WeightsError naming `path` for any file that is missing, malformed or hostile.
    """
    try:
        file = open(path, 'rb')
    except FileNotFoundError as error:
        raise MissingWeightsError(f'PyTorch checkpoint not found: {path}') from error
    except OSError as error:
        raise WeightsError(f'{path}: cannot be read ({error.strerror})') from error
    with file:
        head = file.read(4)
        file.seek(0)
        try:
            if head.startswith(b'PK'):
                return _read_zip(file)
            if head.startswith(b'\x80'):
                return _read_legacy(file)
        except _Refused as error:
            reason = str(error) if str(error).startswith('refusing') else f'refused, {error}'
            raise WeightsError(f'{path}: {reason}') from None
        except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, AttributeError, KeyError,
                IndexError, TypeError, ValueError, RecursionError, OverflowError) as error:
            raise WeightsError(f'{path}: not a readable PyTorch checkpoint ({error}); download '
                               'it again, or save it with torch.save(model.state_dict(), ...)'
                               ) from None
    hint = ' (an HTML page: did the download fail?)' if head.lstrip().startswith(b'<') else ''
    raise WeightsError(f'{path}: not a PyTorch checkpoint, it starts with {head!r}{hint}')


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
            dtype, numel = unpickler.storages[key]
            record = archive.getinfo(f'{root}data/{key}')
            _check_size(record.file_size, numel, dtype, key)  # before decompressing anything
            return _from_bytes(archive.read(record), dtype, byteorder)

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
        if str(key) not in unpickler.storages:
            raise ValueError(f'storage {key} is written but no tensor declares it')
        key, (dtype, numel) = str(key), unpickler.storages[str(key)]
        count = int.from_bytes(_read_exactly(file, 8, key), byteorder)
        _check_size(count * dtype.itemsize, numel, dtype, key)
        data[key] = _from_bytes(_read_exactly(file, count * dtype.itemsize, key), dtype, byteorder)
    return _materialize(obj, data.__getitem__)


def _check_size(nbytes: int, numel: int, dtype: np.dtype, key: str) -> None:
    """Tensors were checked against the numel the pickle declares: the bytes must match it."""
    if nbytes != numel * dtype.itemsize:
        raise ValueError(f'storage {key} holds {nbytes} bytes, its declared {numel} {dtype} '
                         f'elements need {numel * dtype.itemsize}')


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
    """Replaces every tensor reference in `obj` by its array; stand-ins other than tensors
    (a bare storage, a global) are not data and are refused."""
    if isinstance(obj, _Tensor):
        return obj.to_array(storage(obj.storage.key))
    if isinstance(obj, _Sealed):
        raise _Refused(f'{obj!r} is not data (only tensors and containers are read)')
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
        raise WeightsError(f'{path}: holds a {type(obj).__name__}, not a state dict; save '
                           '`model.state_dict()`')
    not_tensors = [key for key, value in obj.items()
                   if not isinstance(key, str) or not isinstance(value, np.ndarray)]
    if not_tensors:
        raise WeightsError(f'{path}: not a state dict, these entries are not named tensors: '
                           f'{not_tensors[:8]}')
    if all(key.startswith('module.') for key in obj):
        obj = {key[len('module.'):]: value for key, value in obj.items()}
    return obj
