"""DexYCB: the reader key by key on a hand-written fixture in the real layout, and ``preprocess dexycb`` on a
synthetic dataset (masks, reprojection, bounds, objects, scaling, shards) and its bad-input contract."""

from __future__ import annotations

import shutil
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest
import torch

from handcli.camera import camera_center, project, transform
from handcli.data.cache import Cache, merge_caches
from handcli.data.dexycb import DexYCBReader, load_yaml, read_label, s0_split, seg_to_labels
from handcli.data.ho_preprocess import preprocess_dexycb
from handcli.data.objects import apply_pose
from handcli.errors import InputError

A, B = "836212060125", "840412060917"
EXT = "20200702_151821"
INTR_A = """color:
  fx: 613.0762329101562
  fy: 611.9989624023438
  ppx: 313.0279846191406
  ppy: 245.00865173339844
depth:
  fx: 386.2
  fy: 386.2
  ppx: 320.1
  ppy: 239.9
extrinsics: !!python/tuple
- 0.9999
- 0.0
- 0.0
- 0.0148
- 0.0
- 0.9999
- 0.0
- 0.0
- 0.0
- 0.0
- 0.9999
- 0.0
"""


def _write_fixture(root, n_seq=(6, 5)):
    cal = root / "calibration"
    (cal / "intrinsics").mkdir(parents=True)
    (cal / "intrinsics" / f"{A}_640x480.yml").write_text(INTR_A)
    (cal / "intrinsics" / f"{B}_640x480.yml").write_text(
        INTR_A.replace("613.0762329101562", "600.0").replace("313.0279846191406", "320.0"))
    (cal / f"extrinsics_{EXT}").mkdir()
    # A: rotation of 90 degrees about z, then t; B (master): identity
    (cal / f"extrinsics_{EXT}" / "extrinsics.yml").write_text(
        "extrinsics:\n"
        f"  '{A}': [0.0, -1.0, 0.0, 0.1, 1.0, 0.0, 0.0, 0.2, 0.0, 0.0, 1.0, 0.3]\n"
        f"  '{B}': [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]\n"
        "  apriltag: [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5]\n"
        f"master: '{B}'\n")
    for subj, n, side in (("20200709-subject-01", n_seq[0], "right"), ("20200820-subject-03", n_seq[1], "left")):
        date = subj[:8]
        calib = f"{date}_140042_subject-{subj[-2:]}_{side}"
        (cal / f"mano_{calib}").mkdir()
        (cal / f"mano_{calib}" / "mano.yml").write_text("betas:\n" + "".join(f"- {0.1 * i}\n" for i in range(10)))
        for i in range(n):
            seq = root / subj / f"{date}_14{i:02d}00"
            seq.mkdir(parents=True)
            (seq / "meta.yml").write_text(
                f"serials:\n- '{A}'\n- '{B}'\nnum_frames: 4\nextrinsics: '{EXT}'\nycb_ids:\n- 2\n- 10\n"
                f"ycb_grasp_ind: 1\nmano_sides:\n- {side}\nmano_calib:\n- {calib}\n")
    seq = root / "20200709-subject-01" / "20200709_140000"
    for s in (A, B):
        (seq / s).mkdir()
        for f in range(4):
            cv2.imwrite(str(seq / s / f"color_{f:06d}.jpg"), np.full((480, 640, 3), 80, np.uint8))
            seg = np.zeros((480, 640), np.uint8)
            seg[10:20, 10:20] = 10  # grasped (ycb_ids[1] = 10, banana)
            seg[30:40, 30:40] = 2  # another object
            seg[50:60, 50:60] = 255  # hand
            pose_m = np.zeros((1, 51), np.float32) if f == 0 else np.arange(51, dtype=np.float32)[None] * 0.01
            joint_3d = -np.ones((1, 21, 3), np.float32) if f == 0 else np.arange(63, dtype=np.float32).reshape(
                1, 21, 3) * 0.001 + 0.5
            np.savez(seq / s / f"labels_{f:06d}.npz", seg=seg, pose_y=np.zeros((2, 3, 4), np.float32),
                     pose_m=pose_m, joint_3d=joint_3d, joint_2d=-np.ones((1, 21, 2), np.float32))
    return seq


