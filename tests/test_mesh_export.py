"""``handcli mesh``: one frame or a pose sequence (--frames) as PLY, OBJ or GLB, with a picture of the meshes
(a fake method with analytic surfaces stands in for a trained run)."""

from __future__ import annotations

import trimesh
from typer.testing import CliRunner

from handcli.cli import app
from handcli.errors import InputError


class _Cache:
    num_frames = 5
    path = "cache.h5"


class Boxes:
    """A registered method whose frame f has a right-hand box of height 2 + f cm and a left-hand sphere."""

    cache = _Cache()
    capabilities = frozenset({"mesh"})

    @classmethod
    def from_run(cls, run, cache, device):
        return cls()

    def extract_meshes(self, frame, resolution=128):
        box = trimesh.creation.box(extents=[0.02, 0.03, 0.02 + 0.01 * frame])
        ball = trimesh.creation.icosphere(radius=0.015)
        ball.apply_translation([0.05, 0, 0])
        return {"right": box, "left": ball}


class OneBox(Boxes):
    def extract_meshes(self, frame, resolution=128):
        return {"hand": trimesh.creation.box(extents=[0.02, 0.03, 0.04])}


def _run(tmp_path, monkeypatch, cls="Boxes"):
    from handcli import registry
    from handcli.methods.base import write_run_config
    from handcli.methods.handocc.model import PRESETS

    monkeypatch.setitem(registry.METHODS, "boxes", f"{__name__}:{cls}")
    run = tmp_path / f"run_{cls}"
    run.mkdir()
    write_run_config(run, "boxes", "fast", PRESETS["fast"], {"cache": "x.h5"}, 0, "test")
    return run


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_pose_sequence_in_each_format(tmp_path, monkeypatch):
    run = _run(tmp_path, monkeypatch)
    for fmt in ("ply", "obj", "glb"):
        out = tmp_path / f"seq_{fmt}"
        res = invoke("mesh", run, "--frames", "1-3", "--format", fmt, "-o", out)
        assert res.exit_code == 0, res.output
        expect = [out / f"frame{f:04d}" / f"{p}.{fmt}" for f in (1, 2, 3) for p in ("right", "left")]
        assert res.stdout.split() == [str(p) for p in expect]
        for f in (1, 2, 3):
            loaded = trimesh.load(out / f"frame{f:04d}" / f"right.{fmt}", force="mesh")
            assert abs(loaded.extents[2] - (0.02 + 0.01 * f)) < 1e-6  # each frame's own surface
        png = (out / "mesh.png").read_bytes()
        assert png[:4] == b"\x89PNG"


def test_single_frame_writes_a_picture(tmp_path, monkeypatch):
    import cv2

    run = _run(tmp_path, monkeypatch)
    res = invoke("mesh", run, "--frame", 2, "-o", tmp_path / "m")
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(tmp_path / "m" / "right.ply"), str(tmp_path / "m" / "left.ply")]
    img = cv2.imread(str(tmp_path / "m" / "mesh.png"))
    assert img.shape[1] == 3 * img.shape[0]  # three views
    assert (img < 200).any(axis=2).mean() > 0.02  # the meshes were drawn on the white background
    one = _run(tmp_path, monkeypatch, "OneBox")
    res = invoke("mesh", one, "--frame", 0, "--format", "glb", "-o", tmp_path / "hand.glb")
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(tmp_path / "hand.glb")] and (tmp_path / "hand.png").is_file()
    res = invoke("mesh", one, "--frame", 0, "--format", "glb", "-o", tmp_path / "hand.glb")
    assert isinstance(res.exception, InputError) and "--force" in str(res.exception)


def test_mesh_option_errors(tmp_path, monkeypatch):
    run = _run(tmp_path, monkeypatch)
    cases = [(["--frame", 0, "--frames", "0-1"], "frame"), ([], "frame"), (["--frame", 0, "--format", "stl"], "format"),
             (["--frames", "3-9"], "--frames")]
    for args, field in cases:
        res = invoke("mesh", run, *args, "-o", tmp_path / "bad")
        assert isinstance(res.exception, InputError) and res.exception.field == field, (args, res.exception)
        assert not (tmp_path / "bad").exists()
    res = invoke("mesh", run, "--frames", "0-1", "-o", tmp_path / "x.ply")
    assert isinstance(res.exception, InputError) and "folder" in str(res.exception)
