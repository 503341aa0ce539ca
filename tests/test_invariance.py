"""Figure 4's Hamming maps of binarised activations: hand-counted cases and a numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctxfuse_jax.evaluate.invariance import hamming_maps, layer_means, resize_maps


def reference_hamming(sharp: np.ndarray, blurred: np.ndarray) -> np.ndarray:
    """Per position, count the channels whose on/off state differs, one position at a time."""
    n, h, w, c = sharp.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                out[i, y, x] = sum((sharp[i, y, x, k] > 0) != (blurred[i, y, x, k] > 0) for k in range(c)) / c
    return out


def test_hand_counted_channels():
    # Position 0: sharp on/off 1 0 1 0, blurred 1 1 0 0 -> channels 1 and 2 differ: 2/4.
    # Position 1: sharp all zero; blurred -0.1 (a negative counts as off), 0, 1e-3 (on), 0 -> 1/4.
    sharp = np.array([[[[1.0, 0.0, 2.0, -1.0], [0.0, 0.0, 0.0, 0.0]]]], np.float32)
    blurred = np.array([[[[0.5, 3.0, 0.0, -2.0], [-0.1, 0.0, 1e-3, 0.0]]]], np.float32)
    maps = hamming_maps(sharp, blurred)
    assert maps.shape == (1, 1, 2) and maps.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(maps), [[[0.5, 0.25]]])


def test_zero_and_negative_are_both_off():
    # A ReLU tap gives zeros, a pre-activation tap negatives: the same state, distance 0.
    zeros, negatives = np.zeros((1, 2, 2, 3), np.float32), -np.ones((1, 2, 2, 3), np.float32)
    np.testing.assert_array_equal(np.asarray(hamming_maps(zeros, negatives)), np.zeros((1, 2, 2)))
    positives = np.full((1, 2, 2, 3), 0.01, np.float32)
    np.testing.assert_array_equal(np.asarray(hamming_maps(zeros, positives)), np.ones((1, 2, 2)))


@pytest.mark.parametrize('channels', [1, 3, 8, 64])
def test_normalised_by_channel_count(channels):
    # One switched channel out of C is 1/C, whatever C.
    sharp = np.ones((2, 3, 1, channels), np.float32)
    blurred = sharp.copy()
    blurred[..., channels // 2] = 0.0
    np.testing.assert_allclose(np.asarray(hamming_maps(sharp, blurred)), np.full((2, 3, 1), 1 / channels))


def test_matches_reference_on_random_activations():
    rng = np.random.default_rng(0)
    sharp = rng.normal(size=(3, 5, 4, 7)).astype(np.float32)
    blurred = (sharp + rng.normal(scale=0.7, size=sharp.shape)).astype(np.float32)
    sharp[sharp < 0.2] = 0.0  # exact zeros, as after a ReLU
    np.testing.assert_allclose(np.asarray(hamming_maps(sharp, blurred)), reference_hamming(sharp, blurred),
                               rtol=0, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(hamming_maps(sharp, sharp)), np.zeros((3, 5, 4)))


def test_traces_inside_a_caller_jit():
    sharp = jnp.arange(24.0).reshape(1, 2, 3, 4) - 10.0

    @jax.jit
    def two_layers(a, b):
        return {'pool1': hamming_maps(a, b), 'pool2': hamming_maps(a[:, :1], b[:, :1])}

    out = two_layers(sharp, -sharp)
    np.testing.assert_allclose(np.asarray(out['pool1']), reference_hamming(np.asarray(sharp), -np.asarray(sharp)))
    assert out['pool2'].shape == (1, 1, 3)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match='one shape'):
        hamming_maps(np.zeros((1, 2, 2, 4)), np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r'\(N, H, W, C\)'):
        hamming_maps(np.zeros((2, 2, 4)), np.zeros((2, 2, 4)))


def test_resize_nearest_keeps_blocks_and_mean():
    maps = np.array([[[0.0, 0.25], [0.5, 1.0]]], np.float32)
    resized = np.asarray(resize_maps(maps, 4))
    expected = np.array([[[0.0, 0.0, 0.25, 0.25],
                          [0.0, 0.0, 0.25, 0.25],
                          [0.5, 0.5, 1.0, 1.0],
                          [0.5, 0.5, 1.0, 1.0]]])
    np.testing.assert_array_equal(resized, expected)
    assert resized.mean() == maps.mean()


def test_resize_bilinear_and_common_size():
    constant = np.full((2, 3, 3), 0.375, np.float32)
    np.testing.assert_allclose(np.asarray(resize_maps(constant, 12, method='bilinear')), np.full((2, 12, 12), 0.375))
    rng = np.random.default_rng(1)
    layers = {'pool1': rng.random((2, 16, 16)), 'pool5': rng.random((2, 1, 1))}
    resized = {name: resize_maps(m, 16) for name, m in layers.items()}
    assert {m.shape for m in resized.values()} == {(2, 16, 16)}
    np.testing.assert_allclose(np.asarray(resized['pool5']), np.broadcast_to(layers['pool5'], (2, 16, 16)), rtol=1e-6)
    with pytest.raises(ValueError, match=r'\(N, h, w\)'):
        resize_maps(np.zeros((4, 4)), 8)


def test_layer_means_worked_example():
    # pool1: two images of 2x2 maps summing to 0 + .5 + .25 + .25 + 1 + 0 + 0 + 0 = 2 over 8 -> 0.25.
    # pool2: two 1x1 maps, .75 and .25 -> 0.5.
    maps = {'pool1': np.array([[[0.0, 0.5], [0.25, 0.25]], [[1.0, 0.0], [0.0, 0.0]]]),
            'pool2': np.array([[[0.75]], [[0.25]]])}
    assert layer_means(maps) == {'pool1': 0.25, 'pool2': 0.5}


def test_layer_means_from_activations():
    # Image 0 position (0,0): 1 of 2 channels switched; everything else unchanged -> mean 1/2 / 4 positions.
    sharp = np.ones((2, 2, 1, 2), np.float32)
    blurred = sharp.copy()
    blurred[0, 0, 0, 1] = -1.0
    means = layer_means({'pool1': hamming_maps(sharp, blurred), 'pool2': hamming_maps(sharp, -sharp)})
    assert means == {'pool1': pytest.approx(0.125, abs=0), 'pool2': 1.0}
    assert all(isinstance(v, float) for v in means.values())
    with pytest.raises(ValueError, match="'empty'"):
        layer_means({'empty': np.zeros((0, 2, 2))})
