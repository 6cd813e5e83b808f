"""bench/error_regions.py: the three regions by hand on a 3x3 hand, and the gain fit removing a colour gain."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "error_regions", Path(__file__).resolve().parents[1] / "bench" / "error_regions.py")
error_regions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(error_regions)


def _square() -> np.ndarray:
    fg = np.zeros((7, 7), bool)
    fg[2:5, 2:5] = True
    return fg


def test_regions_of_a_square_by_hand():
    m = error_regions.region_masks(_square(), band=1)
    # erosion by the 4-neighbour cross keeps the centre; the ring of 8 around it and the 12 pixels the dilation adds
    # (3 per side, no corners) are the edge
    assert m["interior"].sum() == 1 and m["interior"][3, 3]
    assert m["edge"].sum() == 8 + 12 and m["background"].sum() == 49 - 21
    assert not (m["interior"] & m["edge"]).any() and (m["interior"] | m["edge"] | m["background"]).all()


def test_gain_fit_removes_a_colour_gain_inside_the_hand():
    fg = _square()
    gt = np.where(fg[..., None], np.array([0.6, 0.4, 0.2]), 0.0)
    pred = gt * np.array([0.5, 1.0, 2.0])  # a camera with another colour response
    plain = error_regions.view_region_errors(pred, gt, fg, band=1, gain=False)
    fitted = error_regions.view_region_errors(pred, gt, fg, band=1, gain=True)
    assert plain["interior"] > 0.01 and fitted["interior"] < 1e-12 and fitted["edge"] < 1e-12
    assert abs(plain["interior"] - ((0.3 ** 2) + 0 + (0.2 ** 2))) < 1e-9  # the centre pixel: (0.6-0.3)^2 + (0.2-0.4)^2


def test_true_colour_scales_from_a_sidecar(tmp_path):
    import json

    resp = {"Capture0/a": {"gain": 1.0, "white_balance": [1.0, 1.0, 1.0]},
            "Capture0/b": {"gain": 0.5, "white_balance": [2.0, 1.0, 1.0]},  # (1.0, 0.5, 0.5)
            "Capture0/c": {"gain": 2.0, "white_balance": [1.0, 1.0, 0.5]}}  # held out: (2, 2, 1)
    (tmp_path / "handcli_synth.json").write_text(json.dumps({"camera_response": resp}))
    s = error_regions.true_colour_scales(tmp_path, ["a", "b"])  # training mean response (1.0, 0.75, 0.75)
    np.testing.assert_allclose(s["c"], [0.5, 0.375, 0.75])
    np.testing.assert_allclose(s["a"], [1.0, 0.75, 0.75])
    (tmp_path / "handcli_synth.json").write_text(json.dumps({"camera_response": {}}))  # the ideal profile
    assert error_regions.true_colour_scales(tmp_path, ["a"]) == {}
