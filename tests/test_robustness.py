"""The robustness report: ECE and corruption errors by hand, the evaluator's confidence against numpy, a
bad config at the command line, and configs/robustness.py:smoke end to end on a tiny supervised run."""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import flax.linen as nn
import ml_collections
import numpy as np
import pytest

from ctxfuse_jax import config_checks, degrade, provenance, workdir
from ctxfuse_jax.data.pipeline import ArraySplit
from ctxfuse_jax.evaluate.evaluator import evaluate_conditions, make_condition_step
from ctxfuse_jax.experiments.robustness import conditions, measures
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.state import Player, PlayerSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSIFIER = "sup/classifier/resnet18"  # the supervised workdir is called `sup`


def load_config(name: str, preset: str) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(f"{name}_config", os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


# --- measures by hand --------------------------------------------------------------------------


def test_expected_calibration_error_by_hand():
    # 15 bins of width 1/15, bin m = ((m-1)/15, m/15]:
    #   0.95, 0.97 -> bin 15 (0.933, 1]: accuracy 1/2, confidence 0.96, gap 0.46, share 2/5 -> 0.184
    #   0.55, 0.58 -> bin 9 (0.533, 0.6]: accuracy 1, confidence 0.565, gap 0.435, share 2/5 -> 0.174
    #   0.30       -> bin 5 (0.267, 0.333]: accuracy 0, confidence 0.30, gap 0.30, share 1/5 -> 0.060
    # ECE = 0.184 + 0.174 + 0.060 = 0.418.
    confidence = np.array([0.95, 0.97, 0.55, 0.58, 0.30])
    correct = np.array([True, False, True, True, False])
    assert measures.expected_calibration_error(confidence, correct) == pytest.approx(0.418, abs=1e-12)
    # What wrong formulas give: one global gap |0.6 - 0.67| = 0.07; bins unweighted (0.46 + 0.435 +
    # 0.30) / 3 = 0.398; per example mean |correct - confidence| = 2.19 / 5 = 0.438.
    # A confidence on a bin edge goes to the bin below it: 0.6 = 9/15 -> bin 9, 0.62 -> bin 10, so
    # ECE = 1/2 |1 - 0.6| + 1/2 |0 - 0.62| = 0.51; bins closed on the left would hold both: 0.11.
    assert measures.expected_calibration_error(np.array([0.6, 0.62]), np.array([True, False])) == pytest.approx(0.51)


def test_corruption_errors_by_hand():
    # Top-1 errors at two severities of two corruptions; clean errors 0.05 (f) and 0.1 (baseline b).
    f = {"blur": [0.2, 0.2], "noise": [0.6, 0.9]}
    b = {"blur": [0.2, 0.6], "noise": [0.5, 0.5]}
    # CE_blur = (0.2 + 0.2) / (0.2 + 0.6) = 50%; CE_noise = 1.5 / 1.0 = 150%; mCE = 100%.
    # (A mean of per-severity ratios would give CE_blur = (1 + 1/3) / 2 = 66.7%, errors pooled over
    # corruptions 1.9 / 1.8 = 105.6%.)
    ce, mce = measures.mean_corruption_error(f, b)
    assert ce == pytest.approx({"blur": 50.0, "noise": 150.0}) and mce == pytest.approx(100.0)
    # Relative: blur (0.15 + 0.15) / (0.1 + 0.5) = 50%; noise (0.55 + 0.85) / (0.4 + 0.4) = 175%;
    # relative mCE = 112.5%. (Not subtracting the baseline's clean error: 0.3 / 0.8, 1.4 / 1.0 -> 88.75%.)
    relative, relative_mce = measures.mean_corruption_error(f, b, 0.05, 0.1)
    assert relative == pytest.approx({"blur": 50.0, "noise": 175.0}) and relative_mce == pytest.approx(112.5)
    # The baseline against itself: exactly 100, not nearly (100 * 0.1 / 0.1 with 0.01 + 0.09 summed
    # in floats is 100.00000000000001).
    itself = {"blur": [0.01, 0.09], "noise": [0.09, 0.01]}
    assert measures.mean_corruption_error(itself, itself) == ({"blur": 100.0, "noise": 100.0}, 100.0)
    # Undefined where the baseline is never wrong, or no worse corrupted than clean.
    assert np.isnan(measures.corruption_error([0.1], [0.0]))
    assert np.isnan(measures.mean_corruption_error({"x": [0.3]}, {"x": [0.2]}, 0.1, 0.2)[1])


def test_host_codecs_become_the_test_conditions_of_data_degraded():
    chosen = conditions.corruptions({"j": {"preset": "imagenet_c/jpeg_compression", "levels": ("2", "5")},
                                     "k": {"preset": "ghosh/noise_jpeg", "levels": ("q10",)},
                                     "g": {"preset": "imagenet_c/gaussian_blur", "levels": ()}})
    assert [c.on_device for c in chosen] == [False, False, True]
    assert [(b.kind, b.low, b.noise_std) for b in chosen[0].host_bins() + chosen[1].host_bins()] == [
        ("jpeg", 18.0, 0.0), ("jpeg", 7.0, 0.0), ("jpeg", 10.0, 0.1)]
    assert chosen[2].levels == ("1", "2", "3", "4", "5") and chosen[0].severities == (2, 5)
    assert conditions.corruptions({"s": {"preset": "vasiljevic/camera_shake"}})[0].severities == (1,)
    # A host codec's region: the degraded pixels inside it, the clean ones (bit for bit) outside, as on device.
    rng = np.random.default_rng(1)
    clean, worse = rng.integers(0, 256, (2, 3, 5, 5, 3), dtype=np.uint8)
    mask = rng.random((3, 5, 5, 1)) > 0.5
    for region in ("all", "foreground", "background"):
        np.testing.assert_array_equal(conditions.in_region(clean, worse, mask, region),
                                      degrade.regions.composite(clean, worse, mask, region), err_msg=region)
    np.testing.assert_array_equal(conditions.in_region(clean, worse, mask, "foreground")[~mask[..., 0]],
                                  clean[~mask[..., 0]])


# --- the evaluator's confidence -----------------------------------------------------------------


class Linear(nn.Module):
    @nn.compact
    def __call__(self, images, train: bool = False):
        return nn.Dense(5)(images.reshape(len(images), -1))


def test_confidence_is_the_max_softmax_probability():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 3, 3, 3), dtype=np.uint8)
    kernel, bias = rng.normal(size=(27, 5)).astype(np.float32) * 0.3, rng.normal(size=5).astype(np.float32)
    split = ArraySplit({"image": images, "label": rng.integers(0, 5, 7)})
    families = [conditions.clean_family()]
    step = make_condition_step({"m": PlayerSpec(Linear())}, lambda fw, x: {"m": fw("m", x)}, families)
    players = {"m": Player({"Dense_0": {"kernel": kernel, "bias": bias}}, {}, None)}
    scores = evaluate_conditions(step, players, split, families, 4, sharding.make_mesh(), num_classes=5)
    logits = (images.reshape(7, -1).astype(np.float64) / 255.0) @ kernel + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    family = scores.family(conditions.CLEAN)
    np.testing.assert_allclose(family.confidence["m"][0], probabilities.max(1), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(family.predictions["m"][0], probabilities.argmax(1))
    assert 0.2 < probabilities.max(1).min() and probabilities.max(1).max() < 0.999  # not all saturated


# --- the command line refuses a bad config in one line ------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished supervised run (configs/supervised.py:smoke, 16 px, 160 images) in a workdir `sup`."""
    from ctxfuse_jax.experiments import supervised

    root = tmp_path_factory.mktemp("robustness")
    config = load_config("supervised", "smoke")
    config.data.update(num_examples=160, image_size=16, data_dir=str(root / "tfds"))
    config.train.batch_size = 16
    path = str(root / "sup")
    workdir.claim(path, config, provenance.input_digests(config))
    results = supervised.run(config, path)
    return path, results


def _cli(*args: str, cwd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CTXFUSE_TRACEBACK"}
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run([sys.executable, "-m", "ctxfuse_jax.main", "--config=configs/robustness.py:smoke", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_or_unfinished_workdir_is_one_line_and_status_2(trained, tmp_path):
    unfinished = tmp_path / "half"
    shutil.copytree(trained[0], unfinished)
    os.remove(unfinished / "classifier" / "eval.json")
    cases = {str(tmp_path / "nope"): f"no such directory {tmp_path / 'nope'}; train there first",
             str(unfinished): "is not finished (stage classifier has no eval.json): run its config there"}
    for path, expected in cases.items():
        result = _cli(f"--config.workdirs=('{path}',)", f"--workdir={tmp_path / 'rob'}", cwd=ROOT)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2, result.stderr[-3000:]
        assert len(lines) == 1 and lines[0].startswith(f"error: config.workdirs[0]={path!r}: "), lines
        assert expected in lines[0], lines[0]
        assert not (tmp_path / "rob").exists()


def test_a_dataset_is_named_exactly_where_a_workdir_holds_several(trained, tmp_path):
    """`PATH:DATASET` picks one dataset of a bg_invariant run; with several, leaving it out is refused at
    start-up, as is a dataset the run lacks or one named for a run without datasets."""
    from ctxfuse_jax.errors import ConfigError

    two = tmp_path / "bg"
    two.mkdir()
    recorded = {"experiment": "bg_invariant", "datasets": {"digits": {}, "objects": {}}}
    (two / "config.json").write_text(json.dumps(recorded))
    (two / "results.json").write_text("{}")
    assert workdir.workdir_and_choices(f"{two}:objects") == (str(two), {"dataset": "objects"})
    assert workdir.workdir_and_choices("/runs/a:b/sup") == ("/runs/a:b/sup", {})  # ':' only in the last part
    config = load_config("robustness", "smoke")
    config.workdirs = (f"{two}:objects", f"{two}:digits", trained[0])
    config_checks.check_config(config)
    cases = {str(two): r"holds the datasets \['digits', 'objects'\]: name one as PATH:DATASET",
             f"{two}:faces": "names the dataset 'faces', but that bg_invariant run holds the datasets",
             f"{trained[0]}:digits": "but that supervised run holds no datasets to choose from"}
    for spec, expected in cases.items():
        config.workdirs = (spec,)
        with pytest.raises(ConfigError, match=expected):
            config_checks.check_config(config)


# --- end to end ---------------------------------------------------------------------------------


def test_smoke_report_on_a_supervised_run(trained, tmp_path, condition_steps, snapshot):
    from ctxfuse_jax.experiments.robustness import experiment

    source, supervised_results = trained
    config = load_config("robustness", "smoke")
    config.workdirs = (source,)
    config_checks.check_config(config)
    out = str(tmp_path / "rob")
    workdir.claim(out, config, provenance.input_digests(config))
    before = snapshot(source)
    results = experiment.run(config, out)
    assert snapshot(source) == before  # read, never written
    # One program scored every condition, the host codecs' images included.
    assert [step._cache_size() for step in condition_steps] == [1]

    scored = results["classifiers"][CLASSIFIER]
    assert results["baseline"] == CLASSIFIER and list(results["classifiers"]) == [CLASSIFIER]
    # The same test split and model as the supervised run's own evaluation: the same accuracy.
    assert abs(scored["clean_accuracy"] - supervised_results["test"]["accuracy"]) <= 1e-6
    # Mean entropy too: any change to the images or the model would move it (float32 sums: 1e-5).
    assert scored["clean_entropy"] == pytest.approx(supervised_results["test"]["entropy"], rel=1e-5)
    assert scored["test_images"] == supervised_results["num_test"] == 40
    stored = json.loads((tmp_path / "rob" / "results.json").read_text())
    assert abs(stored["classifiers"][CLASSIFIER]["metrics"]["clean"]["all"]["0"]["accuracy"]
               - supervised_results["test"]["accuracy"]) <= 1e-6
    for region in ("all", "foreground", "background"):
        assert stored["classifiers"][CLASSIFIER]["corruption_errors"][region]["mce"] == 100.0
    assert stored["fingerprint"] == provenance.run_fingerprint(config)
    assert stored["sources"][source]["config_sha256"] == provenance.file_sha256(os.path.join(source, "config.json"))
    assert any(p.startswith("classifier/checkpoints/") for p in stored["sources"][source]["checkpoints"])

    with open(tmp_path / "rob" / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["model", "condition", "severity", "region", "metric", "value"]
    measured = {(r["condition"], r["severity"], r["region"], r["metric"]) for r in rows}
    # clean; 2 corruptions x 2 severities x 3 regions; 3 IN-9 variants: each with 3 measures.
    expected = {("clean", "0", "all")} | {(c, s, r) for c in ("gaussian_blur", "jpeg_compression") for s in ("1", "3")
                                          for r in ("all", "foreground", "background")} | {
        ("in9", v, "all") for v in ("original", "only_fg", "mixed_rand")}
    assert {key for key in measured if key[3] in ("accuracy", "entropy", "ece")} == {
        (*k, m) for k in expected for m in ("accuracy", "entropy", "ece")}
    assert {key for key in measured if key[3] in ("ce", "relative_ce", "mce", "relative_mce")} == {
        (c, "", r, m) for r in ("all", "foreground", "background")
        for c, m in [(c, m) for c in ("gaussian_blur", "jpeg_compression") for m in ("ce", "relative_ce")]
        + [("mean", "mce"), ("mean", "relative_mce")]}
    # The IN-9 Original variant is the clean image.
    assert scored["metrics"]["in9"]["all"]["original"] == scored["metrics"]["clean"]["all"]["0"]
    for file in ("heatmap_sup_classifier_resnet18.png", "accuracy_vs_severity.png"):
        assert os.path.getsize(tmp_path / "rob" / file) > 10_000, file
    report = (tmp_path / "rob" / "report.md").read_text()
    assert f"| {CLASSIFIER} |" in report and "jpeg_compression" in report and "host codec" in report