def test_yaml_python_tuple_needs_our_loader(tmp_path):
    import yaml

    p = tmp_path / "x.yml"
    p.write_text(INTR_A)
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(INTR_A)
    d = load_yaml(p)
    assert d["extrinsics"][3] == pytest.approx(0.0148) and len(d["extrinsics"]) == 12
    assert d["color"]["fx"] == pytest.approx(613.0762329101562)
    p.write_text("color: [unclosed\n")
    with pytest.raises(InputError, match="malformed YAML"):
        load_yaml(p)


def test_reader_key_by_key(tmp_path):
    _write_fixture(tmp_path)
    rd = DexYCBReader(tmp_path)
    assert np.allclose(rd.intrinsics(A), [[613.0762329101562, 0, 313.0279846191406],
                                          [0, 611.9989624023438, 245.00865173339844], [0, 0, 1]])
    cam = rd.camera(A, EXT)
    assert np.allclose(cam.cam_to_world, [[0, -1, 0, 0.1], [1, 0, 0, 0.2], [0, 0, 1, 0.3], [0, 0, 0, 1]])
    # world->camera = [R^T | -R^T t], worked out by hand
    assert np.allclose(cam.world_to_cam, [[0, 1, 0, -0.2], [-1, 0, 0, 0.1], [0, 0, 1, -0.3], [0, 0, 0, 1]])
    x_cam = np.array([0.01, 0.02, 0.5])
    x_world = transform(cam.cam_to_world, x_cam)
    assert np.allclose(x_world, [0.08, 0.21, 0.8]) and np.allclose(transform(cam.world_to_cam, x_world), x_cam)
    assert rd.masters[EXT] == B and np.allclose(rd.extrinsics(EXT)["apriltag"][:3, 3], [0, 0, 0.5])
    seq = rd.sequence("20200709-subject-01", "20200709_140000", 0, 0)
    assert seq.serials == [A, B] and seq.num_frames == 4 and seq.ycb_ids == [2, 10]
    assert seq.grasp_id == 10 and seq.grasp_name == "011_banana" and seq.mano_side == "right"
    assert np.allclose(seq.betas, 0.1 * np.arange(10))
    frames = rd.frames(seqs={"20200709_140000"}, every=2, cameras=[A])
    assert [f.frame for f in frames] == [0, 2] and [v.serial for v in frames[0].views] == [A]
    assert frames[1].views[0].color.name == "color_000002.jpg" and frames[1].views[0].label.name == "labels_000002.npz"
    assert frames[1].views[0].depth.name == "aligned_depth_to_color_000002.png"
    lab = read_label(frames[1].views[0].label, 2)
    assert lab["pose_m"].shape == (1, 51) and lab["pose_m"][0, 50] == pytest.approx(0.5)
    assert lab["joint_3d"][0, 20, 2] == pytest.approx(0.5 + 0.062)


def test_s0_split_rule(tmp_path):
    _write_fixture(tmp_path)
    assert [s0_split(0, i) for i in range(6)] == ["s0_train"] * 4 + ["s0_val", "s0_train"]
    assert s0_split(2, 4) == "s0_test" and s0_split(9, 9) == "s0_test" and s0_split(1, 14) == "s0_val"
    rd = DexYCBReader(tmp_path)
    val = {f.seq.key for f in rd.frames(split="s0_val")}
    test = {f.seq.key for f in rd.frames(split="s0_test")}
    assert val == {"20200709-subject-01/20200709_140400"}  # subject-01, sorted index 4
    assert test == {"20200820-subject-03/20200820_140400"}  # subject-03 is subject index 2
    assert len({f.seq.key for f in rd.frames(split="s0_train")}) == 4 + 1 + 4


def test_seg_mapping():
    seg = np.array([[0, 10, 2, 255]], np.uint8)
    assert seg_to_labels(seg, 10, "right").tolist() == [[0, 3, 0, 1]]
    assert seg_to_labels(seg, 2, "left").tolist() == [[0, 0, 3, 2]]


def test_label_validation(tmp_path):
    seq = _write_fixture(tmp_path)
    p = seq / A / "labels_000001.npz"
    z = dict(np.load(p))
    z["pose_m"][0, 7] = np.nan
    np.savez(p, **z)
    with pytest.raises(InputError) as e:
        read_label(p, 2)
    assert "labels_000001.npz" in str(e.value) and "pose_m" in str(e.value)
    del z["joint_3d"]
    np.savez(p, **z)
    with pytest.raises(InputError, match="joint_3d"):
        read_label(p, 2)
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(InputError, match="malformed"):
        read_label(p, 2)


