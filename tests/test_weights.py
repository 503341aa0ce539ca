"""PyTorch checkpoints -> Flax: file formats, conversion parity with torch, and every error path.

torchvision cannot be installed here, so the reference networks below rebuild its ResNet and
VGG with its exact module names and layer structure, at reduced width (AlexNet's: test_alexnet.py);
conftest's `torch_parity` compares their logits with the converted models'.
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from ctxfuse_jax import models
from ctxfuse_jax.errors import WeightsError
from ctxfuse_jax.models import variable_shapes
from ctxfuse_jax.models.variables import flatten
from ctxfuse_jax.weights import (convert_state_dict, load_pretrained, read_pth, read_weights,
                                 save_weights)
from ctxfuse_jax.weights.convert import main
from ctxfuse_jax.weights.layout import flax_key, torch_key

TINY = 0.125


def torch_resnet(layers, bottleneck: bool, width: float, num_classes: int):
    """torchvision.models.ResNet, reduced to `width`."""
    nn = pytest.importorskip('torch').nn
    expansion = 4 if bottleneck else 1

    def conv(cin, cout, k, stride=1):
        return nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False)

    class Block(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            if bottleneck:
                self.conv1, self.bn1 = conv(inplanes, planes, 1), nn.BatchNorm2d(planes)
                self.conv2, self.bn2 = conv(planes, planes, 3, stride), nn.BatchNorm2d(planes)
                self.conv3, self.bn3 = conv(planes, planes * 4, 1), nn.BatchNorm2d(planes * 4)
            else:
                self.conv1, self.bn1 = conv(inplanes, planes, 3, stride), nn.BatchNorm2d(planes)
                self.conv2, self.bn2 = conv(planes, planes, 3), nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or inplanes != planes * expansion:
                self.downsample = nn.Sequential(conv(inplanes, planes * expansion, 1, stride),
                                                nn.BatchNorm2d(planes * expansion))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            if bottleneck:
                out = self.bn3(self.conv3(self.relu(out)))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            channels = [int(c * width) for c in (64, 128, 256, 512)]
            self.conv1, self.bn1 = conv(3, channels[0], 7, 2), nn.BatchNorm2d(channels[0])
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            inplanes = channels[0]
            for i, (planes, blocks) in enumerate(zip(channels, layers)):
                stage = []
                for j in range(blocks):
                    stage.append(Block(inplanes, planes, 2 if i > 0 and j == 0 else 1))
                    inplanes = planes * expansion
                setattr(self, f'layer{i + 1}', nn.Sequential(*stage))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(inplanes, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet()


def torch_vgg16(batch_norm: bool, width: float, num_classes: int):
    """torchvision.models.vgg16(_bn), reduced to `width`."""
    torch = pytest.importorskip('torch')
    nn = torch.nn
    layers, cin = [], 3
    for v in models.vgg.VGG16_LAYERS:
        if v == 'M':
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            cout = int(v * width)
            layers.append(nn.Conv2d(cin, cout, kernel_size=3, padding=1))
            layers += [nn.BatchNorm2d(cout), nn.ReLU(True)] if batch_norm else [nn.ReLU(True)]
            cin = cout
    hidden = int(4096 * width)

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(cin * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(),
                nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
                nn.Linear(hidden, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return VGG()


def randomised(net):
    """Eval-mode `net` with non-trivial BN affine parameters and running statistics."""
    torch = pytest.importorskip('torch')
    torch.manual_seed(0)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, std=0.1)
            torch.nn.init.normal_(module.running_mean, std=0.1)
            torch.nn.init.uniform_(module.running_var, 0.5, 2.0)
    return net.eval()


def save(obj, path, zip_format: bool = True):
    torch = pytest.importorskip('torch')
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    return path


def state_dict(net) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in net.state_dict().items()}


@pytest.fixture(scope='module')
def resnet18():
    return randomised(torch_resnet((2, 2, 2, 2), False, TINY, num_classes=10))


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_resnet18_matches_torch(resnet18, zip_format, tmp_path, torch_parity):
    path = save(resnet18.state_dict(), tmp_path / 'resnet18.pth', zip_format)
    torch_parity(resnet18, models.ResNet18(width=TINY, num_classes=10), path)


def test_places365_checkpoint_matches_torch(tmp_path, torch_parity):
    """CSAIL's layout: a training checkpoint around a DataParallel state dict, legacy format."""
    net = randomised(torch_resnet((2, 2, 2, 2), False, TINY, num_classes=365))
    checkpoint = {'epoch': 90, 'arch': 'resnet18', 'best_prec1': 54.7,
                  'state_dict': {'module.' + k: v for k, v in net.state_dict().items()}}
    path = save(checkpoint, tmp_path / 'resnet18_places365.pth.tar', zip_format=False)
    torch_parity(net, models.ResNet18(width=TINY, num_classes=365), path)


