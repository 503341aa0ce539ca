"""AlexNet against an independent reference: torchvision's network rebuilt in torch here (torchvision
cannot be installed), with its exact module names and layers; its random weights saved as a .pth and
converted by the zoo's converter give torch's logits. Plus torch's rounding of 3x3/2 max-pools.

The zoo-wide tests (parameter count, shapes, taps, truncation, receptive fields) are in test_models.py.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from ctxfuse_jax import models
from ctxfuse_jax.ops.pool import max_pool
from ctxfuse_jax.weights import read_weights
from ctxfuse_jax.weights.convert import main

torch = pytest.importorskip('torch')

TINY = 0.125


def torch_alexnet(width: float, num_classes: int):
    """torchvision.models.AlexNet, reduced to `width`; He-normal weights and biases of std 0.1
    (torch's defaults shrink the activations layer by layer, so the logits would say little)."""
    nn = torch.nn
    c1, c2, c3, c4, c5 = (int(c * width) for c in (64, 192, 384, 256, 256))
    hidden = int(4096 * width)

    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(c1, c2, kernel_size=5, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(c3, c4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(c4, c5, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2))
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=0.5), nn.Linear(c5 * 6 * 6, hidden), nn.ReLU(inplace=True),
                nn.Dropout(p=0.5), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                nn.Linear(hidden, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    torch.manual_seed(0)
    net = AlexNet()
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity='relu')
            nn.init.normal_(module.bias, std=0.1)
    return net.eval()


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    net = torch_alexnet(TINY, num_classes=10)
    path = tmp_path_factory.mktemp('alexnet') / 'alexnet.pth'
    torch.save(net.state_dict(), path)
    return net, path


@pytest.mark.parametrize('size', [224, 67, 255])
def test_narrow_alexnet_matches_torch(tiny_checkpoint, size, torch_parity):
    """224 px leaves pool5 at 6x6 (the adaptive pool passes it on), 67 px at 1x1 (it is copied to
    6x6), 255 px at 7x7 (averaged over overlapping bins); fc6's CHW rows are permuted in every case."""
    net, path = tiny_checkpoint
    torch_parity(net, models.AlexNet(width=TINY, num_classes=10), path, size=size)


def test_full_alexnet_converts_by_the_cli_and_matches_torch(tmp_path, torch_parity, capsys):
    """torchvision's full-size layout, through `python -m ctxfuse_jax.weights.convert --arch alexnet`."""
    net = torch_alexnet(1.0, num_classes=1000)
    path = tmp_path / 'alexnet-owt.pth'
    torch.save(net.state_dict(), path)
    main(['--arch', 'alexnet', '--src', str(path), '--dst', str(tmp_path / 'alexnet.npz')])
    assert 'alexnet, 1000 classes, 16 arrays' in capsys.readouterr().out
    variables, meta = read_weights(tmp_path / 'alexnet.npz')
    assert meta['arch'] == 'alexnet'
    assert sum(v.size for v in variables.values()) == 61_100_840
    torch_parity(net, models.build_model('alexnet'), path, size=224)


@pytest.mark.parametrize('size', [13, 14, 27, 55, 56])
def test_max_pool_rounds_3x3_stride_2_windows_down_like_torch(size):
    """No padding, and a last partial window dropped (torch's ceil_mode=False): 55 -> 27 -> 13 -> 6."""
    x = np.random.default_rng(size).normal(size=(2, size, size, 4)).astype(np.float32)
    got = np.asarray(max_pool(jnp.asarray(x), (3, 3), (2, 2)))
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), 3, 2)
    assert got.shape[1:3] == ((size - 3) // 2 + 1,) * 2
    np.testing.assert_array_equal(got, want.numpy().transpose(0, 2, 3, 1))
