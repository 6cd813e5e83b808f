"""The synthetic datasets' realistic profile: annotation error of the configured size (measured against the
ground-truth sidecar), masks that the annotated model cannot match exactly, determinism, YCB model files."""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
import trimesh

from handcli.camera import intrinsics, transform, world_to_cam_matrix
from handcli.hand.model import HandModel
from handcli.render.raster import rasterize_meshes
from handcli.synth.realism import realism_config

IH_CFG = dict(frames=3, cameras=2, mono_cameras=0, seqs=("right", "interacting"), seed=5)


def _rms(a, b) -> float:
    return float(np.sqrt(np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, axis=-1))) * 1000.0)


@pytest.fixture(scope="module")
def ih_real(tmp_path_factory):
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand

    root = tmp_path_factory.mktemp("ihreal") / "ih"
    write_interhand(root, InterHandSynthConfig(**IH_CFG, realism=realism_config("realistic", "interhand")))
    return root


def _ih_json(root, name, gt=False):
    base = root / "handcli_gt" if gt else root / "annotations" / "train"
    return json.loads((base / f"InterHand2.6M_train_{name}.json").read_text())


def _ih_verts(models, side, p):
    with torch.no_grad():
        out = models[side](torch.tensor([p["pose"]], dtype=torch.float32),
                           torch.tensor([p["shape"]], dtype=torch.float32),
                           torch.tensor([p["trans"]], dtype=torch.float32))
    return out.vertices[0].double().numpy()


def test_interhand_annotation_error_has_the_configured_magnitude(ih_real):
    meta = json.loads((ih_real / "handcli_synth.json").read_text())
    cfg = meta["config"]["realism"]
    assert meta["profile"] == "realistic" and cfg["mano_frame_mm"] > 0 and cfg["joint_frame_mm"] > 0
    models = {s: HandModel.load(s, None, flat_hand_mean=False) for s in ("right", "left")}
    ann, exact = _ih_json(ih_real, "MANO_NeuralAnnot"), _ih_json(ih_real, "MANO_NeuralAnnot", gt=True)
    sq = []
    for c in ann:
        for f in ann[c]:
            for side in ("right", "left"):
                if ann[c][f][side] is not None:
                    a, e = _ih_verts(models, side, ann[c][f][side]), _ih_verts(models, side, exact[c][f][side])
                    sq.append(np.sum((a - e) ** 2, axis=1))
    mano_rms = np.sqrt(np.concatenate(sq).mean()) * 1000.0
    expected = np.hypot(cfg["mano_frame_mm"], cfg["mano_seq_mm"])
    assert abs(mano_rms - expected) < 0.15 * expected, (mano_rms, expected)
    ja, je = _ih_json(ih_real, "joint_3d"), _ih_json(ih_real, "joint_3d", gt=True)
    d = []
    for c in ja:
        for f in ja[c]:
            valid = np.array(ja[c][f]["joint_valid"])[:, 0].astype(bool)
            d.append((np.array(ja[c][f]["world_coord"]) - np.array(je[c][f]["world_coord"]))[valid])
    joint_rms = np.sqrt(np.mean(np.sum(np.concatenate(d) ** 2, axis=1)))  # the files are in mm
    expected = np.hypot(cfg["joint_frame_mm"], cfg["joint_seq_mm"])
    assert abs(joint_rms - expected) < 0.2 * expected, (joint_rms, expected)
    # the exact sidecar is what was rendered: its joints project onto handcli_gt/joints2d.json
    assert (ih_real / "handcli_gt" / "surface_offsets.npz").is_file()


