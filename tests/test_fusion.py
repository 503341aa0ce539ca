"""The contextual-fusion experiment: head shapes, and the whole `:smoke` pipeline end to end."""

import importlib.util
import json
import re
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from ctxfuse_jax.models.fusion import FusionHead, LinearProbe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(path: str, preset: str | None = None):
    spec = importlib.util.spec_from_file_location("config_module", os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


def test_fusion_head_shapes_and_mismatch():
    fg, bg = jnp.ones((2, 4, 4, 8)), jnp.ones((2, 4, 4, 8))
    head = FusionHead(num_classes=5, features=6)
    variables = head.init(jax.random.PRNGKey(0), fg, bg)
    assert head.apply(variables, fg, bg).shape == (2, 5)
    assert variables["params"]["fuse_conv1"]["kernel"].shape == (3, 3, 16, 6)  # concatenated channels
    assert variables["params"]["fuse_conv2"]["kernel"].shape == (3, 3, 6, 6)
    with pytest.raises(ValueError, match="cut the streams at the same layer"):
        head.apply(variables, fg, jnp.ones((2, 2, 2, 8)))
    # One stream: the FG-conv control, the same two conv layers on FG alone.
    control = head.init(jax.random.PRNGKey(0), fg)
    assert head.apply(control, fg).shape == (2, 5)
    assert control["params"]["fuse_conv1"]["kernel"].shape == (3, 3, 8, 6)
    probe = LinearProbe(num_classes=5)
    assert probe.apply(probe.init(jax.random.PRNGKey(0), fg), fg).shape == (2, 5)


@pytest.mark.parametrize("conv, custom", [("xla", False), ("cpu", True)])
def test_joint_head_computes_with_the_configured_convolution(conv, custom):
    """`streams.conv` reaches the fusion head's convolutions too (the CPU formulation is a custom VJP)."""
    from ctxfuse_jax.experiments.fusion.networks import head_module
    config = load_config("configs/fusion.py", "smoke")
    config.streams.conv = conv
    head = head_module("Joint", config, num_classes=5)
    fg = jnp.ones((2, 4, 4, 8))
    variables = head.init(jax.random.PRNGKey(0), fg, fg)
    jaxpr = str(jax.make_jaxpr(lambda v: head.apply(v, fg, fg))(variables))
    assert ("custom_vjp" in jaxpr) == custom


def test_unknown_preset_lists_choices():
    with pytest.raises(ValueError, match="smoke"):
        load_config("configs/fusion.py", "tiny")


def _state_tree(stage_dir: str) -> dict:
    steps = sorted(int(d) for d in os.listdir(os.path.join(stage_dir, "checkpoints")) if d.isdigit())
    return ocp.PyTreeCheckpointer().restore(os.path.join(stage_dir, "checkpoints", str(steps[-1]), "state"))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """(config, workdir, rows) of one `configs/fusion.py:smoke` run, claimed as the CLI claims it: this
    file's tests share it and must not change its files."""
    from ctxfuse_jax import provenance, workdir as workdirs
    from ctxfuse_jax.experiments.fusion import experiment

    root = tmp_path_factory.mktemp("fusion")
    config = load_config("configs/fusion.py", "smoke")
    for data in (config.data, config.streams.fg.data, config.streams.bg.data):
        data.data_dir = str(root / "tfds")
    workdir = str(root / "run")
    workdirs.claim(workdir, config, provenance.input_digests(config))
    return config, workdir, experiment.run(config, workdir)


def test_smoke_pipeline_end_to_end_and_resume(smoke_run):
    from ctxfuse_jax.experiments.fusion import experiment

    config, workdir, first = smoke_run

    for name in ("report.md", "results.json", "table.csv", "summary.csv", "sweep.png", "gradcam.png", "pca.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    rows = [r for r in first[0] if r["metric"] == "accuracy"]
    levels = [f"{s:g}" for s in config.eval.conditions.blur_all.sigmas]
    # Every model, condition, level and test set exactly once.
    keys = [(r["model"], r["condition"], r["level"], r["test_set"]) for r in rows]
    assert sorted(keys) == sorted((m, c, l, t) for m in ("FG", "BG", "Joint", "FG-conv")
                                  for c in ("blur_foreground", "blur_all") for l in levels
                                  for t in ("all", "dissimilar"))
    assert all(0 <= r["value"] <= 1 for r in rows)
    value = {k: r["value"] for k, r in zip(keys, rows)}
    # Sharp images: foreground-only and whole-image blur are the same experiment at sigma 0.
    for test_set in ("all", "dissimilar"):
        for model in ("FG", "BG", "Joint", "FG-conv"):
            assert value[model, "blur_foreground", "0", test_set] == value[model, "blur_all", "0", test_set]
    report = open(os.path.join(workdir, "report.md")).read()
    # 2 conditions x 2 test sets, each against 2 baselines on absolute and relative accuracy.
    assert report.count("Joint vs FG, absolute") == 1 and len(re.findall(r"^\| (all|dissimilar) \|", report, re.M)) == 4
    assert len(re.findall(r"\*\*beats\*\*|does not beat", report)) == 16

    # The smoke heads flip but do not crop, so they learn from cached stream features: their
    # checkpoints hold the head alone (tests/test_feature_cache.py checks the cache against the streams).
    for stage in ("head_fg", "head_bg", "head_joint", "head_fg-conv"):
        players = _state_tree(os.path.join(workdir, "seed_0", stage))["players"]
        assert set(players) == {"head"} and players["head"]["opt_state"] is not None

    # Re-running finds every stage complete and reproduces the numbers.
    assert experiment.run(config, workdir) == first
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["table"] == json.loads(json.dumps(first[0]))


def test_the_finished_workdir_reads_back_every_head_on_its_streams(smoke_run, finished_scores, matches_recorded,
                                                                   refused_without_stage):
    """`read_finished`: per seed the four classifiers on the shared streams, each scoring the test split
    as its stage recorded (its weights, modules and preprocessing read back); a workdir missing one
    stage's result is refused, naming the stage."""
    from ctxfuse_jax.experiments.finished import read_finished

    config, workdir, _ = smoke_run
    finished = read_finished(workdir)
    assert finished.config.experiment == "fusion" and [m.name for m in finished.models] == ["seed_0"]
    scores = finished_scores(finished.models[0], finished.data.test, config.heads.train.batch_size)
    assert sorted(scores) == sorted(["FG", "BG", "Joint", "FG-conv"])
    for model, values in scores.items():
        with open(os.path.join(workdir, "seed_0", f"head_{model.lower()}", "eval.json")) as f:
            assert matches_recorded(values, json.load(f)["metrics"], model) == ["accuracy", "loss", "entropy"]

    refused_without_stage(workdir, "seed_0/head_joint")


def test_colab_notebook_runs_in_process_on_the_finished_workdir(smoke_run):
    """launch/colab.ipynb executed end to end in a kernel (nbclient), on this file's smoke run: the run
    is read back, not trained again; the blur sweep and the robustness report run for real."""
    import nbclient
    import nbformat

    config, workdir, _ = smoke_run
    notebook = nbformat.read(os.path.join(ROOT, "launch", "colab.ipynb"), as_version=4)
    parameters = next(cell for cell in notebook.cells if cell.source.startswith("# Parameters"))
    for name, value in (("REPO", ROOT), ("WORKDIR", workdir), ("DATA_DIR", config.data.data_dir)):
        parameters.source, count = re.subn(rf'^{name} = "[^"]*"', f"{name} = {value!r}", parameters.source,
                                           flags=re.M)
        assert count == 1, name
    # What the cells computed, checked here: sigma 0 leaves the image as it is, and each classifier's
    # probabilities are a distribution.
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import json\n"
        "print(json.dumps({'identity': float(np.abs(blurred[0] - image / 255.0).max()),\n"
        "                  'sums': {n: np.abs(p.sum(axis=1) - 1).max().item() for n, p in probs.items()},\n"
        "                  'sharpest_blur_changes': float(np.abs(blurred[-1] - blurred[0]).mean()),\n"
        "                  'report': report_dir}))"))
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": ROOT}}).execute()

    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
              if "image/png" in o.get("data", {})]
    robustness_figures = [n for n in os.listdir(workdir.rstrip("/") + "_robustness") if n.endswith(".png")]
    # fusion's sweep, gradcam and pca; the blurred images; the probabilities; the robustness figures
    assert len(images) == 3 + 2 + len(robustness_figures) and robustness_figures
    found = json.loads(notebook.cells[-1].outputs[-1]["text"])
    assert found["identity"] < 1e-6 and found["sharpest_blur_changes"] > 0.01
    assert {"FG", "BG", "Joint"} <= set(found["sums"]) and max(found["sums"].values()) < 1e-5
    with open(os.path.join(found["report"], "results.json")) as f:
        scored = json.load(f)["classifiers"]
    run = os.path.basename(workdir.rstrip("/"))
    assert sorted(scored) == sorted(f"{run}/seed_{seed}/{name}" for seed in config.seeds for name in found["sums"])
