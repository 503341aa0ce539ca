"""Seed 001's blur study: its measures on hand-made numbers, the mixtures, the fully convolutional VGG, end to end."""

import importlib.util
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctxfuse_jax.experiments.blur_study import geometry, mixtures
from ctxfuse_jax.models.registry import build_model
from ctxfuse_jax.train import losses

GEOMETRY = geometry.Geometry(canonical=108, scales=(36, 72, 144), base_scale=72, train_crop=64,
                             rescales=(100, 108, 115))


def test_backbone_outputs_are_its_stages_outputs():
    """`outputs=(...)` returns each named stage's output (what `stop_at` there returns) and stops after the last."""
    model = build_model("vgg16_bn", num_classes=3, width=0.125, pool_size=(2, 2))
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
    images = jax.random.uniform(jax.random.PRNGKey(1), (2, 64, 64, 3))
    pyramid = model.clone(outputs=("features_6", "features_23"), num_classes=None).apply(variables, images)
    assert sorted(pyramid) == ["features_23", "features_6"]
    for name, value in pyramid.items():
        np.testing.assert_array_equal(value, model.clone(stop_at=name).apply(variables, images))
    with pytest.raises(ValueError, match="cannot stop at 'pool9'"):
        model.clone(outputs=("pool9",)).apply(variables, images)


def test_entropy_cross_entropy_and_top5_of_fixed_logits():
    """Uniform over 4 classes: entropy = cross-entropy = log 4; logits (log .7, log .2, log .1): entropy
    -sum p log p, cross-entropy -log p(label)."""
    uniform = jnp.zeros((1, 4))
    assert float(losses.entropy(uniform)[0]) == pytest.approx(math.log(4), rel=1e-6)
    assert float(losses.softmax_cross_entropy(uniform, jnp.asarray([2]))[0]) == pytest.approx(math.log(4), rel=1e-6)
    p = np.asarray([0.7, 0.2, 0.1])
    logits = jnp.log(jnp.asarray([p]))
    assert float(losses.entropy(logits)[0]) == pytest.approx(-(p * np.log(p)).sum(), rel=1e-6)
    assert float(losses.softmax_cross_entropy(logits, jnp.asarray([1]))[0]) == pytest.approx(-math.log(0.2), rel=1e-6)
    ranked = jnp.asarray([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]] * 3)
    np.testing.assert_array_equal(losses.in_top_k(ranked, jnp.asarray([0, 4, 5]), 5), [True, True, False])


