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


def test_smoke_pipeline_end_to_end_and_resume(tmp_path):
    from ctxfuse_jax.experiments.fusion import experiment

    config = load_config("configs/fusion.py", "smoke")
    for data in (config.data, config.streams.fg.data, config.streams.bg.data):
        data.data_dir = str(tmp_path / "tfds")
    workdir = str(tmp_path / "run")
    first = experiment.run(config, workdir)

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
