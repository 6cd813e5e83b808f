"""The synthetic InterHand2.6M writer produces the real v1.0 layout and its quirks."""

from __future__ import annotations

import json

import cv2
import numpy as np

from handcli.synth.interhand import (
    LANDSCAPE_COLOUR_CAMERA,
    MONO_CAMERA,
    InterHandSynthConfig,
    write_interhand,
)


def _load(root, name):
    return json.loads((root / "annotations" / "train" / f"InterHand2.6M_train_{name}.json").read_text())


def test_layout_and_json_types(synth_ih):
    root = synth_ih
    for name in ("data", "camera", "joint_3d", "MANO_NeuralAnnot"):
        assert (root / "annotations" / "train" / f"InterHand2.6M_train_{name}.json").is_file()
    skel = [l for l in (root / "annotations" / "skeleton.txt").read_text().splitlines() if not l.startswith("#")]
    assert len(skel) == 42
    assert skel[20].split() == ["r_wrist", "20", "-1"] and skel[0].split() == ["r_thumb4", "0", "1"]
    assert skel[3].split()[2] == "20" and skel[41].split()[2] == "-1"
    assert (root / "annotations" / "subject.txt").is_file()
    data = _load(root, "data")
    img, ann = data["images"][0], data["annotations"][0]
    assert set(img) == {"id", "file_name", "width", "height", "capture", "subject", "seq_name", "camera", "frame_idx"}
    assert isinstance(img["camera"], str) and isinstance(img["capture"], int) and isinstance(img["frame_idx"], int)
    assert set(ann) == {"id", "image_id", "bbox", "joint_valid", "hand_type", "hand_type_valid"}
    assert isinstance(ann["joint_valid"][0][0], int) and len(ann["joint_valid"]) == 42
    j3d = _load(root, "joint_3d")
    entry = next(iter(next(iter(j3d.values())).values()))
    assert isinstance(entry["joint_valid"][0][0], bool) and len(entry["world_coord"]) == 42
    for im in data["images"]:
        assert (root / "images" / "train" / im["file_name"]).is_file()
        assert int(im["file_name"].rsplit("image", 1)[1][:-4]) == im["frame_idx"]


def test_frame_padding_and_cameras(synth_ih):
    data = _load(synth_ih, "data")
    frames = {im["frame_idx"] for im in data["images"]}
    assert min(frames) < 1000 < max(frames) and max(frames) >= 10000
    names = {im["file_name"].rsplit("/", 1)[1] for im in data["images"]}
    assert "image0995.jpg" in names and "image1001.jpg" in names
    sizes = {im["camera"]: (im["width"], im["height"]) for im in data["images"]}
    assert sizes[LANDSCAPE_COLOUR_CAMERA] == (512, 334) and sizes[MONO_CAMERA] == (512, 334)
    assert sum(1 for s in sizes.values() if s == (334, 512)) >= 3
    im = next(i for i in data["images"] if i["camera"] == MONO_CAMERA and i["frame_idx"] == 1001)
    pix = cv2.imread(str(synth_ih / "images" / "train" / im["file_name"]))
    assert pix.shape == (334, 512, 3)
    assert np.abs(pix[:, :, 0].astype(int) - pix[:, :, 2].astype(int)).max() <= 2  # grey content
    cam = _load(synth_ih, "camera")["0"]
    R = np.array(cam["camrot"]["400002"])
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert 500 < np.linalg.norm(cam["campos"]["400002"]) < 2500  # millimetres


def test_black_frame_and_null_mano(synth_ih):
    data = _load(synth_ih, "data")
    black = [im for im in data["images"] if im["seq_name"].startswith("0000") and im["frame_idx"] == 998]
    assert black
    for im in black:
        assert cv2.imread(str(synth_ih / "images" / "train" / im["file_name"])).max() == 0
        gt = synth_ih / "handcli_gt" / "train" / im["file_name"].rsplit("/", 1)[0]
        assert not cv2.imread(str(gt / "mask0998.png"), cv2.IMREAD_UNCHANGED).any()  # nothing seen, nothing true
        assert not np.load(gt / "depth0998.npy").any()
    mano = _load(synth_ih, "MANO_NeuralAnnot")["0"]
    nulls = [k for k, v in mano.items() if v["left"] is None and v["right"] is not None]
    inter = {im["frame_idx"] for im in data["images"] if im["seq_name"].endswith("dh_touch")}
    assert any(int(k) in inter for k in nulls)
    p = next(v["right"] for v in mano.values() if v["right"] is not None)
    assert len(p["pose"]) == 48 and len(p["shape"]) == 10 and len(p["trans"]) == 3


def test_ground_truth_sidecar_matches_images(synth_ih):
    data = _load(synth_ih, "data")
    im = next(i for i in data["images"] if i["camera"] == "400002" and i["frame_idx"] == 1001)
    gt = synth_ih / "handcli_gt" / "train" / im["file_name"].rsplit("/", 1)[0]
    mask = cv2.imread(str(gt / "mask1001.png"), cv2.IMREAD_UNCHANGED)
    depth = np.load(gt / "depth1001.npy")
    rgb = cv2.imread(str(synth_ih / "images" / "train" / im["file_name"])).astype(float)
    assert set(np.unique(mask)) <= {0, 100, 200} and (mask == 200).sum() > 2000
    assert np.all((depth > 0) == (mask > 0))
    assert 0.7 < depth[mask > 0].mean() < 1.3  # metres from camera
    # the hand is brighter than the dark studio background
    assert rgb[mask > 0].mean() > 2 * rgb[mask == 0].mean()
    # the texture has detail: colour varies across the hand
    assert rgb[mask > 0].std(axis=0).mean() > 8


def test_deterministic_given_seed(tmp_path):
    cfg = InterHandSynthConfig(frames=2, cameras=2, mono_cameras=0, seqs=("left",), seed=11)
    a, b = write_interhand(tmp_path / "a", cfg), write_interhand(tmp_path / "b", cfg)
    for rel in ("annotations/train/InterHand2.6M_train_data.json",
                "annotations/train/InterHand2.6M_train_MANO_NeuralAnnot.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    imgs = sorted(p.relative_to(a) for p in (a / "images").rglob("*.jpg"))
    assert imgs and all((a / p).read_bytes() == (b / p).read_bytes() for p in imgs)
    c = write_interhand(tmp_path / "c", InterHandSynthConfig(**{**cfg.__dict__, "seed": 12}))
    assert (a / imgs[0]).read_bytes() != (c / imgs[0]).read_bytes()
