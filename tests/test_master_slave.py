"""Seed 003's experiment: its scoring program against the models applied one by one, and a smoke run."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ctxfuse_jax.data.pipeline import ArraySplit
from ctxfuse_jax.data.sources import Labelled
from ctxfuse_jax.experiments.master_slave import experiment
from ctxfuse_jax.models import restrict_variables
from test_master_slave_models import count_primitive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE, CLASSES = 64, 5


def load_config(preset=None) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location("master_slave_config", os.path.join(ROOT, "configs", "master_slave.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


def _split(n: int, seed: int) -> ArraySplit:
    rng = np.random.default_rng(seed)
    return ArraySplit({"image": rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8),
                       "label": rng.integers(0, CLASSES, n).astype(np.int32)})


def _study(conv: str = "xla") -> experiment.Study:
    config = load_config("smoke")
    for entry in (*config.models.values(), config.master):
        entry.model.conv = conv
    data = Labelled(_split(8, 0), _split(6, 1), tuple(f"c{i}" for i in range(CLASSES)), (), np.zeros(0, np.int32))
    return experiment.Study(config, data, mesh=None)


def _models(study, draw) -> dict:
    """Random variables in the shapes the stages would give, all models distinct."""
    shape = (1, SIZE, SIZE, 3)
    base = {key: draw(module, seed=i, input_shape=shape) for i, (key, module) in enumerate(study.modules.items())}
    vgg = study.modules[study.config.slave.base]
    branches = [study.slave.variables(base["vgg16"])[1]]
    branches += [study.slave.variables(draw(vgg, seed=10 + i, input_shape=shape))[1] for i in (1, 2)]
    features = vgg.clone(stop_at=study.config.baselines.masking.stage, outputs=()).channels(4096)
    mask = np.zeros((CLASSES, features), np.float32)  # one per class (the smoke preset's per_class)
    for c in range(CLASSES):
        mask[c, c::5] = 1.0  # most features masked, other ones per class
    # Fine-tuned after fc7: the base model's layers up to it, its own after.
    stage = study.config.baselines.augmentation.splits.fc8
    augmented = experiment.merged(restrict_variables(base["vgg16"], vgg.clone(stop_at=stage, outputs=()), shape),
                                  restrict_variables(draw(vgg, seed=30, input_shape=shape), vgg.clone(start_at=stage),
                                                     shape))
    return {"base": base, "branches": branches, "master": draw(study.master_module, seed=20, input_shape=shape),
            "augmentation": {"fc8": augmented},
            "stability": draw(vgg, seed=40, input_shape=shape), "mask": mask}


def test_the_program_scores_every_method_as_its_models_one_by_one(random_variables):
    study = _study()
    models = _models(study, random_variables)
    program = experiment.predictions(study)
    variables = experiment.scoring_variables(study, models)
    batch = {"image": study.data.test.arrays["image"], "label": study.data.test.arrays["label"]}
    got = jax.device_get(program(variables, batch))
    images = batch["image"] / np.float32(255)
    vgg = study.modules["vgg16"]

    def classes(module, v):
        return np.argmax(np.asarray(module.apply(v, images)), -1)

    np.testing.assert_array_equal(got["VGG-16"], classes(vgg, models["base"]["vgg16"]))
    np.testing.assert_array_equal(got["AlexNet"], classes(study.modules["alexnet"], models["base"]["alexnet"]))
    np.testing.assert_array_equal(got["DA fc8"], classes(vgg, models["augmentation"]["fc8"]))
    np.testing.assert_array_equal(got["ST"], classes(vgg, models["stability"]))
    # The slave's branches as whole models: the shared trunk with each branch's variables.
    trunk, _ = study.slave.variables(models["base"]["vgg16"])
    probs = np.stack([jax.nn.softmax(vgg.apply(experiment.merged(trunk, b), images)) for b in models["branches"]])
    master = np.asarray(jax.nn.softmax(study.master_module.apply(models["master"], images)))
    chosen = master.argmax(-1)  # bin b is branch b
    np.testing.assert_array_equal(got["bin"], chosen)
    np.testing.assert_array_equal(got["MS"], probs[chosen, np.arange(len(chosen))].argmax(-1))
    np.testing.assert_array_equal(got["AMS"], probs.max(0).argmax(-1))
    np.testing.assert_array_equal(got["MAP"], np.einsum("nb,bnc->nc", master, probs).argmax(-1))
    # DeepCloak: fc7's output with its true class's mask applied, then fc8 by hand.
    stage = study.config.baselines.masking.stage
    labels = study.data.test.arrays["label"]
    features = vgg.clone(stop_at=stage, outputs=()).apply(models["base"]["vgg16"], images) * models["mask"][labels]
    head = models["base"]["vgg16"]["params"]["classifier_6"]
    np.testing.assert_array_equal(got["DC"], np.argmax(np.asarray(features) @ head["kernel"] + head["bias"], -1))
    assert not np.array_equal(got["DC"], got["VGG-16"])  # the mask does mask

    # The base model's layers run once for every model sharing them: its 13 convs (the trunk's 10 and
    # branch 1's 3), 3 per other branch, the stability-trained copy's 13, AlexNet's 5, the master's 3;
    # the augmented and masked copies add none (all their convs are the base model's).
    convs = count_primitive(jax.make_jaxpr(program)(variables, batch).jaxpr, "conv_general_dilated")
    assert convs == 13 + 3 * 2 + 13 + 5 + 3


def test_psnr_matches_the_closed_form():
    clean = np.zeros((2, 4, 4, 3), np.uint8)
    worse = clean.copy()
    worse[0] = 16  # MSE 256: 10 log10(255^2 / 256) dB
    assert experiment.psnr(clean, worse) == pytest.approx((10 * np.log10(255 ** 2 / 256) + 100) / 2)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """(config, workdir, summary) of one `configs/master_slave.py:smoke` run, claimed as the CLI claims
    it: this file's tests share it and must not change its files."""
    from ctxfuse_jax import provenance
    from ctxfuse_jax import workdir as workdirs

    root = tmp_path_factory.mktemp("master_slave")
    config = load_config("smoke")
    config.data.data_dir = str(root / "tfds")
    workdir = str(root / "run")
    workdirs.claim(workdir, config, provenance.input_digests(config))
    return config, workdir, experiment.run(config, workdir)


