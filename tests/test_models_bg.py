"""Seed 002's networks (small_cnn, unet, background_generator) against PyTorch rebuilds.

Each torch module is written here from the paper's description, in NCHW, and loaded with the Flax
weights (drawn with numpy, as in test_models.py); equal outputs then check the layer order,
paddings, flatten order, skip order and tile layout independently of the Flax code.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ctxfuse_jax import models
from ctxfuse_jax.models import INTERMEDIATES, features, generators, variable_shapes
from ctxfuse_jax.models.layers import IMAGENET_MEAN



@pytest.fixture(autouse=True)
def _no_grad():
    """References run without autograd; a module-level switch would leak into other tests of the worker."""
    with torch.no_grad():
        yield

ATOL = 1e-5


def random_variables(shapes, seed: int = 0) -> dict:
    """Kernels with std 1/sqrt(fan in) and small biases: activations stay of order one."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if path[-1].key == 'kernel':
            return (rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(np.float32)
        return (0.1 * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def images(size: int, channels: int, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(1).uniform(size=(batch, size, size, channels)).astype(np.float32)


def generator_shapes(model: models.BackgroundGenerator, batch: int = 1) -> dict:
    z = jax.ShapeDtypeStruct(model.noise_shape(batch), jnp.float32)
    return jax.eval_shape(lambda z: model.init(jax.random.key(0), z), z)


def param_count(shapes) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(shapes['params']))


def nchw(x) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2)


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def load_conv(layer: torch.nn.Conv2d, params: dict) -> torch.nn.Conv2d:
    """Flax HWIO -> torch OIHW; both correlate (no flip)."""
    layer.weight.copy_(torch.from_numpy(np.asarray(params['kernel']).transpose(3, 2, 0, 1)))
    layer.bias.copy_(torch.from_numpy(np.asarray(params['bias'])))
    return layer


def load_transposed(layer: torch.nn.ConvTranspose2d, params: dict) -> torch.nn.ConvTranspose2d:
    """Flax's ConvTranspose (transpose_kernel=False) correlates the stride-dilated, padded input with
    its (H, W, in, out) kernel as it is. torch's ConvTranspose2d is the gradient of a convolution:
    it scatters each input pixel times its (in, out, H, W) weight, which is a correlation of the
    dilated input with the spatially flipped weight. So torch's weight is Flax's kernel flipped in
    H and W, with axes (in, out, H, W). Flax's 'SAME' pads the dilated input by 2 on each side for
    a 4x4 kernel with stride 2, torch pads by k - 1 - padding: padding=1.
    """
    kernel = np.asarray(params['kernel'])[::-1, ::-1].transpose(2, 3, 0, 1)
    layer.weight.copy_(torch.from_numpy(kernel.copy()))
    layer.bias.copy_(torch.from_numpy(np.asarray(params['bias'])))
    return layer


def load_linear(layer: torch.nn.Linear, params: dict) -> torch.nn.Linear:
    layer.weight.copy_(torch.from_numpy(np.asarray(params['kernel']).T))
    layer.bias.copy_(torch.from_numpy(np.asarray(params['bias'])))
    return layer


class TorchSmallCNN(torch.nn.Module):
    """The paper's classifier: [conv 3x3 'same', ReLU, max-pool 2] x n, flatten, Dense 128, ReLU, logits."""

    def __init__(self, params: dict):
        super().__init__()
        convs = sorted((k for k in params if k.startswith('conv_')), key=lambda k: int(k.split('_')[1]))
        layers = []
        for name in convs:
            kh, kw, cin, cout = params[name]['kernel'].shape
            layers += [load_conv(torch.nn.Conv2d(cin, cout, 3, padding=1), params[name]),
                       torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        self.features = torch.nn.Sequential(*layers)
        self.dense = load_linear(torch.nn.Linear(*params['dense']['kernel'].shape), params['dense'])
        self.head = load_linear(torch.nn.Linear(*params['head']['kernel'].shape), params['head'])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.permute(0, 2, 3, 1).flatten(1)  # Flax flattens NHWC maps: H, W, C order.
        return self.head(torch.relu(self.dense(x)))


class TorchUNet(torch.nn.Module):
    """The paper's U-Net: conv+ReLU (skip), pool; bottom conv; upsample, conv+ReLU, cat skip; 1x1, sigmoid."""

    def __init__(self, params: dict, levels: int):
        super().__init__()

        def conv(name, kernel=3):
            kh, kw, cin, cout = params[name]['kernel'].shape
            return load_conv(torch.nn.Conv2d(cin, cout, kernel, padding=kernel // 2), params[name])

        self.down = torch.nn.ModuleList([conv(f'down_{i}') for i in range(levels)])
        self.bottom = conv('bottom')
        self.up = torch.nn.ModuleList([conv(f'up_{i}') for i in range(levels)])
        self.to_mask = conv('to_mask', kernel=1)
        self.pool, self.upsample = torch.nn.MaxPool2d(2), torch.nn.Upsample(scale_factor=2, mode='nearest')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for conv in self.down:
            x = torch.relu(conv(x))
            skips.append(x)
            x = self.pool(x)
        x = torch.relu(self.bottom(x))
        for conv, skip in zip(self.up, reversed(skips)):
            x = torch.cat([torch.relu(conv(self.upsample(x))), skip], dim=1)
        return torch.sigmoid(self.to_mask(x))


class TorchGenerator(torch.nn.Module):
    """The patch network (conv 3x3, n stride-2 transposed convs, 1x1, sigmoid), tiled as adv_back does."""

    def __init__(self, params: dict, seed: int, tiles: int):
        super().__init__()
        self.seed, self.tiles = seed, tiles
        kh, kw, cin, cout = params['seed_conv']['kernel'].shape
        self.seed_conv = load_conv(torch.nn.Conv2d(cin, cout, 3, padding=1), params['seed_conv'])
        ups = sorted((k for k in params if k.startswith('up_')), key=lambda k: int(k.split('_')[1]))
        self.ups = torch.nn.ModuleList([
            load_transposed(torch.nn.ConvTranspose2d(*params[k]['kernel'].shape[2:], 4, stride=2, padding=1),
                            params[k]) for k in ups])
        kh, kw, cin, cout = params['to_pixels']['kernel'].shape
        self.to_pixels = load_conv(torch.nn.Conv2d(cin, cout, 1), params['to_pixels'])

    def patch(self, z: torch.Tensor) -> torch.Tensor:
        # The noise vector is a seed map in NHWC order (Flax's reshape), then made NCHW.
        x = z.reshape(z.shape[0], self.seed, self.seed, -1).permute(0, 3, 1, 2)
        x = torch.nn.functional.leaky_relu(self.seed_conv(x), 0.2)
        for up in self.ups:
            x = torch.nn.functional.leaky_relu(up(x), 0.2)
        return torch.sigmoid(self.to_pixels(x))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        rows = [torch.cat([self.patch(z[:, r * self.tiles + c]) for c in range(self.tiles)], dim=3)
                for r in range(self.tiles)]
        return torch.cat(rows, dim=2)


def noise(model: models.BackgroundGenerator, batch: int = 2, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=model.noise_shape(batch)).astype(np.float32)


# Shapes and parameter counts: small_cnn's and unet's equal the authors' Keras models (counted by hand:
# 28 px, 1 channel: convs 320 + 18,496, Dense 3,136*128+128, logits 1,290; U-Net 320 + 18,496 + 36,928
# (bottom) + 36,928 + 36,896 (up, after the concatenations) + 65). The generator's transposed convs are
# not the authors' upsample+conv: 640 + 4*4*64*32+32 + 33 at 28 px.
@pytest.mark.parametrize('size, channels, blocks, heat_map, count', [
    (28, 1, 2, (2, 7, 7, 64), 421_642), (64, 3, 4, (2, 4, 4, 256), 914_122)])
def test_small_cnn_shapes(size, channels, blocks, heat_map, count):
    model = models.build_model('small_cnn', size=size)
    shapes = variable_shapes(model, (1, size, size, channels))
    image = jax.ShapeDtypeStruct((2, size, size, channels), jnp.float32)
    assert jax.eval_shape(model.apply, shapes, image).shape == (2, 10)
    assert param_count(shapes) == count
    truncated = model.clone(stop_at=f'block_{blocks - 1}')
    assert jax.eval_shape(truncated.apply, shapes, image).shape == heat_map
    # The heat map of an attention baseline: the last block, with no Dense layers made.
    assert set(variable_shapes(truncated, (1, size, size, channels))['params']) == {
        f'conv_{i}' for i in range(blocks)}


@pytest.mark.parametrize('size, channels, count', [(28, 1, 129_633), (64, 3, 2_343_009)])
def test_unet_shapes(size, channels, count):
    model = models.build_model('unet')
    shapes = variable_shapes(model, (1, size, size, channels))
    image = jax.ShapeDtypeStruct((2, size, size, channels), jnp.float32)
    assert jax.eval_shape(model.apply, shapes, image).shape == (2, size, size, 1)
    assert param_count(shapes) == count


@pytest.mark.parametrize('size, channels, z_shape, seed, doublings, count', [
    (28, 1, (2, 4, 49), 7, 1, 33_473), (64, 3, (2, 4, 48), 4, 3, 695_619)])
def test_generator_shapes(size, channels, z_shape, seed, doublings, count):
    model = models.build_model('background_generator', size=size, channels=channels)
    assert (model.noise_shape(2), model.seed, model.doublings) == (z_shape, seed, doublings)
    shapes = generator_shapes(model)
    z = jax.ShapeDtypeStruct(z_shape, jnp.float32)
    assert jax.eval_shape(model.apply, shapes, z).shape == (2, size, size, channels)
    assert param_count(shapes) == count


@pytest.mark.parametrize('size, channels, width', [(28, 1, 1.0), (64, 3, 0.25)])
def test_small_cnn_matches_torch(size, channels, width):
    model = models.build_model('small_cnn', size=size, width=width)
    variables = random_variables(variable_shapes(model, (1, size, size, channels)))
    x = images(size, channels)
    expected = TorchSmallCNN(variables['params'])(nchw(x)).numpy()
    np.testing.assert_allclose(model.apply(variables, x), expected, atol=ATOL)


@pytest.mark.parametrize('size, channels, width, levels', [(28, 1, 1.0, 2), (64, 3, 0.25, 4)])
def test_unet_matches_torch_and_gives_a_mask(size, channels, width, levels):
    model = models.build_model('unet', width=width)
    variables = random_variables(variable_shapes(model, (1, size, size, channels)))
    x = images(size, channels)
    mask = np.asarray(model.apply(variables, x))
    np.testing.assert_allclose(mask, nhwc(TorchUNet(variables['params'], levels)(nchw(x))), atol=ATOL)
    assert mask.min() >= 0 and mask.max() <= 1 and mask.std() > 1e-3


@pytest.mark.parametrize('size, channels, width', [(28, 1, 1.0), (64, 3, 0.25)])
def test_generator_matches_torch(size, channels, width):
    model = models.build_model('background_generator', size=size, channels=channels, width=width)
    variables = random_variables(generator_shapes(model))
    z = noise(model)
    background = np.asarray(model.apply(variables, z))
    expected = TorchGenerator(variables['params'], model.seed, model.tiles)(torch.from_numpy(z))
    np.testing.assert_allclose(background, nhwc(expected), atol=ATOL)
    assert background.min() >= 0 and background.max() <= 1


def test_generator_doublings_are_flax_transposed_convs():
    """The doubling layers compute nn.ConvTranspose(4x4, stride 2, 'SAME') with the same kernel layout."""
    model = models.build_model('background_generator', size=64, channels=3, width=0.25)
    params = random_variables(generator_shapes(model))['params']['up_1']
    x = np.random.default_rng(4).normal(size=(2, 8, 8, params['kernel'].shape[2])).astype(np.float32)
    out = params['kernel'].shape[3]
    reference = nn.ConvTranspose(out, (4, 4), (2, 2), padding='SAME').apply({'params': params}, x)
    ours = model.conv(out, (4, 4), padding=2).apply({'params': params}, generators.spread(x))
    np.testing.assert_allclose(ours, reference, atol=ATOL)


def test_unet_is_differentiable_in_params_and_inputs():
    model = models.build_model('unet', width=0.25)
    variables = random_variables(variable_shapes(model, (1, 28, 28, 1)))
    x = images(28, 1)
    params_grad, x_grad = jax.grad(lambda v, x: model.apply(v, x).mean(), argnums=(0, 1))(variables, x)
    for grad in [x_grad, *jax.tree.leaves(params_grad)]:
        assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_unet_refuses_sizes_whose_skips_do_not_line_up():
    model = models.build_model('unet', width=0.25)
    with pytest.raises(ValueError, match=r'30x30 input.*multiples of 2\*\*2 = 4'):
        variable_shapes(model, (1, 30, 30, 1))
    with pytest.raises(ValueError, match='at least 8 px'):
        variable_shapes(model, (1, 6, 6, 1))


@pytest.fixture(scope='module')
def tiny_generator():
    model = models.build_model('background_generator', size=28, channels=1, width=0.25)
    return model, random_variables(generator_shapes(model))


def tile(background: np.ndarray, row: int, column: int, side: int) -> np.ndarray:
    return background[:, row * side:(row + 1) * side, column * side:(column + 1) * side]


def test_generator_tiles_are_independent(tiny_generator):
    model, variables = tiny_generator
    z = noise(model)
    different = np.asarray(model.apply(variables, z))
    same = np.asarray(model.apply(variables, np.repeat(z[:, :1], 4, axis=1)))
    side = model.patch
    tiles = [(r, c) for r in range(2) for c in range(2)]
    for r, c in tiles:
        np.testing.assert_array_equal(tile(same, r, c, side), tile(same, 0, 0, side))
        if (r, c) != (0, 0):
            assert np.abs(tile(different, r, c, side) - tile(different, 0, 0, side)).max() > 1e-3
    # Tile (1, 0) is z[:, 2] (row-major): new noise there changes that tile and no other.
    changed = z.copy()
    changed[:, 2] = noise(model, seed=3)[:, 2]
    after = np.asarray(model.apply(variables, changed))
    for r, c in tiles:
        moved = np.abs(tile(after, r, c, side) - tile(different, r, c, side)).max()
        assert moved > 1e-3 if (r, c) == (1, 0) else moved == 0


def test_generator_refuses_sizes_it_cannot_reach_and_wrong_noise(tiny_generator):
    with pytest.raises(ValueError, match='cannot split a 27 px background into 2 x 2'):
        models.build_model('background_generator', size=27)
    with pytest.raises(ValueError, match='24 px tiles .* not a 4 px seed map doubled'):
        models.build_model('background_generator', size=48)
    model, variables = tiny_generator
    with pytest.raises(ValueError, match=r'noise of shape \(2, 4, 49\)'):
        model.apply(variables, np.zeros((2, 49), np.float32))


def test_small_cnn_normalises_nothing_and_refuses_an_rgb_mean_for_gray_images():
    model = models.build_model('small_cnn', width=0.25)
    variables = random_variables(variable_shapes(model, (1, 28, 28, 1)))
    x = images(28, 1)
    np.testing.assert_allclose(model.apply(variables, x),
                               model.clone(mean=(0.5,), std=(2.0,)).apply(variables, 0.5 + 2 * x), atol=ATOL)
    with pytest.raises(ValueError, match='1-channel images but a 3-entry mean'):
        model.clone(mean=IMAGENET_MEAN).apply(variables, x)


def test_small_cnn_taps_its_blocks_and_stops_only_at_stages():
    model = models.build_model('small_cnn', width=0.25)
    shapes = variable_shapes(model, (1, 28, 28, 1))
    _, state = jax.eval_shape(functools.partial(model.apply, mutable=[INTERMEDIATES]), shapes,
                              jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32))
    taps = features(state[INTERMEDIATES])
    assert {name: t.shape for name, t in taps.items()} == {
        'block_0': (2, 14, 14, 8), 'block_1': (2, 7, 7, 16), 'fc': (2, 32)}
    with pytest.raises(ValueError, match=r"cannot stop at 'block_2'; its stages are \['block_0', 'block_1', 'fc'\]"):
        variable_shapes(model.clone(stop_at='block_2'), (1, 28, 28, 1))
    with pytest.raises(ValueError, match=r'SmallCNN\(size=28\) got 64x64 images'):
        variable_shapes(model, (1, 64, 64, 1))


@pytest.mark.parametrize('name, kwargs, convs', [
    ('small_cnn', {}, 2), ('unet', {}, 6), ('background_generator', {'size': 28}, 3)])
def test_every_convolution_goes_through_conv(name, kwargs, convs):
    """XLA:CPU's own convolution gradients are slow: every conv, the transposed ones too, is pluggable."""
    calls = []

    def counting_conv(*args, **kw):
        calls.append(1)
        return jax.lax.conv_general_dilated(*args, **kw)

    model = models.build_model(name, width=0.25, conv=functools.partial(nn.Conv, conv_general_dilated=counting_conv),
                               **kwargs)
    if name == 'background_generator':
        generator_shapes(model)
    else:
        variable_shapes(model, (1, 28, 28, 1))
    assert len(calls) == convs


def test_registered_by_name():
    assert {'small_cnn', 'unet', 'background_generator'} <= set(models.available_models())
    model = models.build_model('background_generator', size=64, channels=3, tiles=1, conv='xla')
    assert isinstance(model, models.BackgroundGenerator) and (model.seed, model.doublings) == (4, 4)