def test_resnet50_matches_torch(tmp_path, torch_parity):
    net = randomised(torch_resnet((3, 4, 6, 3), True, TINY / 2, num_classes=10))
    path = save(net.state_dict(), tmp_path / 'resnet50.pth')
    torch_parity(net, models.ResNet50(width=TINY / 2, num_classes=10), path)


def test_vgg16_bn_matches_torch(tmp_path, torch_parity):
    """96px leaves a 3x3 map: the 7x7 adaptive pool and the CHW->HWC permutation both matter."""
    net = randomised(torch_vgg16(batch_norm=True, width=TINY / 2, num_classes=10))
    path = save(net.state_dict(), tmp_path / 'vgg16_bn.pth')
    torch_parity(net, models.VGG16BN(width=TINY / 2, num_classes=10), path, size=96)


def test_reader_rebuilds_strided_tensors_and_dtypes(tmp_path):
    torch = pytest.importorskip('torch')
    tensors = {'transposed': torch.randn(3, 4).t(), 'slice': torch.randn(8)[2:6],
               'half': torch.randn(2, 2).half(), 'double': torch.randn(3).double(),
               'long': torch.arange(5), 'scalar': torch.tensor(7),
               'parameter': torch.nn.Parameter(torch.randn(2))}
    for zip_format in (True, False):
        loaded = read_pth(save(tensors, tmp_path / 'tensors.pth', zip_format))
        for key, tensor in tensors.items():
            expected = tensor.detach().numpy()
            assert loaded[key].dtype == expected.dtype
            np.testing.assert_array_equal(loaded[key], expected)


def test_key_mapping_is_mechanical_and_invertible():
    for key, ndim, flax in [
            ('layer1.0.downsample.1.running_mean', 1, 'batch_stats/layer1_0/downsample_1/mean'),
            ('layer1.0.conv1.weight', 4, 'params/layer1_0/conv1/kernel'),
            ('features.10.bias', 1, 'params/features_10/bias'),
            ('classifier.6.weight', 2, 'params/classifier_6/kernel'),
            ('bn1.weight', 1, 'params/bn1/scale')]:
        assert flax_key(key, ndim) == flax
        assert torch_key(flax) == key


def test_wrong_architecture_names_the_missing_torch_keys(resnet18):
    with pytest.raises(WeightsError,
                       match=r'does not fit ResNet:\n  missing: layer1\.2\.bn1\.bias'):
        convert_state_dict(state_dict(resnet18), models.ResNet34(width=TINY, num_classes=10))


def test_missing_unexpected_and_misshapen_keys_are_named(resnet18):
    tensors = state_dict(resnet18)
    del tensors['layer4.1.bn2.running_var']
    tensors['extra.weight'] = np.zeros((3, 3), np.float32)
    with pytest.raises(WeightsError) as error:
        convert_state_dict(tensors, models.ResNet18(width=TINY, num_classes=1000))
    message = str(error.value)
    assert 'missing: layer4.1.bn2.running_var [batch_stats/layer4_1/bn2/var]' in message
    assert 'unexpected: extra.weight [params/extra/kernel]' in message
    assert 'wrong shape: fc.bias [params/fc/bias] is (10,), needs (1000,)' in message


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_truncated_files_are_reported(resnet18, zip_format, tmp_path):
    data = save(resnet18.state_dict(), tmp_path / 'full.pth', zip_format).read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(ValueError, match='cut.pth: not a readable PyTorch checkpoint'):
        read_pth(cut)


def test_files_that_are_not_checkpoints_are_reported(tmp_path):
    html = tmp_path / 'resnet18.pth'
    html.write_bytes(b'<!DOCTYPE html><html>403 Forbidden</html>')
    with pytest.raises(ValueError, match='not a PyTorch checkpoint.*HTML page'):
        read_pth(html)
    foreign = tmp_path / 'foreign.pth'
    foreign.write_bytes(pickle.dumps({'weight': os.getcwd}, protocol=2))
    with pytest.raises(ValueError, match='refusing to unpickle'):
        read_pth(foreign)