def test_interhand_masks_from_annotations_miss_the_true_silhouette(ih_real):
    models = {s: HandModel.load(s, None, flat_hand_mean=False) for s in ("right", "left")}
    data = _ih_json(ih_real, "data")
    cams = _ih_json(ih_real, "camera")
    mano = _ih_json(ih_real, "MANO_NeuralAnnot")
    ious = []
    for im in data["images"]:
        cid, c = im["camera"], str(im["capture"])
        gt_path = ih_real / "handcli_gt" / "train" / im["file_name"].rsplit("/", 1)[0] / (
            "mask" + im["file_name"].rsplit("image", 1)[1][:-4] + ".png")
        label = cv2.imread(str(gt_path), cv2.IMREAD_UNCHANGED)
        gt = label > 0
        entry = mano[c][str(im["frame_idx"])]
        unannotated_hand = any(p is None and (label == (200 if s == "right" else 100)).any() for s, p in entry.items())
        if gt.sum() < 2000 or unannotated_hand:  # skip small hands and the frame with a null MANO entry
            continue
        R = np.array(cams[c]["camrot"][cid])
        campos = np.array(cams[c]["campos"][cid]) / 1000.0
        K = intrinsics(*cams[c]["focal"][cid], *cams[c]["princpt"][cid])
        M = world_to_cam_matrix(R, -R @ campos)
        meshes = [(transform(M, _ih_verts(models, s, p)), np.asarray(models[s].faces, np.int64))
                  for s, p in entry.items() if p is not None]
        ann = rasterize_meshes(meshes, K, im["height"], im["width"]).face_id >= 0
        ious.append((ann & gt).sum() / (ann | gt).sum())
    assert len(ious) >= 4
    assert 0.8 < min(ious) and max(ious) < 0.995, ious


def test_interhand_black_frame_has_empty_ground_truth(ih_real):
    data = _ih_json(ih_real, "data")
    black = [im for im in data["images"] if im["seq_name"].startswith("0000") and im["frame_idx"] == 998]
    assert black
    for im in black:
        assert cv2.imread(str(ih_real / "images" / "train" / im["file_name"])).max() == 0
        gt = ih_real / "handcli_gt" / "train" / im["file_name"].rsplit("/", 1)[0]
        assert not cv2.imread(str(gt / "mask0998.png"), cv2.IMREAD_UNCHANGED).any()


def test_interhand_capture_effects_are_recorded_and_visible(ih_real):
    meta = json.loads((ih_real / "handcli_synth.json").read_text())
    resp = meta["camera_response"]
    gains = [v["gain"] for v in resp.values()]
    assert len(set(gains)) == len(gains) and all(0.85 <= g <= 1.15 for g in gains)
    assert all(v["white_balance"][1] == 1.0 for v in resp.values())
    # sensor noise: the background (a smooth gradient) has more pixel-to-pixel variation than the ideal one
    im = next(i for i in _ih_json(ih_real, "data")["images"] if i["frame_idx"] == 995)
    img = cv2.imread(str(ih_real / "images" / "train" / im["file_name"])).astype(float)
    corner = img[:40, :40, 1]
    assert np.abs(np.diff(corner, axis=1)).mean() > 0.4


def test_realistic_profile_is_deterministic(tmp_path):
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand

    cfg = InterHandSynthConfig(frames=2, cameras=1, mono_cameras=0, seqs=("right",), seed=7, black_frame=False,
                               realism=realism_config("realistic", "interhand"))
    a, b = write_interhand(tmp_path / "a", cfg), write_interhand(tmp_path / "b", cfg)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and all((a / p).read_bytes() == (b / p).read_bytes() for p in files)
    ideal = write_interhand(tmp_path / "c", replace(cfg, realism=realism_config("ideal", "interhand")))
    rel = "annotations/train/InterHand2.6M_train_joint_3d.json"
    assert (a / rel).read_bytes() != (ideal / rel).read_bytes()
    # the ideal annotations are the exact values; the realistic sidecar keeps the same exact values
    assert (ideal / rel).read_bytes() == (ideal / "handcli_gt" / rel.rsplit("/", 1)[1]).read_bytes()
    assert (a / "handcli_gt" / rel.rsplit("/", 1)[1]).read_bytes() == (ideal / rel).read_bytes()


# ----------------------------------------------------------------------------------------------- DexYCB, HO-3D
@pytest.fixture(scope="module")
def dex_real(tmp_path_factory):
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb

    root = tmp_path_factory.mktemp("dexreal") / "d"
    write_dexycb(root, DexYCBSynthConfig(subjects=1, seqs=1, frames=4, cameras=2, distractors=0, seed=2,
                                         unannotated_frame=False, realism=realism_config("realistic", "dexycb")))
    return root