def test_smoke_run_end_to_end_and_resume(smoke_run):
    config, workdir, first = smoke_run
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)["results"]["0"]
    methods = {"VGG-16", "AlexNet", "MS", "AMS", "MAP", "DA fc8", "ST", "DC"}
    for name, sweep in config.eval.sweeps.items():
        scored = results["sweeps"][experiment.sweep_label(name)]
        assert set(scored["top1"]) == methods
        assert all(len(v) == len(sweep.qualities) and all(0 <= a <= 1 for a in v) for v in scored["top1"].values())
    # The base models' clean accuracy and the master's are their stages' own test accuracies: the same
    # models on the same images (seed 0's bin draws are the scoring's).
    table, stages = results["table"], results["stages"]
    assert table["clean"]["VGG-16"] == pytest.approx(stages["base_vgg16"]["accuracy"])
    assert table["clean"]["AlexNet"] == pytest.approx(stages["base_alexnet"]["accuracy"])
    confusion = np.asarray(results["master"]["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == stages["master"]["count"]
    assert results["master"]["accuracy"] == pytest.approx(stages["master"]["accuracy"])
    with open(os.path.join(workdir, "report.md")) as f:
        report = f.read()
    assert "## Claims" in report and "| MS | " in report
    # Re-running finds every stage complete and reproduces the numbers.
    assert experiment.run(config, workdir) == first


def test_the_finished_workdir_reads_back_every_classifier_of_images(smoke_run, finished_scores, matches_recorded,
                                                                    classifier_names, refused_without_stage):
    """`read_finished`: per seed the base models, the slave's decisions and fine-tuned branches and
    the baselines, each scoring the clean test split as the run recorded; DC only with a shared mask
    (per class it needs the true label); a workdir missing one stage's result is refused."""
    from ctxfuse_jax.experiments.finished import read_finished

    config, workdir, _ = smoke_run
    finished = read_finished(workdir)
    assert [m.name for m in finished.models] == ["seed_0"]
    scores = finished_scores(finished.models[0], finished.data.test, config.eval.batch_size)
    # The stages that tested a classifier on the clean test split; the decisions' top-1 is results.json's.
    stages = {"VGG-16": "base_vgg16", "AlexNet": "base_alexnet", "DA fc8": "augmentation_fc8", "ST": "stability",
              "branch jpeg 5-20": "branch_1", "branch jpeg2000 10-50": "branch_2"}
    assert sorted(scores) == sorted({"MS", "AMS", "MAP", *stages})
    with open(os.path.join(workdir, "results.json")) as f:
        clean = json.load(f)["results"]["0"]["table"]["clean"]
    assert set(scores) <= set(stages) | set(clean)
    for name, values in scores.items():
        if name in stages:
            with open(os.path.join(workdir, "seed_0", stages[name], "eval.json")) as f:
                assert matches_recorded(values, json.load(f)["metrics"], name) == ["accuracy", "loss", "entropy"]
        if name in clean:
            matches_recorded(values, {"accuracy": clean[name]}, name)

    shared = ml_collections.ConfigDict(finished.config.to_dict())
    shared.baselines.masking.per_class = False  # the mask is made when read, as the run makes it: no training
    (models,) = experiment.finished(workdir, shared).models
    assert set(classifier_names(models, finished.data.test)) == {*scores, "DC"}

    refused_without_stage(workdir, "seed_0/branch_1")


def test_the_imagenet_preset_checks_and_starts_from_converted_weights(tmp_path):
    """Both networks are the files' variables (nothing trained), checked key by key; the preset
    passes the start-up checks once the files exist."""
    from ctxfuse_jax import config_checks
    from ctxfuse_jax.models import build_model
    from ctxfuse_jax.models.variables import flatten
    from ctxfuse_jax.weights.pretrained import save_weights

    config = load_config("imagenet")
    saved = {}
    for key, entry in config.models.items():
        entry.model.width = 0.125  # narrow: converted weights of any width load the same way
        module = build_model(entry.model.name, num_classes=10, **{k: v for k, v in entry.model.items() if k != "name"})
        saved[key] = jax.device_get(module.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3))))
        entry.weights = str(tmp_path / f"{key}.npz")
        save_weights(entry.weights, flatten(saved[key]), {"arch": entry.model.name})
    config_checks.check_config(config)
    split = ArraySplit({"image": np.zeros((2, 224, 224, 3), np.uint8), "label": np.zeros(2, np.int32)})
    study = experiment.Study(config, Labelled(split, split, tuple(str(i) for i in range(10)), (), np.zeros(0, int)),
                             mesh=None)
    for key in config.models:
        loaded, metrics = study.base_model(key, seed=0, seed_dir=str(tmp_path / "seed_0"))
        assert metrics == {} and not os.path.exists(tmp_path / "seed_0")
        for name, value in flatten(saved[key]).items():
            np.testing.assert_array_equal(flatten(loaded)[name], value)
