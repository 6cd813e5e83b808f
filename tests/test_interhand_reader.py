"""InterHand2.6M reading checked key by key against a fixture written here in the real layout.

The fixture mirrors the real files' quirks (docs/formats.md#interhand26m): string keys, frame indices
below 1000 padded to 4 digits and a 5-digit one, a landscape camera, int validity in data.json
and bool validity in joint_3d.json, a null hand in MANO_NeuralAnnot, joints tip-first/wrist-last.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from handcli.data.interhand import InterHandReader, frame_from_filename, parse_selection
from handcli.errors import InputError
from handcli.synth.interhand import _skeleton_lines


def _write_fixture(root):
    ann = root / "annotations" / "train"
    ann.mkdir(parents=True)
    (root / "annotations" / "skeleton.txt").write_text("\n".join(_skeleton_lines()) + "\n")
    (root / "annotations" / "subject.txt").write_text("1\n")
    images = [
        # portrait camera, frame 563 -> image0563.jpg
        {"id": 7, "file_name": "Capture2/0051_dinosaur/cam400262/image0563.jpg", "width": 334, "height": 512,
         "capture": 2, "subject": 1, "seq_name": "0051_dinosaur", "camera": "400262", "frame_idx": 563},
        # landscape camera, 5-digit frame
        {"id": 9, "file_name": "Capture2/0051_dinosaur/cam410028/image23330.jpg", "width": 512, "height": 334,
         "capture": 2, "subject": 1, "seq_name": "0051_dinosaur", "camera": "410028", "frame_idx": 23330},
    ]
    valid = [[1]] * 42
    valid_left_root_bad = [[1]] * 41 + [[0]]
    anns = [
        {"id": 7, "image_id": 7, "bbox": [10.0, 20.0, 100.0, 120.0], "joint_valid": valid, "hand_type": "right",
         "hand_type_valid": 1},
        {"id": 9, "image_id": 9, "bbox": [5.0, 6.0, 50.0, 60.0], "joint_valid": valid_left_root_bad,
         "hand_type": "interacting", "hand_type_valid": 1},
    ]
    R = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
    camera = {"2": {"campos": {"400262": [100.0, -200.0, 900.0], "410028": [0.0, 800.0, 1000.0]},
                    "camrot": {"400262": R.tolist(), "410028": np.eye(3).tolist()},
                    "focal": {"400262": [1261.5, 1262.0], "410028": [1270.0, 1270.5]},
                    "princpt": {"400262": [155.8, 258.8], "410028": [270.8, 175.5]}}}
    world = np.arange(126, dtype=float).reshape(42, 3) * 10.0  # mm
    joint3d = {"2": {str(f): {"world_coord": world.tolist(), "joint_valid": [[True]] * 42,
                              "hand_type": "interacting", "hand_type_valid": True} for f in (563, 23330)}}
    P = {"pose": [0.01 * i for i in range(48)], "shape": [0.1] * 10, "trans": [0.01, -0.02, 0.9]}
    mano = {"2": {"563": {"right": P, "left": None}, "23330": {"right": P, "left": P}}}
    for name, obj in (("data", {"images": images, "annotations": anns}), ("camera", camera),
                      ("joint_3d", joint3d), ("MANO_NeuralAnnot", mano)):
        (ann / f"InterHand2.6M_train_{name}.json").write_text(json.dumps(obj))
    for im in images:
        p = root / "images" / "train" / im["file_name"]
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.full((im["height"], im["width"], 3), 90, np.uint8))
    return world, R


def test_reader_key_by_key(tmp_path):
    world, R = _write_fixture(tmp_path)
    rd = InterHandReader(tmp_path, "train")
    frames = rd.frames(keep_mono=True)
    assert [(f.capture, f.seq, f.frame_idx) for f in frames] == [(2, "0051_dinosaur", 563),
                                                                  (2, "0051_dinosaur", 23330)]
    f0, f1 = frames
    assert f0.views[0].path.name == "image0563.jpg" and f1.views[0].path.name == "image23330.jpg"
    assert (f0.views[0].width, f0.views[0].height) == (334, 512)
    assert (f1.views[0].width, f1.views[0].height) == (512, 334)
    cam = rd.camera(2, "400262", 334, 512)
    assert np.allclose(cam.K, [[1261.5, 0, 155.8], [0, 1262.0, 258.8], [0, 0, 1]])
    # world->camera: X_cam = R (X_world - campos), in metres
    campos = np.array([100.0, -200.0, 900.0]) / 1000.0
    assert np.allclose(cam.world_to_cam[:3, :3], R)
    assert np.allclose(cam.world_to_cam[:3, 3], -R @ campos)
    X = np.array([0.3, 0.1, 1.0])
    assert np.allclose(cam.world_to_cam[:3, :3] @ X + cam.world_to_cam[:3, 3], R @ (X - campos))
    # joints: metres, reordered wrist-first (IH wrist is 20 / 41; thumb tip is 0)
    assert np.allclose(f0.joints["right"][0], world[20] / 1000)
    assert np.allclose(f0.joints["right"][1], world[3] / 1000)  # thumb base (r_thumb1)
    assert np.allclose(f0.joints["right"][4], world[0] / 1000)  # thumb tip
    assert np.allclose(f0.joints["left"][0], world[41] / 1000)
    assert f0.sides == ["right"]
    # the left root is invalid in image 9's joint_valid: the whole left hand becomes invalid
    assert f1.joint_valid["right"].all() and not f1.joint_valid["left"].any()
    assert f1.sides == ["right"]
    # MANO: pose/shape/trans as floats; null hands are None
    assert f0.mano["left"] is None
    assert np.allclose(f0.mano["right"]["pose"], [0.01 * i for i in range(48)])
    assert np.allclose(f0.mano["right"]["trans"], [0.01, -0.02, 0.9])
    # selection and monochrome filtering
    assert [f.frame_idx for f in rd.frames(keep_mono=False)] == [563]
    assert [f.frame_idx for f in rd.frames(frames={23330}, keep_mono=True)] == [23330]
    assert rd.frames(cameras={"999999"}) == []


def test_filename_frame_parsing():
    assert frame_from_filename("cam400262/image0563.jpg") == 563
    assert frame_from_filename("image23330.jpg") == 23330
    assert parse_selection("0-3,7") == {0, 1, 2, 3, 7}
    assert parse_selection(None) is None


def test_camera_missing_from_camera_json(tmp_path):
    _write_fixture(tmp_path)
    p = tmp_path / "annotations" / "train" / "InterHand2.6M_train_camera.json"
    cam = json.loads(p.read_text())
    del cam["2"]["focal"]["400262"]
    p.write_text(json.dumps(cam))
    with pytest.raises(InputError) as e:
        InterHandReader(tmp_path).frames()
    assert "InterHand2.6M_train_camera.json" in str(e.value) and "2/focal/400262" in str(e.value)