def test_dexycb_annotation_and_estimate_error(dex_real):
    from handcli.data.dexycb import load_yaml

    cfg = json.loads((dex_real / "handcli_synth.json").read_text())["config"]["realism"]
    seq = next((dex_real / "20200709-subject-01").iterdir())
    meta = load_yaml(seq / "meta.yml")
    betas = load_yaml(dex_real / "calibration" / f"mano_{meta['mano_calib'][0]}" / "mano.yml")["betas"]
    model = HandModel.load("right", None, flat_hand_mean=False)
    ext = load_yaml(dex_real / "calibration" / f"extrinsics_{meta['extrinsics']}" / "extrinsics.yml")["extrinsics"]
    ann_sq, est_sq, seg_iou = [], [], []
    for f in range(1, 4):
        gt = np.load(dex_real / "handcli_gt" / seq.parent.name / seq.name / f"{f:06d}.npz")
        for s in meta["serials"]:
            c2w = np.eye(4)
            c2w[:3] = np.array(ext[s]).reshape(3, 4)
            w2c = np.linalg.inv(c2w)
            lab = np.load(seq / s / f"labels_{f:06d}.npz")
            with torch.no_grad():
                pose = model.expand_pca_pose(torch.tensor(lab["pose_m"][:, :48]))
                v = model(pose, torch.tensor([betas], dtype=torch.float32),
                          torch.tensor(lab["pose_m"][:, 48:])).vertices[0].double().numpy()
            exact = transform(w2c, gt["hand_model_vertices"])
            ann_sq.append(np.sum((v - exact) ** 2, axis=1))
            est = np.load(dex_real / "handcli_est" / seq.parent.name / seq.name / s / f"mano_{f:06d}.npz")
            est_sq.append(np.sum((est["vertices"][0] - exact) ** 2, axis=1))
            label = cv2.imread(str(dex_real / "handcli_gt" / seq.parent.name / seq.name / s / f"label_{f:06d}.png"), 0)
            hand_seg, hand_true = lab["seg"] == 255, label == 1
            seg_iou.append((hand_seg & hand_true).sum() / max((hand_seg | hand_true).sum(), 1))
    ann = np.sqrt(np.concatenate(ann_sq).mean()) * 1000.0
    expected = np.hypot(cfg["mano_frame_mm"], cfg["mano_seq_mm"])
    assert abs(ann - expected) < 0.25 * expected, (ann, expected)
    est = np.sqrt(np.concatenate(est_sq).mean()) * 1000.0
    expected = np.hypot(cfg["estimate_pa_mm"], cfg["estimate_root_mm"])
    assert abs(est - expected) < 0.25 * expected, (est, expected)
    # seg is rendered from the annotated hand: close to, never exactly, the true silhouette (the hands are
    # small here, ~0.8 px per mm at 0.8 m, and partly hidden by the object, so a few mm cost more IoU)
    assert 0.5 < min(seg_iou) and 0.65 < np.mean(seg_iou) and max(seg_iou) < 0.99, seg_iou


def test_ho3d_annotation_error(tmp_path):
    from handcli.synth.ho3d import HO3DSynthConfig, write_ho3d

    root = tmp_path / "h"
    write_ho3d(root, HO3DSynthConfig(frames=3, cameras=1, seed=4, realism=realism_config("realistic", "ho3d")))
    cfg = json.loads((root / "handcli_synth.json").read_text())["config"]["realism"]
    model = HandModel.load("right", None, flat_hand_mean=True)
    C = np.diag([1.0, -1.0, -1.0])
    sq = []
    for fid in range(3):  # SMu1: the world is its camera's OpenCV frame, annotations are C * world
        with open(root / "train" / "SMu1" / "meta" / f"{fid:04d}.pkl", "rb") as fh:
            m = pickle.load(fh, encoding="latin1")
        with torch.no_grad():
            v = model(torch.tensor(m["handPose"][None], dtype=torch.float32),
                      torch.tensor(m["handBeta"][None], dtype=torch.float32),
                      torch.tensor(m["handTrans"].reshape(1, 3), dtype=torch.float32)).vertices[0].double().numpy()
        gt = np.load(root / "handcli_gt" / "train" / "SMu1" / f"{fid:04d}.npz")
        sq.append(np.sum((v - gt["hand_model_vertices"] @ C.T) ** 2, axis=1))
        assert not np.allclose(gt["hand_vertices"], gt["hand_model_vertices"])  # rendered surface has detail
        assert (root / "handcli_est" / "train" / "SMu1" / f"{fid:04d}.npz").is_file()
    rms = np.sqrt(np.concatenate(sq).mean()) * 1000.0
    expected = np.hypot(cfg["mano_frame_mm"], cfg["mano_seq_mm"])
    assert abs(rms - expected) < 0.25 * expected, (rms, expected)


