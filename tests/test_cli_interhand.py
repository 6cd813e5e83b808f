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


@pytest.mark.parametrize("breaker", [_break_missing, _break_truncated, _break_image, _break_camera, _break_nan])
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