def test_pca_expansion_matches_smplx():
    """flat_hand_mean=False PCA poses: expand_pca_pose == smplx's own use_pca path, and equal to the absolute
    pose ``coeffs @ hands_components + hands_mean`` in a flat_hand_mean=True model."""
    import smplx
    from smplx.utils import Struct

    from handcli.hand.model import HandModel, load_hand_models, model_file, read_model_dict

    m = load_hand_models("dexycb")["right"]
    assert not m.flat_hand_mean
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(2, 45, generator=g) * 0.4
    orient, betas, trans = torch.randn(2, 3, generator=g) * 0.5, torch.randn(2, 10, generator=g) * 0.5, torch.randn(
        2, 3, generator=g) * 0.1
    d = dict(read_model_dict(model_file("right", None)))
    with torch.no_grad():
        # smplx silently turns PCA off for num_pca_comps=45, so its PCA path is checked with 12 components
        ref = smplx.MANO(model_path="", data_struct=Struct(**d), is_rhand=True, use_pca=True, num_pca_comps=12,
                         flat_hand_mean=False)
        v_ref = ref(betas=betas, global_orient=orient, hand_pose=coeffs[:, :12], transl=trans).vertices
        v12 = m(m.expand_pca_pose(torch.cat([orient, coeffs[:, :12]], 1)), betas, trans).vertices
        # all 45 (DexYCB): the absolute pose coeffs @ hands_components + hands_mean in a flat_hand_mean model
        v = m(m.expand_pca_pose(torch.cat([orient, coeffs], 1)), betas, trans).vertices
        flat = HandModel.load("right", None, flat_hand_mean=True)
        aa = coeffs @ torch.as_tensor(d["hands_components"], dtype=torch.float32) + torch.as_tensor(
            d["hands_mean"], dtype=torch.float32)
        v_flat = flat(torch.cat([orient, aa], 1), betas, trans).vertices
    assert torch.allclose(v12, v_ref, atol=1e-6) and torch.allclose(v, v_flat, atol=1e-6)
    assert (v - v12).abs().max() > 1e-3  # the other 33 components matter


# ----------------------------------------------------------------------------------------------- synthetic
@pytest.fixture(scope="session")
def dex_root(tmp_path_factory):
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb

    root = tmp_path_factory.mktemp("dex") / "dexycb"
    write_dexycb(root, DexYCBSynthConfig(subjects=2, seqs=1, frames=4, cameras=3, seed=5))
    return root


