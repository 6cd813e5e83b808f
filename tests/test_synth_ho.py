"""Procedural YCB objects, grasp synthesis and the synthetic DexYCB / HO-3D writers' layouts."""

from __future__ import annotations

import hashlib
import pickle

import cv2
import numpy as np
import pytest
import trimesh
import yaml

from handcli.data.dexycb import load_yaml
from handcli.data.objects import YCB_IDS, load_object_mesh, read_points_xyz
from handcli.synth.grasp import finger_parts, grasp_object, sdf_of_mesh
from handcli.synth.ho3d import py2_pickle_bytes
from handcli.synth.objects import SHAPES, make_object, write_ycb_model


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_objects_are_watertight_and_their_sdf_matches_trimesh(name):
    o = make_object(name)
    m = trimesh.Trimesh(o.vertices, o.faces, process=False)
    assert m.is_watertight and m.is_winding_consistent and m.volume > 0 and len(m.split()) == 1
    assert np.abs(o.sdf(o.vertices)).max() < 1e-3  # the mesh lies on the zero level set (2-2.5 mm MC grid)
    rng = np.random.default_rng(0)
    lo, hi = m.bounds
    p = rng.uniform(lo - 0.02, hi + 0.02, (150, 3))
    ref = -trimesh.proximity.signed_distance(m, p)  # trimesh: positive inside
    assert np.abs(o.sdf(p) - ref).max() < 1e-3
    assert o.ycb_id == YCB_IDS[name]


def test_ycb_model_files_round_trip(tmp_path):
    o = make_object("025_mug")
    d = write_ycb_model(tmp_path / "models", o, num_points=500, seed=1)
    assert {p.name for p in d.iterdir()} == {"textured_simple.obj", "textured_simple.obj.mtl", "texture_map.png",
                                             "points.xyz"}
    mesh = load_object_mesh(tmp_path / "models", "025_mug")
    assert np.allclose(mesh.vertices, o.vertices, atol=1e-6) and np.array_equal(mesh.faces, o.faces)
    pts = read_points_xyz(d / "points.xyz")
    assert pts.shape == (500, 3) and np.abs(o.sdf(pts)).max() < 5e-4
    assert np.allclose(mesh.points, pts)
    # with only points.xyz (no OBJ) the points stand in for the mesh
    (d / "textured_simple.obj").unlink()
    from handcli.data import objects

    objects._load_cached.cache_clear()  # the loader caches per process
    only = load_object_mesh(tmp_path / "models", "025_mug")
    assert len(only.faces) == 0 and np.allclose(only.vertices, pts)


@pytest.mark.parametrize("side,name", [("right", "005_tomato_soup_can"), ("left", "011_banana"),
                                       ("right", "003_cracker_box")])
def test_grasp_touches_without_penetrating(side, name):
    from handcli.hand.model import HandModel

    model = HandModel.load(side, None, flat_hand_mean=True)
    o = make_object(name)
    g = grasp_object(model, o.sdf, np.zeros(3), o.approach, o.finger_dir)
    # independent check with trimesh's signed distance to the object mesh, for the vertices within 1 cm
    # (the analytic SDF agrees with trimesh's elsewhere, see above)
    near = o.sdf(g.vertices) < 0.01
    d = np.full(len(g.vertices), np.inf)
    d[near] = -trimesh.proximity.signed_distance(trimesh.Trimesh(o.vertices, o.faces, process=False),
                                                 g.vertices[near])
    assert d.min() > -1e-3  # no penetration (beyond mesh discretisation)
    parts = finger_parts(model)
    touching = [f for f in range(5) if d[parts == f].min() < 0.003]
    assert len(touching) >= 4, g.finger_gap
    assert (g.flex > 0.05).sum() >= 3  # the fingers actually curled around the object
    # the palm faces the object: palm normal (-y in the model) points against the approach direction
    from scipy.spatial.transform import Rotation

    R = Rotation.from_rotvec(g.pose[:3]).as_matrix()
    assert R[:, 1] @ o.approach > 0.99
    g2 = grasp_object(model, o.sdf, np.zeros(3), o.approach, o.finger_dir)
    assert np.array_equal(g.pose, g2.pose)  # deterministic


def test_sdf_of_mesh_sign_convention():
    m = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    sdf = sdf_of_mesh(m.vertices, m.faces)
    assert np.allclose(sdf(np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])), [-0.05, 0.05], atol=1e-9)


