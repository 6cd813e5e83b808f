"""Estimated test-time input hands (preprocess ``--hand-estimates``): the cache stores each view's estimate in
the world, off the true hand by the realistic profile's estimator error, with the GT hand kept; HandNeRF-HO
and PixelNeRF train with the GT hand and use the estimate on the frames they did not train on; bad or
missing estimate files are one-line input errors naming the file and the field."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from handcli.cli import app
from handcli.data.cache import Cache
from handcli.errors import InputError
from handcli.methods.handnerf_ho.method import HandNeRFHOMethod
from handcli.methods.handnerf_ho.model import preset
from handcli.synth.realism import realism_config, rms_mm

TINY = dict(rays_per_step=64, n_samples=8, hidden=32, layers=2, skips=(1,), color_hidden=16, cnn_channels=8,
            volume_feat_dim=8, img_feat_dim=16, render_size=24, input_size=32, voxel=0.02, grid_multiple=8,
            pe_deg=4, mesh_voxel=0.01, chunk=1024)


@pytest.fixture(scope="module")
def dex_real(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny realistic synthetic DexYCB (1 subject, 3 annotated frames, 2 cameras) and its cache with the
    synth's estimates (``ROOT/handcli_est``)."""
    from handcli.data.ho_preprocess import preprocess_dexycb
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb

    d = tmp_path_factory.mktemp("dexest")
    root = d / "dex"
    write_dexycb(root, DexYCBSynthConfig(subjects=1, seqs=1, frames=4, cameras=2, distractors=0, seed=2,
                                         unannotated_frame=False, realism=realism_config("realistic", "dexycb")))
    preprocess_dexycb(root, d / "cache.h5", scale=0.25, hand_estimates=root / "handcli_est")
    return root, d / "cache.h5"


def _gt_world_verts(root: Path, key: str) -> np.ndarray:
    """The exact (rendered) model mesh of a synthetic DexYCB frame, world metres (the sidecar)."""
    subject, seq, f = key.split("/")
    return np.load(root / "handcli_gt" / subject / seq / f"{int(f):06d}.npz")["hand_model_vertices"]


def test_dexycb_cache_stores_estimates_off_the_truth_by_the_configured_error(dex_real):
    root, cache_path = dex_real
    real = json.loads((root / "handcli_synth.json").read_text())["config"]["realism"]
    expected = float(np.hypot(real["estimate_pa_mm"], real["estimate_root_mm"]))
    est_sq, ann = [], []
    with Cache(cache_path) as c:
        assert c.has_hand_estimates and c.num_frames == 3
        assert json.loads(c.attrs["config"])["hand_estimates"] == str((root / "handcli_est").resolve())
        vt = c.view_table()
        for i in range(c.num_frames):
            rec = c.frame(i)
            side, h = next(iter(rec.hands.items()))
            exact = _gt_world_verts(root, rec.key)
            ann.append(rms_mm(h.vertices, exact))  # the GT hand of the cache is the annotation, kept as it was
            for j in np.flatnonzero(vt["frame"] == i):
                e = c.hand_estimate(int(j))
                assert e is not None and e["vertices"].shape == h.vertices.shape and e["joints"].shape == (21, 3)
                est_sq.append(np.sum((e["vertices"].astype(np.float64) - exact) ** 2, axis=1))
                # the estimate's wrist belongs to its own mesh (a few cm from the vertex centroid, not the GT's)
                assert 0.005 < np.linalg.norm(e["joints"][0] - e["vertices"].mean(0)) < 0.15
    est = float(np.sqrt(np.concatenate(est_sq).mean()) * 1000.0)
    assert abs(est - expected) < 0.25 * expected, (est, expected)
    # estimates are several times further off than the annotations the method trains with
    assert est > 2 * max(ann), (est, ann)


def _method(cache: Path, method: str = "handnerf-ho", **kw) -> HandNeRFHOMethod:
    torch.manual_seed(0)
    return HandNeRFHOMethod(replace(preset("fast", method), **{**TINY, **kw}), cache, method=method,
                            train_frames=[0])