def test_ycb_model_is_written_like_the_real_textured_simple(tmp_path):
    from handcli.data.objects import load_object_mesh
    from handcli.synth.objects import make_object, write_ycb_model

    o = make_object("005_tomato_soup_can")
    d = write_ycb_model(tmp_path / "models", o, num_points=100)
    text = (d / "textured_simple.obj").read_text()
    faces = [line.split()[1:] for line in text.splitlines() if line.startswith("f ")]
    n_vt = sum(1 for line in text.splitlines() if line.startswith("vt "))
    assert len(faces) == len(o.faces)
    for tokens in faces:  # v/vt/vn, the v and vn indices agree (the DexYCB toolkit's YCBLayer asserts it)
        for tok in tokens:
            assert re.fullmatch(r"\d+/\d+/\d+", tok), tok
            v, t, n = map(int, tok.split("/"))
            assert v == n and 1 <= t <= n_vt
    mtl = (d / "textured_simple.obj.mtl").read_text()
    assert "map_Kd texture_map.png" in mtl and (d / "texture_map.png").is_file()
    mesh = trimesh.load(str(d / "textured_simple.obj"), force="mesh", process=False)
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals) and mesh.visual.material.image is not None
    # the texture holds the object's colours: sampled at each face's UV centroid it matches the albedo
    uv = mesh.visual.uv[mesh.faces].mean(axis=1)
    colour = mesh.visual.material.to_color(uv)[:, :3] / 255.0
    ref = o.albedo(np.asarray(mesh.vertices)[mesh.faces].mean(axis=1))
    assert np.abs(colour - ref).mean() < 0.02
    # handcli's reader still gets the watertight mesh in file order
    m = load_object_mesh(tmp_path / "models", "005_tomato_soup_can")
    assert np.allclose(m.vertices, o.vertices, atol=1e-6) and np.array_equal(m.faces, o.faces)


def test_ideal_profile_is_the_default():
    from handcli.synth.dexycb import DexYCBSynthConfig
    from handcli.synth.ho3d import HO3DSynthConfig
    from handcli.synth.interhand import InterHandSynthConfig

    for cfg in (InterHandSynthConfig(), DexYCBSynthConfig(), HO3DSynthConfig()):
        assert cfg.realism.profile == "ideal" and not cfg.realism.annotation_error and cfg.realism.specular == 0
    with pytest.raises(ValueError):
        realism_config("noisy", "interhand")