def test_pickled_modules_are_refused(tmp_path):
    torch = pytest.importorskip('torch')
    path = save(torch.nn.Linear(2, 2), tmp_path / 'module.pth')
    with pytest.raises(ValueError, match=r'refusing to unpickle torch\.nn\.modules\.linear\.'):
        read_pth(path)


@pytest.fixture
def converted(tmp_path):
    """A weights file as the converter writes it (random values), and the model it fits."""
    model = models.ResNet18(width=TINY, num_classes=10)
    rng = np.random.default_rng(0)
    variables = {key: rng.normal(size=shape.shape).astype(np.float32)
                 for key, shape in flatten(variable_shapes(model)).items()}
    path = tmp_path / 'resnet18.npz'
    save_weights(path, variables, {'source': 'r18.pth'})
    return path, model


def test_truncated_model_loads_the_part_it_uses(converted):
    path, model = converted
    full = load_pretrained(path, model)
    truncated = load_pretrained(path, model.clone(stop_at='layer3'))
    assert set(truncated['params']) == {'conv1', 'bn1'} | {
        f'layer{i}_{j}' for i in (1, 2, 3) for j in (0, 1)}
    np.testing.assert_array_equal(truncated['params']['layer3_1']['conv2']['kernel'],
                                  full['params']['layer3_1']['conv2']['kernel'])


def test_another_head_must_be_dropped_explicitly(converted):
    path, model = converted
    other = model.clone(num_classes=80)
    with pytest.raises(WeightsError, match=r'\(converted from r18\.pth\) does not fit ResNet:\n'
                                         r'  wrong shape: params/fc/bias is \(10,\), needs \(80'):
        load_pretrained(path, other)
    with pytest.raises(WeightsError, match='nothing to load into params/fc/bias'):
        load_pretrained(path, other, drop_head=True)
    fresh = {'params': {'fc': {'kernel': np.ones((64, 80), np.float32),
                               'bias': np.zeros(80, np.float32)}}}
    variables = load_pretrained(path, other, drop_head=True, into=fresh)
    np.testing.assert_array_equal(variables['params']['fc']['kernel'], 1.0)
    features_only = load_pretrained(path, model.clone(num_classes=None), drop_head=True)
    assert 'fc' not in features_only['params']


def test_weights_for_another_width_name_the_keys(converted):
    path, model = converted
    with pytest.raises(WeightsError, match=r'wrong shape: .*params/bn1/bias is \(8,\), needs \(16'):
        load_pretrained(path, model.clone(width=2 * TINY))


def test_missing_weights_file_says_how_to_make_it(tmp_path):
    missing = tmp_path / 'resnet18_places365.npz'
    with pytest.raises(FileNotFoundError) as error:
        load_pretrained(missing, models.ResNet18())
    assert isinstance(error.value, WeightsError)  # a user error: the CLI prints it, exits 2
    message = str(error.value)
    assert str(missing) in message
    assert 'python -m ctxfuse_jax.weights.convert --arch ARCH --src FILE' in message
    assert 'resnet18_places365.pth.tar' in message and 'resnet18-f37072fd.pth' in message


@pytest.mark.parametrize('keys', [['a', 'b'], ['weights'], ['params/fc'], ['params//kernel'],
                                  ['opt_state/fc/kernel']])
def test_npz_files_of_other_keys_are_refused(keys, tmp_path):
    """Any key but 'params/<module>/.../<leaf>' (or batch_stats) once crashed in module_path."""
    path = tmp_path / 'other.npz'
    np.savez(path, **{key: np.zeros(2, np.float32) for key in keys})
    for read in (read_weights, lambda p: load_pretrained(p, models.ResNet18(width=TINY),
                                                         drop_head=True)):
        with pytest.raises(WeightsError) as error:
            read(path)
        message = str(error.value)
        assert str(path) in message and repr(keys[0]) in message
        assert 'not a weights file written by `python -m ctxfuse_jax.weights.convert`' in message


def test_npz_files_of_pickled_objects_are_refused_plainly(tmp_path):
    """numpy's own message suggests loading such a file unsafely: never pass that on."""
    objects = tmp_path / 'objects.npz'
    np.savez(objects, **{'params/fc/kernel': np.array([{'x': 1}], dtype=object)})
    bare_pickle = tmp_path / 'pickle.npz'
    bare_pickle.write_bytes(pickle.dumps({'params/fc/kernel': os.getcwd}))
    for path in (objects, bare_pickle):
        with pytest.raises(WeightsError) as error:
            read_weights(path)
        message = str(error.value)
        assert str(path) in message and 'holds pickled Python objects, which are refused' in message
        assert 'allow_pickle' not in message and 'unsafe' not in message


