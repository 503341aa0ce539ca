"""Seed 003's outputs and report on hand-made results: Table 1 by hand, verdicts that follow the numbers."""

import copy
import csv
import json

import numpy as np
import pytest

from ctxfuse_jax.experiments.master_slave import outputs, report
from test_master_slave import load_config

METHODS = ("MS", "AMS", "MAP", "DA fc8", "DA fc67", "DA fc678", "ST", "DC")
# Per seed: (c, d) of the base VGG-16 and d' of each method (c' = c + 0.01 for every method).
BASE = {0: (0.80, 0.40), 1: (0.70, 0.50)}
D_PRIME = {0: dict(zip(METHODS, (0.70, 0.66, 0.69, 0.44, 0.48, 0.52, 0.60, 0.40))),
           1: dict(zip(METHODS, (0.60, 0.58, 0.60, 0.52, 0.53, 0.55, 0.58, 0.49)))}


def _sweep(kind, qualities, psnr, vgg, ms, blur_sigma=0.0, noise_std=0.0):
    """A sweep whose AlexNet is 0.1 below VGG-16 and whose other methods are MS minus 0.01."""
    vgg, ms = np.asarray(vgg), np.asarray(ms)
    top1 = {"VGG-16": vgg, "AlexNet": vgg - 0.1, **{m: ms - (0 if m == "MS" else 0.01) for m in METHODS}}
    return {"kind": kind, "unit": kind, "qualities": list(qualities), "blur_sigma": blur_sigma,
            "noise_std": noise_std, "psnr": list(psnr), "top1": {m: v.tolist() for m, v in top1.items()}}


def results() -> dict:
    out = {}
    for seed, (c, d) in BASE.items():
        clean = {"VGG-16": c, "AlexNet": c - 0.1, **{m: c + 0.01 for m in METHODS}}
        worse = {"VGG-16": d, "AlexNet": d - 0.1, **D_PRIME[seed]}
        out[seed] = {
            "stages": {"base_vgg16": {"accuracy": c, "loss": 1.0, "entropy": 1.0}},
            "receptive_fields": {"VGG-16": {"stage": "features_6", "size": 6, "stride": 2},
                                 "AlexNet": {"stage": "features_2", "size": 19, "stride": 8}},
            "jpeg_block": 8,
            "sweeps": {"noise": _sweep("noise", (0.1, 0.3), (30.0, 20.0), (0.7, 0.6), (0.7, 0.6)),
                       "jpeg": _sweep("jpeg", (50.0, 10.0), (30.0, 20.0), (0.6, 0.3), (0.65, 0.5)),
                       "noise + jpeg": _sweep("jpeg", (50.0, 10.0), (28.0, 19.0), (0.68, 0.31), (0.7, 0.5),
                                              noise_std=0.1)},
            "table": {"condition": "jpeg 10", "clean": clean, "degraded": worse},
            "master": {"bins": ["clean", "jpeg 5-20"], "confusion": [[9, 1], [2, 8]],
                       "ranges": [["clean", 0.0, 0.0], ["jpeg", 5.0, 20.0]], "accuracy": 0.85}}
    return out


def _config():
    return load_config("smoke")


def _find(found, start):
    matches = [holds for claim, _, holds in found if claim.startswith(start)]
    assert len(matches) == 1, (start, [c for c, _, _ in found])
    return matches[0]


def test_table1_percent_change_by_hand():
    rows = outputs.table1(_config(), results())
    assert list(rows) == list(METHODS)
    # MS: (0.70 - 0.40) / (0.80 - 0.40) = 75%, (0.60 - 0.50) / (0.70 - 0.50) = 50%.
    np.testing.assert_allclose(rows["MS"]["change"], [75.0, 50.0])
    np.testing.assert_allclose(rows["DC"]["change"], [0.0, -5.0])
    np.testing.assert_allclose(rows["ST"]["c'"], [0.81, 0.71])
    np.testing.assert_allclose(rows["DA fc678"]["d"], [0.40, 0.50])


def test_claims_follow_the_numbers():
    config = _config()
    found = report.claims(outputs.context(config, results()))
    assert _find(found, "MS wins back more") is True
    assert _find(found, "AMS wins back more") is True  # mean 52.5 over ST's 45 and fc678's 27.5
    assert _find(found, "Augmentation helps more") is True
    assert _find(found, "Feature masking does not help") is True
    assert _find(found, "VGG-16 is more accurate than AlexNet") is True
    # AlexNet is 0.1 below VGG-16 everywhere: a larger share of its (smaller) clean accuracy is lost.
    assert _find(found, "AlexNet loses a smaller share") is False
    assert _find(found, "AlexNet's first pooling output sees more than one 8x8") is True
    # In the bins' range (JPEG 10 only): MS 0.5 against VGG-16 0.3.
    assert _find(found, "The master-slave network beats VGG-16 under JPEG") is True
    assert _find(found, "Without the master") is True  # AMS is 0.01 below MS
    assert _find(found, "The master-slave network improves on combined") is True
    # noise + jpeg at q50: 0.68 vs noise alone 0.7; at q10: 0.31 vs jpeg alone 0.3.
    assert _find(found, "noise + jpeg: bounded") is True
    assert _find(found, "At equal PSNR, noise costs VGG-16 less") is True  # 0.65 vs 0.45 at 25 dB
    assert _find(found, "The master tells the bins apart") is False  # 85% < 90%

    worse = results()
    for seed in worse:
        worse[seed]["table"]["degraded"]["ST"] = 0.75  # stability training now wins back more
        worse[seed]["sweeps"]["noise + jpeg"]["top1"]["VGG-16"][0] = 0.5
    found = report.claims(outputs.context(config, worse))
    assert _find(found, "MS wins back more") is False
    assert _find(found, "noise + jpeg: bounded") is False


def test_ams_far_below_ms_is_not_close():
    changed = results()
    for seed in changed:
        changed[seed]["sweeps"]["jpeg"]["top1"]["AMS"] = [0.55, 0.40]
    found = report.claims(outputs.context(_config(), changed))
    assert _find(found, "Without the master") is False  # 0.40 against MS 0.5


def test_write_outputs_from_results_alone(tmp_path):
    config, stored = _config(), results()
    outputs.write_outputs(config, copy.deepcopy(stored), str(tmp_path), seconds=90.0)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"]["0"]["table"] == stored[0]["table"]
    assert saved["summary"]["1"]["table1/MS/change"] == pytest.approx(50.0)
    assert set(saved["fingerprint"]) >= {"config_sha256", "inputs"}
    with open(tmp_path / "sweeps.csv") as f:
        sweep_rows = list(csv.DictReader(f))
    assert len(sweep_rows) == 2 * 3 * 2 * (2 + len(METHODS))  # seeds x sweeps x levels x methods
    text = (tmp_path / "report.md").read_text()
    assert "| MS | 75.0 ± 7.1 | 45.0 ± 7.1 | 76.0 ± 7.1 | 65.0 ± 7.1 | 62.5 ± 17.7 | 70.2 | 61.2 | 70.3 | 66.7 | 60.5 |" \
        in text
    assert "| clean | 18 | 2 |" in text  # the confusion matrix summed over both seeds
    for name in ("fig1a", "fig1b", "fig1c", "fig3", "fig4", "confusion"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0
        assert f"figures/{name}.png" in text
