"""Model zoo: sizes, shapes, named features, truncation, receptive fields, registry.

Shapes come from `jax.eval_shape` (no compute); the few real forwards use tiny widths and
weights drawn with numpy from the model's variable shapes, since `model.init` on XLA:CPU
spends seconds compiling its random number generation.
"""

import functools

from flax import errors
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctxfuse_jax import models
from ctxfuse_jax.models import INTERMEDIATES, PERTURBATIONS, features, variable_shapes
from ctxfuse_jax.models.layers import IMAGENET_MEAN, IMAGENET_STD
from ctxfuse_jax.models.registry import register_model

TINY = 0.125  # 8 base channels


def random_variables(model: nn.Module, seed: int = 0) -> dict:
    """Weights of the right shapes, small enough that activations stay tame."""
    rng = np.random.default_rng(seed)

    def draw(path, shape):
        if path[-1].key == 'var':
            return rng.uniform(0.5, 2.0, shape.shape).astype(np.float32)
        return (0.1 * rng.normal(size=shape.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, variable_shapes(model))


def images(size: int = 32, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(1).uniform(size=(batch, size, size, 3)).astype(np.float32)


def output_shape(model: nn.Module, size: int = 32, **kwargs):
    return jax.eval_shape(functools.partial(model.apply, **kwargs), variable_shapes(model),
                          jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32))


@pytest.fixture(scope='module')
def tiny_resnet():
    model = models.ResNet18(width=TINY, num_classes=10)
    return model, random_variables(model)


@pytest.mark.parametrize('name, count', [
    ('resnet18', 11_689_512), ('resnet34', 21_797_672), ('resnet50', 25_557_032),
    ('vgg16', 138_357_544), ('vgg16_bn', 138_365_992), ('alexnet', 61_100_840)])
def test_parameter_counts_match_torchvision(name, count):
    params = variable_shapes(models.build_model(name))['params']
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == count


@pytest.mark.parametrize('name, size, pooled', [
    ('resnet18', 32, 64), ('resnet50', 33, 256), ('vgg16', 32, 512), ('vgg16_bn', 48, 512),
    ('alexnet', 63, 512)])  # 63 px: AlexNet's smallest, pool5 1x1
def test_output_shapes_for_small_inputs(name, size, pooled):
    model = models.build_model(name, width=TINY, num_classes=10)
    assert output_shape(model, size).shape == (2, 10)
    channels = models.build_model(name, width=TINY, num_classes=None)
    assert output_shape(channels, size).shape == (2, pooled)


def test_compute_dtype_is_configurable():
    model = models.ResNet18(width=TINY, dtype=jnp.bfloat16)
    assert output_shape(model.clone(num_classes=None)).dtype == jnp.bfloat16
    assert output_shape(model).dtype == jnp.float32  # logits, for the losses
    params = variable_shapes(model)['params']
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}