def write_npy(path):
    with open(path, 'wb') as file:  # np.save(path) would append '.npy' to the name
        np.save(file, np.zeros(3))


@pytest.mark.parametrize('content, match', [
    (write_npy, 'holds one array, not an .npz archive'),
    (lambda path: np.savez(path, **{'params/fc/kernel': np.array(['a'])}), 'not numeric'),
    (lambda path: np.savez(path, __meta__=np.array('[1]')), '__meta__ entry is not a JSON'),
    (lambda path: path.write_bytes(b'PK\3\4 truncated'), 'not a weights file'),
])
def test_malformed_npz_files_are_refused(content, match, tmp_path):
    path = tmp_path / 'weights.npz'
    content(path)
    with pytest.raises(WeightsError, match=match):
        read_weights(path)


def run_convert(*args: str) -> subprocess.CompletedProcess:
    """`python -m ctxfuse_jax.weights.convert ARGS`, the documented command, in a child."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, '-m', 'ctxfuse_jax.weights.convert', *args],
                          cwd=root, capture_output=True, text=True, timeout=300)


def test_cli_runs_without_warnings_and_refuses_bad_files_in_one_line(tmp_path):
    """The package used to import the CLI module, so runpy warned on every run."""
    child = run_convert('--help')
    assert child.returncode == 0 and '--arch' in child.stdout
    assert 'RuntimeWarning' not in child.stderr, child.stderr
    html = tmp_path / 'resnet18.pth'
    html.write_bytes(b'<!DOCTYPE html><html>403 Forbidden</html>')
    child = run_convert('--arch', 'resnet18', '--src', str(html), '--dst', str(tmp_path / 'o.npz'))
    assert child.returncode == 2, child.stderr
    assert child.stderr.splitlines() == [
        f"error: {html}: not a PyTorch checkpoint, it starts with b'<!DO' "
        '(an HTML page: did the download fail?)'], child.stderr
    assert not (tmp_path / 'o.npz').exists()


@pytest.fixture(scope='module')
def places365(tmp_path_factory):
    """A full-size ResNet18 in CSAIL's layout (legacy format, DataParallel keys), and its net."""
    net = torch_resnet((2, 2, 2, 2), False, 1.0, num_classes=365)
    src = save({'state_dict': {'module.' + k: v for k, v in net.state_dict().items()}},
               tmp_path_factory.mktemp('places365') / 'resnet18_places365.pth.tar',
               zip_format=False)
    return net, src


def test_cli_converts_in_a_child_process_without_warnings(places365, tmp_path):
    net, src = places365
    dst = tmp_path / 'resnet18_places365.npz'
    child = run_convert('--arch', 'resnet18', '--src', str(src), '--dst', str(dst))
    assert child.returncode == 0, child.stderr
    assert 'RuntimeWarning' not in child.stderr, child.stderr
    assert 'resnet18, 365 classes' in child.stdout
    variables, meta = read_weights(dst)
    assert meta == {'arch': 'resnet18', 'num_classes': 365, 'source': src.name}
    np.testing.assert_array_equal(variables['params/fc/bias'], net.fc.bias.detach().numpy())


def test_cli_converts_a_full_size_places365_checkpoint(places365, tmp_path, capsys):
    net, src = places365
    dst = tmp_path / 'resnet18_places365.npz'
    main(['--arch', 'resnet18', '--src', str(src), '--dst', str(dst)])
    assert 'resnet18, 365 classes' in capsys.readouterr().out
    variables = load_pretrained(dst, models.ResNet18(num_classes=365))
    np.testing.assert_array_equal(variables['params']['fc']['kernel'],
                                  net.fc.weight.detach().numpy().T)
    with pytest.raises(SystemExit) as exit_:
        main(['--arch', 'vgg16', '--src', str(src), '--dst', str(dst)])
    assert exit_.value.code == 2  # a user error, as `python -m ctxfuse_jax.main` exits
    error = capsys.readouterr().err
    assert error.startswith('error: the state dict does not fit VGG:')
    assert 'missing: classifier.0.bias' in error and 'unexpected: bn1.bias' in error
