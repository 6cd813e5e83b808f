"""Camera-calibrated PSNR (handcli.eval.camera_calibration): hand-computed values, a brute-force reference
and the eval stage separating two cameras' gains."""

from __future__ import annotations

import math

import numpy as np
import pytest

from handcli.data.cache import Cache
from handcli.eval.camera_calibration import camera_calibrated_psnr, fit_gain, view_stats
from handcli.eval.renders_eval import evaluate_renders
from handcli.render.renders_folder import RendersWriter


def test_hand_computed_leave_one_out():
    """Camera A: view 0's ground truth is twice its render, view 1's equals its render. Each view is scored
    with the gain of the *other*: view 0 with 1 (error r^2), view 1 with 2 (error r^2)."""
    r0 = np.full((2, 2, 3), 0.25)
    r1 = np.full((2, 2, 3), 0.4)
    stats = [view_stats(r0, 2 * r0), view_stats(r1, r1)]
    out = camera_calibrated_psnr(stats, ["A", "A"])
    assert out[0] == pytest.approx(-10 * math.log10(0.25 ** 2))
    assert out[1] == pytest.approx(-10 * math.log10(0.4 ** 2))


def test_single_view_camera_has_no_score():
    r = np.full((2, 3, 3), 0.5)
    out = camera_calibrated_psnr([view_stats(r, r), view_stats(r, r), view_stats(r, 0.9 * r)], ["A", "B", "A"])
    assert out[1] is None and out[0] is not None and out[2] is not None


def test_matches_brute_force_least_squares():
    rng = np.random.default_rng(3)
    preds = [rng.uniform(0, 0.7, (5, 7, 3)) for _ in range(5)]
    gts = [np.clip(p * [0.7, 1.0, 1.3] + rng.normal(0, 0.05, p.shape), 0, 1) for p in preds]
    cams = [0, 0, 1, 0, 1]
    got = camera_calibrated_psnr([view_stats(p, g) for p, g in zip(preds, gts)], cams)
    for i in range(5):
        others = [k for k in range(5) if k != i and cams[k] == cams[i]]
        P = np.concatenate([preds[k].reshape(-1, 3) for k in others])
        G = np.concatenate([gts[k].reshape(-1, 3) for k in others])
        gain = np.array([np.linalg.lstsq(P[:, c:c + 1], G[:, c], rcond=None)[0][0] for c in range(3)])
        ref = -10 * math.log10(np.mean((preds[i] * gain - gts[i]) ** 2))
        assert got[i] == pytest.approx(ref, abs=1e-9)
    assert fit_gain(np.stack([view_stats(p, g) for p, g in zip(preds, gts)])) == pytest.approx([0.7, 1.0, 1.3],
                                                                                                abs=0.05)


def test_black_channel_keeps_unit_gain():
    r = np.zeros((2, 2, 3))
    g = np.full((2, 2, 3), 0.1)
    assert fit_gain(np.stack([view_stats(r, g)])).tolist() == [1.0, 1.0, 1.0]
    out = camera_calibrated_psnr([view_stats(r, g), view_stats(r, g)], ["A", "A"])
    assert out[0] == pytest.approx(-10 * math.log10(0.01))


def test_eval_separates_two_cameras_gains(tmp_path, synth_cache):
    """Renders equal to the ground truth divided by a per-camera, per-channel gain (two cameras, different
    gains, every frame): psnr_full is finite and low, the camera-calibrated PSNR recovers the exact images."""
    gains = {}
    with Cache(synth_cache) as c:
        vt, cams = c.view_table(), c.cameras()
        by_cam: dict[int, list[int]] = {}
        for j in range(c.num_views):
            by_cam.setdefault(int(vt["camera"][j]), []).append(j)
        picked = [cam for cam, js in sorted(by_cam.items()) if len(js) >= 2][:2]
        assert len(picked) == 2, "the fixture needs two cameras with two frames each"
        gains = {picked[0]: np.array([0.8, 1.0, 1.25]), picked[1]: np.array([1.2, 0.9, 1.0])}
        w = RendersWriter(tmp_path / "r", "test", None, synth_cache, "views", {})
        for cam in picked:
            for j in by_cam[cam][:2]:
                v = c.view(j)
                gt = np.where(v["label"][..., None] > 0, v["rgb"], 0).astype(np.float64) / 255.0
                w.add(gt / gains[cam], np.zeros(v["label"].shape, np.float32), (v["label"] > 0).astype(float),
                      {"cache_view": j, "frame": v["frame"], "camera": cams[cam]["name"], "K": cams[cam]["K"],
                       "world_to_cam": cams[cam]["world_to_cam"], "name": f"view{j}"})
        w.close()
    doc = evaluate_renders(tmp_path / "r", synth_cache).doc
    assert doc["num_views"] == 4 and doc["count"]["psnr_full_camcal"] == 4
    for v in doc["views"]:
        assert v["psnr_full"] < 40
        # exact up to the float rounding of the renders (stored as 16-bit PNG or float): far above psnr_full
        assert v["psnr_full_camcal"] > v["psnr_full"] + 15
    assert "psnr_full_camcal" in doc["conventions"]
