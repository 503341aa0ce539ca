"""Grad-CAM and feature PCA on named features, against independent references.

Grad-CAM is checked against a PyTorch Grad-CAM with forward/backward hooks on the same two-stream
fusion network, and against the closed form it has when the layer is followed by average pooling
and a linear head (there it is Zhou et al.'s class activation map). PCA is checked against
scikit-learn and the blur shift by hand.
Weights are drawn with numpy from traced shapes: `init` on XLA:CPU compiles slowly.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA as SklearnPCA
import torch
import torch.nn.functional as F

from ctxfuse_jax.evaluate import apply_tapped, blur_pca, blur_shift, fit_pca, gradcam, pooled_features
from ctxfuse_jax.models import INTERMEDIATES, build_model, features
from ctxfuse_jax.models.fusion import FusionHead, LinearProbe
from ctxfuse_jax.models.layers import BatchNorm, tap

CLASSES = 3
jit_gradcam = jax.jit(gradcam, static_argnums=0)


def random_variables(module: nn.Module, *inputs: jax.ShapeDtypeStruct, seed: int = 0,
                     scale: float = 0.1) -> dict:
    """Normal weights of std `scale`, BN variances in [0.5, 2]; shapes traced, nothing compiled."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda *xs: module.init(jax.random.key(0), *xs), *inputs)

    def draw(path, leaf):
        if path[-1].key == 'var':
            return rng.uniform(0.5, 2.0, leaf.shape).astype(np.float32)
        return (scale * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def spec(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def uniform_images(batch: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(batch, size, size, 3)).astype(np.float32)


# --- PyTorch reference: the same two-stream fusion network, Grad-CAM by hooks ---------------


class TinyStream(nn.Module):
    """A stand-in for a truncated backbone: strided 3x3 conv, batch norm, ReLU (tapped)."""

    channels: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(self.channels, (3, 3), 2, padding=1, use_bias=False, name='conv')(x)
        x = BatchNorm(use_running_average=not train, epsilon=1e-5, name='bn')(x)
        return tap(self, 'relu', nn.relu(x))


class TorchStream(torch.nn.Sequential):
    def __init__(self, channels: int = 4):
        super().__init__(torch.nn.Conv2d(3, channels, 3, 2, 1, bias=False),
                         torch.nn.BatchNorm2d(channels), torch.nn.ReLU())


class TorchFusionHead(torch.nn.Module):
    """FusionHead as torch modules, each ReLU its own module so it can be hooked."""

    def __init__(self, in_channels: int, features: int, classes: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, features, 3, padding=1, bias=False)
        self.bn1, self.relu1 = torch.nn.BatchNorm2d(features), torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.bn2, self.relu2 = torch.nn.BatchNorm2d(features), torch.nn.ReLU()
        self.fc = torch.nn.Linear(features, classes)

    def forward(self, fg, bg):
        x = self.relu1(self.bn1(self.conv1(torch.cat([fg, bg], dim=1))))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def load_torch(module: torch.nn.Module, variables: dict, names: dict[str, str]) -> None:
    """Copies Flax variables into torch modules: `names` maps torch module -> Flax module."""
    params, stats = variables['params'], variables.get('batch_stats', {})
    state = {}
    for torch_name, flax_name in names.items():
        p = params[flax_name]
        if 'scale' in p:
            state |= {f'{torch_name}.weight': p['scale'], f'{torch_name}.bias': p['bias'],
                      f'{torch_name}.running_mean': stats[flax_name]['mean'],
                      f'{torch_name}.running_var': stats[flax_name]['var']}
        elif p['kernel'].ndim == 4:
            state[f'{torch_name}.weight'] = np.transpose(p['kernel'], (3, 2, 0, 1))
        else:
            state |= {f'{torch_name}.weight': p['kernel'].T, f'{torch_name}.bias': p['bias']}
    loaded = module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()},
                                    strict=False)
    assert not loaded.unexpected_keys
    assert all(k.endswith('num_batches_tracked') for k in loaded.missing_keys)
    module.eval()


