"""Hostile and malformed `.pth` files, crafted opcode by opcode: each is refused with a
WeightsError naming the file, before any numpy view is made and without changing how the next
file is read. No torch needed: the pickles below are what `torch.save` would write, or worse.
"""

import os
import pickle
import pickletools
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from ctxfuse_jax.errors import UserError, WeightsError
from ctxfuse_jax.weights import read_pth, read_state_dict

# Pickle opcodes (protocol 2), see pickletools.
PROTO2, MARK, TUPLE, REDUCE, BINPERSID = b'\x80\x02', b'(', b't', b'R', b'Q'
EMPTY_DICT, SETITEM, BUILD, STOP, POP = b'}', b's', b'b', b'.', b'0'
STORAGE_TYPES = ['FloatStorage', 'HalfStorage', 'DoubleStorage', 'BFloat16Storage',
                 'LongStorage', 'IntStorage', 'ShortStorage', 'CharStorage', 'ByteStorage',
                 'BoolStorage']
FUNCTIONS = [('collections', 'OrderedDict'), ('torch', 'Size'),
             ('torch._utils', '_rebuild_tensor'), ('torch._utils', '_rebuild_tensor_v2'),
             ('torch._utils', '_rebuild_parameter'),
             ('torch._utils', '_rebuild_parameter_with_state')]
FOUR_FLOATS = np.arange(4, dtype=np.float32).tobytes()


def global_(module: str, name: str) -> bytes:
    return b'c' + f'{module}\n{name}\n'.encode()


def value(obj) -> bytes:
    """The opcodes that push `obj` (ints, strings, tuples, ...), without PROTO and STOP."""
    return pickletools.optimize(pickle.dumps(obj, protocol=2))[2:-1]


def storage(numel: int = 4, storage_type: str = 'FloatStorage', key: str = '0',
            view: tuple | None = None) -> bytes:
    """A persistent storage reference as torch writes it (the legacy format adds a view)."""
    fields = [value('storage'), global_('torch', storage_type), value(key), value('cpu'),
              value(numel)]
    if view is not None:
        fields.append(value(view))
    return MARK + b''.join(fields) + TUPLE + BINPERSID


