"""``handcli grasp-eval`` on analytic shapes: a graspable box succeeds, a box wider than the 8 cm opening gets
no grasp, grasps through the hand are dropped; inputs from arguments, folders or stdin; outputs and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from trimesh.collision import CollisionManager
from typer.testing import CliRunner

from handcli.cli import app
from handcli.errors import InputError
from handcli.eval import gripper as gr


def run(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def box(extents, centre=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    m = trimesh.creation.box(extents=extents)
    m.apply_translation(centre)
    return m


def collides(mesh: trimesh.Trimesh, pose) -> bool:
    """Plain FCL test of the opened gripper (independent of the evaluator's collider)."""
    cm = CollisionManager()
    cm.add_object("m", mesh)
    return cm.in_collision_single(gr.gripper_mesh(), transform=np.asarray(pose))


@pytest.fixture()
def scene(tmp_path):
    """Reconstruction = GT: a 4 cm cube; a hand slab 5 mm above its top face blocks approaches from +z."""
    d = tmp_path / "mesh"
    d.mkdir()
    cube = box([0.04] * 3)
    hand = box([0.2, 0.2, 0.02], (0, 0, 0.035))
    cube.export(d / "object.ply")
    hand.export(d / "hand.ply")
    box([0.04] * 3).export(d / "scene.ply")
    cube.export(tmp_path / "gt_object.ply")
    hand.export(tmp_path / "gt_hand.ply")
    return d, tmp_path / "gt_object.ply", tmp_path / "gt_hand.ply", hand


def test_graspable_box_succeeds_and_summary_goes_to_stdout(scene):
    d, gt_obj, _, _ = scene
    res = run("grasp-eval", d / "object.ply", "--gt-object", gt_obj, "--samples", 300, "--top-k", 20)
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["avoid"] == "none" and s["hand"] is None
    assert s["num_evaluated"] == 20 and s["num_proposals"] >= 20
    assert s["success_ratio"] >= 0.9 and s["num_success"] == round(s["success_ratio"] * 20)


def test_box_wider_than_the_opening_fails(tmp_path):
    big = box([0.12] * 3)
    big.export(tmp_path / "object.ply")
    big.export(tmp_path / "gt.ply")
    res = run("grasp-eval", tmp_path / "object.ply", "--gt-object", tmp_path / "gt.ply", "--samples", 300)
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["num_proposals"] == 0 and s["success_ratio"] == 0.0


def test_grasps_through_the_hand_are_dropped(tmp_path, scene):
    d, gt_obj, gt_hand, hand = scene
    out = tmp_path / "free" / "grasp.json"
    out.parent.mkdir()
    res = run("grasp-eval", d, "--gt-object", gt_obj, "--gt-hand", gt_hand, "--samples", 300, "-o", out)
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(out), str(out.with_name("grasps.png"))]
    doc = json.loads(out.read_text())
    assert doc["summary"]["avoid"] == "gt" and doc["grasps"]
    assert not any(collides(hand, g["pose"]) for g in doc["grasps"])
    assert all(g["success"] for g in doc["grasps"])  # the remaining grasps neither hit the cube nor the hand
    # without the filter some proposals go through the hand, and those fail against the GT hand
    out2 = tmp_path / "all.json"
    res = run("grasp-eval", d / "object.ply", "--gt-object", gt_obj, "--gt-hand", gt_hand, "--avoid", "none",
              "--samples", 300, "-o", out2, "--png", tmp_path / "all.png")
    assert res.exit_code == 0, res.output
    g2 = json.loads(out2.read_text())["grasps"]
    through = [g for g in g2 if collides(hand, g["pose"])]
    assert through and not any(g["success"] for g in through)
    assert json.loads(out2.read_text())["summary"]["success_ratio"] < 1.0
    png = (tmp_path / "all.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_paths_from_stdin_and_scene_ply_is_ignored(scene):
    d, gt_obj, gt_hand, _ = scene
    stdin = "\n".join(str(d / n) for n in ("hand.ply", "object.ply", "scene.ply")) + "\n"
    res = run("grasp-eval", "--gt-object", gt_obj, "--gt-hand", gt_hand, "--avoid", "pred", "--samples", 200,
              input=stdin)
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["object"] == str(d / "object.ply") and s["hand"] == str(d / "hand.ply") and s["avoid"] == "pred"
    assert s["success_ratio"] > 0.5


def test_bad_inputs(tmp_path, scene):
    d, gt_obj, _, _ = scene
    res = run("grasp-eval", d / "hand.ply", "--gt-object", gt_obj)
    assert isinstance(res.exception, InputError) and "no object mesh" in str(res.exception)
    odd = tmp_path / "thing.ply"
    box([0.01] * 3).export(odd)
    res = run("grasp-eval", odd, "--gt-object", gt_obj)
    assert isinstance(res.exception, InputError) and res.exception.path == str(odd)
    assert "--object" in str(res.exception)
    res = run("grasp-eval", "--gt-object", gt_obj, input="")
    assert isinstance(res.exception, InputError) and "no meshes" in str(res.exception)
    res = run("grasp-eval", d / "object.ply", "--gt-object", gt_obj, "--avoid", "gt")
    assert isinstance(res.exception, InputError) and res.exception.field == "avoid"
    out = tmp_path / "g.json"
    out.write_text("{}")
    res = run("grasp-eval", d / "object.ply", "--gt-object", gt_obj, "-o", out)
    assert isinstance(res.exception, InputError) and "--force" in str(res.exception)
    assert out.read_text() == "{}"


def test_meshes_of_any_name_with_object_and_hand(tmp_path):
    """--object/--hand take any file name; without --gt-object the meshes are their own ground truth. A
    4x4x10 cm box on a hand slab is graspable, a 12 cm cube (wider than the 8 cm opening) is not."""
    hand = box([0.2, 0.2, 0.02], (0, 0, -0.065))  # a palm under the box, 5 mm below its bottom face
    hand.export(tmp_path / "my_hand.ply")
    box([0.04, 0.04, 0.10]).export(tmp_path / "box.ply")
    res = run("grasp-eval", "--object", tmp_path / "box.ply", "--hand", tmp_path / "my_hand.ply", "--samples", 300,
              "--top-k", 20, "-o", tmp_path / "grasp.json")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "grasp.json").read_text())
    s = doc["summary"]
    assert s["object"] == str(tmp_path / "box.ply") and s["hand"] == str(tmp_path / "my_hand.ply")
    assert s["avoid"] == "pred" and s["gt_object"] is None and any("itself" in n for n in s["notes"])
    assert s["num_evaluated"] > 0 and s["success_ratio"] >= 0.5
    assert not any(collides(hand, g["pose"]) for g in doc["grasps"])
    assert (tmp_path / "grasps.png").read_bytes()[:4] == b"\x89PNG"

    box([0.12] * 3).export(tmp_path / "cube.ply")
    res = run("grasp-eval", "--object", tmp_path / "cube.ply", "--samples", 300)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["success_ratio"] <= 0.1


def test_object_option_errors(tmp_path, scene):
    d, gt_obj, _, _ = scene
    res = run("grasp-eval", d / "object.ply", "--object", d / "object.ply")
    assert isinstance(res.exception, InputError) and res.exception.field == "object"
    res = run("grasp-eval", "--hand", d / "hand.ply")
    assert isinstance(res.exception, InputError) and "--object" in str(res.exception)
    res = run("grasp-eval", "--object", tmp_path / "nope.ply")
    assert isinstance(res.exception, InputError) and res.exception.path == str(tmp_path / "nope.ply")
    res = run("grasp-eval", "--object", d / "object.ply", "--gt-hand", d / "hand.ply")
    assert isinstance(res.exception, InputError) and res.exception.field == "gt_hand"
