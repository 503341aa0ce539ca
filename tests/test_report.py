"""Result tables and the report's computed verdict, on hand-made numbers."""

import csv

import numpy as np
import pytest

from ctxfuse_jax.report import tables
from ctxfuse_jax.report.fusion_report import joint_vs_fg, verdict_sentence, write_report

SIGMAS = (0.0, 4.0, 12.0)


def _sweep(joint, fg, bg=(0.1, 0.1, 0.1)):
    curves = {"FG": list(fg), "BG": list(bg), "Joint": list(joint)}
    return {"foreground": {"all": curves, "dissimilar": curves}}


def test_rows_and_summary_match_numpy():
    per_seed = {0: _sweep((0.8, 0.6, 0.4), (0.7, 0.4, 0.2)), 1: _sweep((0.6, 0.5, 0.3), (0.7, 0.5, 0.1))}
    rows = tables.sweep_rows(per_seed, SIGMAS)
    assert len(rows) == 2 * 2 * 3 * 3
    summary = {(r["test_set"], r["model"], r["sigma"]): r for r in tables.summarize(rows)}
    joint_4 = summary["all", "Joint", 4.0]
    assert joint_4["mean"] == pytest.approx(0.55)
    assert joint_4["std"] == pytest.approx(np.std([0.6, 0.5], ddof=1))
    assert joint_4["seeds"] == 2
    with pytest.raises(ValueError, match="2 accuracies for 3 sigmas"):
        tables.sweep_rows({0: {"all": {"all": {"FG": [0.1, 0.2]}}}}, SIGMAS)


def test_csv_round_trip(tmp_path):
    rows = tables.sweep_rows({0: _sweep((0.8, 0.6, 0.4), (0.7, 0.4, 0.2))}, SIGMAS)
    tables.write_csv(str(tmp_path / "s.csv"), rows)
    with open(tmp_path / "s.csv") as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows) and float(read[5]["accuracy"]) == rows[5]["accuracy"]


def test_verdict_is_computed_from_blurred_strengths_only():
    summary = tables.summarize(tables.sweep_rows({0: _sweep((0.5, 0.6, 0.4), (0.9, 0.4, 0.2))}, SIGMAS))
    comparison = joint_vs_fg(summary, "foreground", "all")
    # Sharp FG is better (0.9 vs 0.5) but that is not a blurred strength: gains +0.2 and +0.2.
    assert comparison["mean_gain"] == pytest.approx(0.2)
    assert comparison["wins"] == 2 and comparison["strengths"] == 2
    assert "Joint beats FG" in verdict_sentence("foreground", "all", comparison)
    losing = joint_vs_fg(tables.summarize(tables.sweep_rows({0: _sweep((0.9, 0.3, 0.1), (0.9, 0.4, 0.2))}, SIGMAS)),
                         "foreground", "all")
    assert losing["wins"] == 0
    assert "Joint does not beat FG" in verdict_sentence("foreground", "all", losing)


def test_report_lists_verdicts_tables_and_stages(tmp_path):
    summary = tables.summarize(tables.sweep_rows({0: _sweep((0.5, 0.6, 0.4), (0.9, 0.4, 0.2))}, SIGMAS))
    path = tmp_path / "report.md"
    write_report(str(path), config={"data": {"name": "embedded", "image_size": 64}}, summary=summary,
                 models=("FG", "BG", "Joint"),
                 stage_metrics={"0": {"head_joint": {"accuracy": 0.59, "loss": 1.3, "entropy": 1.5}}},
                 figures={"Sweep": "sweep.png"}, extra_sections={"Extra": "text"}, seconds=90,
                 fingerprint={"config_sha256": "ab" * 32,
                              "inputs": {"streams.fg.weights": {"path": "fg.npz", "sha256": "cd" * 32}}})
    text = path.read_text()
    assert text.count("Joint beats FG") == 2  # All and Dissimilar, foreground blur
    assert "| 12 | 20.0 | 10.0 | 40.0 |" in text
    assert "| 0 | head_joint | 59.0 | 1.300 | 1.500 |" in text
    assert "![Sweep](sweep.png)" in text and "1.5 min" in text
    assert "Config sha256 `abababababab`; input files: `streams.fg.weights` fg.npz (sha256 cdcdcdcdcdcd)" in text
