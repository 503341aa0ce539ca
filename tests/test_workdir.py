"""Workdir claims and provenance: another run's workdir is refused byte for byte; inputs by content."""

import hashlib
import os

import ml_collections
import numpy as np
import pytest

from ctxfuse_jax import provenance, workdir
from ctxfuse_jax.errors import CheckpointError, ConfigError, WorkdirError
from ctxfuse_jax.train.checkpoint import check_fits


def _config(**overrides) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(dict(
        experiment="supervised", seed=0, loop=dict(log_every=50, checkpoint_every=500),
        train=dict(batch_size=64, optimizer=dict(learning_rate=0.1)), streams=dict(fg=dict(weights=""))))
    config.update_from_flattened_dict(overrides)
    return config


def test_a_new_workdir_records_the_config_and_inputs(tmp_path):
    workdir.claim(str(tmp_path / "run"), _config(), {})
    assert sorted(os.listdir(tmp_path / "run")) == ["config.json", "inputs.json"]
    workdir.claim(str(tmp_path / "run"), _config(), {})  # the same run again: resumes


def test_logging_settings_may_change_but_results_settings_may_not(tmp_path, snapshot):
    run = str(tmp_path / "run")
    workdir.claim(run, _config(), {})
    workdir.claim(run, _config(**{"loop.log_every": 5}), {})
    before = snapshot(run)
    with pytest.raises(WorkdirError, match=r"\(train.batch_size: saved 64, now 32; "
                                           r"train.optimizer.learning_rate: saved 0.1, now 0.05\)"):
        workdir.claim(run, _config(**{"train.optimizer.learning_rate": 0.05, "train.batch_size": 32}), {})
    assert snapshot(run) == before


def test_another_experiment_or_a_foreign_directory_is_refused(tmp_path, snapshot):
    run = str(tmp_path / "run")
    workdir.claim(run, _config(), {})
    before = snapshot(run)
    with pytest.raises(WorkdirError, match="holds a 'supervised' run, this is 'fusion'"):
        workdir.claim(run, _config(experiment="fusion"), {})
    assert snapshot(run) == before
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("years of work")
    with pytest.raises(WorkdirError, match="not empty and holds no config.json"):
        workdir.claim(str(tmp_path / "home"), _config(), {})
    assert os.listdir(tmp_path / "home") == ["thesis.tex"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorkdirError, match="is a file"):
        workdir.claim(str(tmp_path / "file"), _config(), {})


def test_input_files_are_compared_by_content(tmp_path):
    weights = tmp_path / "fg.npz"
    weights.write_bytes(b"first weights")
    config = _config(**{"streams.fg.weights": str(weights)})
    inputs = provenance.input_digests(config)
    assert inputs == {"streams.fg.weights": {"path": str(weights),
                                             "sha256": hashlib.sha256(b"first weights").hexdigest()}}
    run = str(tmp_path / "run")
    workdir.claim(run, config, inputs)
    weights.write_bytes(b"other weights")  # same path, other content
    with pytest.raises(WorkdirError, match="input streams.fg.weights.sha256: saved '"):
        workdir.claim(run, config, provenance.input_digests(config))


def test_input_files_are_found_by_key_name_and_must_exist(tmp_path):
    config = ml_collections.ConfigDict(dict(experiment="x", a=dict(weights="w.npz", b=dict(init_weights="i.npz")),
                                            c=dict(weights=""), d=dict(weightsfile="not-an-input")))
    assert provenance.input_files(config) == {"a.weights": "w.npz", "a.b.init_weights": "i.npz"}
    with pytest.raises(ConfigError, match=r"config.a.b.init_weights='i.npz': no such file"):
        provenance.input_digests(config)


def test_run_fingerprint_changes_with_any_setting():
    fingerprint = provenance.run_fingerprint(_config())
    assert fingerprint == provenance.run_fingerprint(_config())
    assert fingerprint["config_sha256"] != provenance.run_fingerprint(_config(seed=1))["config_sha256"]
    assert fingerprint["experiment"] == "supervised" and fingerprint["inputs"] == {}


def test_finished_stages_are_those_with_a_saved_result(tmp_path):
    for stage, done in (("seed_0/pretrain_fg", True), ("seed_0/pretrain_bg", False), ("classifier", True)):
        (tmp_path / stage / "checkpoints").mkdir(parents=True)
        if done:
            (tmp_path / stage / workdir.STAGE_RESULT_FILE).write_text("{}")
    assert workdir.finished_stages(str(tmp_path)) == ["classifier", "seed_0/pretrain_fg"]


def test_another_runs_workdir_is_an_input_by_its_config_and_checkpoints(tmp_path):
    run = tmp_path / "fusion"
    (run / "seed_0" / "head_fg" / "checkpoints" / "10").mkdir(parents=True)
    (run / "config.json").write_text('{"experiment": "fusion"}')
    checkpoint = run / "seed_0" / "head_fg" / "checkpoints" / "10" / "state"
    checkpoint.write_bytes(b"arrays")
    (run / "report.md").write_text("rewritten on every invocation")
    config = ml_collections.ConfigDict(dict(experiment="in9", fusion_workdir=str(run), class_map=""))
    assert provenance.input_files(config) == {"fusion_workdir": str(run)}
    first = provenance.input_digests(config)["fusion_workdir"]["sha256"]
    # By hand: sha256 over "relative path NUL file sha256 NEWLINE" of config.json and the checkpoint files, sorted.
    expected = hashlib.sha256()
    for relative, content in (("config.json", b'{"experiment": "fusion"}'),
                              ("seed_0/head_fg/checkpoints/10/state", b"arrays")):
        expected.update(f"{relative}\0{hashlib.sha256(content).hexdigest()}\n".encode())
    assert first == expected.hexdigest()
    (run / "report.md").write_text("another report")  # not what the models are
    assert provenance.input_digests(config)["fusion_workdir"]["sha256"] == first
    checkpoint.write_bytes(b"other arrays")  # other models
    assert provenance.input_digests(config)["fusion_workdir"]["sha256"] != first
    with pytest.raises(ConfigError, match="not a finished run's workdir"):
        provenance.input_digests(ml_collections.ConfigDict(dict(experiment="in9", fusion_workdir=str(tmp_path))))


def test_a_checkpoint_that_does_not_fit_the_model_is_refused():
    shapes = {"params": {"fc": {"kernel": np.zeros((4, 3)), "bias": np.zeros(3)}}, "batch_stats": {}}
    check_fits({"params": {"fc": {"kernel": np.ones((4, 3)), "bias": np.ones(3)}}, "batch_stats": {}}, shapes, "x")
    with pytest.raises(CheckpointError, match=r"params/fc/kernel: saved \(4, 5\), expected \(4, 3\)"):
        check_fits({"params": {"fc": {"kernel": np.ones((4, 5)), "bias": np.ones(3)}}, "batch_stats": {}}, shapes, "x")
    with pytest.raises(CheckpointError, match=r"params/fc/bias: saved None, expected \(3,\)"):
        check_fits({"params": {"fc": {"kernel": np.ones((4, 3))}}, "batch_stats": {}}, shapes, "x")
