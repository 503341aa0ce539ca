"""Long tables and the fusion report's computed verdicts, on hand-made numbers."""

import csv

import numpy as np
import pytest

from ctxfuse_jax.experiments.fusion.report import beats, compare, verdict_cell, write_report
from ctxfuse_jax.report import tables

LEVELS = ("0", "4", "12")


def _rows(seed: int, curves: dict, condition: str = "blur_fg", test_sets=("all", "dissimilar")) -> list[dict]:
    """Evaluator-style rows: accuracy of each model at each sigma level."""
    return [{"seed": seed, "model": model, "condition": condition, "level": level, "test_set": test_set,
             "metric": "accuracy", "value": value}
            for model, values in curves.items() for level, value in zip(LEVELS, values) for test_set in test_sets]


def _curves(joint, fg, fg_conv=(0.5, 0.3, 0.1), bg=(0.1, 0.1, 0.1)):
    return {"FG": fg, "BG": bg, "Joint": joint, "FG-conv": fg_conv}


def test_summary_matches_numpy():
    rows = _rows(0, _curves((0.8, 0.6, 0.4), (0.7, 0.4, 0.2))) + _rows(1, _curves((0.6, 0.5, 0.3), (0.7, 0.5, 0.1)))
    summary = {(r["test_set"], r["model"], r["level"]): r for r in tables.summarize(rows)}
    joint_4 = summary["all", "Joint", "4"]
    assert joint_4["mean"] == pytest.approx(0.55)
    assert joint_4["std"] == pytest.approx(np.std([0.6, 0.5], ddof=1))
    assert joint_4["seeds"] == 2 and "seed" not in joint_4
    np.testing.assert_array_equal(tables.seed_matrix(rows, LEVELS, model="FG", test_set="all"),
                                  [[0.7, 0.4, 0.2], [0.7, 0.5, 0.1]])
    with pytest.raises(ValueError, match="missing"):
        tables.seed_matrix(rows, ("0", "8"), model="FG", test_set="all")


def test_csv_round_trip(tmp_path):
    rows = _rows(0, _curves((0.8, 0.6, 0.4), (0.7, 0.4, 0.2)))
    tables.write_csv(str(tmp_path / "s.csv"), rows)
    with open(tmp_path / "s.csv") as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows) and float(read[5]["value"]) == rows[5]["value"]


def test_absolute_and_relative_verdicts_by_hand():
    # Joint leads on sharp images (0.9 vs 0.5) and stays ahead in absolute terms (+0.2, +0.1 at the
    # blurred levels), but keeps less of its own sharp accuracy: 0.6/0.9, 0.3/0.9 against FG's
    # 0.4/0.5, 0.2/0.5, i.e. -2/15 and -1/15: on relative accuracy it does not beat FG.
    rows = _rows(0, _curves((0.9, 0.6, 0.3), (0.5, 0.4, 0.2)))
    absolute = compare(rows, "blur_fg", "all", "Joint", "FG", relative=False)
    assert absolute["mean_gain"] == pytest.approx(0.15) and absolute["wins"] == 2 and beats(absolute)
    relative = compare(rows, "blur_fg", "all", "Joint", "FG", relative=True)
    assert relative["mean_gain"] == pytest.approx(-0.1) and relative["wins"] == 0 and not beats(relative)
    assert verdict_cell(absolute) == "**beats**: +15.0 (2/2 strengths, 1/1 seeds)"
    assert verdict_cell(relative) == "does not beat: -10.0 (0/2 strengths, 0/1 seeds)"


def test_spread_over_seeds_by_hand():
    # Per-seed gains over the blurred levels: seed 0 (+0.2 +0.2)/2 = 0.2, seed 1 (-0.1 +0.1)/2 = 0;
    # the seed-mean curves (0.45, 0.35) vs (0.4, 0.2) are higher at both strengths.
    rows = (_rows(0, _curves((0.5, 0.6, 0.4), (0.5, 0.4, 0.2)))
            + _rows(1, _curves((0.5, 0.3, 0.3), (0.5, 0.4, 0.2))))
    comparison = compare(rows, "blur_fg", "all", "Joint", "FG", relative=False)
    assert comparison["mean_gain"] == pytest.approx(0.1)
    assert comparison["std_gain"] == pytest.approx(np.std([0.2, 0.0], ddof=1))
    assert comparison["seeds_positive"] == 1 and comparison["seeds"] == 2
    assert not beats(comparison)  # positive in only one of two seeds
    assert verdict_cell(comparison) == "does not beat: +10.0 ± 14.1 (2/2 strengths, 1/2 seeds)"


def test_report_lists_claim_verdicts_tables_and_stages(tmp_path):
    rows = _rows(0, _curves((0.5, 0.6, 0.4), (0.9, 0.4, 0.2)))
    path = tmp_path / "report.md"
    write_report(str(path), config={"data": {"name": "embedded", "image_size": 64}}, rows=rows,
                 titles={"blur_fg": "only the foreground blurred"}, models=("FG", "BG", "Joint", "FG-conv"),
                 stage_metrics={"0": {"head_joint": {"accuracy": 0.59, "loss": 1.3, "entropy": 1.5}}},
                 figures={"Sweep": "sweep.png"}, extra_sections={"Extra": "text"}, seconds=90,
                 fingerprint={"config_sha256": "ab" * 32,
                              "inputs": {"streams.fg.weights": {"path": "fg.npz", "sha256": "cd" * 32}}})
    text = path.read_text()
    assert "## The claim" in text
    # Joint 0.6, 0.4 vs FG 0.4, 0.2 blurred: absolute wins; relative 1.2, 0.8 vs 0.44, 0.22 too;
    # vs FG-conv 0.3, 0.1 absolute and 0.6, 0.2 relative: wins everywhere, in both test sets.
    assert ("Joint beats FG on absolute accuracy in 2 of 2 cases; Joint beats FG on relative accuracy in 2 of 2 "
            "cases; Joint beats FG-conv on absolute accuracy in 2 of 2 cases") in text
    assert text.count("| dissimilar | only the foreground blurred | **beats**") == 1
    assert "| 12 | 20.0 | 10.0 | 40.0 | 10.0 |" in text
    assert "| 12 | 22.2 | 100.0 | 80.0 | 20.0 |" in text  # relative: 0.2/0.9, 0.1/0.1, 0.4/0.5, 0.1/0.5
    assert "| 0 | head_joint | 59.0 | 1.300 | 1.500 |" in text
    assert "![Sweep](sweep.png)" in text and "1.5 min" in text
    assert "Config sha256 `abababababab`; input files: `streams.fg.weights` fg.npz (sha256 cdcdcdcdcdcd)" in text
