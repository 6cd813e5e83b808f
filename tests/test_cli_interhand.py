"""The InterHand CLI chain and its bad-input contract: exit 2, one line naming file and key, no output."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest


def handcli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "handcli.cli", *map(str, args)], capture_output=True, text=True,
                          **kw)


def test_help_does_not_import_torch():
    code = ("import sys; import handcli.cli; "
            "bad = [m for m in ('torch', 'numpy', 'h5py', 'cv2') if m in sys.modules]; "
            "assert not bad, bad")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("args", [[], ["synth", "interhand"], ["preprocess", "interhand"], ["inspect"],
                                  ["cache", "merge"], ["mano", "convert"], ["hand", "show"], ["synth", "dexycb"],
                                  ["synth", "ho3d"], ["preprocess", "dexycb"], ["preprocess", "ho3d"],
                                  ["targets", "depth"], ["targets", "features"], ["train"], ["adapt"], ["render"],
                                  ["eval"], ["mesh"], ["grasp-eval"], ["view"]])
def test_every_stage_has_help(args):
    from typer.testing import CliRunner

    from handcli.cli import app

    res = CliRunner().invoke(app, [*args, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


@pytest.mark.slow
def test_cli_chain_synth_preprocess_inspect(tmp_path):
    root = tmp_path / "ih"
    r = handcli("synth", "interhand", root, "--frames", "2", "--cameras", "2", "--mono-cameras", "0",
                "--seqs", "right", "--no-black-frame")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(root)
    out = tmp_path / "c.h5"
    r = handcli("preprocess", "interhand", root, "-o", out, "--scale", "0.5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)  # only the path on stdout
    r = handcli("inspect", out, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["schema"] == "handcli.cache/1" and s["num_frames"] == 2 and s["num_views"] == 4
    cam = s["cameras"][0]
    assert {"name", "width", "height", "K", "world_to_cam"} <= set(cam) and len(cam["K"]) == 3
    hand = s["frames"][0]["hands"]["right"]
    assert len(hand["joints"]) == 21 and len(hand["mano"]["pose"]) == 48
    # refusing to overwrite without --force, and leaving the existing file alone
    before = out.read_bytes()
    r = handcli("preprocess", "interhand", root, "-o", out)
    assert r.returncode == 2 and "--force" in r.stderr and out.read_bytes() == before


def _copy(synth_ih, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(synth_ih, root, ignore=shutil.ignore_patterns("handcli_gt"))
    return root


def _ann(root, name):
    return root / "annotations" / "train" / f"InterHand2.6M_train_{name}.json"


def _break_missing(root):
    _ann(root, "joint_3d").unlink()
    return "InterHand2.6M_train_joint_3d.json", "missing"


def _break_truncated(root):
    p = _ann(root, "data")
    text = p.read_text()
    p.write_text(text[: len(text) // 2])
    return "InterHand2.6M_train_data.json", "JSON"


def _break_image(root):
    data = json.loads(_ann(root, "data").read_text())
    name = data["images"][0]["file_name"]
    (root / "images" / "train" / name).write_bytes(b"\xff\xd8 this is not a jpeg")
    return name.rsplit("/", 1)[1], "decode"


def _break_camera(root):
    p = _ann(root, "camera")
    cam = json.loads(p.read_text())
    del cam["0"]["campos"]["400002"]
    p.write_text(json.dumps(cam))
    return "InterHand2.6M_train_camera.json", "0/campos/400002"


def _break_nan(root):
    p = _ann(root, "MANO_NeuralAnnot")
    mano = json.loads(p.read_text())
    frame = next(iter(mano["0"]))
    mano["0"][frame]["right"]["pose"][5] = math.nan
    p.write_text(json.dumps(mano))
    return "InterHand2.6M_train_MANO_NeuralAnnot.json", f"0/{frame}/right/pose"


def _break_truncated_late(root):
    p = _ann(root, "data")
    p.write_bytes(p.read_bytes()[:-40])  # inside the last annotation, after every image was read
    return "InterHand2.6M_train_data.json", "annotations["


@pytest.mark.parametrize("breaker", [_break_missing, _break_truncated, _break_image, _break_camera, _break_nan,
                                     _break_truncated_late])
def test_bad_input_exit_2_and_no_output(synth_ih, tmp_path, breaker):
    root = _copy(synth_ih, tmp_path)
    fname, key = breaker(root)
    outdir = tmp_path / "out"
    outdir.mkdir()
    r = handcli("preprocess", "interhand", root, "-o", outdir / "cache.h5")
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and fname in lines[0] and key in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert list(outdir.iterdir()) == []  # no cache, not even a partial or temporary one


# --- issue 11: every value the reader uses is checked (type, range, finiteness, ids, paths) -------------

def _edit(root, name, fn):
    p = _ann(root, name)
    obj = json.loads(p.read_text())
    obj = fn(obj) or obj
    p.write_text(json.dumps(obj))


def _set_image(field, value):
    def breaker(root):
        _edit(root, "data", lambda d: d["images"][0].__setitem__(field, value))
        return "InterHand2.6M_train_data.json", f"images[0]/{field}"
    return breaker


def _first_frame(root):
    return next(iter(json.loads(_ann(root, "joint_3d").read_text())["0"]))


def _set_camera(block, value):
    def breaker(root):
        cam = json.loads(_ann(root, "data").read_text())["images"][0]["camera"]
        _edit(root, "camera", lambda c: c["0"][block].__setitem__(cam, value))
        return "InterHand2.6M_train_camera.json", f"0/{block}/{cam}"
    return breaker


def _mano_top_list(root):
    _edit(root, "MANO_NeuralAnnot", lambda m: [m])
    return "InterHand2.6M_train_MANO_NeuralAnnot.json", "top level"


def _joint_top_list(root):
    _edit(root, "joint_3d", lambda m: [m])
    return "InterHand2.6M_train_joint_3d.json", "top level"


def _mano_entry_not_dict(root):
    f = _first_frame(root)
    _edit(root, "MANO_NeuralAnnot", lambda m: m["0"].__setitem__(f, [1, 2, 3]))
    return "InterHand2.6M_train_MANO_NeuralAnnot.json", f"0/{f}"


def _mano_side_not_dict(root):
    f = _first_frame(root)
    _edit(root, "MANO_NeuralAnnot", lambda m: m["0"][f].__setitem__("right", "pose"))
    return "InterHand2.6M_train_MANO_NeuralAnnot.json", f"0/{f}/right"


def _joint_entry_not_dict(root):
    f = _first_frame(root)
    _edit(root, "joint_3d", lambda m: m["0"].__setitem__(f, 5))
    return "InterHand2.6M_train_joint_3d.json", f"0/{f}"


def _mano_huge(root):
    f = _first_frame(root)
    _edit(root, "MANO_NeuralAnnot", lambda m: m["0"][f]["right"]["shape"].__setitem__(3, 1e30))
    return "InterHand2.6M_train_MANO_NeuralAnnot.json", f"0/{f}/right/shape"


def _joint_huge(root):
    f = _first_frame(root)
    _edit(root, "joint_3d", lambda m: m["0"][f]["world_coord"][4].__setitem__(1, -3e38))
    return "InterHand2.6M_train_joint_3d.json", f"0/{f}/world_coord"


def _duplicate_image_id(root):
    def dup(d):
        d["images"][1]["id"] = d["images"][0]["id"]
    _edit(root, "data", dup)
    return "InterHand2.6M_train_data.json", "images[1]/id"


def _extra_view(root):
    def extra(d):
        im = dict(d["images"][0], id=10_000)
        d["images"].append(im)
        d["annotations"].append(dict(d["annotations"][0], id=10_000, image_id=10_000))
    _edit(root, "data", extra)
    return "InterHand2.6M_train_data.json", "images["


def _file_name_escapes(root):
    def esc(d):
        d["images"][0]["file_name"] = "../../../" + d["images"][0]["file_name"]
    _edit(root, "data", esc)
    return "InterHand2.6M_train_data.json", "images[0]/file_name"


def _hand_type(root):
    _edit(root, "data", lambda d: d["annotations"][0].__setitem__("hand_type", 3))
    return "InterHand2.6M_train_data.json", "annotations[0]/hand_type"


def _nan_literal(field, literal):
    def breaker(root):
        p = _ann(root, "data")
        d = json.loads(p.read_text())
        d["images"][0][field] = 12345.5
        p.write_text(json.dumps(d).replace("12345.5", literal, 1))
        return "InterHand2.6M_train_data.json", f"images[0]/{field}"
    return breaker


VALIDATION_BREAKERS = {
    "width-string": _set_image("width", "334"),
    "width-zero": _set_image("width", 0),
    "width-float": _set_image("width", 334.5),
    "capture-string": _set_image("capture", "0"),
    "frame_idx-null": _set_image("frame_idx", None),
    "frame_idx-negative": _set_image("frame_idx", -5),
    "file_name-int": _set_image("file_name", 7),
    "file_name-dotdot": _file_name_escapes,
    "camera-list": _set_image("camera", ["400002"]),
    "width-NaN": _nan_literal("width", "NaN"),
    "capture-Infinity": _nan_literal("capture", "Infinity"),
    "frame_idx-overflow": _nan_literal("frame_idx", "1e999"),
    "focal-zero": _set_camera("focal", [0.0, 1200.0]),
    "focal-negative": _set_camera("focal", [-1200.0, -1200.0]),
    "focal-huge": _set_camera("focal", [1e12, 1e12]),
    "camrot-not-rotation": _set_camera("camrot", [[2.0, 0, 0], [0, 1, 0], [0, 0, 1]]),
    "camrot-reflection": _set_camera("camrot", [[-1.0, 0, 0], [0, 1, 0], [0, 0, 1]]),
    "campos-huge": _set_camera("campos", [0.0, 0.0, 1e20]),
    "mano-top-list": _mano_top_list,
    "joint-top-list": _joint_top_list,
    "mano-entry-list": _mano_entry_not_dict,
    "mano-side-string": _mano_side_not_dict,
    "joint-entry-int": _joint_entry_not_dict,
    "mano-huge": _mano_huge,
    "joint-huge": _joint_huge,
    "duplicate-image-id": _duplicate_image_id,
    "extra-view": _extra_view,
    "hand_type": _hand_type,
}


def handcli_in_process(capsys, monkeypatch, *args):
    """The console entry point (exit-code mapping included) in this process: no interpreter start-up."""
    from handcli.cli import main

    monkeypatch.setattr(sys, "argv", ["handcli", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, e.value.code, out, err)


@pytest.mark.parametrize("name", list(VALIDATION_BREAKERS))
def test_reader_validation_exit_2_and_no_output(synth_ih, tmp_path, capsys, monkeypatch, name):
    root = _copy(synth_ih, tmp_path)
    fname, key = VALIDATION_BREAKERS[name](root)
    outdir = tmp_path / "out"
    outdir.mkdir()
    r = handcli_in_process(capsys, monkeypatch, "preprocess", "interhand", root, "-o", outdir / "cache.h5")
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and fname in lines[0] and key in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert list(outdir.iterdir()) == []


def test_every_frame_dropped_is_exit_2_and_no_output(synth_ih, tmp_path):
    """The synthetic right-hand sequence's frame 998 is all black: selecting only it leaves nothing."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    r = handcli("preprocess", "interhand", synth_ih, "-o", outdir / "cache.h5", "--seq", "0000_rh_wave",
                "--frames", "998")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "all-black" in r.stderr and r.stdout == "" and list(outdir.iterdir()) == []


@pytest.mark.parametrize("args, option", [
    (["preprocess", "interhand", "ROOT", "-o", "x.h5", "--workers", "0"], "--workers"),
    (["synth", "interhand", "OUT", "--frames", "0"], "--frames"),
    (["grasp-eval", "--top-k", "0"], "--top-k"),
    (["synth", "interhand", "OUT", "--no-such-option"], "--no-such-option"),
    (["train"], "cache"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch, args, option):
    """Options checked by the CLI parser itself (ranges, unknown options, missing arguments) follow the same
    contract as every input error: exit 2, one ``error:`` line naming the command and the option, no output."""
    monkeypatch.chdir(tmp_path)
    r = handcli_in_process(capsys, monkeypatch, *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], r.stderr
    assert args[0] in lines[0] and r.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_success_exits_0_in_process(capsys, monkeypatch):
    r = handcli_in_process(capsys, monkeypatch, "inspect", "--help")
    assert r.returncode == 0 and "Usage" in r.stdout