def test_cli_profile_option(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "bad"
    r = subprocess.run([sys.executable, "-m", "handcli.cli", "synth", "ho3d", str(out), "--profile", "noisy"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "profile" in r.stderr and not out.exists()


@pytest.mark.slow
def test_cli_realistic_profile_reaches_the_writer(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ok"
    r = subprocess.run([sys.executable, "-m", "handcli.cli", "synth", "ho3d", str(out), "--frames", "1",
                        "--cameras", "1", "--no-single", "--profile", "realistic"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "handcli_synth.json").read_text())
    assert meta["profile"] == "realistic" and meta["config"]["realism"]["jpeg_quality"] == 90


def test_realistic_hand_object_writers_are_deterministic(tmp_path):
    from handcli.synth.dexycb import DexYCBSynthConfig, write_dexycb
    from handcli.synth.ho3d import HO3DSynthConfig, write_ho3d

    def files(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    dcfg = DexYCBSynthConfig(subjects=1, frames=3, cameras=1, distractors=0, seed=4, unannotated_frame=False,
                             realism=realism_config("realistic", "dexycb"))
    a, b = files(write_dexycb(tmp_path / "a", dcfg)), files(write_dexycb(tmp_path / "b", dcfg))
    assert a == b and any(k.startswith("handcli_est/") for k in a)
    hcfg = HO3DSynthConfig(frames=1, cameras=1, single=None, seed=4, realism=realism_config("realistic", "ho3d"))
    assert files(write_ho3d(tmp_path / "c", hcfg)) == files(write_ho3d(tmp_path / "d", hcfg))


def test_synth_realism_overrides_are_applied_recorded_and_checked(tmp_path):
    """``synth --realism key=value`` changes one parameter of the profile (recorded in the sidecar and visible
    in the data: no MANO error left, the joint error kept); a bad override is one error line, exit 2, no output."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from handcli.cli import app
    from handcli.errors import InputError

    root = tmp_path / "ih"
    args = ["synth", "interhand", str(root), "--seqs", "right", "--frames", "2", "--cameras", "2", "--mono-cameras",
            "0", "--no-black-frame", "--profile", "realistic", "--seed", "5"]
    res = CliRunner().invoke(app, [*args, "--realism", "mano_frame_mm=0", "--realism", "mano_seq_mm=0",
                                   "--realism", "gain=[1, 1.05]"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((root / "handcli_synth.json").read_text())["config"]["realism"]
    assert cfg["mano_frame_mm"] == 0 and cfg["mano_seq_mm"] == 0 and cfg["gain"] == [1.0, 1.05]
    assert cfg["joint_frame_mm"] == realism_config("realistic", "interhand").joint_frame_mm > 0
    models = {s: HandModel.load(s, None, flat_hand_mean=False) for s in ("right", "left")}
    ann, exact = _ih_json(root, "MANO_NeuralAnnot"), _ih_json(root, "MANO_NeuralAnnot", gt=True)
    for c in ann:
        for f in ann[c]:
            p = ann[c][f]["right"]
            assert _rms(_ih_verts(models, "right", p), _ih_verts(models, "right", exact[c][f]["right"])) < 1e-3
    ja, je = _ih_json(root, "joint_3d"), _ih_json(root, "joint_3d", gt=True)
    f0 = next(iter(ja["0"]))
    assert np.abs(np.array(ja["0"][f0]["world_coord"]) - np.array(je["0"][f0]["world_coord"])).max() > 0.5  # mm

    out = tmp_path / "bad"
    for bad, word in (("foo=1", "foo"), ("gain=2", "gain"), ("mano_seq_mm=-1", "mano_seq_mm"),
                      ("jpeg_quality=101", "jpeg_quality"), ("specular=true", "specular"), ("nokey", "nokey")):
        res = CliRunner().invoke(app, [*args[:2], str(out), *args[3:], "--realism", bad])
        assert isinstance(res.exception, InputError) and res.exception.field == "realism", (bad, res.exception)
        assert word in str(res.exception) and not out.exists()
    r = subprocess.run([sys.executable, "-m", "handcli.cli", *args[:2], str(out), *args[3:], "--realism", "foo=1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "realism" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_camera_effects_alone_change_only_the_images(tmp_path):
    """The premise of bench_realism_handocc's camera floor: the realistic profile with every effect but the
    cameras' (colour response, sensor noise, JPEG) writes the ideal profile's scene, annotations and masks byte for
    byte, and its images are the ideal images times each camera's recorded response; with those off as well, every
    file but the sidecar is the ideal one."""
    from handcli.synth.interhand import InterHandSynthConfig, write_interhand
    from handcli.synth.realism import sidecar_responses

    scene = dict(mano_frame_mm=0, mano_seq_mm=0, joint_frame_mm=0, joint_seq_mm=0, thicken_mm=0, detail_mm=0,
                 specular=0)
    camera_off = dict(gain=(1.0, 1.0), white_balance=0, read_noise=0, shot_noise=0, jpeg_quality=0)
    cfg = InterHandSynthConfig(frames=2, cameras=2, mono_cameras=0, seqs=("right",), seed=7, black_frame=False,
                               realism=realism_config("ideal", "interhand"))
    ideal = write_interhand(tmp_path / "ideal", cfg)
    camera = write_interhand(tmp_path / "camera", replace(cfg, realism=realism_config("realistic", "interhand", **scene)))
    off = write_interhand(tmp_path / "off", replace(cfg, realism=realism_config("realistic", "interhand", **scene,
                                                                              **camera_off)))
    files = sorted(p.relative_to(ideal) for p in ideal.rglob("*") if p.is_file() and p.name != "handcli_synth.json")
    assert all((ideal / p).read_bytes() == (off / p).read_bytes() for p in files)
    differ = {p for p in files if (ideal / p).read_bytes() != (camera / p).read_bytes()}
    images = {p for p in files if p.suffix == ".jpg"}
    assert images and differ == images
    resp = sidecar_responses(camera)
    for p in images:
        a = cv2.imread(str(ideal / p))[..., ::-1].astype(float)
        b = cv2.imread(str(camera / p))[..., ::-1].astype(float)
        mid = (a.min(-1) > 20) & (a.max(-1) < 200)  # neither near black nor where the response would clip
        ratio = b[mid].sum(0) / a[mid].sum(0)
        np.testing.assert_allclose(ratio, resp[p.parent.name.removeprefix("cam")], rtol=0.03)