def test_multiscale_average_of_fixed_outputs():
    """Position-averaged log-probabilities, then the mean over scales, as numpy computes them."""
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=(2, 1, 1, 5)), rng.normal(size=(2, 3, 3, 5))

    def log_softmax(x):
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    expected_small = log_softmax(small).mean(axis=(1, 2))
    expected_large = log_softmax(large).mean(axis=(1, 2))
    per_scale = {36: geometry.position_log_probs(jnp.asarray(small)), 144: geometry.position_log_probs(jnp.asarray(large))}
    np.testing.assert_allclose(per_scale[144], expected_large, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(geometry.combined(per_scale, (36, 144)), (expected_small + expected_large) / 2,
                               rtol=1e-5, atol=1e-6)


def test_the_default_programs_score_each_model_once_per_scale():
    """Table 1's program has the original at every scale; the base models' and the scale models' programs
    split the mixtures by their training scales; each (model, scale) pass runs once per program, and an
    ensemble is the mean of its members' log-probabilities."""
    from ctxfuse_jax.experiments.blur_study import scoring

    config = load_config("default")
    found = scoring.programs(config)
    assert found["table1"].names == ["original@36", "original@72", "original@144", "original@72+144"]
    assert sorted(found["base"].names) == [f"{m}@72" for m in ("only_d8", "sharp_d2468", "sharp_d4", "sharp_d8",
                                                               "sharp_shake")]
    assert sorted(found["scales"].names) == ["both_d2468@72+144", "large_d2468@144", "per_scale@72+144"]
    assert found["base"].only == ("sharp", "defocus", "camera_shake", "horizontal")
    assert found["scales"].only == ("sharp", "defocus")
    assert set(scoring.sources(config)) == {n for p in found.values() for n in p.names}

    calls = []
    rng = np.random.default_rng(0)
    maps = {(m, s): jnp.asarray(rng.normal(size=(2, s // 36, s // 36, 5))) for m in ("sharp_d2468", "large_d2468",
                                                                                  "both_d2468") for s in (72, 144)}

    def forward(model, images):
        calls.append((model, images.shape[1]))
        return maps[model, images.shape[1]]

    outs = found["scales"].logits(forward, jnp.zeros((2, 108, 108, 3)))
    assert sorted(calls) == sorted({("large_d2468", 144), ("both_d2468", 72), ("both_d2468", 144),
                                    ("sharp_d2468", 72)})
    per_pass = {key: geometry.position_log_probs(value) for key, value in maps.items()}
    np.testing.assert_allclose(outs["both_d2468@72+144"],
                               (per_pass["both_d2468", 72] + per_pass["both_d2468", 144]) / 2, rtol=1e-6)
    np.testing.assert_allclose(outs["per_scale@72+144"],
                               (per_pass["sharp_d2468", 72] + per_pass["large_d2468", 144]) / 2, rtol=1e-6)


def test_fully_convolutional_vgg_slides_its_classifier_and_pads_small_maps():
    """At a larger input each output position is the dense classifier on one 2x2 window of pool5; below
    the window the map is zero-padded to it (centred); at the training size both networks agree."""
    model = build_model("vgg16_bn", num_classes=3, width=0.125, pool_size=(2, 2), dropout_rate=0.0)
    dense = model.clone(fully_convolutional=True)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
    images = jax.random.uniform(jax.random.PRNGKey(1), (2, 128, 128, 3))
    np.testing.assert_allclose(dense.apply(variables, images[:, :64, :64])[:, 0, 0],
                               model.apply(variables, images[:, :64, :64]), rtol=1e-4, atol=1e-5)
    pool5 = np.asarray(model.clone(stop_at="features_43").apply(variables, images))
    params = jax.tree.map(np.asarray, variables["params"])

    def classifier(window):  # fc6, fc7, head on one flattened HWC window, in numpy
        x = np.maximum(window.reshape(len(window), -1) @ params["classifier_0"]["kernel"]
                       + params["classifier_0"]["bias"], 0)
        x = np.maximum(x @ params["classifier_3"]["kernel"] + params["classifier_3"]["bias"], 0)
        return x @ params["classifier_6"]["kernel"] + params["classifier_6"]["bias"]

    out = np.asarray(dense.apply(variables, images))
    assert out.shape == (2, 3, 3, 3) and pool5.shape[1:3] == (4, 4)
    for i, j in ((0, 0), (1, 2), (2, 1)):
        np.testing.assert_allclose(out[:, i, j], classifier(pool5[:, i:i + 2, j:j + 2]), rtol=1e-4, atol=1e-4)
    small_pool5 = np.asarray(model.clone(stop_at="features_43").apply(variables, images[:, :36, :36]))
    assert small_pool5.shape[1:3] == (1, 1)
    padded = np.pad(small_pool5, ((0, 0), (0, 1), (0, 1), (0, 0)))  # 1 -> 2: 0 before, 1 after
    np.testing.assert_allclose(np.asarray(dense.apply(variables, images[:, :36, :36]))[:, 0, 0],
                               classifier(padded), rtol=1e-4, atol=1e-4)


def test_mixture_kernel_frequencies_over_many_draws():
    """20% sharp and 80% shake (the paper's camera-shake mixture) and the uniform defocus mix: the
    drawn options follow the weights within 4 standard errors over 20,000 images; the radii follow."""
    for weights in (dict(sharp=0.2, shake=0.8), dict(sharp=1, D2=1, D4=1, D6=1, D8=1)):
        mixture = mixtures.Mixture.from_weights(weights)
        choice = np.asarray(mixture.draw(jax.random.PRNGKey(3), 20_000))
        expected = np.asarray(list(weights.values()), float) / sum(weights.values())
        frequencies = np.bincount(choice, minlength=len(weights)) / len(choice)
        assert np.all(np.abs(frequencies - expected) < 4 * np.sqrt(expected * (1 - expected) / len(choice)))
    params = mixture.blur_params(jnp.asarray(choice[:50]), jax.random.PRNGKey(4), jnp.ones(50), 1.0, 0.5)
    np.testing.assert_allclose(np.asarray(params.values[:, 0]), 0.5 * np.asarray([0, 2, 4, 6, 8])[choice[:50]])


def _spread(images):
    """Per-axis variance of each image's brightness about its centroid (px^2)."""
    weights = images.sum(-1)
    weights = weights / weights.sum(axis=(1, 2), keepdims=True)
    rows = np.arange(weights.shape[1])[None, :, None]
    mean = (weights * rows).sum(axis=(1, 2), keepdims=True)
    return (weights * (rows - mean) ** 2).sum(axis=(1, 2))


def test_a_kernel_has_one_size_at_the_network_for_every_image_of_a_target_scale():
    """A small square of light blurred by D8 and by D4 in the training path (same key: same windows):
    at the network input the difference of their spreads is that of disks of radius 8 and 4 times
    target / 384 (per-axis variance r^2 / 4), whatever rescale each image drew; an image fed at twice
    the scale has kernels twice as wide."""
    point = np.zeros((8, 108, 108, 3), np.float32)
    point[:, 50:58, 50:58] = 1.0  # survives the resampling to 64 px
    _, drawn = mixtures.windows(jax.random.split(jax.random.PRNGKey(0), 4)[0], 8, GEOMETRY, (72, 144))
    spreads = {}
    for level in ("D4", "D8"):
        crops, _ = mixtures.train_images(jnp.asarray(point), jax.random.PRNGKey(0), GEOMETRY,
                                         mixtures.Mixture.from_weights({level: 1.0}), (72, 144), flip=False)
        spreads[level] = _spread(np.asarray(crops, np.float64))
    drawn = np.asarray(drawn)
    assert set(drawn) == {72, 144}
    for target in (72, 144):
        expected = ((8 * target / 384) ** 2 - (4 * target / 384) ** 2) / 4
        np.testing.assert_allclose((spreads["D8"] - spreads["D4"])[drawn == target], expected, rtol=0.2)


def load_config(preset: str):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("blur_config", os.path.join(root, "configs", "blur_study.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


@pytest.mark.parametrize("preset", ["default", "smoke", "imagenet"])
def test_every_preset_passes_the_config_checks(preset):
    from ctxfuse_jax import config_checks

    config_checks.check_config(load_config(preset))


@pytest.mark.parametrize("override, message", [
    (("protocol", "base_scale", 80), "must be one of protocol.scales"),
    (("fine_tune.mixtures.sharp_d4", "weights", {"D3": 1.0}), "is not a blur option"),
    (("fine_tune.mixtures.sharp_shake", "target_scales", (72, 144)), "fixed bank"),
    (("protocol", "train_crop", 100), "needs more than the 108 px stored"),
    (("deblur", "method", "epll"), "deconvolution method"),
    (("eval", "scale_conditions", ("sharp", "deblurred")), "'deblurred' is not one"),
    (("eval", "model_conditions", ("sharp", "sharp")), "'sharp' is given twice"),
])
def test_config_checks_refuse_bad_values(override, message):
    from ctxfuse_jax import config_checks
    from ctxfuse_jax.errors import ConfigError

    config = load_config("default")
    where, name, value = override
    section = config
    for part in where.split("."):
        section = section[part]
    with section.ignore_type():
        section[name] = value
    with pytest.raises(ConfigError, match=message):
        config_checks.check_config(config)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, record_condition_steps):
    """(config, workdir, the condition programs it built) of one `configs/blur_study.py:smoke` run,
    claimed as the CLI claims it: this file's tests share it and must not change its files."""
    from ctxfuse_jax import config_checks, provenance
    from ctxfuse_jax import workdir as workdirs
    from ctxfuse_jax.experiments.blur_study import experiment

    root = tmp_path_factory.mktemp("blur_study")
    config = load_config("smoke")
    config.data.data_dir = str(root / "tfds")
    config_checks.check_config(config)
    workdir = root / "work"
    workdirs.claim(str(workdir), config, provenance.input_digests(config))
    with pytest.MonkeyPatch.context() as patch:
        condition_steps = record_condition_steps(patch)
        experiment.run(config, str(workdir))
    return config, workdir, condition_steps


def test_smoke_run_end_to_end(smoke_run):
    """`configs/blur_study.py:smoke`: every table in report.md, figures, results with the fingerprint;
    Table 1's multi-scale program and the models' program each compiled once for every condition."""
    config, workdir, condition_steps = smoke_run
    report = (workdir / "report.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Figure 4", "Table 6", "## Claims"):
        assert title in report
    for figure in ("table1", "invariance", "examples"):
        assert (workdir / "figures" / f"{figure}.png").stat().st_size > 1000
    results = json.loads((workdir / "results.json").read_text())
    assert results["fingerprint"]["experiment"] == "blur_study"
    assert [step._cache_size() for step in condition_steps] == [1, 1, 1]  # Table 1, base and scale models
    rows = (workdir / "table.csv").read_text().splitlines()
    assert any(row.startswith("0,table1,original@144,defocus,D8,top5,") for row in rows)


def test_the_finished_workdir_reads_back_every_scored_classifier(smoke_run, finished_scores, matches_recorded,
                                                                 refused_without_stage):
    """`read_finished`: per seed every output the study scores (the original at each scale and
    combination, the fine-tuned mixtures, ensembles), each scoring the sharp test split as results.json
    says; a workdir missing one stage's result is refused, naming the stage."""
    from ctxfuse_jax.experiments.blur_study import scoring
    from ctxfuse_jax.experiments.finished import read_finished

    config, workdir, _ = smoke_run
    finished = read_finished(str(workdir))
    assert [m.name for m in finished.models] == ["seed_0"]
    scores = finished_scores(finished.models[0], finished.data.test, config.eval.batch_size)
    sources = scoring.sources(config)
    assert sorted(scores) == sorted(sources)
    assert {"original@36", "original@72", "original@144", "sharp_d2468@72", "large_d2468@144"} <= set(scores)
    summary = json.loads((workdir / "results.json").read_text())["summary"]["0"]
    checked = []
    for name, values in scores.items():
        key = f"{sources[name]}/{name}/sharp/sharp"  # the programs that score sharp images
        if f"{key}/top1" in summary:
            recorded = {ours: summary[f"{key}/{metric}"]
                        for ours, metric in (("accuracy", "top1"), ("loss", "cross_entropy"), ("entropy", "entropy"))}
            assert matches_recorded(values, recorded, name) == ["accuracy", "loss", "entropy"]
            checked.append(name)
    assert {"original@72", "sharp_d2468@72"} <= set(checked)

    refused_without_stage(workdir, "seed_0/sharp_d2468")


def test_the_imagenet_preset_starts_from_converted_weights(tmp_path):
    """`pretrained.weights` set: the original model is the file's variables (nothing trained), checked
    key by key against the configured VGG."""
    from ctxfuse_jax.data.pipeline import ArraySplit
    from ctxfuse_jax.data.sources import Labelled
    from ctxfuse_jax.experiments.blur_study import experiment
    from ctxfuse_jax.models.variables import flatten
    from ctxfuse_jax.train import sharding
    from ctxfuse_jax.weights.pretrained import save_weights

    config = load_config("imagenet")
    config.model.width = 0.125  # a narrow VGG-16, as converted weights of any width load the same way
    module = build_model("vgg16", num_classes=10, width=0.125, pool_size=(7, 7))
    variables = jax.device_get(module.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3))))
    path = tmp_path / "vgg16.npz"
    save_weights(path, flatten(variables), {"arch": "vgg16"})
    config.pretrained.weights = str(path)
    split = ArraySplit({"image": np.zeros((2, 8, 8, 3), np.uint8), "label": np.zeros(2, np.int32)})
    data = Labelled(split, split, tuple(str(i) for i in range(10)), (), np.zeros(0, int))
    study = experiment.Study(config, data, sharding.make_mesh(), str(tmp_path))
    loaded, metrics = study.original(seed=0, seed_dir=str(tmp_path / "seed_0"))
    assert metrics == {} and not os.path.exists(tmp_path / "seed_0")
    for key, value in flatten(variables).items():
        np.testing.assert_array_equal(flatten(loaded)[key], value)
