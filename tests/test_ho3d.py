"""HO-3D v3: the reader key by key on a hand-written fixture in the real layout (latin1 pickles with None
fields, OpenGL camera frame, 320x240 seg, calibration), and ``preprocess ho3d`` on a synthetic dataset and
its bad-input contract."""

from __future__ import annotations

import pickle
import shutil
import sys

import cv2
import h5py
import numpy as np
import pytest
import torch

from handcli.camera import camera_center, intrinsics, project, transform
from handcli.data.cache import Cache, merge_caches
from handcli.data.ho3d import (
    DEPTH_SCALE,
    GL_TO_CV,
    HO3DReader,
    decode_depth,
    encode_depth,
    project_gl,
    read_intrinsics_txt,
    read_meta,
    read_seg,
    seg_to_labels,
)
from handcli.data.ho_preprocess import C4, move_mano, preprocess_ho3d, root_joint
from handcli.data.objects import apply_pose
from handcli.errors import InputError
from handcli.hand.skeleton import HO3D_TO_21
from handcli.synth.ho3d import py2_pickle_bytes

K0 = intrinsics(614.2, 613.9, 319.5, 240.7)


def official_project_3D_points(cam_mat, pts3D, is_OpenGL_coords=True):
    """Verbatim logic of the official ho3d utils/vis_utils.py project_3D_points."""
    coord_change_mat = np.array([[1., 0., 0.], [0, -1., 0.], [0., 0., -1.]], dtype=np.float32)
    if is_OpenGL_coords:
        pts3D = pts3D.dot(coord_change_mat.T)
    proj_pts = pts3D.dot(cam_mat.T)
    return np.stack([proj_pts[:, 0] / proj_pts[:, 2], proj_pts[:, 1] / proj_pts[:, 2]], axis=1)


def _meta(annotated=True, trans_shape=(3,)):
    ho = np.arange(63, dtype=np.float64).reshape(21, 3) * 0.001 + np.array([0.0, 0.0, -0.5])
    d = {"objName": "011_banana", "objLabel": 3, "camMat": K0, "camIDList": ["0"], "note": "caf\xe9"}
    if annotated:
        d.update(handPose=np.linspace(-0.3, 0.3, 48), handBeta=np.full(10, 0.2),
                 handTrans=np.array([0.01, -0.02, -0.45]).reshape(trans_shape), handJoints3D=ho,
                 objRot=np.array([[0.1], [0.2], [0.3]]), objTrans=np.array([0.02, 0.03, -0.5]))
    else:
        d.update({k: None for k in ("handPose", "handBeta", "handTrans", "handJoints3D", "objRot", "objTrans")})
    return d, ho