@pytest.fixture(scope="session")
def dex_cache(dex_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("dexc") / "cache.h5"
    preprocess_dexycb(dex_root, out)
    return out


def _gt(root, rec):
    subject, seq, f = rec.key.split("/")
    return np.load(root / "handcli_gt" / subject / seq / f"{int(f):06d}.npz")


def _gt_label(root, rec, serial):
    subject, seq, f = rec.key.split("/")
    return cv2.imread(str(root / "handcli_gt" / subject / seq / serial / f"label_{int(f):06d}.png"), 0)


def test_cache_contents_and_drops(dex_root, dex_cache):
    with Cache(dex_cache) as c:
        a = c.attrs
        assert a["dataset"] == "dexycb" and c.has_objects
        # 2 sequences x 4 frames, minus frame 0 of each (no hand) and frame 1 of the first (unannotated)
        assert c.num_frames == 5 and c.num_views == 15
        assert '"seg": 15' in a["label_source"]
        assert c.object_names() == ["003_cracker_box", "005_tomato_soup_can"]
        sides = {c.frame(i).key.split("/")[0]: set(c.frame(i).hands) for i in range(c.num_frames)}
        assert sides == {"20200709-subject-01": {"right"}, "20200813-subject-02": {"left"}}
        assert c.hand_model("right")["mesh_source"] == "mano-params"
        m = c.object_mesh("003_cracker_box")
        from handcli.data.objects import load_object_mesh

        ref = load_object_mesh(dex_root / "models", "003_cracker_box")
        assert np.allclose(m["vertices"], ref.vertices, atol=1e-6) and len(m["points"]) == 2000
        keys = [c.frame(i).key for i in range(c.num_frames)]
        assert "20200709-subject-01/20200709_141000/1" not in keys and not any(k.endswith("/0") for k in keys)
        with h5py.File(dex_cache) as f:
            assert set(f["objects"]) == {"003_cracker_box", "005_tomato_soup_can"}  # each model stored once
            assert f["frames/object/pose"].shape == (5, 4, 4)


def test_world_meshes_match_ground_truth(dex_root, dex_cache):
    with Cache(dex_cache) as c:
        for i in range(c.num_frames):
            rec = c.frame(i)
            gt = _gt(dex_root, rec)
            (side, h), = rec.hands.items()
            assert np.abs(h.vertices - gt["hand_vertices"]).max() < 2e-5
            assert np.abs(h.joints - gt["hand_joints"]).max() < 2e-5
            assert np.allclose(rec.object.pose, gt["object_pose"], atol=1e-6)
            posed = apply_pose(rec.object.pose, c.object_mesh(rec.object.name)["vertices"])
            assert np.abs(posed - gt["object_vertices"]).max() < 1e-5


def test_masks_match_ground_truth_and_geometry(dex_root, dex_cache):
    from handcli.render.raster import rasterize_meshes

    checked = 0
    with Cache(dex_cache) as c:
        cams = c.cameras()
        for j in range(c.num_views):
            v = c.view(j)
            rec, cam = c.frame(v["frame"]), cams[v["camera"]]
            (side, h), = rec.hands.items()
            gt = _gt_label(dex_root, rec, cam["name"])
            hl = 1 if side == "right" else 2
            om = c.object_mesh(rec.object.name)
            ras = rasterize_meshes([(transform(cam["world_to_cam"], h.vertices.astype(float)),
                                     c.hand_model(side)["faces"]),
                                    (transform(cam["world_to_cam"], apply_pose(rec.object.pose, om["vertices"])),
                                     om["faces"])], cam["K"], cam["height"], cam["width"])
            for lab, ref in ((hl, gt == hl), (3, gt == 3)):
                a = v["label"] == lab
                if ref.sum() > 200:
                    assert (a & ref).sum() / (a | ref).sum() > 0.95
                    checked += 1
                else:  # a sliver (occluded): the same few pixels
                    assert (a ^ ref).sum() < 30
            # geometry: the cache's posed hand and object cover their labels (other objects and the table may
            # occlude them in the dataset's seg, so labels are a subset of the two-mesh raster)
            for lab, ref in ((hl, ras.mesh_id == 0), (3, ras.mesh_id == 1)):
                a = v["label"] == lab
                assert (a & ref).sum() >= 0.98 * a.sum()
            assert set(np.unique(v["label"])) <= {0, hl, 3}
        assert checked >= 0.8 * 2 * c.num_views


def test_joints_and_object_box_reproject(dex_root, dex_cache):
    errs = []
    with Cache(dex_cache) as c:
        cams = c.cameras()
        vt = c.view_table()
        for j in range(c.num_views):
            rec, cam = c.frame(int(vt["frame"][j])), cams[int(vt["camera"][j])]
            gt = _gt(dex_root, rec)
            (side, h), = rec.hands.items()
            uv = project(transform(cam["world_to_cam"], h.joints.astype(float)), cam["K"])
            errs.append(np.linalg.norm(uv - gt[f"joints2d_{cam['name']}"], axis=1))
            box = rec.object.box.astype(float)
            corners = np.array([[x, y, z] for x in box[:, 0] for y in box[:, 1] for z in box[:, 2]])
            uv = project(transform(cam["world_to_cam"], corners), cam["K"])
            errs.append(np.linalg.norm(uv - gt[f"corners2d_{cam['name']}"], axis=1))
    assert np.concatenate(errs).max() < 1.0


def test_near_far_and_box2d_bound_hand_and_object(dex_root, dex_cache):
    with Cache(dex_cache) as c:
        cams = c.cameras()
        vt = c.view_table()
        for j in range(c.num_views):
            rec, cam = c.frame(int(vt["frame"][j])), cams[int(vt["camera"][j])]
            om = c.object_mesh(rec.object.name)
            pts = np.concatenate([next(iter(rec.hands.values())).vertices.astype(float),
                                  apply_pose(rec.object.pose, om["vertices"]),
                                  apply_pose(rec.object.pose, om["points"])])
            d = np.linalg.norm(pts - camera_center(cam["world_to_cam"]), axis=1)
            near, far = vt["near_far"][j]
            assert near <= d.min() and d.max() <= far and far - near < 1.0
            uv = project(transform(cam["world_to_cam"], pts), cam["K"])
            x0, y0, x1, y1 = vt["box2d"][j]
            inside = (uv[:, 0] >= 0) & (uv[:, 0] <= 639) & (uv[:, 1] >= 0) & (uv[:, 1] <= 479)
            q = uv[inside]
            assert (q[:, 0] >= x0 - 1e-3).all() and (q[:, 0] <= x1 + 1e-3).all()
            assert (q[:, 1] >= y0 - 1e-3).all() and (q[:, 1] <= y1 + 1e-3).all()
            # the posed object projects onto its mask, or onto what occludes it (the hand, another object)
            lab = c.view(j)["label"]
            subject, seq, f = rec.key.split("/")
            seg = np.load(dex_root / subject / seq / cam["name"] / f"labels_{int(f):06d}.npz")["seg"]
            fg = cv2.dilate((seg > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            px = np.round(project(transform(cam["world_to_cam"], apply_pose(rec.object.pose, om["points"])),
                                  cam["K"])).astype(int)
            assert fg[px[:, 1], px[:, 0]].all()
            assert (lab[px[:, 1], px[:, 0]] == 3).mean() > 0.4


def test_half_scale_depth_and_selection(dex_root, dex_cache, tmp_path):
    out = tmp_path / "half.h5"
    preprocess_dexycb(dex_root, out, scale=0.5, depth=True, cameras=A, every=2, objects="2")
    with Cache(out) as c, Cache(dex_cache) as full:
        assert c.has_depth and {cm["name"] for cm in c.cameras()} == {A}
        assert {(cm["width"], cm["height"]) for cm in c.cameras()} == {(320, 240)}
        keys = [c.frame(i).key for i in range(c.num_frames)]
        assert keys == ["20200709-subject-01/20200709_141000/2"]  # every 2nd, cracker box (id 2) only
        v = c.view(0)
        j = next(j for j in range(full.num_views) if full.frame(full.view(j)["frame"]).key == keys[0]
                 and full.cameras()[full.view(j)["camera"]]["name"] == A)
        big = full.view(j)["label"]
        for lab in (1, 3):
            ref = cv2.resize((big == lab).astype(np.float32), (320, 240), interpolation=cv2.INTER_AREA) > 0.5
            a = v["label"] == lab
            assert (a & ref).sum() / (a | ref).sum() > 0.9
        depth_png = cv2.imread(str(dex_root / "20200709-subject-01" / "20200709_141000" / A /
                                   "aligned_depth_to_color_000002.png"), cv2.IMREAD_UNCHANGED)
        ref = depth_png[1::2, 1::2].astype(np.float32) / 1000.0  # nearest-exact 2x: odd pixels
        assert np.abs(v["depth"] - ref).max() < 1e-3 and (v["depth"] > 0).mean() > 0.3


def test_shards_merge_to_the_same_cache(dex_root, dex_cache, tmp_path):
    kw = dict(cameras=f"{A},{B}", frames="2-3")
    preprocess_dexycb(dex_root, tmp_path / "one.h5", **kw)
    preprocess_dexycb(dex_root, tmp_path / "s0.h5", shard="0/2", **kw)
    preprocess_dexycb(dex_root, tmp_path / "s1.h5", shard="1/2", **kw)
    merge_caches([tmp_path / "s0.h5", tmp_path / "s1.h5"], tmp_path / "merged.h5")
    names = ("frames/key", "views/rgb", "views/label", "views/near_far", "frames/object/pose", "frames/object/name",
             "objects/003_cracker_box/vertices", "objects/005_tomato_soup_can/points", "frames/left/vertices")
    with h5py.File(tmp_path / "one.h5") as a, h5py.File(tmp_path / "merged.h5") as b:
        for k in names:
            assert np.array_equal(a[k][()], b[k][()]), k
        assert a.attrs["label_source"] == b.attrs["label_source"]


def test_fit_to_joints_without_the_synth_marker(dex_root, tmp_path):
    out = tmp_path / "fit.h5"
    preprocess_dexycb(dex_root, out, mesh_from="joints", frames="3", cameras=A, seqs="20200709_141000")
    with Cache(out) as c:
        assert c.hand_model("right")["mesh_source"] == "fit-to-joints"
        rec = c.frame(0)
        gt = _gt(dex_root, rec)
        err = np.linalg.norm(rec.hands["right"].vertices - gt["hand_vertices"], axis=1)
        assert err.mean() < 0.005  # the open model fitted to its own joints


# ----------------------------------------------------------------------------------------------- bad input
def _run(args, monkeypatch, capsys):
    from handcli import cli

    monkeypatch.setattr(sys, "argv", ["handcli", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _copy(root, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(root, dst, ignore=shutil.ignore_patterns("handcli_gt"))
    return dst


SEQ0 = "20200709-subject-01/20200709_141000"


def _break_missing_meta(root):
    (root / SEQ0 / "meta.yml").unlink()
    return "meta.yml", "missing"


def _break_yaml(root):
    (root / "calibration" / "intrinsics" / f"{A}_640x480.yml").write_text("color: {fx: [\n")
    return f"{A}_640x480.yml", "malformed YAML"


def _break_image(root):
    (root / SEQ0 / B / "color_000002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return "color_000002.jpg", "decode"


def _break_serial(root):
    p = root / SEQ0 / "meta.yml"
    p.write_text(p.read_text().replace("serials:\n", "serials:\n- '999999999999'\n"))
    return "meta.yml", "serials/999999999999"


def _break_nan(root):
    p = root / SEQ0 / A / "labels_000002.npz"
    z = dict(np.load(p))
    z["pose_m"][0, 10] = np.nan
    np.savez_compressed(p, **z)
    return "labels_000002.npz", "pose_m"


def _break_npz(root):
    p = root / SEQ0 / A / "labels_000003.npz"
    p.write_bytes(p.read_bytes()[:100])
    return "labels_000003.npz", "malformed"


def _break_extrinsics(root):
    p = root / "calibration" / "extrinsics_20200709_100000" / "extrinsics.yml"
    p.write_text(p.read_text().replace(f"'{B}':", "'000000000000':"))
    return "extrinsics.yml", f"extrinsics/{B}"


@pytest.mark.parametrize("breaker", [_break_missing_meta, _break_yaml, _break_image, _break_serial, _break_nan,
                                     _break_npz, _break_extrinsics])
def test_bad_input_exit_2_and_no_output(dex_root, tmp_path, monkeypatch, capsys, breaker):
    root = _copy(dex_root, tmp_path)
    fname, key = breaker(root)
    outdir = tmp_path / "out"
    outdir.mkdir()
    code, out, err = _run(["preprocess", "dexycb", root, "-o", outdir / "c.h5", "--seq", "20200709_141000"],
                          monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and fname in lines[0] and key in lines[0], err
    assert "Traceback" not in err and out == ""
    assert list(outdir.iterdir()) == []


@pytest.mark.slow
def test_cli_synth_and_preprocess_subprocess(tmp_path, monkeypatch, capsys):
    """The real entry point: paths on stdout only; an unknown split is an input error."""
    def handcli(*args):
        return subprocess.run([sys.executable, "-m", "handcli.cli", *map(str, args)], capture_output=True, text=True)

    root = tmp_path / "d"
    r = handcli("synth", "dexycb", root, "--subjects", "1", "--frames", "3", "--cameras", "1", "--distractors", "0")
    assert r.returncode == 0 and r.stdout.strip() == str(root), r.stderr
    out = tmp_path / "c.h5"
    r = handcli("preprocess", "dexycb", root, "-o", out, "--camera", A)
    assert r.returncode == 0 and r.stdout.strip() == str(out), r.stderr
    with Cache(out) as c:
        assert c.num_frames == 1 and c.num_views == 1  # frame 0 has no hand, frame 1 is unannotated
    code, _, err = _run(["preprocess", "dexycb", root, "-o", tmp_path / "x.h5", "--split", "s9_train"], monkeypatch,
                        capsys)
    assert code == 2 and "split" in err and not (tmp_path / "x.h5").exists()