def torch_gradcam(forward, layer: torch.nn.Module, images: np.ndarray, classes: np.ndarray):
    """Grad-CAM as Selvaraju et al. compute it in PyTorch: hooks on the layer's output."""
    saved = {}

    def keep(_, __, output):
        saved['activation'] = output
        output.register_hook(lambda grad: saved.__setitem__('gradient', grad))

    handle = layer.register_forward_hook(keep)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    logits = forward(x)
    handle.remove()
    logits[torch.arange(len(classes)), torch.from_numpy(classes)].sum().backward()
    weights = saved['gradient'].mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * saved['activation']).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[1:3], mode='bilinear', align_corners=False)[:, 0]
    return (cam / cam.amax(dim=(1, 2), keepdim=True)).detach().numpy()


@pytest.fixture(scope='module')
def fusion_pair():
    """A two-stream Joint classifier in Flax and the same weights in PyTorch."""
    size, channels, features_ = 16, 4, 6
    stream, head = TinyStream(channels), FusionHead(CLASSES, features=features_)
    fg_vars = random_variables(stream, spec(1, size, size, 3), seed=1, scale=0.5)
    bg_vars = random_variables(stream, spec(1, size, size, 3), seed=2, scale=0.5)
    feature = spec(1, size // 2, size // 2, channels)
    # Seed 12 gives every target class below some positive evidence at all three layers.
    head_vars = random_variables(head, feature, feature, seed=12, scale=0.5)

    def logits_fn(layer):
        def joint_logits(images, delta):
            if layer == 'fg/relu':
                fg, cam_layer = apply_tapped(stream, fg_vars, 'relu', images, delta=delta)
                return head.apply(head_vars, fg, stream.apply(bg_vars, images)), cam_layer
            fg, bg = stream.apply(fg_vars, images), stream.apply(bg_vars, images)
            return apply_tapped(head, head_vars, layer, fg, bg, delta=delta)
        return joint_logits

    torch_fg, torch_bg = TorchStream(channels), TorchStream(channels)
    torch_head = TorchFusionHead(2 * channels, features_, CLASSES)
    for module, variables in ((torch_fg, fg_vars), (torch_bg, bg_vars)):
        load_torch(module, variables, {'0': 'conv', '1': 'bn'})
    load_torch(torch_head, head_vars, {'conv1': 'fuse_conv1', 'bn1': 'fuse_bn1',
                                       'conv2': 'fuse_conv2', 'bn2': 'fuse_bn2', 'fc': 'fc'})
    torch_layers = {'fg/relu': torch_fg[2], 'fuse_relu1': torch_head.relu1,
                    'fuse_relu2': torch_head.relu2}
    return logits_fn, lambda x: torch_head(torch_fg(x), torch_bg(x)), torch_layers, size


@pytest.mark.parametrize('layer', ['fg/relu', 'fuse_relu1', 'fuse_relu2'])
def test_gradcam_matches_pytorch_hooks(fusion_pair, layer):
    """In a stream (through the whole head) and at both layers inside the head."""
    logits_fn, torch_forward, torch_layers, size = fusion_pair
    images, classes = uniform_images(4, size), np.array([2, 1, 0, 1])
    expected = torch_gradcam(torch_forward, torch_layers[layer], images, classes)
    assert np.isfinite(expected).all() and (expected.min(axis=(1, 2)) < 0.9).all()  # not flat

    heatmaps = jit_gradcam(logits_fn(layer), images, classes)

    assert heatmaps.shape == (4, size, size)
    np.testing.assert_allclose(heatmaps, expected, atol=2e-5)


def test_gradcam_defaults_to_the_predicted_class(fusion_pair):
    logits_fn, *_, size = fusion_pair
    images, joint = uniform_images(4, size), logits_fn('fuse_relu1')
    predicted = np.argmax(joint(images, None)[0], axis=-1)
    np.testing.assert_allclose(jit_gradcam(joint, images), jit_gradcam(joint, images, predicted))


# --- Closed forms: before average pooling and a linear head, Grad-CAM is Zhou et al.'s CAM ----


class LinearToy(nn.Module):
    """Per-pixel linear features at image resolution, average pooling, linear classifier."""

    @nn.compact
    def __call__(self, x):
        feature = tap(self, 'feature', nn.Dense(5, name='embed')(x))
        return nn.Dense(CLASSES, name='fc')(jnp.mean(feature, axis=(1, 2)))


def test_gradcam_is_the_class_activation_map_of_a_linear_toy():
    """d logit_c / d A_k = W[k, c] / hw everywhere, so CAM_c = ReLU(x K W_c + b W_c), scaled."""
    toy = LinearToy()
    variables = random_variables(toy, spec(1, 6, 6, 3), scale=1.0)
    images, classes = uniform_images(3, 6) - 0.5, np.array([2, 0, 1])
    embed, fc = variables['params']['embed'], variables['params']['fc']
    feature = images @ embed['kernel'] + embed['bias']
    cam = np.maximum(np.einsum('bhwk,bk->bhw', feature, fc['kernel'][:, classes].T), 0)
    expected = cam / cam.max(axis=(1, 2), keepdims=True)

    heatmaps = jit_gradcam(lambda x, d: apply_tapped(toy, variables, 'feature', x, delta=d),
                           images, classes)

    np.testing.assert_allclose(heatmaps, expected, atol=1e-5)


@pytest.fixture(scope='module')
def resnet_classifiers():
    """FG (stream -> probe at `layer3`) and Joint (two streams -> head at `fuse_relu2`)."""
    size = 32
    stream = build_model('resnet18', num_classes=None, stop_at='layer3', width=0.125)
    fg_vars = random_variables(stream, spec(1, size, size, 3), seed=1)
    bg_vars = random_variables(stream, spec(1, size, size, 3), seed=2)
    feature = spec(1, size // 16, size // 16, 32)
    probe, head = LinearProbe(CLASSES), FusionHead(CLASSES, features=8)
    probe_vars = random_variables(probe, feature, seed=3, scale=1.0)
    head_vars = random_variables(head, feature, feature, seed=4, scale=1.0)

    def fg_logits(images, delta):
        fg, cam_layer = apply_tapped(stream, fg_vars, 'layer3', images, delta=delta)
        return probe.apply(probe_vars, fg), cam_layer

    def joint_logits(images, delta):
        fg, bg = stream.apply(fg_vars, images), stream.apply(bg_vars, images)
        return apply_tapped(head, head_vars, 'fuse_relu2', fg, bg, delta=delta)

    return {'FG': (fg_logits, probe_vars), 'Joint': (joint_logits, head_vars)}, size


@pytest.mark.parametrize('classifier', ['FG', 'Joint'])
def test_gradcam_of_the_fusion_classifiers_is_their_class_activation_map(resnet_classifiers,
                                                                         classifier):
    """The paper's layers: the last conv layer of a stream, the last of the fusion head."""
    classifiers, size = resnet_classifiers
    logits_fn, head_vars = classifiers[classifier]
    images = uniform_images(2, size)
    _, feature = jax.jit(logits_fn)(images, None)
    cams = np.maximum(np.einsum('bhwc,ck->bkhw', feature, head_vars['params']['fc']['kernel']), 0)
    classes = cams.max(axis=(2, 3)).argmax(axis=1)  # the most evidence: no map is flat zero
    cam = cams[np.arange(2), classes]
    assert (cam.max(axis=(1, 2)) > 0).all()
    cam = jax.image.resize(cam, (2, size, size), 'bilinear')
    expected = cam / cam.max(axis=(1, 2), keepdims=True)

    heatmaps = jit_gradcam(logits_fn, images, classes)

    assert heatmaps.shape == (2, size, size)
    assert float(heatmaps.min()) >= 0 and np.allclose(heatmaps.max(axis=(1, 2)), 1)
    np.testing.assert_allclose(heatmaps, expected, atol=1e-5)


def test_gradcam_rejects_features_without_space_and_bad_targets():
    toy = LinearToy()
    variables = random_variables(toy, spec(1, 4, 4, 3))
    images = uniform_images(2, 4)
    with pytest.raises(ValueError, match=r'needs a feature map \(B=2, h, w, C\).*\(2, 3\)'):
        gradcam(lambda x, d: (toy.apply(variables, x),) * 2, images)
    with pytest.raises(ValueError, match=r'target_classes must have shape \(2,\), got \(3,\)'):
        gradcam(lambda x, d: apply_tapped(toy, variables, 'feature', x, delta=d), images,
                np.zeros(3, int))


# --- Taps: reading a feature by name -------------------------------------------------------


def test_unknown_feature_lists_the_available_ones():
    stream = build_model('resnet18', num_classes=None, stop_at='layer1', width=0.125)
    variables = random_variables(stream, spec(1, 16, 16, 3))
    images = uniform_images(1, 16)
    for delta in (None, np.zeros((1, 4, 4, 8), np.float32)):
        with pytest.raises(ValueError, match=r"ResNet has no feature 'layer3'; its features are: "
                                             r"bn1, layer1, layer1_0, layer1_0/bn1, .*maxpool"):
            apply_tapped(stream, variables, 'layer3', images, delta=delta)
    with pytest.raises(ValueError, match=r"perturbation of 'layer1_0/bn1' has shape \(1, 2, 2, 8\)"
                                         r"; the feature has shape \(1, 4, 4, 8\)"):
        apply_tapped(stream, variables, 'layer1_0/bn1', images, delta=np.zeros((1, 2, 2, 8)))


# --- PCA ------------------------------------------------------------------------------------


def test_pooled_features_are_channel_means_of_the_named_batch_norm(compilations):
    stream = build_model('resnet18', num_classes=None, stop_at='layer1', width=0.125)
    variables = random_variables(stream, spec(1, 16, 16, 3))
    images = uniform_images(5, 16)
    _, state = stream.apply(variables, images, mutable=[INTERMEDIATES])
    expected = features(state[INTERMEDIATES])['layer1_1/bn2'].mean(axis=(1, 2))

    pooled = pooled_features(stream, variables, images, 'layer1_1/bn2', batch_size=2)

    assert pooled.shape == (5, 8)
    np.testing.assert_allclose(pooled, expected, atol=1e-6)
    before = len(compilations)  # Other images of the same shape (e.g. blurred ones) reuse the compiled step.
    pooled_features(stream, variables, images[::-1], 'layer1_1/bn2', batch_size=2)
    assert len(compilations) == before


def test_pca_matches_scikit_learn_up_to_sign():
    x = np.random.default_rng(0).normal(size=(40, 6)) @ np.diag([5, 3, 2, 1, 0.5, 0.1])
    ours, theirs = fit_pca(x, 3), SklearnPCA(3, svd_solver='full').fit(x)
    signs = np.sign(np.sum(ours.components * theirs.components_, axis=1))
    np.testing.assert_allclose(ours.components, signs[:, None] * theirs.components_, atol=1e-10)
    np.testing.assert_allclose(ours.explained_variance, theirs.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(ours.project(x), signs * theirs.transform(x), atol=1e-10)
    assert (ours.components[np.arange(3), np.abs(ours.components).argmax(axis=1)] > 0).all()


def test_blur_shift_by_hand():
    """Class 0 (spread 1) moves by 3; class 1 (spread 2) stays: ratios 3 and 0."""
    sharp = np.array([[0, 0], [2, 0], [0, 0], [0, 4]], float)
    blurred = sharp + np.array([[0, 3], [0, 3], [0, 0], [0, 0]])
    shift = blur_shift(sharp, blurred, np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(shift.ratio, [3, 0])
    assert shift.mean == pytest.approx(1.5)
    np.testing.assert_array_equal(shift.classes, [0, 1])


def test_blur_shift_does_not_depend_on_the_pca_rotation():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 10)
    sharp = rng.normal(size=(30, 4)) + 5 * labels[:, None]
    blurred = sharp + [2.0, 0, 0, 0] + 0.1 * rng.normal(size=(30, 4))
    full = blur_shift(*blur_pca(sharp, blurred, n_components=4), labels)
    np.testing.assert_allclose(full.ratio, blur_shift(sharp, blurred, labels).ratio)
    projected = blur_pca(sharp, blurred)
    assert projected[0].shape == projected[1].shape == (30, 2)


@pytest.mark.parametrize('sharp, blurred, labels, message', [
    (np.zeros((4, 2)), np.zeros((3, 2)), np.zeros(4), r'sharp \(4, 2\) and blurred \(3, 2\)'),
    (np.zeros((4, 2)), np.zeros((4, 2)), np.zeros(3), r'labels must have shape \(4,\)'),
    (np.zeros(4), np.zeros(4), np.zeros(4), r'must be a non-empty \(N, D\) array'),
    (np.eye(2), np.eye(2), np.array([0, 1]), 'class 0 needs at least two distinct'),
])
def test_blur_shift_rejects_bad_inputs(sharp, blurred, labels, message):
    with pytest.raises(ValueError, match=message):
        blur_shift(sharp, blurred, labels)