def test_convolution_is_pluggable():
    calls = []

    def counting_conv(*args, **kwargs):
        calls.append(1)
        return jax.lax.conv_general_dilated(*args, **kwargs)

    model = models.ResNet18(width=TINY, conv=functools.partial(
        nn.Conv, conv_general_dilated=counting_conv))
    shapes = variable_shapes(model)
    calls.clear()
    jax.eval_shape(model.apply, shapes, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    assert len(calls) == 20  # 17 3x3/7x7 convs + 3 downsampling 1x1 convs


@pytest.mark.parametrize('name, stop_at, shape, absent', [
    ('resnet18', 'layer3', (2, 2, 2, 32), ['layer4_0', 'fc']),
    ('resnet18', 'maxpool', (2, 8, 8, 8), ['layer1_0', 'fc']),
    ('vgg16_bn', 'features_23', (2, 4, 4, 32), ['features_24', 'classifier_0']),
    ('alexnet', 'features_5', (2, 1, 1, 24), ['features_6', 'classifier_1']),
])
def test_truncated_models_stop_and_create_nothing_later(name, stop_at, shape, absent):
    model = models.build_model(name, width=TINY, stop_at=stop_at)
    assert output_shape(model).shape == shape
    params = variable_shapes(model)['params']
    assert not set(absent) & set(params)
    assert 'conv1' in params or 'features_0' in params


def test_unknown_stop_at_lists_the_stages():
    with pytest.raises(ValueError, match=r"cannot stop at 'layer5'.*'layer4', 'avgpool'"):
        output_shape(models.ResNet18(width=TINY, stop_at='layer5'))


def tapped_names(model: nn.Module, size: int = 32) -> set[str]:
    _, state = output_shape(model, size, mutable=[INTERMEDIATES])
    return set(features(state[INTERMEDIATES]))


def test_resnet_taps_stages_blocks_pools_and_batch_norms():
    names = tapped_names(models.ResNet50(width=TINY))
    stages = {'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4', 'avgpool'}
    assert stages | {'bn1', 'layer1_0', 'layer1_0/bn3', 'layer1_0/downsample_1',
                     'layer4_2', 'layer4_2/bn1'} <= names
    assert len([n for n in names if n.split('/')[-1].startswith(('bn', 'downsample_1'))]) == 53


def test_vgg_taps_every_pool_relu_and_batch_norm():
    names = tapped_names(models.VGG16BN(width=TINY))
    pools = {'features_6', 'features_13', 'features_23', 'features_33', 'features_43'}
    assert pools | {'features_1', 'features_2', 'features_42', 'avgpool', 'classifier_1',
                    'classifier_5'} <= names
    assert len(names) == 13 * 2 + 5 + 1 + 4  # BN and ReLU per conv, pools, avgpool, fc6/fc7
    plain = tapped_names(models.VGG16(width=TINY))
    assert {'features_4', 'features_9', 'features_16', 'features_23', 'features_30'} <= plain


def test_alexnet_taps_every_pool_and_relu():
    relus = {'features_1', 'features_4', 'features_7', 'features_9', 'features_11'}
    stages = {'features_2', 'features_5', 'features_12', 'avgpool', 'classifier_2', 'classifier_5'}
    assert tapped_names(models.AlexNet(width=TINY), size=67) == relus | stages


@pytest.mark.parametrize('name, size', [('vgg16', 32), ('alexnet', 67)])
def test_dropout_only_in_training(name, size):
    model = models.build_model(name, width=TINY)
    output_shape(model, size, train=False)
    with pytest.raises(errors.InvalidRngError, match='dropout'):
        output_shape(model, size, train=True, mutable=['batch_stats'])


def test_intermediates_match_truncated_model(tiny_resnet):
    model, variables = tiny_resnet
    x = images()
    logits, state = model.apply(variables, x, mutable=[INTERMEDIATES])
    taps = features(state[INTERMEDIATES])
    truncated = model.clone(stop_at='layer3')
    restricted = models.restrict_variables(variables, truncated)
    assert 'layer4_0' not in restricted['params']
    np.testing.assert_allclose(truncated.apply(restricted, x), taps['layer3'], atol=1e-6)
    assert logits.shape == (2, 10) and taps['avgpool'].shape == (2, 64)


def test_restricting_reports_missing_keys(tiny_resnet):
    model, variables = tiny_resnet
    params = {k: v for k, v in variables['params'].items() if k != 'layer2_0'}
    with pytest.raises(ValueError, match='missing: params/layer2_0/bn1/bias'):
        models.restrict_variables({**variables, 'params': params}, model.clone(stop_at='layer3'))


def test_perturbations_give_gradients_of_features(tiny_resnet):
    """GradCAM's ingredient: d logits / d feature, through a zero perturbation of it."""
    model, variables = tiny_resnet
    x = images()
    zeros = {'avgpool': np.zeros((2, 64), np.float32),
             'layer4': np.zeros((2, 1, 1, 64), np.float32)}

    def summed_logits(perturbations):
        return model.apply({**variables, PERTURBATIONS: perturbations}, x).sum()

    grads = features(jax.grad(summed_logits)(zeros))
    row_sums = variables['params']['fc']['kernel'].sum(axis=1)
    np.testing.assert_allclose(grads['avgpool'], np.broadcast_to(row_sums, (2, 64)), atol=1e-6)
    # layer4 is 1x1 here, so average pooling passes the gradient on unscaled.
    np.testing.assert_allclose(grads['layer4'], np.broadcast_to(row_sums, (2, 1, 1, 64)),
                               atol=1e-6)


def test_models_normalise_their_inputs(tiny_resnet):
    model, variables = tiny_resnet
    x = images()
    raw = model.clone(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    standardised = (x - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    np.testing.assert_allclose(model.apply(variables, x), raw.apply(variables, standardised),
                               atol=1e-5)


def test_training_updates_batch_statistics(tiny_resnet):
    model, variables = tiny_resnet
    logits, state = model.apply(variables, images(), train=True, mutable=['batch_stats'])
    assert np.isfinite(logits).all()
    before, after = variables['batch_stats']['bn1']['mean'], state['batch_stats']['bn1']['mean']
    assert not np.allclose(before, after)


def test_registry_builds_by_name_and_rejects_unknown_names():
    names = {'resnet18', 'resnet34', 'resnet50', 'vgg16', 'vgg16_bn', 'alexnet'}
    assert names <= set(models.available_models())
    model = models.build_model('resnet34', num_classes=7, width=TINY)
    assert isinstance(model, models.ResNet) and model.num_classes == 7
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'; available: .*resnet18, res"):
        models.build_model('resnet19')
    with pytest.raises(ValueError, match="'vgg16' is already registered"):
        register_model('vgg16')(models.VGG)


# Worked by hand: a layer (kernel k, stride s, padding p) turns (size, jump, start) into
# (size + (k - 1) * jump, jump * s, start - p * jump), from an input pixel's (1, 1, 0).
@pytest.mark.parametrize('name, stage, size, jump, start', [
    ('alexnet', 'features_2', 19, 8, -2),  # conv 11/4/2: (11, 4, -2); pool 3/2: 11 + 2*4
    ('alexnet', 'features_5', 67, 16, -18),  # conv 5/1/2: 19 + 4*8, -2 - 2*8; pool: 51 + 2*8
    ('alexnet', 'features_12', 195, 32, -66),  # 3 convs 3/1/1: 67 + 3*2*16; pool: 163 + 2*16
    ('vgg16', 'features_4', 6, 2, -2),  # 2 convs 3/1/1: 1 + 2 + 2, -2; pool 2/2: 5 + 1
    ('vgg16', 'features_9', 16, 4, -6),  # 2 convs at jump 2: 6 + 8; pool: 14 + 2
    ('vgg16', 'features_30', 212, 32, -90),  # the known 212 of VGG16's pool5
    ('vgg16_bn', 'features_6', 6, 2, -2),  # BN moves the indices, not the geometry
    ('resnet18', 'maxpool', 11, 4, -5),  # conv 7/2/3: (7, 2, -3); pool 3/2/1: 7 + 2*2, -3 - 2
    ('resnet18', 'layer2', 99, 8, -49),  # layer1 +4*2*4 = 43; layer2 + 2*4 + 3*2*8
    ('resnet18', 'layer4', 435, 32, -217),  # the known 435 of ResNet18
    ('resnet50', 'layer4', 427, 32, -213),  # bottlenecks: one 3x3 per block
])
def test_receptive_fields_match_hand_worked_values(name, stage, size, jump, start):
    field = models.receptive_field(models.build_model(name), stage)
    assert (field.size, field.jump, field.start) == (size, jump, start)


def gradient_support(model: nn.Module, size: int, unit: tuple[int, int]) -> np.ndarray:
    """The input pixels where the gradient of output unit `unit` (summed over channels) is nonzero
    for some of 16 random images. A max-pool passes each gradient to one input of its window, so one
    image shows only part of the field; the union over images and channels shows all of it."""
    variables = random_variables(model)

    def unit_sum(x):
        return model.apply(variables, x)[:, unit[0], unit[1]].sum()

    grad = jax.jit(jax.grad(unit_sum))(images(size, 16))
    return np.asarray(jnp.abs(grad).max(axis=(0, 3)) > 0)


@pytest.mark.parametrize('name, stage, size, unit', [
    ('alexnet', 'features_2', 64, (2, 3)), ('alexnet', 'features_5', 96, (1, 2)),
    ('vgg16', 'features_4', 16, (0, 3)), ('vgg16', 'features_9', 32, (0, 3)),
    ('resnet18', 'maxpool', 32, (0, 3)), ('resnet18', 'layer2', 128, (0, 8)),
])
def test_receptive_fields_are_where_the_gradient_reaches(name, stage, size, unit):
    """Units at the border (0: the window clipped to the image) and inside it."""
    model = models.build_model(name, width=TINY, stop_at=stage)
    field = models.receptive_field(model, stage)
    expected = np.zeros((size, size), bool)
    rows, cols = (field.window(i) for i in unit)
    expected[max(rows.start, 0):rows.stop, max(cols.start, 0):cols.stop] = True
    assert max(rows.stop, cols.stop) <= size  # the window ends inside the image
    np.testing.assert_array_equal(gradient_support(model, size, unit), expected)


def test_receptive_fields_only_of_fixed_geometry_stages():
    alexnet = models.AlexNet()
    with pytest.raises(ValueError, match=r"'avgpool' has no receptive field of fixed size.*"
                                         r"'features_2', 'features_5', 'features_12'\]"):
        models.receptive_field(alexnet, 'avgpool')
    with pytest.raises(ValueError, match=r"has no stage 'features_3'; its stages are \['features_2'"):
        models.receptive_field(alexnet, 'features_3')
    with pytest.raises(ValueError, match=r"SmallCNN's stage 'block_0' has no receptive field"):
        models.receptive_field(models.SmallCNN(), 'block_0')