def tensor(offset, shape, stride, storage_ops: bytes | None = None) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, False, {})."""
    return (global_('torch._utils', '_rebuild_tensor_v2') + MARK + (storage_ops or storage())
            + value(offset) + value(shape) + value(stride) + value(False) + EMPTY_DICT + TUPLE
            + REDUCE)


def state_dict_pickle(**tensors: bytes) -> bytes:
    body = b''.join(value(name) + ops + SETITEM for name, ops in tensors.items())
    return PROTO2 + EMPTY_DICT + body + STOP


def write_zip(path, data_pkl: bytes, storages: dict[str, bytes] | None = None):
    """The zip layout of torch >= 1.6: archive/data.pkl and one archive/data/<key> per storage."""
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('archive/data.pkl', data_pkl)
        for key, data in (storages if storages is not None else {'0': FOUR_FLOATS}).items():
            archive.writestr(f'archive/data/{key}', data)
    return path


def write_legacy(path, data_pkl: bytes, storages: dict[str, bytes]):
    """The legacy layout: magic, protocol, system info, the object, its keys, counted storages."""
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, 2), pickle.dumps(1001, 2),
             pickle.dumps({'little_endian': True}, 2), data_pkl, pickle.dumps(list(storages), 2)]
    for data in storages.values():
        parts += [(len(data) // 4).to_bytes(8, 'little'), data]
    path.write_bytes(b''.join(parts))
    return path


def refused(path, match: str | None = None) -> str:
    with pytest.raises(WeightsError, match=match) as error:
        read_pth(path)
    message = str(error.value)
    assert str(path) in message and isinstance(error.value, (ValueError, UserError))
    return message


def test_a_crafted_benign_file_reads_exactly(tmp_path):
    """The crafting above writes what torch writes: the reader takes it, values and all."""
    path = write_zip(tmp_path / 'ok.pth', state_dict_pickle(w=tensor(0, (2, 2), (1, 2))))
    np.testing.assert_array_equal(read_pth(path)['w'], [[0, 2], [1, 3]])
    assert os.path.getsize(path) < 500


@pytest.mark.parametrize('offset, shape, stride, match', [
    (0, (2, 2), (256, -256), 'strides .* is negative'),
    (0, (2, 2), (-1, 1), 'strides .* is negative'),
    (-64, (64,), (1,), 'offset is negative'),
    (-1, (1,), (1,), 'offset is negative'),
    (1, (4,), (1,), 'needs element 4, the storage has 4'),
    (1, (2, 2), (2, 1), 'needs element 4'),
    (0, (3, 2), (2, 1), 'needs element 5'),
    (0, (3, 2), (1, 1), 'more elements than its storage'),  # overlapping rows
    (0, (2**61, 4), (0, 1), 'more elements than its storage'),  # would allocate 2**63 floats
    (2**63, (1,), (1,), 'offset is 9223372036854775808, too large'),
    (0, (2**64 + 1,), (1,), 'too large'),
    (5, (0,), (1,), 'which has 4 elements'),  # empty, but still past the storage
    (True, (2,), (1,), 'offset is True, not an int'),
    (0, (True,), (1,), 'shape .* is True, not an int'),
    (0.0, (2,), (1,), 'offset is 0.0, not an int'),
    (0, (2.0,), (1,), 'not an int'),
    (0, (2, 2), (1,), r'shape \(2, 2\) has strides \(1,\)'),
    (0, 4, 1, 'shape is 4, not a tuple'),
])
def test_tensors_reaching_outside_their_storage_are_refused(offset, shape, stride, match,
                                                            tmp_path):
    path = write_zip(tmp_path / 'bad.pth', state_dict_pickle(w=tensor(offset, shape, stride)))
    refused(path, match)


def test_negative_strides_that_crashed_the_process_are_refused(tmp_path):
    """Strides (2**30, -2**30) once made a view 4 GiB before the storage: SIGSEGV. A crash in
    the child fails this test instead of killing pytest."""
    path = write_zip(tmp_path / 'segv.pth',
                     state_dict_pickle(w=tensor(0, (2, 2), (2**30, -2**30))))
    script = ('import sys\nfrom ctxfuse_jax.weights import read_pth\n'
              'try:\n    read_pth(sys.argv[1])\nexcept ValueError as error:\n'
              '    print(type(error).__name__, error)\n')
    child = subprocess.run([sys.executable, '-c', script, str(path)], capture_output=True,
                           text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith('WeightsError ') and str(path) in child.stdout, child.stdout
    assert 'is negative' in child.stdout


@pytest.mark.parametrize('data, match', [
    (FOUR_FLOATS[:8], 'storage 0 holds 8 bytes, its declared 4 float32 elements need 16'),
    (FOUR_FLOATS * 2, 'storage 0 holds 32 bytes'),
    (FOUR_FLOATS + b'\0', 'holds 17 bytes'),
])
def test_storages_must_hold_the_bytes_their_tensors_declare(data, match, tmp_path):
    path = write_zip(tmp_path / 'short.pth', state_dict_pickle(w=tensor(0, (2,), (1,))),
                     {'0': data})
    refused(path, match)


def test_a_storage_declared_with_two_dtypes_is_refused(tmp_path):
    """Else the float32 tensor would be read from the bytes as float16."""
    pkl = state_dict_pickle(a=tensor(0, (4,), (1,)),
                            b=tensor(0, (8,), (1,), storage(8, 'HalfStorage')))
    refused(write_zip(tmp_path / 'two.pth', pkl), 'storage 0 is declared as')


@pytest.mark.parametrize('view, match', [
    (('0v', 2, 4), r'a view of elements \[2, 6\) of storage 0, which has 4'),
    (('0v', -3, 4), 'start of a view of storage 0 is negative'),
    (('0v', 0, 5), r'\[0, 5\)'),
    (('0v', 0.5, 1), 'not an int'),
    (('0v', 1), 'unsupported view'),
])
def test_legacy_storage_views_must_lie_in_their_storage(view, match, tmp_path):
    pkl = state_dict_pickle(w=tensor(0, (2,), (1,), storage(view=view)))
    refused(write_legacy(tmp_path / 'view.pth', pkl, {'0': FOUR_FLOATS}), match)


def test_legacy_storage_views_in_bounds_are_read(tmp_path):
    pkl = state_dict_pickle(w=tensor(1, (2,), (1,), storage(view=('0v', 1, 3))))
    path = write_legacy(tmp_path / 'view.pth', pkl, {'0': FOUR_FLOATS})
    np.testing.assert_array_equal(read_pth(path)['w'], [2, 3])


def benign_six_floats(tmp_path):
    """A plain float32 state dict whose values a poisoned reader would change."""
    pkl = state_dict_pickle(w=tensor(0, (6,), (1,), storage(6)))
    path = write_zip(tmp_path / 'benign.pth', pkl, {'0': np.arange(6, dtype=np.float32).tobytes()})
    weights = read_state_dict(path)['w']
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, np.arange(6, dtype=np.float32))


# BUILD with a dict state writes the target's __dict__; with (None, {...}) it calls setattr.
STATES = {'dict': value({'dtype': 'float16'}),
          'slots': value((None, {'dtype': 'float16', '__defaults__': (1,)}))}
TARGETS = {**{f'torch.{name}': global_('torch', name) for name in STORAGE_TYPES},
           **{f'{module}.{name}': global_(module, name) for module, name in FUNCTIONS},
           'a storage': storage(),
           'a tensor': tensor(0, (2,), (1,)),
           'a parameter': global_('torch._utils', '_rebuild_parameter') + MARK
           + tensor(0, (2,), (1,)) + value(False) + EMPTY_DICT + TUPLE + REDUCE,
           'a torch.Size': global_('torch', 'Size') + MARK + value((2,)) + TUPLE + REDUCE}


@pytest.mark.parametrize('state', list(STATES))
@pytest.mark.parametrize('target', list(TARGETS))
def test_setting_the_state_of_anything_but_a_container_is_refused(target, state, tmp_path):
    """BUILD on an allow-listed global once rewrote the module's shared stand-ins: a refused
    file turned the float32 file read after it into float16 ([0, 1, 2, 3, 4, 5] ->
    [0, 0, 0, 1.875, 0, 2]). Every object the pickle reaches refuses BUILD, and the next
    read, in the same process, is exact."""
    pkl = PROTO2 + EMPTY_DICT + value('w') + TARGETS[target] + STATES[state] + BUILD + SETITEM
    for writer in (write_zip, lambda path, data: write_legacy(path, data, {'0': FOUR_FLOATS})):
        refused(writer(tmp_path / 'poison.pth', pkl + STOP))
        benign_six_floats(tmp_path)


def test_a_refused_file_leaves_the_next_read_exact(tmp_path):
    """The reported case: BUILD gave torch.FloatStorage the dtype 'float16', then the file was
    refused (at a global it may not load), and the next float32 file came back as float16."""
    poison = (PROTO2 + global_('torch', 'FloatStorage') + value({'dtype': 'float16'}) + BUILD
              + POP + global_('os', 'system') + STOP)
    refused(write_zip(tmp_path / 'poison.pth', poison))
    benign_six_floats(tmp_path)


def test_ordered_dict_attributes_are_dropped(tmp_path):
    """torch pickles a state dict's `_metadata` as an OrderedDict attribute (BUILD): allowed."""
    od = global_('collections', 'OrderedDict') + MARK + TUPLE + REDUCE
    pkl = (PROTO2 + od + value('w') + tensor(0, (2,), (1,)) + SETITEM
           + value({'_metadata': {'': {'version': 1}}}) + BUILD + STOP)
    loaded = read_pth(write_zip(tmp_path / 'od.pth', pkl))
    assert type(loaded) is dict and list(loaded) == ['w']
    refused(write_zip(tmp_path / 'od_slots.pth', PROTO2 + od + value((None, {'x': 1})) + BUILD
                      + STOP), 'OrderedDict')


