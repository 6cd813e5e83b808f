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

from handcli.data.interhand import InterHandReader, frame_from_filename
from handcli.data.selection import parse_selection
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


def _frames_summary(frames):
    """Everything the reader returns, as plain values, for comparing two readings."""
    out = []
    for f in frames:
        out.append((f.key, f.hand_type, [(v.image_id, v.path.name, v.cam_id, v.width, v.height) for v in f.views],
                    {s: f.joints[s].tolist() for s in f.joints}, {s: f.joint_valid[s].tolist() for s in f.joint_valid},
                    {s: None if m is None else {k: v.tolist() for k, v in m.items()} for s, m in f.mano.items()}))
    return out


def test_annotations_before_images_reads_the_same(tmp_path):
    """data.json's top-level key order is not assumed."""
    _write_fixture(tmp_path)
    ref = _frames_summary(InterHandReader(tmp_path).frames(keep_mono=True))
    p = tmp_path / "annotations" / "train" / "InterHand2.6M_train_data.json"
    data = json.loads(p.read_text())
    p.write_text(json.dumps({"annotations": data["annotations"], "images": data["images"]}))
    assert _frames_summary(InterHandReader(tmp_path).frames(keep_mono=True)) == ref


def test_inflated_annotations_give_the_same_frames(tmp_path):
    """Filler entries around the originals (other sequences, frames and cameras) change nothing selected."""
    from handcli.synth.interhand_inflate import inflate_interhand

    src = tmp_path / "src"
    _write_fixture(src)
    ref = _frames_summary(InterHandReader(src).frames(keep_mono=True))
    info = inflate_interhand(src, tmp_path / "big", images=2000, captures=3)
    assert info["images"] == 2000 and info["frames"] > 2
    big = InterHandReader(tmp_path / "big")
    assert _frames_summary(big.frames(captures={2}, seqs={"0051_dinosaur"}, keep_mono=True)) == ref
    assert len(big.select(keep_mono=True)) == info["frames"]  # every filler frame is there to select
    # a selection by frame reads only that frame's cameras, joints and MANO entries
    assert [f.frame_idx for f in big.frames(frames={563})] == [563]


def test_select_keeps_only_the_selection(tmp_path):
    _write_fixture(tmp_path)
    rd = InterHandReader(tmp_path)
    sel = rd.select(cameras={"400262"})
    assert [(s.capture, s.frame_idx, [v.cam_id for v in s.views]) for s in sel] == [(2, 563, ["400262"])]
    assert rd._cameras == {}  # select reads data.json only
    rd.load(sel)
    assert set(rd._cameras) == {(2, "400262")}


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("name", ["data", "camera", "joint_3d", "MANO_NeuralAnnot"])
def test_truncated_annotation_file_names_file_and_field(tmp_path, name, cut):
    """Truncation anywhere, even after every selected entry, is an InputError naming the file."""
    _write_fixture(tmp_path)
    p = tmp_path / "annotations" / "train" / f"InterHand2.6M_train_{name}.json"
    text = p.read_text()
    p.write_text(text[: int(len(text) * cut)])
    with pytest.raises(InputError) as e:
        InterHandReader(tmp_path).frames(keep_mono=True)
    assert e.value.path == str(p) and "JSON" in e.value.message
    if cut > 0.1:
        assert e.value.field  # the key where the stream broke


def test_truncated_after_the_selected_entries(tmp_path):
    """The selected entries come first and parse; the damage at the end is still found."""
    _write_fixture(tmp_path)
    p = tmp_path / "annotations" / "train" / "InterHand2.6M_train_data.json"
    text = p.read_text()
    p.write_text(text[:-3])
    with pytest.raises(InputError) as e:
        InterHandReader(tmp_path).frames(frames={563})
    assert e.value.path == str(p) and e.value.field.startswith("annotations[1]")


def test_nan_located_by_field(tmp_path):
    _write_fixture(tmp_path)
    p = tmp_path / "annotations" / "train" / "InterHand2.6M_train_data.json"
    data = json.loads(p.read_text())
    data["images"][1]["width"] = float("nan")
    p.write_text(json.dumps(data))  # Python writes the non-JSON literal NaN
    with pytest.raises(InputError) as e:
        InterHandReader(tmp_path).frames(frames={563})
    assert e.value.field == "images[1]/width" and "NaN" in e.value.message


_PEAK_RSS = """
import sys
from handcli.data.interhand import InterHandReader
frames = InterHandReader(sys.argv[1]).frames(captures={2}, seqs={"0051_dinosaur"}, frames={563})
assert [f.frame_idx for f in frames] == [563]
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (here pytest, with torch)
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))  # KiB
"""


def test_reader_memory_does_not_grow_with_the_annotation_files(tmp_path):
    """Memory regression: 40k images' annotations (a 24 MB data.json; parsed whole they take ~200 MB) add
    less than 40 MB of peak RSS over the 2-image fixture when one frame is selected."""
    import subprocess
    import sys

    from handcli.synth.interhand_inflate import inflate_interhand

    src = tmp_path / "src"
    _write_fixture(src)
    info = inflate_interhand(src, tmp_path / "big", images=40_000, captures=3)
    assert info["bytes"]["data"] > 20e6

    def peak_kib(root):
        r = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(root)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return int(r.stdout.split()[-1])

    small, big = peak_kib(src), peak_kib(tmp_path / "big")
    assert big - small < 40 * 1024, (small, big)


def test_small_selection_decodes_annotations_where_they_lie(tmp_path, monkeypatch):
    """The fast path (image_id stream + local decode) gives the same frames as building every record, and
    falls back to that when a record cannot be decoded locally (a nested object before image_id)."""
    from handcli.synth.interhand_inflate import inflate_interhand

    src = tmp_path / "src"
    _write_fixture(src)
    inflate_interhand(src, tmp_path / "big", images=3000, captures=2)
    rd = InterHandReader(tmp_path / "big")
    streamed = _frames_summary(rd.load(rd.select(captures={2}, keep_mono=True)))
    calls = []
    real = InterHandReader._annotations_streamed
    monkeypatch.setattr(InterHandReader, "_annotations_streamed", lambda self, ids: calls.append(1) or real(self, ids))
    assert _frames_summary(InterHandReader(tmp_path / "big").frames(captures={2}, keep_mono=True)) == streamed
    assert calls == []  # decoded by offset
    p = tmp_path / "big" / "annotations" / "train" / "InterHand2.6M_train_data.json"
    text = p.read_text()
    assert text.count('{"id": 7, "image_id": 7,') == 1
    p.write_text(text.replace('{"id": 7, "image_id": 7,', '{"id": 7, "extra": {"image_id": 1}, "image_id": 7,'))
    assert _frames_summary(InterHandReader(tmp_path / "big").frames(captures={2}, keep_mono=True)) == streamed
    assert calls == [1]  # fell back to the full pass
    ref = _frames_summary(InterHandReader(src).frames(keep_mono=True))
    assert [f for f in streamed if "/0051_dinosaur/" in f[0]] == ref and len(streamed) > len(ref)