@pytest.mark.parametrize("method", ["handnerf-ho", "pixelnerf"])
def test_test_frames_use_the_estimate_and_training_frames_the_gt_hand(dex_real, method):
    _, cache_path = dex_real
    m = _method(cache_path, method)
    with Cache(cache_path) as c:
        gt_train = c.frame(0).hands
        gt_test = next(iter(c.frame(2).hands.values()))
        train = m.scene(0)
        np.testing.assert_allclose(train.hand_verts.numpy(), next(iter(gt_train.values())).vertices, atol=1e-6)
        test = m.scene(2)
        est = c.hand_estimate(m.input_views[2])
    assert m.input_hand(0) == "gt" and m.input_hand(2) == "estimated"
    np.testing.assert_allclose(test.hand_verts.numpy(), est["vertices"], atol=1e-6)
    np.testing.assert_allclose(test.wrist.numpy(), est["joints"][0], atol=1e-6)
    assert rms_mm(test.hand_verts.numpy(), gt_test.vertices) > 5.0
    # the box follows the input hand (and the GT object), not the GT hand
    gt_m = _method(cache_path, method, test_hand="gt")
    gt_scene = gt_m.scene(2)
    np.testing.assert_allclose(gt_scene.hand_verts.numpy(), gt_test.vertices, atol=1e-6)
    assert not torch.allclose(test.box_min, gt_scene.box_min)
    # the rendered test view changes with the input hand (same weights): the method's input uses it
    gt_m.model.load_state_dict(m.model.state_dict())
    j = next(k for k in m.cache.views_of_frame(2) if k != m.input_views[2])  # a novel view
    a, b = m.render_crop(j)[0], gt_m.render_crop(j)[0]
    # (an untrained field renders faintly: differences well above float noise, ~1e-7, are what counts)
    assert a["opacity"].max() > 0 and np.abs(a["rgb"] - b["rgb"]).max() > 1e-5