def _write_fixture(root):
    cdir = root / "calibration" / "ABF1" / "calibration"
    cdir.mkdir(parents=True)
    (cdir / "cam_orders.txt").write_text("1 0\n")
    T0 = np.eye(4)
    T0[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    T0[:3, 3] = [0.1, 0.2, 0.3]
    np.savetxt(cdir / "trans_0.txt", T0)
    np.savetxt(cdir / "trans_1.txt", np.eye(4))
    (cdir / "cam_0_intrinsics.txt").write_text("fx:614.2, fy:613.9, ppx:319.5, ppy:240.7\n")
    (cdir / "cam_1_intrinsics.txt").write_text("fx:600.0, fy:601.0, ppx:320.0, ppy:240.0\n")
    for seq in ("ABF10", "ABF11", "MC1"):
        for sub in ("rgb", "meta", "seg", "depth"):
            (root / "train" / seq / sub).mkdir(parents=True)
        for fid in range(3):
            cv2.imwrite(str(root / "train" / seq / "rgb" / f"{fid:04d}.jpg"), np.full((480, 640, 3), 90, np.uint8))
            d, _ = _meta(annotated=fid != 1, trans_shape=(3, 1) if seq == "MC1" else (3,))
            (root / "train" / seq / "meta" / f"{fid:04d}.pkl").write_bytes(py2_pickle_bytes(d))
            seg = np.zeros((240, 320, 3), np.uint8)
            seg[10:20, 30:40, 0] = 255  # hand (blue)
            seg[50:60, 70:90, 1] = 255  # object (green)
            seg[15:20, 35:40, 1] = 255  # both: the hand wins
            cv2.imwrite(str(root / "train" / seq / "seg" / f"{fid:04d}.png"), seg)
    (root / "train.txt").write_text("".join(f"{s}/{f:04d}\n" for s in ("ABF10", "ABF11", "MC1") for f in (0, 2)))
    return T0


def test_latin1_pickle_with_none_fields(tmp_path):
    _write_fixture(tmp_path)
    p = tmp_path / "train" / "ABF10" / "meta" / "0000.pkl"
    with open(p, "rb") as f, pytest.raises(UnicodeDecodeError):
        pickle.load(f)  # a python-2 byte string needs encoding='latin1'
    m = read_meta(p)
    d, ho = _meta()
    assert m.has_hand and m.has_object and m.obj_name == "011_banana" and m.obj_label == 3
    assert np.allclose(m.hand_pose, d["handPose"]) and np.allclose(m.betas, 0.2) and m.trans.shape == (3,)
    assert np.allclose(m.obj_rot, [0.1, 0.2, 0.3]) and np.allclose(m.K, K0)
    # handJoints3D (MANO order + tips) -> handcli order: wrist, thumb (13, 14, 15, tip 16), index (1, 2, 3, 17)...
    assert np.allclose(m.joints_gl[0], ho[0]) and np.allclose(m.joints_gl[1], ho[13])
    assert np.allclose(m.joints_gl[4], ho[16]) and np.allclose(m.joints_gl[5], ho[1])
    assert np.allclose(m.joints_gl[8], ho[17]) and np.allclose(m.joints_gl[17], ho[7])
    assert np.allclose(m.joints_gl[20], ho[20]) and np.allclose(m.joints_gl, ho[HO3D_TO_21])
    m1 = read_meta(tmp_path / "train" / "ABF10" / "meta" / "0001.pkl")
    assert not m1.has_hand and not m1.has_object and m1.obj_name == "011_banana"
    m2 = read_meta(tmp_path / "train" / "MC1" / "meta" / "0000.pkl")  # handTrans stored as (3, 1)
    assert m2.trans.shape == (3,) and np.allclose(m2.trans, [0.01, -0.02, -0.45])


def test_opengl_points_project_like_the_official_formula():
    rng = np.random.default_rng(0)
    pts_gl = np.stack([rng.uniform(-0.1, 0.1, 20), rng.uniform(-0.1, 0.1, 20), rng.uniform(-0.7, -0.3, 20)], 1)
    ref = official_project_3D_points(K0, pts_gl)
    pts_cv = pts_gl @ GL_TO_CV.T
    assert (pts_cv[:, 2] > 0).all()  # in front of the camera: negative z in OpenGL, positive in OpenCV
    assert np.allclose(project(pts_cv, K0), ref, atol=1e-6) and np.allclose(project_gl(K0, pts_gl), ref, atol=1e-6)
    # a posed object: X = X_model R(objRot)^T + objTrans (OpenGL) projects identically after the conversion
    from scipy.spatial.transform import Rotation

    from handcli.data.objects import pose_from_rotvec

    X = rng.normal(0, 0.03, (10, 3))
    R = Rotation.from_rotvec([0.1, 0.2, 0.3]).as_matrix()
    x_gl = X @ R.T + np.array([0.02, 0.03, -0.5])
    x_cv = apply_pose(C4 @ pose_from_rotvec(np.array([[0.1], [0.2], [0.3]]), [0.02, 0.03, -0.5]), X)
    assert np.allclose(project(x_cv, K0), official_project_3D_points(K0, x_gl), atol=1e-6)


def test_mano_gl_to_cv_is_exact():
    """Converted parameters pose the model at C * (vertices of the OpenGL parameters), also by Choi's formula."""
    from handcli.hand.model import load_hand_models

    m = load_hand_models("ho3d")["right"]
    assert m.flat_hand_mean
    rng = np.random.default_rng(1)
    pose, betas, trans = rng.normal(0, 0.4, 48), rng.normal(0, 0.7, 10), np.array([0.02, -0.01, -0.5])

    def verts(p, t):
        with torch.no_grad():
            return m(torch.as_tensor(p[None], dtype=torch.float32), torch.as_tensor(betas[None], dtype=torch.float32),
                     torch.as_tensor(t[None], dtype=torch.float32)).vertices[0].double().numpy()

    v_gl = verts(pose, trans)
    J0 = root_joint(m, betas)
    pose_cv, trans_cv = move_mano(pose, trans, J0, C4)
    assert np.abs(verts(pose_cv, trans_cv) - v_gl @ GL_TO_CV.T).max() < 2e-6
    # Choi (tool/ho3d2coco.py): root' = Rodrigues(C Rodrigues(root)), trans' = -J0 + C J0 + C trans
    choi_root = cv2.Rodrigues(GL_TO_CV @ cv2.Rodrigues(pose[:3])[0])[0][:, 0]
    assert np.allclose(pose_cv[:3], choi_root, atol=1e-6) and np.allclose(pose_cv[3:], pose[3:])
    assert np.allclose(trans_cv, -J0 + GL_TO_CV @ J0 + GL_TO_CV @ trans, atol=1e-9)


def test_seg_resize_labels_and_depth_codec(tmp_path):
    _write_fixture(tmp_path)
    hand, obj = read_seg(tmp_path / "train" / "ABF10" / "seg" / "0000.png")
    assert hand.shape == (480, 640)
    assert hand[20:40, 60:80].all() and hand.sum() == 20 * 20  # each 320x240 pixel becomes 2x2
    assert obj[100:120, 140:180].all() and obj.sum() == 20 * 40 + 10 * 10
    lab = seg_to_labels(hand, obj)
    assert lab[30, 70] == 1 and lab[110, 150] == 3 and lab[0, 0] == 0 and (lab == 3).sum() == 800
    assert read_seg(tmp_path / "nope.png") is None
    d = np.array([[0.0, 0.3, 0.5], [0.8123, 1.2, 2.0]])
    img = encode_depth(d)
    assert img.dtype == np.uint8 and img.shape == (2, 3, 3)
    assert np.abs(decode_depth(img) - d).max() <= DEPTH_SCALE / 2 + 1e-7
    # the official formula, with the 16-bit arithmetic it needs
    off = (img[:, :, 2].astype(np.uint16) + img[:, :, 1].astype(np.uint16) * 256) * 0.00012498664727900177
    assert np.allclose(decode_depth(img), off, atol=1e-6)


def test_calibration_groups_and_frames(tmp_path):
    T0 = _write_fixture(tmp_path)
    rd = HO3DReader(tmp_path)
    cams = rd.calibration("ABF1")
    # cam_orders "1 0": trans_0 / cam_0_intrinsics belong to camera 1 (ABF11)
    assert np.allclose(cams[1].cam_to_world, T0) and np.allclose(cams[1].K, K0)
    assert np.allclose(cams[0].K, intrinsics(600, 601, 320, 240)) and np.allclose(cams[0].cam_to_world, np.eye(4))
    assert np.allclose(cams[1].world_to_cam @ T0, np.eye(4))
    assert rd.group_of("ABF11")[0] == "ABF1" and rd.group_of("ABF11")[2]
    group, cam, multi = rd.group_of("MC1")
    assert group == "MC1" and not multi and cam.K is None and np.allclose(cam.cam_to_world, np.eye(4))
    frames = rd.frames()
    assert [(f.group, f.frame, len(f.views)) for f in frames] == [("ABF1", 0, 2), ("ABF1", 1, 2), ("ABF1", 2, 2),
                                                                  ("MC1", 0, 1), ("MC1", 1, 1), ("MC1", 2, 1)]
    assert [v.seq for v in frames[0].views] == ["ABF10", "ABF11"] and frames[0].views[1].meta.name == "0000.pkl"
    assert [f.frame for f in rd.frames(listed_only=True, seqs={"ABF1"})] == [0, 2]
    assert [len(f.views) for f in rd.frames(cameras={"ABF11"})] == [1, 1, 1]
    assert [f.frame for f in rd.frames(every=2, seqs={"MC1"})] == [0, 2]
    p = tmp_path / "calibration" / "ABF1" / "calibration" / "cam_1_intrinsics.txt"
    p.write_text("fx:600.0, fy:abc, ppx:320.0, ppy:240.0\n")
    with pytest.raises(InputError) as e:
        read_intrinsics_txt(p)
    assert "cam_1_intrinsics.txt" in str(e.value) and "fy" in str(e.value)


def test_nan_in_hand_pose_is_an_input_error(tmp_path):
    d, _ = _meta()
    d["handPose"][5] = np.nan
    p = tmp_path / "0000.pkl"
    p.write_bytes(py2_pickle_bytes(d))
    with pytest.raises(InputError) as e:
        read_meta(p)
    assert "0000.pkl" in str(e.value) and "handPose" in str(e.value)
    p.write_bytes(py2_pickle_bytes(d)[:40])
    with pytest.raises(InputError, match="malformed or truncated pickle"):
        read_meta(p)


# ----------------------------------------------------------------------------------------------- synthetic
@pytest.fixture(scope="session")
def ho_root(tmp_path_factory):
    from handcli.synth.ho3d import HO3DSynthConfig, write_ho3d

    root = tmp_path_factory.mktemp("ho") / "ho3d"
    write_ho3d(root, HO3DSynthConfig(frames=4, cameras=3, seed=2))
    return root


@pytest.fixture(scope="session")
def ho_cache(ho_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("hoc") / "cache.h5"
    preprocess_ho3d(ho_root, out, depth=True)
    return out


def _gt(root, rec):
    return np.load(root / "handcli_gt" / "train" / rec.seq / f"{rec.frame_idx:04d}.npz")


def test_cache_contents_and_worlds(ho_root, ho_cache):
    with Cache(ho_cache) as c:
        assert c.attrs["dataset"] == "ho3d" and c.has_objects and c.has_depth
        # BB1: 4 frames minus the unannotated frame 2 (3 views each), SMu1: 4 single-view frames
        assert c.num_frames == 7 and c.num_views == 13
        assert [c.frame(i).key for i in range(3)] == ["train/BB1/0000", "train/BB1/0001", "train/BB1/0003"]
        assert c.object_names() == ["011_banana", "025_mug"]
        cams = {cm["name"]: cm for cm in c.cameras()}
        cdir = ho_root / "calibration" / "BB1" / "calibration"
        order = [int(x) for x in (cdir / "cam_orders.txt").read_text().split()]
        for i, k in enumerate(order):  # multi-camera world = the reference frame of trans_i
            T = np.loadtxt(cdir / f"trans_{i}.txt")
            assert np.allclose(cams[f"BB1{k}"]["world_to_cam"], np.linalg.inv(T), atol=1e-9)
        assert np.allclose(cams["SMu1"]["world_to_cam"], np.eye(4))  # single camera: its own OpenCV frame
        for i in range(c.num_frames):
            rec = c.frame(i)
            gt = _gt(ho_root, rec)
            h = rec.hands["right"]
            assert np.abs(h.vertices - gt["hand_vertices"]).max() < 2e-5
            assert np.abs(h.joints - gt["hand_joints"]).max() < 2e-5
            assert np.allclose(rec.object.pose, gt["object_pose"], atol=1e-6)
            assert h.mano is not None and h.mano["pose"].shape == (48,)


def test_masks_match_ground_truth(ho_root, ho_cache):
    """Cache labels come from the 320x240 seg PNGs: compared with full-resolution ground truth."""
    from handcli.render.raster import rasterize_meshes

    inter, union = np.zeros(2), np.zeros(2)
    with Cache(ho_cache) as c:
        cams = c.cameras()
        for j in range(c.num_views):
            v = c.view(j)
            rec, cam = c.frame(v["frame"]), cams[v["camera"]]
            gt = cv2.imread(str(ho_root / "handcli_gt" / "train" / cam["name"] / f"label_{rec.frame_idx:04d}.png"), 0)
            for k, lab in enumerate((1, 3)):
                a, b = v["label"] == lab, gt == lab
                inter[k] += (a & b).sum()
                union[k] += (a | b).sum()
                assert (a & b).sum() / (a | b).sum() > 0.85  # per view, a few large-ish object slivers
            om = c.object_mesh(rec.object.name)
            ras = rasterize_meshes([(transform(cam["world_to_cam"], rec.hands["right"].vertices.astype(float)),
                                     c.hand_model("right")["faces"]),
                                    (transform(cam["world_to_cam"], apply_pose(rec.object.pose, om["vertices"])),
                                     om["faces"])], cam["K"], cam["height"], cam["width"])
            gt_geo = np.where(ras.mesh_id == 0, 1, np.where(ras.mesh_id == 1, 3, 0))
            assert (gt_geo == gt).mean() > 0.999  # the cache's posed meshes reproduce the full-res truth
            d = v["depth"]
            both = (d > 0) & (ras.mesh_id >= 0)
            assert both.sum() > 0.95 * (ras.mesh_id >= 0).sum()
            assert np.median(np.abs(d[both] - ras.depth[both])) < 1e-3
    assert (inter / union > 0.95).all(), inter / union


def test_joints_corners_and_bounds(ho_root, ho_cache):
    errs = []
    with Cache(ho_cache) as c:
        cams = c.cameras()
        vt = c.view_table()
        for j in range(c.num_views):
            rec, cam = c.frame(int(vt["frame"][j])), cams[int(vt["camera"][j])]
            gt = _gt(ho_root, rec)
            h = rec.hands["right"]
            uv = project(transform(cam["world_to_cam"], h.joints.astype(float)), cam["K"])
            errs.append(np.linalg.norm(uv - gt[f"joints2d_{cam['name']}"], axis=1))
            box = rec.object.box.astype(float)
            corners = np.array([[x, y, z] for x in box[:, 0] for y in box[:, 1] for z in box[:, 2]])
            uv = project(transform(cam["world_to_cam"], corners), cam["K"])
            errs.append(np.linalg.norm(uv - gt[f"corners2d_{cam['name']}"], axis=1))
            om = c.object_mesh(rec.object.name)
            obj = apply_pose(rec.object.pose, om["points"])
            pts = np.concatenate([h.vertices.astype(float), apply_pose(rec.object.pose, om["vertices"]), obj])
            dist = np.linalg.norm(pts - camera_center(cam["world_to_cam"]), axis=1)
            assert vt["near_far"][j, 0] <= dist.min() and dist.max() <= vt["near_far"][j, 1]
            # the posed object's points land on the object mask or on the hand occluding it
            lab = c.view(j)["label"]
            fg = cv2.dilate((lab > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            px = np.round(project(transform(cam["world_to_cam"], obj), cam["K"])).astype(int)
            assert fg[px[:, 1], px[:, 0]].mean() > 0.99
    assert np.concatenate(errs).max() < 1.0


@pytest.mark.slow
def test_workers_and_shards_give_the_same_cache(ho_root, tmp_path):
    kw = dict(frames="0-1")
    preprocess_ho3d(ho_root, tmp_path / "one.h5", **kw)
    preprocess_ho3d(ho_root, tmp_path / "two.h5", workers=2, **kw)
    preprocess_ho3d(ho_root, tmp_path / "s0.h5", shard="0/2", **kw)
    preprocess_ho3d(ho_root, tmp_path / "s1.h5", shard="1/2", **kw)
    merge_caches([tmp_path / "s0.h5", tmp_path / "s1.h5"], tmp_path / "merged.h5")
    names = ("frames/key", "views/rgb", "views/label", "views/near_far", "views/box2d", "frames/right/vertices",
             "frames/object/pose", "objects/011_banana/faces", "objects/025_mug/vertices", "cameras/world_to_cam")
    with h5py.File(tmp_path / "one.h5") as a:
        ref = {k: a[k][()] for k in names}
        src = a.attrs["label_source"]
    for other in ("two.h5", "merged.h5"):
        with h5py.File(tmp_path / other) as b:
            for k, v in ref.items():
                assert np.array_equal(b[k][()], v), (other, k)
            assert b.attrs["label_source"] == src


def test_missing_seg_is_rasterized_and_listed_only(ho_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(ho_root, root, ignore=shutil.ignore_patterns("handcli_gt"))
    (root / "train" / "SMu1" / "seg" / "0001.png").unlink()
    out = tmp_path / "c.h5"
    preprocess_ho3d(root, out, seqs="SMu1,BB1", listed_only=True, scale=0.5, objects="14")
    with Cache(out) as c:
        assert [c.frame(i).key for i in range(c.num_frames)] == [f"train/SMu1/{f:04d}" for f in range(4)]
        assert '"rasterized": 1' in c.attrs["label_source"] and '"seg": 3' in c.attrs["label_source"]
        v = c.view(1)
        assert v["label"].shape == (240, 320) and (v["label"] == 1).sum() > 500
        gt = cv2.imread(str(ho_root / "handcli_gt" / "train" / "SMu1" / "label_0001.png"), 0)
        ref = cv2.resize((gt == 1).astype(np.float32), (320, 240), interpolation=cv2.INTER_AREA) > 0.5
        a = v["label"] == 1
        assert (a & ref).sum() / (a | ref).sum() > 0.9


# ----------------------------------------------------------------------------------------------- bad input
def _run(args, monkeypatch, capsys):
    from handcli import cli

    monkeypatch.setattr(sys, "argv", ["handcli", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _break_missing_meta(root):
    (root / "train" / "BB11" / "meta" / "0001.pkl").unlink()
    return "0001.pkl", "missing"


def _break_pickle(root):
    p = root / "train" / "BB10" / "meta" / "0003.pkl"
    p.write_bytes(p.read_bytes()[:64])
    return "0003.pkl", "pickle"


def _break_image(root):
    (root / "train" / "BB12" / "rgb" / "0000.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return "0000.jpg", "decode"


def _break_nan(root):
    p = root / "train" / "SMu1" / "meta" / "0002.pkl"
    d = pickle.loads(p.read_bytes(), encoding="latin1")
    d["handPose"][7] = np.nan
    p.write_bytes(py2_pickle_bytes(d))
    return "0002.pkl", "handPose"


def _break_intrinsics(root):
    p = root / "calibration" / "BB1" / "calibration" / "cam_1_intrinsics.txt"
    p.write_text(p.read_text().replace("ppx:", "ppq:"))
    return "cam_1_intrinsics.txt", "ppx"


def _break_trans(root):
    (root / "calibration" / "BB1" / "calibration" / "trans_2.txt").write_text("1 0 0\n0 1 0\n")
    return "trans_2.txt", "expected 16 numbers"


@pytest.mark.parametrize("breaker", [_break_missing_meta, _break_pickle, _break_image, _break_nan, _break_intrinsics,
                                     _break_trans])
def test_bad_input_exit_2_and_no_output(ho_root, tmp_path, monkeypatch, capsys, breaker):
    root = tmp_path / "ds"
    shutil.copytree(ho_root, root, ignore=shutil.ignore_patterns("handcli_gt"))
    fname, key = breaker(root)
    outdir = tmp_path / "out"
    outdir.mkdir()
    code, out, err = _run(["preprocess", "ho3d", root, "-o", outdir / "c.h5"], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and fname in lines[0] and key in lines[0], err
    assert "Traceback" not in err and out == ""
    assert list(outdir.iterdir()) == []


def test_cli_synth_ho3d(tmp_path, monkeypatch, capsys):
    root = tmp_path / "h"
    code, out, _ = _run(["synth", "ho3d", root, "--frames", "1", "--cameras", "1", "--no-single"], monkeypatch,
                        capsys)
    assert code == 0 and out.strip() == str(root)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["BB10"]
    code, out, _ = _run(["preprocess", "ho3d", root, "-o", tmp_path / "c.h5", "--camera", "BB10"], monkeypatch, capsys)
    assert code == 0 and out.strip() == str(tmp_path / "c.h5")


def test_selection_reads_and_lists_only_what_it_needs(tmp_path, monkeypatch):
    """Unselected sequences' calibration is not read; with --frames no rgb folder is listed."""
    from pathlib import Path

    _write_fixture(tmp_path)
    rd = HO3DReader(tmp_path)
    listed = []
    real_iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: listed.append(self.name) or real_iterdir(self))
    frames = rd.frames(seqs={"MC1"}, frames={1, 2, 7})
    assert [(f.group, f.frame) for f in frames] == [("MC1", 1), ("MC1", 2)]
    assert "ABF1" not in rd._calib and "rgb" not in listed
    assert [(f.group, f.frame, len(f.views)) for f in rd.frames(frames={0})] == [("ABF1", 0, 2), ("MC1", 0, 1)]
    assert "rgb" not in listed
    rd.frames(seqs={"MC1"})
    assert listed.count("rgb") == 1  # without a frame selection the selected sequence's folder is listed