def test_py2_pickles_need_latin1():
    d = {"objName": "011_banana", "note": "caf\xe9", "handPose": np.arange(48.0), "objRot": None,
         "camIDList": ["0", "1"], "objLabel": 3, "a": np.eye(3), "b": np.eye(3)}
    raw = py2_pickle_bytes(d)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(raw)
    back = pickle.loads(raw, encoding="latin1")
    assert back["note"] == "caf\xe9" and back["objRot"] is None and back["camIDList"] == ["0", "1"]
    assert np.array_equal(back["handPose"], np.arange(48.0)) and back["objLabel"] == 3
    assert np.array_equal(back["b"], np.eye(3))


# ----------------------------------------------------------------------------------------------- DexYCB layout
@pytest.fixture(scope="module")
def dex_small(tmp_path_factory):
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb

    root = tmp_path_factory.mktemp("dexs") / "d"
    write_dexycb(root, DexYCBSynthConfig(subjects=1, seqs=1, frames=3, cameras=2, seed=11))
    return root


def test_dexycb_layout_and_types(dex_small):
    root = dex_small
    subj = root / "20200709-subject-01"
    (seq,) = list(subj.iterdir())
    meta = load_yaml(seq / "meta.yml")
    assert set(meta) == {"serials", "num_frames", "extrinsics", "ycb_ids", "ycb_grasp_ind", "mano_sides",
                         "mano_calib"}
    assert meta["serials"] == ["836212060125", "839512060362"] and all(isinstance(s, str) for s in meta["serials"])
    assert meta["num_frames"] == 3 and meta["mano_sides"] == ["right"] and meta["ycb_ids"][0] == 2
    intr = (root / "calibration" / "intrinsics" / "836212060125_640x480.yml").read_text()
    assert "!!python/tuple" in intr
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(intr)
    ext = load_yaml(root / "calibration" / f"extrinsics_{meta['extrinsics']}" / "extrinsics.yml")
    assert set(ext) == {"extrinsics", "master"} and "apriltag" in ext["extrinsics"]
    assert all(len(v) == 12 for v in ext["extrinsics"].values())
    master = ext["extrinsics"][ext["master"]] if ext["master"] in ext["extrinsics"] else None
    assert master is None or np.allclose(np.array(master).reshape(3, 4)[:, :3], np.eye(3), atol=1e-8)
    betas = load_yaml(root / "calibration" / f"mano_{meta['mano_calib'][0]}" / "mano.yml")["betas"]
    assert len(betas) == 10
    cam = seq / "836212060125"
    img = cv2.imread(str(cam / "color_000002.jpg"))
    assert img.shape == (480, 640, 3)
    depth = cv2.imread(str(cam / "aligned_depth_to_color_000002.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (480, 640) and 300 < np.median(depth[depth > 0]) < 1500
    z0, z2 = np.load(cam / "labels_000000.npz"), np.load(cam / "labels_000002.npz")
    assert set(z2.files) == {"seg", "pose_y", "pose_m", "joint_3d", "joint_2d"}
    assert z2["seg"].dtype == np.uint8 and z2["seg"].shape == (480, 640)
    assert z2["pose_y"].shape == (2, 3, 4) and z2["pose_m"].shape == (1, 51) and z2["joint_3d"].shape == (1, 21, 3)
    assert all(z2[k].dtype == np.float32 for k in ("pose_y", "pose_m", "joint_3d", "joint_2d"))
    assert set(np.unique(z2["seg"])) <= {0, 255, *meta["ycb_ids"]} and (z2["seg"] == 255).any()
    assert not z0["pose_m"].any() and (z0["joint_3d"] == -1).all() and not (z0["seg"] == 255).any()  # no hand
    z1 = np.load(cam / "labels_000001.npz")  # hand visible, not annotated
    assert not z1["pose_m"].any() and (z1["seg"] == 255).any()
    # joint_2d is the projection of joint_3d with the colour intrinsics
    K = np.array([[load_yaml(root / "calibration" / "intrinsics" / "836212060125_640x480.yml")["color"][k]
                   for k in ("fx", "ppx")], [0, 0]])
    j3, j2 = z2["joint_3d"][0].astype(float), z2["joint_2d"][0]
    assert np.allclose(K[0, 0] * j3[:, 0] / j3[:, 2] + K[0, 1], j2[:, 0], atol=1e-3)
    pose = np.load(seq / "pose.npz")
    assert pose["pose_y"].shape == (3, 2, 7) and pose["pose_m"].shape == (3, 1, 51)
    for n in ("003_cracker_box", "005_tomato_soup_can", "011_banana", "025_mug"):
        assert (root / "models" / n / "textured_simple.obj").is_file() and (root / "models" / n / "points.xyz").is_file()
    assert (root / "handcli_synth.json").is_file()


def test_dexycb_seg_matches_ground_truth_labels(dex_small):
    seq = next((dex_small / "20200709-subject-01").iterdir())
    gt_dir = dex_small / "handcli_gt" / "20200709-subject-01" / seq.name
    meta = load_yaml(seq / "meta.yml")
    for s in meta["serials"]:
        for f in range(3):
            seg = np.load(seq / s / f"labels_{f:06d}.npz")["seg"]
            gt = cv2.imread(str(gt_dir / s / f"label_{f:06d}.png"), 0)
            assert np.array_equal(seg == 255, gt == 1) and np.array_equal(seg == meta["ycb_ids"][0], gt == 3)


def test_writers_are_deterministic(tmp_path):
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb
    from handcli.synth.ho3d import HO3DSynthConfig, write_ho3d

    def digest(root):
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
        return h.hexdigest()

    cfg = DexYCBSynthConfig(subjects=1, frames=2, cameras=1, distractors=0, seed=4)
    write_dexycb(tmp_path / "a", cfg)
    write_dexycb(tmp_path / "b", cfg)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    hcfg = HO3DSynthConfig(frames=1, cameras=1, single=None, seed=4)
    write_ho3d(tmp_path / "c", hcfg)
    write_ho3d(tmp_path / "d", hcfg)
    assert digest(tmp_path / "c") == digest(tmp_path / "d")


# ----------------------------------------------------------------------------------------------- HO-3D layout
@pytest.fixture(scope="module")
def ho_small(tmp_path_factory):
    from handcli.synth.ho3d import HO3DSynthConfig, write_ho3d

    root = tmp_path_factory.mktemp("hos") / "h"
    write_ho3d(root, HO3DSynthConfig(frames=4, cameras=2, seed=3))
    return root


def test_ho3d_layout_and_opengl_values(ho_small):
    from handcli.data.ho3d import project_gl

    root = ho_small
    assert sorted(p.name for p in (root / "train").iterdir()) == ["BB10", "BB11", "SMu1"]
    listed = (root / "train.txt").read_text().split()
    assert "BB10/0002" not in listed and "BB10/0003" in listed and "SMu1/0002" in listed
    cdir = root / "calibration" / "BB1" / "calibration"
    assert sorted(int(x) for x in (cdir / "cam_orders.txt").read_text().split()) == [0, 1]
    T = np.loadtxt(cdir / "trans_0.txt")
    assert T.shape == (4, 4) and np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-8)
    assert (cdir / "cam_0_intrinsics.txt").read_text().startswith("fx:")
    seq = root / "train" / "BB10"
    assert cv2.imread(str(seq / "rgb" / "0000.jpg")).shape == (480, 640, 3)
    seg = cv2.imread(str(seq / "seg" / "0000.png"), cv2.IMREAD_UNCHANGED)
    assert seg.shape == (240, 320, 3) and (seg[:, :, 0] == 255).any() and (seg[:, :, 1] == 255).any()
    assert set(np.unique(seg[:, :, 2])) == {0}
    depth = cv2.imread(str(seq / "depth" / "0000.png"), cv2.IMREAD_UNCHANGED)
    assert depth.shape == (480, 640, 3) and depth.dtype == np.uint8
    with open(seq / "meta" / "0000.pkl", "rb") as f:
        d = pickle.load(f, encoding="latin1")
    for k in ("handPose", "handBeta", "handTrans", "handJoints3D", "objRot", "objTrans", "objName", "objLabel",
              "camMat", "objCorners3D", "objCorners3DRest", "handVertContact"):
        assert k in d, k
    assert d["handPose"].shape == (48,) and d["objRot"].shape == (3, 1) and d["handJoints3D"].shape == (21, 3)
    assert (d["handJoints3D"][:, 2] < 0).all() and d["objTrans"][2] < 0  # OpenGL: in front is negative z
    assert d["objName"] == "011_banana" and d["objLabel"] != YCB_IDS["011_banana"]
    uv = project_gl(d["camMat"], d["handJoints3D"])
    assert ((uv > 0) & (uv < [640, 480])).all()
    with open(root / "train" / "BB11" / "meta" / "0002.pkl", "rb") as f:
        u = pickle.load(f, encoding="latin1")
    assert u["handPose"] is None and u["objRot"] is None and u["objName"] == "011_banana"
    with open(root / "train" / "SMu1" / "meta" / "0001.pkl", "rb") as f:
        s = pickle.load(f, encoding="latin1")
    assert s["handTrans"].shape == (3, 1) and s["objName"] == "025_mug"