def test_runs_loaded_for_render_keep_the_gt_hand_on_training_frames(dex_real, tmp_path):
    _, cache_path = dex_real
    run = tmp_path / "run"
    sets = sum((["--set", f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}"] for k, v in TINY.items()), [])
    res = CliRunner().invoke(app, ["train", str(cache_path), "-o", str(run), "--method", "pixelnerf", "--steps", "2",
                                   "--frames", "0,1", *sets, "--threads", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads((run / "config.json").read_text())
    assert doc["data"]["train_frames"] == [0, 1] and doc["data"]["test_hand"] == "estimated"
    m = HandNeRFHOMethod.from_run(run)
    assert [m.input_hand(f) for f in range(3)] == ["gt", "gt", "estimated"]
    with Cache(cache_path) as c:
        np.testing.assert_allclose(m.scene(2).hand_verts.numpy(), c.hand_estimate(m.input_views[2])["vertices"],
                                   atol=1e-6)
    # the same run on another cache file (e.g. a test cache): every frame is a test frame
    other = tmp_path / "copy.h5"
    other.write_bytes(cache_path.read_bytes())
    assert HandNeRFHOMethod.from_run(run, other).input_hand(0) == "estimated"


def test_cache_without_estimates_uses_the_gt_hand(dex_real, tmp_path):
    from handcli.data.ho_preprocess import preprocess_dexycb

    root, _ = dex_real
    preprocess_dexycb(root, tmp_path / "gt.h5", scale=0.25)
    with Cache(tmp_path / "gt.h5") as c:
        assert not c.has_hand_estimates and c.hand_estimate(0) is None
    m = _method(tmp_path / "gt.h5")
    assert m.input_hand(2) == "gt" and m.run_data()["test_hand"].startswith("gt")
    with pytest.raises(InputError) as e:
        from handcli.methods.handnerf_ho.method import build_scene

        build_scene(m.cache, 2, m.cfg, input_hand="estimated")
    assert e.value.field == "views/hand_estimate"


def _damage(est: Path, damage: str) -> Path:
    f = sorted(est.rglob("mano_*.npz"))[0]
    d = dict(np.load(f))
    if damage == "missing":
        f.unlink()
    elif damage == "no_vertices":
        d.pop("vertices")
        np.savez(f, **d)
    elif damage == "bad_shape":
        d["vertices"] = d["vertices"][:, :700]
        np.savez(f, **d)
    elif damage == "nan_joints":
        d["joint_3d"][0, 3, 1] = np.nan
        np.savez(f, **d)
    else:
        f.write_bytes(b"not an npz")
    return f


@pytest.mark.parametrize("damage, field", [
    ("missing", "hand-estimates"),
    ("no_vertices", "vertices"),
    ("bad_shape", "vertices"),
    ("nan_joints", "joint_3d"),
    ("not_npz", "hand-estimates"),
])
def test_bad_estimate_files_are_input_errors_naming_file_and_field(dex_real, tmp_path, damage, field):
    import shutil

    from handcli.data.ho_preprocess import preprocess_dexycb

    root, _ = dex_real
    est = tmp_path / "est"
    shutil.copytree(root / "handcli_est", est)
    f = _damage(est, damage)
    out = tmp_path / "c.h5"
    with pytest.raises(InputError) as e:
        preprocess_dexycb(root, out, scale=0.25, hand_estimates=est)
    assert Path(e.value.path) == f and e.value.field == field
    assert not out.exists()


def test_cli_bad_estimate_is_one_line_and_exit_2(dex_real, tmp_path):
    import shutil
    import subprocess
    import sys

    root, _ = dex_real
    est = tmp_path / "est"
    shutil.copytree(root / "handcli_est", est)
    f = _damage(est, "bad_shape")
    out = tmp_path / "c.h5"
    r = subprocess.run([sys.executable, "-m", "handcli.cli", "preprocess", "dexycb", str(root), "-o", str(out),
                        "--scale", "0.25", "--hand-estimates", str(est)], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "━" not in ln]
    assert r.returncode == 2 and len(lines) == 1 and str(f) in lines[0] and "vertices" in lines[0], r.stderr
    assert not out.exists()


def test_ho3d_estimates_are_moved_from_opengl_to_the_world(tmp_path):
    from handcli.data.ho_preprocess import preprocess_ho3d
    from handcli.synth.ho3d import HO3DSynthConfig, write_ho3d

    root = tmp_path / "h"
    write_ho3d(root, HO3DSynthConfig(frames=2, cameras=1, seed=4, realism=realism_config("realistic", "ho3d")))
    real = json.loads((root / "handcli_synth.json").read_text())["config"]["realism"]
    preprocess_ho3d(root, tmp_path / "c.h5", scale=0.25, seqs="SMu1", hand_estimates=root / "handcli_est")
    sq = []
    with Cache(tmp_path / "c.h5") as c:
        assert c.num_frames == 2
        for j in range(c.num_views):
            i = int(c.view_table()["frame"][j])
            fid = c.frame(i).frame_idx
            # SMu1: the world is its camera's OpenCV frame; the sidecar holds it too
            exact = np.load(root / "handcli_gt" / "train" / "SMu1" / f"{fid:04d}.npz")["hand_model_vertices"]
            e = c.hand_estimate(j)
            sq.append(np.sum((e["vertices"].astype(np.float64) - exact) ** 2, axis=1))
            assert np.linalg.norm(e["joints"][0] - exact.mean(0)) < 0.15  # HO-3D joint order mapped: wrist first
    rms = float(np.sqrt(np.concatenate(sq).mean()) * 1000.0)
    expected = float(np.hypot(real["estimate_pa_mm"], real["estimate_root_mm"]))
    assert abs(rms - expected) < 0.35 * expected, (rms, expected)


def test_shards_and_merge_keep_the_estimates(dex_real, tmp_path):
    from handcli.data.cache import merge_caches
    from handcli.data.ho_preprocess import preprocess_dexycb
    from handcli.data.shards import open_cache

    root, whole = dex_real
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in (0, 1):
        preprocess_dexycb(root, parts / f"part-{i}.h5", scale=0.25, shard=f"{i}/2",
                          hand_estimates=root / "handcli_est")
    merge_caches(sorted(parts.glob("*.h5")), tmp_path / "merged.h5")
    with Cache(whole) as w, open_cache(parts) as s, Cache(tmp_path / "merged.h5") as m:
        assert s.has_hand_estimates and m.has_hand_estimates and w.num_views == s.num_views == m.num_views
        for j in range(w.num_views):
            for c in (s, m):
                np.testing.assert_array_equal(c.hand_estimate(j)["vertices"], w.hand_estimate(j)["vertices"])
