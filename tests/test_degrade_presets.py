"""Named presets: published values, every level runs, one compilation per sweep, regions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctxfuse_jax.degrade import presets, regions

SHAPE = (2, 16, 16, 3)


@pytest.fixture(scope="module")
def images():
    import skimage.data

    photo = skimage.data.chelsea()[::16, ::16][:16, :16].astype(np.float32) / 255.0
    return jnp.asarray(np.stack([photo, photo[:, ::-1]]))


def _param(degradation, name):
    return dict(degradation.params)[name]


def test_imagenet_c_presets_hold_the_published_severities():
    def values(preset, read):
        return [read(d) for d in presets.get_preset(preset).levels.values()]

    assert values("imagenet_c/gaussian_blur", lambda d: _param(d, "sigma")) == [1, 2, 3, 4, 6]
    assert values("imagenet_c/defocus_blur", lambda d: _param(d, "radius")) == [3, 4, 6, 8, 10]
    assert values(
        "imagenet_c/motion_blur", lambda d: (_param(d, "radius"), _param(d, "sigma"))
    ) == [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)]
    assert values("imagenet_c/gaussian_noise", lambda d: d.std) == [0.08, 0.12, 0.18, 0.26, 0.38]
    assert values("imagenet_c/jpeg_compression", lambda d: d.quality) == [25, 18, 15, 10, 7]
    assert presets.get_preset("vasiljevic/defocus").labels == ("D2", "D4", "D6", "D8")
    assert presets.get_preset("vasiljevic/motion").labels == ("H4", "H8", "V4", "V8")
    joshi = presets.get_preset("joshi/gaussian").levels.values()
    assert [_param(d, "sigma") for d in joshi] == list(range(13))


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_level_runs_and_keeps_images_valid(images, name):
    key = jax.random.key(0)
    for degradation in presets.get_preset(name).levels.values():
        out = np.asarray(presets.degrade(images, degradation, key))
        assert out.shape == SHAPE and out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(
    "name",
    [
        "imagenet_c/gaussian_blur",
        "imagenet_c/defocus_blur",
        "imagenet_c/motion_blur",
        "imagenet_c/gaussian_noise",
        "imagenet_c/jpeg_compression",
    ],
)
def test_severities_are_ordered(images, name):
    key = jax.random.key(1)
    errors = [
        float(jnp.mean(jnp.abs(presets.degrade(images, d, key) - images)))
        for d in presets.get_preset(name).levels.values()
    ]
    assert errors == sorted(errors) and errors[0] > 0


def test_random_parameters_follow_the_key(images):
    shake = presets.get_preset("vasiljevic/camera_shake")["shake"]
    a = np.asarray(shake(images, jax.random.key(3)))
    np.testing.assert_array_equal(a, shake(images, jax.random.key(3)))
    assert not np.array_equal(a, shake(images, jax.random.key(4)))


def test_degrade_in_a_region_keeps_the_rest(images):
    mask = regions.box_mask([[0.25, 0.25, 0.75, 0.75]] * 2, 16, 16)
    degradation = presets.get_preset("imagenet_c/gaussian_noise")["5"]
    out = np.asarray(
        presets.degrade(images, degradation, jax.random.key(0), mask=mask, region="foreground")
    )
    outside = ~np.broadcast_to(np.asarray(mask), SHAPE)
    np.testing.assert_array_equal(out[outside], np.asarray(images)[outside])
    assert not np.array_equal(out[~outside], np.asarray(images)[~outside])


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(KeyError, match="valid: vasiljevic/defocus, vasiljevic/motion"):
        presets.get_preset("imagenet_c/zoom_blur")
    with pytest.raises(KeyError, match="valid: D2, D4, D6, D8"):
        presets.get_preset("vasiljevic/defocus")["D3"]
