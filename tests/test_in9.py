"""Seed 004: its measures by hand, the variant training sets, the release on a written tree, the smoke run."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from ctxfuse_jax import config_checks, degrade
from ctxfuse_jax.data import image_folders
from ctxfuse_jax.data.pipeline import ArraySplit
from ctxfuse_jax.experiments.in9 import data as in9_data
from ctxfuse_jax.experiments.in9 import measures
from ctxfuse_jax.models.registry import build_model
from ctxfuse_jax.models.variables import flatten
from ctxfuse_jax.weights import load_pretrained, save_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(preset: str) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location("in9_config", os.path.join(ROOT, "configs", "in9.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


def test_bg_gap_and_the_challenge_by_hand():
    assert measures.bg_gap({"mixed_same": 0.8, "mixed_rand": 0.55}) == pytest.approx(0.25)
    # 3 backgrounds x 4 foregrounds: foregrounds 0 and 3 survive every background, 1 and 2 do not.
    correct = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]], bool)
    assert measures.challenge_accuracy(correct) == 0.5
    foreground_labels, background_labels = np.array([0, 0, 1, 2]), np.array([0, 1, 2])
    # Background 0 (class 0) against the other classes' foregrounds 2, 3: fools 2 -> 1/2.
    # Background 1 (class 1) against foregrounds 0, 1, 3: fools 1 -> 1/3. Background 2: fools none.
    np.testing.assert_allclose(measures.fooling_rates(correct, foreground_labels, background_labels), [0.5, 1 / 3, 0])
    top = measures.most_adversarial(np.array([0.2, 0.9, 0.5, 0.1]), np.array([0, 1, 0, 0]), per_class=2)
    assert {c: v.tolist() for c, v in top.items()} == {0: [2, 0], 1: [1]}


def test_which_signal_a_mixed_rand_prediction_follows_by_hand():
    predictions = np.array([0, 1, 2, 3, 0])
    foreground, background = np.array([0, 0, 1, 1, 2]), np.array([1, 1, 1, 2, 2])
    # Examples 2 and 4 have a same-class donor: left out. 0 follows the foreground, 1 the background,
    # 3 neither.
    assert measures.follows(predictions, foreground, background) == {
        "foreground": pytest.approx(1 / 3), "background": pytest.approx(1 / 3), "neither": pytest.approx(1 / 3),
        "count": 3}
    with pytest.raises(ValueError, match="nothing to tell apart"):
        measures.follows(predictions[:1], foreground[:1], foreground[:1])


def test_gradcam_mass_inside_the_mask_by_hand():
    heatmaps = np.array([[[1.0, 3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = np.array([[[0, 1], [0, 0]], [[1, 1], [1, 1]]])[..., None]
    mass = measures.mass_inside(heatmaps, masks)
    assert mass[0] == pytest.approx(0.75) and np.isnan(mass[1])


def test_training_sets_are_the_variants_in_exact_uint8():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    masks = np.zeros((6, 12, 12, 1), np.uint8)
    masks[:, 4:8, 3:9] = 1
    boxes = np.tile([[4 / 12, 3 / 12, 8 / 12, 9 / 12]], (6, 1)).astype(np.float32)
    split = ArraySplit({"image": images, "label": np.arange(6) % 3, "bbox": boxes, "mask": masks})
    for variant in degrade.VARIANTS:
        made = in9_data.variant_split(split, variant, 3, seed=4).arrays["image"]
        host = degrade.background_variant(variant, images / np.float32(255), split.arrays["label"], boxes, masks,
                                          seed=4, num_classes=3)
        np.testing.assert_array_equal(made, np.round(host * 255), err_msg=variant)
        # Pixels are copied, never blended: each one is an original pixel value or black.
        assert np.isin(made, np.append(images, 0)).all()


def test_images_whose_box_leaves_no_background_are_left_out():
    from ctxfuse_jax.data.sources import Labelled

    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.5], [0.25, 0, 1, 1]], np.float32)  # whole, left half, lower part
    split = ArraySplit({"image": np.zeros((3, 4, 4, 3), np.uint8), "label": np.array([0, 1, 0]), "bbox": boxes,
                        "mask": np.ones((3, 4, 4, 1), np.uint8)})
    np.testing.assert_array_equal(in9_data.has_background_strip(split), [False, True, True])
    kept, dropped = in9_data.usable(Labelled(split, split, ("a", "b"), (), np.array([])))
    assert len(kept.train) == len(kept.test) == 2 and dropped == {"train": 1, "test": 1}


# --- the release, written here -------------------------------------------------------------------

CLASSES = ("a_cat", "b_dog", "c_eel")
SIZE = 16
TINY = 0.0625


def write_release(root) -> None:
    """Two random tinted 16x16 PNGs per class in every variant folder, and a random mask per image."""
    rng = np.random.default_rng(1)
    for variant in image_folders.VARIANT_FOLDERS:
        for name in CLASSES:
            folder = root / variant / "val" / name
            folder.mkdir(parents=True)
            for i in range(2):
                image = rng.integers(0, 256, (SIZE, SIZE, 3)) * rng.uniform(size=3)
                Image.fromarray(image.astype(np.uint8)).save(folder / f"{name}{i}.png")
    for name in CLASSES:
        folder = root / "fg_mask" / "val" / name
        folder.mkdir(parents=True)
        for i in range(2):
            np.save(folder / f"{name}{i}.npy", rng.uniform(size=(SIZE, SIZE)) > 0.5)


def calibrated_weights(model, images: np.ndarray) -> dict:
    """Random weights whose batch-norm statistics fit `images`: unlike raw random ones (which give one
    class for every input), their predictions vary from image to image."""
    variables = model.init(jax.random.PRNGKey(0), images[:1])
    update = jax.jit(lambda v: model.apply(v, images, train=True, mutable=["batch_stats"])[1])
    for _ in range(30):  # BN momentum 0.9: 0.9 ** 30 of the initial statistics is left
        variables = {**variables, **update(variables)}
    return {k: np.asarray(v) for k, v in flatten(variables).items()}


@pytest.fixture
def release(tmp_path):
    write_release(tmp_path / "release")
    model = build_model("resnet18", num_classes=6, width=TINY)
    images = np.concatenate([image_folders.load_variant(str(tmp_path / "release"), v, SIZE).arrays["image"]
                             for v in image_folders.VARIANT_FOLDERS]) / np.float32(255)
    weights = tmp_path / "tiny.npz"
    save_weights(weights, calibrated_weights(model, images), {"arch": "resnet18"})
    class_map = tmp_path / "to_3.json"
    class_map.write_text(json.dumps({"0": 0, "1": -1, "2": 1, "3": 2, "4": 0, "5": 1}))
    config = load_config("release")
    config.data.root, config.data.image_size = str(tmp_path / "release"), SIZE
    config.eval.batch_size = 4
    config.pretrained = ml_collections.ConfigDict({"tiny": dict(
        arch="resnet18", width=TINY, num_classes=6, weights=str(weights), class_map=str(class_map))})
    return config, model, np.array([0, -1, 1, 2, 0, 1])


def test_the_release_is_scored_through_the_class_map(release, tmp_path):
    from ctxfuse_jax.experiments.in9.experiment import run

    config, model, class_map = release
    config_checks.check_config(config)
    workdir = tmp_path / "run"
    workdir.mkdir()
    results = run(config, str(workdir))["trained"][0]["models"]["tiny"]

    # Independently: the model applied to each stored image, its top-1 of 6 classes mapped to 3.
    variables = load_pretrained(config.pretrained.tiny.weights, model)
    predict = jax.jit(lambda x: jnp.argmax(model.apply(variables, x), -1))
    root = config.data.root
    correct, sources = {}, []
    for variant in config.eval.conditions.in9.variants:
        split = image_folders.load_variant(root, variant, SIZE)
        sources.append(np.asarray(predict(split.arrays["image"] / np.float32(255))))
        correct[variant] = class_map[sources[-1]] == split.arrays["label"]
        assert results["accuracy"][variant] == pytest.approx(correct[variant].mean()), variant
    # The case tests the map: predictions spread over the source classes, some of them unmapped.
    assert len(set(np.concatenate(sources))) >= 4 and (class_map[np.concatenate(sources)] == -1).any()
    assert results["bg_gap"] == pytest.approx(correct["mixed_same"].mean() - correct["mixed_rand"].mean())

    # The challenge: every original foreground, by its mask, on every released Only-BG-T background.
    original = image_folders.load_variant(root, "original", SIZE)
    masks = image_folders.load_masks(root, "val", SIZE)
    mask = np.stack([masks[image_folders.mask_key(f)] for f in original.arrays["file"]]) > 0
    backgrounds = image_folders.load_variant(root, "only_bg_t", SIZE).arrays["image"]
    grid = np.stack([class_map[np.asarray(predict(np.where(mask, original.arrays["image"], bg) / np.float32(255)))]
                     == original.arrays["label"] for bg in backgrounds])
    assert results["challenge"]["accuracy"] == pytest.approx(grid.all(axis=0).mean())
    background_labels = image_folders.load_variant(root, "only_bg_t", SIZE).arrays["label"]
    np.testing.assert_allclose(results["challenge"]["fooling_rates"],
                               measures.fooling_rates(grid, original.arrays["label"], background_labels))
    assert 0 < np.mean(results["challenge"]["fooling_rates"]) < 1  # the grid is neither all right nor all wrong
    assert results["challenge"]["foregrounds"] == 6 and results["challenge"]["backgrounds"] == 6
    report = (workdir / "report.md").read_text()
    assert "tiny exploits background signal" in report and "| tiny |" in report


# --- the embedded data, end to end, with a finished fusion workdir ----------------------------


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, snapshot, record_condition_steps):
    """A `configs/fusion.py:smoke` run, then a `configs/in9.py:smoke` run reading it by a relative path
    from their common directory, both claimed as the CLI claims them; this file's tests share them and
    must not change their files. Also: the in9 run's condition programs, and whether it left the fusion
    workdir as it was."""
    from ctxfuse_jax import provenance, workdir
    from ctxfuse_jax.experiments.fusion import experiment as fusion_experiment
    from ctxfuse_jax.experiments.in9 import experiment

    root = tmp_path_factory.mktemp("in9")
    spec = importlib.util.spec_from_file_location("fusion_config", os.path.join(ROOT, "configs", "fusion.py"))
    fusion_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fusion_module)
    fusion_config = fusion_module.get_config("smoke")
    for data in (fusion_config.data, fusion_config.streams.fg.data, fusion_config.streams.bg.data):
        data.data_dir = str(root / "tfds")
    fusion_dir = str(root / "fusion")
    workdir.claim(fusion_dir, fusion_config, provenance.input_digests(fusion_config), write=True)
    fusion_rows = fusion_experiment.run(fusion_config, fusion_dir)[0]

    config = load_config("smoke")
    config.data.data_dir = str(root / "tfds")
    config.fusion_workdir = "fusion"  # relative, as users type it
    config.analysis.progress_images = 0  # all: the progress evaluation then scores what the table scores
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        # The fusion run's own program is counted only when its module is first imported here: not recorded.
        condition_steps = record_condition_steps(patch)
        config_checks.check_config(config)  # among others: the fusion run's data is this run's
        before = snapshot(fusion_dir)
        in9_dir = root / "in9"
        workdir.claim(str(in9_dir), config, provenance.input_digests(config), write=True)
        results = experiment.run(config, str(in9_dir))
        unchanged = snapshot(fusion_dir) == before
    return dict(root=root, fusion_rows=fusion_rows, config=config, in9_dir=in9_dir, results=results,
                condition_steps=condition_steps, fusion_unchanged=unchanged)


def test_smoke_run_with_a_fusion_workdir_read_only(smoke_runs):
    fusion_rows, config, in9_dir, results, condition_steps = (
        smoke_runs[k] for k in ("fusion_rows", "config", "in9_dir", "results", "condition_steps"))
    assert smoke_runs["fusion_unchanged"]  # read, never written
    # One program per architecture scored all conditions of all its models: five classifiers trained
    # here (and the Original one while it trained), the fusion workdir's four heads.
    assert [step._cache_size() for step in condition_steps] == [1, 1]

    # The fusion classifiers on Original images are the fusion run's own sharp accuracy.
    for model in ("FG", "BG", "Joint", "FG-conv"):
        sharp = next(r["value"] for r in fusion_rows if (r["model"], r["condition"], r["level"], r["test_set"],
                                                         r["metric"]) == (model, "blur_all", "0", "all", "accuracy"))
        assert results["fusion"][0][f"fusion {model}"]["accuracy"]["original"] == pytest.approx(sharp), model

    trained = results["trained"][0]
    assert list(trained["models"]) == [f"{in9_data.NAMES[v]}-trained" for v in config.train_variants]
    for name, m in {**trained["models"], **results["fusion"][0]}.items():
        assert set(m["accuracy"]) == set(config.eval.conditions.in9.variants)
        assert m["bg_gap"] == pytest.approx(m["accuracy"]["mixed_same"] - m["accuracy"]["mixed_rand"]), name
        challenge = m["challenge"]
        assert (challenge["foregrounds"], challenge["backgrounds"]) == (32, 8)
        assert len(challenge["fooling_rates"]) == 8 and 0 <= challenge["accuracy"] <= 1
        assert sum(m["follows"][k] for k in ("foreground", "background", "neither")) == pytest.approx(1.0)
    # One epoch: the progress evaluation is the final one, so it scores what the table scores.
    (point,) = trained["progress"]
    assert point["original"] == trained["models"]["Original-trained"]["accuracy"]["original"]
    for name in ("report.md", "results.json", "table.csv", "summary.csv", "variants.png", "accuracy.png",
                 "adversarial_backgrounds.png", "gradcam.png", "progress.png"):
        assert os.path.getsize(in9_dir / name) > 0, name
    report = (in9_dir / "report.md").read_text()
    assert all(f"\n{i}. *" in report for i in range(1, 8))  # six claims of the paper and the fusion lens
    assert report.count("reproduced**") == 6


def test_the_finished_workdir_reads_back_every_classifier_and_the_fusion_lens(smoke_runs, finished_scores,
                                                                             matches_recorded, monkeypatch,
                                                                             refused_without_stage):
    """`read_finished`: per seed a classifier per training variant, and the fusion workdir's heads as
    the report names them, each scoring the usable test split as the run recorded; a workdir missing
    one stage's result is refused, naming the stage."""
    from ctxfuse_jax.experiments.finished import read_finished

    config, in9_dir, results = smoke_runs["config"], smoke_runs["in9_dir"], smoke_runs["results"]
    monkeypatch.chdir(smoke_runs["root"])  # the config names the fusion workdir relative to it
    finished = read_finished(str(in9_dir))
    assert [m.name for m in finished.models] == ["seed_0", "fusion/seed_0"]
    assert "mask" in finished.data.test.arrays
    trained = finished_scores(finished.models[0], finished.data.test, config.train.batch_size)
    assert sorted(trained) == sorted(f"{in9_data.NAMES[v]}-trained" for v in config.train_variants)
    with open(in9_dir / "seed_0" / "train_original" / "eval.json") as f:  # its stage tested on Original images
        recorded = json.load(f)["metrics"]
    assert matches_recorded(trained["Original-trained"], recorded, "Original-trained") == ["accuracy", "loss",
                                                                                            "entropy"]
    fusion = finished_scores(finished.models[1], finished.data.test, config.eval.batch_size)
    assert sorted(fusion) == sorted(f"fusion {m}" for m in ("FG", "BG", "Joint", "FG-conv"))
    # On Original images, as the evaluator scored every one of them.
    for model, values in {**trained, **fusion}.items():
        measured = {**results["trained"][0]["models"], **results["fusion"][0]}[model]
        matches_recorded(values, {"accuracy": measured["accuracy"]["original"]}, model)

    refused_without_stage(in9_dir, "seed_0/train_original")