def call(module: str, name: str, *args) -> bytes:
    return global_(module, name) + MARK + b''.join(map(value, args)) + TUPLE + REDUCE


CODE_RUNNING = {  # each would create the file `marker` if it ran
    'os.system': lambda marker: call('os', 'system', f'touch {marker}'),
    'posix.system': lambda marker: call('posix', 'system', f'touch {marker}'),
    'builtins.eval': lambda marker: call('builtins', 'eval', f'open({marker!r}, "w")'),
    'builtins.exec': lambda marker: call('builtins', 'exec', f'open({marker!r}, "w")'),
    'builtins.getattr': lambda marker: call('builtins', 'getattr', 0, 'real'),
    'subprocess.Popen': lambda marker: call('subprocess', 'Popen', ('touch', marker)),
    'INST': lambda marker: MARK + value(f'touch {marker}') + b'ios\nsystem\n',
    'STACK_GLOBAL': lambda marker: (value('os') + value('system') + b'\x93' + MARK
                                    + value(f'touch {marker}') + TUPLE + REDUCE),
    'inside a tensor': lambda marker: (global_('torch._utils', '_rebuild_tensor_v2') + MARK
                                       + call('os', 'system', f'touch {marker}') + value(0)
                                       + value((1,)) + value((1,)) + TUPLE + REDUCE),
    'EXT1': lambda marker: b'\x82\x01',  # the copyreg extension registry
    'NEWOBJ': lambda marker: global_('torch', 'Size') + MARK + TUPLE + b'\x81',
}


@pytest.mark.parametrize('payload', list(CODE_RUNNING))
def test_pickles_that_run_code_are_refused(payload, tmp_path):
    marker = tmp_path / 'ran'
    pkl = PROTO2 + CODE_RUNNING[payload](str(marker)) + STOP
    (tmp_path / 'evil_raw.pth').write_bytes(pkl)  # a bare pickle takes the legacy path
    for path in (write_zip(tmp_path / 'evil.pth', pkl),
                 write_legacy(tmp_path / 'evil_legacy.pth', pkl, {}), tmp_path / 'evil_raw.pth'):
        refused(path)
        assert not marker.exists()


def test_stand_ins_are_not_data(tmp_path):
    """A bare storage or global in the file is no tensor: refused, not handed to the caller."""
    refused(write_zip(tmp_path / 'storage.pth', PROTO2 + storage() + STOP), 'storage 0 is not data')
    refused(write_zip(tmp_path / 'global.pth', PROTO2 + global_('torch', 'Size') + STOP),
            'torch.Size is not data')


def test_missing_and_unreadable_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match='PyTorch checkpoint not found: .*nothing.pth'):
        read_pth(tmp_path / 'nothing.pth')
    with pytest.raises(WeightsError, match='cannot be read'):
        read_pth(tmp_path)
