"""``handcli eval`` on meshes: hand-computed Chamfer/F-score cases, GT from a cache frame or point files,
dispatch next to the renders-folder evaluation, and the semantic IoU of hand-object label maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from handcli.cli import app
from handcli.data.cache import CacheWriter, FrameRecord, HandRecord, ObjectRecord, ViewRecord
from handcli.errors import InputError
from handcli.eval.geometry_eval import cache_gt_meshes, cache_gt_points, collect_mesh_paths
from handcli.eval.renders_eval import view_semantic_iou

R = 0.05
GAP = 0.007


def fibonacci_sphere(n: int, r: float, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5 ** 0.5) * i
    p = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    return r * p + np.asarray(centre)


def run(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


@pytest.fixture()
def spheres(tmp_path):
    """Predicted object = sphere of radius R; GT object points on the concentric sphere R + 7 mm."""
    d = tmp_path / "meshes"
    d.mkdir()
    trimesh.creation.icosphere(subdivisions=4, radius=R).export(d / "object.ply")
    hand = trimesh.creation.icosphere(subdivisions=3, radius=0.02)
    hand.apply_translation([0.2, 0, 0])
    hand.export(d / "hand.ply")
    gt_obj = tmp_path / "gt_object.xyz"
    np.savetxt(gt_obj, fibonacci_sphere(20000, R + GAP))
    gt_hand = tmp_path / "gt_hand.ply"
    trimesh.PointCloud(hand.vertices).export(gt_hand)
    return d, gt_obj, gt_hand, hand


def test_concentric_spheres_through_the_cli(tmp_path, spheres):
    d, gt_obj, gt_hand, hand = spheres
    out = tmp_path / "metrics.json"
    res = run("eval", d, "-o", out, "--gt-object", gt_obj, "--gt-hand", gt_hand)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(out)
    doc = json.loads(out.read_text())
    assert doc["schema"] == "handcli.metrics.geometry/1"
    obj = doc["parts"]["object"]
    # every NN distance is ~7 mm both ways: mean 7 mm, paper CD = 2 * (7e-3)^2 * 1000 = 0.098
    assert obj["cd_mean_mm"] == pytest.approx(7.0, abs=0.25)
    assert obj["cd_paper_x1000"] == pytest.approx(2 * GAP ** 2 * 1000, rel=0.08)
    assert obj["fscore@5mm"] == 0.0 and obj["fscore@10mm"] == 1.0
    assert obj["num_gt"] == obj["num_pred"] == 20000
    h = doc["parts"]["hand"]  # the GT hand points are the predicted mesh's vertices
    assert h["fscore@5mm"] == 1.0 and h["cd_mean_mm"] < 2.0  # below the ~3 mm vertex spacing
    sc = doc["parts"]["scene"]
    assert sc["num_gt"] == 20000 + len(hand.vertices)
    assert "concatenated" in doc["ground_truth"]["scene_prediction"]
    assert "squared metres ×1000" in doc["conventions"]["cd_paper_x1000"]


def test_scene_mesh_is_used_when_given_and_empty_parts_fail(tmp_path, spheres):
    d, gt_obj, gt_hand, _ = spheres
    trimesh.creation.icosphere(subdivisions=4, radius=R).export(d / "scene.ply")
    (d / "hand.ply").write_bytes(trimesh.Trimesh().export(file_type="ply"))  # an empty reconstruction
    out = tmp_path / "m.json"
    assert run("eval", d / "object.ply", d / "hand.ply", d / "scene.ply", "-o", out, "--gt-object", gt_obj,
               "--gt-hand", gt_hand).exit_code == 0
    doc = json.loads(out.read_text())
    assert doc["parts"]["hand"]["failed"] and doc["parts"]["hand"]["cd_paper_x1000"] == 10000.0
    assert doc["parts"]["hand"]["fscore@10mm"] == 0.0
    assert doc["ground_truth"]["scene_prediction"] == "the given scene mesh"
    assert not doc["parts"]["scene"]["failed"]


def test_mesh_names_and_missing_ground_truth_are_input_errors(tmp_path, spheres):
    d, gt_obj, _, _ = spheres
    odd = tmp_path / "thing.ply"
    trimesh.creation.box().export(odd)
    res = run("eval", odd, "-o", tmp_path / "m.json", "--gt-object", gt_obj)
    assert isinstance(res.exception, InputError) and "which part" in str(res.exception)
    res = run("eval", d, "-o", tmp_path / "m.json")
    assert isinstance(res.exception, InputError) and "ground truth" in str(res.exception)
    with pytest.raises(InputError, match="not found"):
        collect_mesh_paths([tmp_path / "nope.ply"])
    assert not (tmp_path / "m.json").exists()


# ------------------------------------------------------------------------------------- GT from a cache


@pytest.fixture()
def ho_cache(tmp_path):
    """A one-frame hand-object cache written directly: a left 'hand' (sphere vertices) and a box object."""
    hand_v = fibonacci_sphere(200, 0.02, (0.1, 0.0, 0.5))
    hull = trimesh.convex.convex_hull(hand_v)
    obj = trimesh.creation.box(extents=[0.04, 0.06, 0.08])
    pts = trimesh.sample.sample_surface(obj, 500, seed=1)[0]
    pose = np.eye(4)
    pose[:3, :3] = trimesh.transformations.rotation_matrix(0.3, [0, 0, 1])[:3, :3]
    pose[:3, 3] = [0.02, 0.01, 0.55]
    path = tmp_path / "ho.h5"
    hm = {"faces": hull.faces, "weights": np.ones((len(hand_v), 16)) / 16, "parents": np.arange(16) - 1}
    w = CacheWriter(path, dataset="dexycb", scale=1.0, config={}, inputs={}, hand_models={"left": hm, "right": hm},
                    objects=True)
    w.add_object_mesh("003_cracker_box", obj.vertices, obj.faces, pts)
    cam = w.add_camera("836212060125", 0, np.array([[100.0, 0, 16], [0, 100, 16], [0, 0, 1]]), np.eye(4), 32, 32)
    posed = trimesh.transform_points(obj.vertices, pose)
    rec = FrameRecord("f0", "train", 0, "s", 0, hands={"left": HandRecord(np.zeros((21, 3)), np.ones(21, bool),
                                                                          None, hand_v)},
                      object=ObjectRecord("003_cracker_box", pose, np.stack([posed.min(0), posed.max(0)])))
    w.add_frame(rec, [ViewRecord(cam, np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8),
                                 np.array([0.3, 0.8]), np.array([0, 0, 31, 31]))])
    w.close()
    return path, hand_v, obj, pts, pose, hull


def test_ground_truth_from_a_cache_frame(tmp_path, ho_cache):
    path, hand_v, obj, pts, pose, hull = ho_cache
    gt, desc = cache_gt_points(path, 0)
    np.testing.assert_allclose(gt["hand"], hand_v, atol=1e-6)
    np.testing.assert_allclose(gt["object"], trimesh.transform_points(pts, pose), atol=1e-6)
    assert "500 points" in desc["object"]
    meshes = cache_gt_meshes(path, 0)
    assert meshes["object"].volume == pytest.approx(0.04 * 0.06 * 0.08, rel=1e-4)
    np.testing.assert_allclose(meshes["object"].centroid, pose[:3, 3], atol=1e-6)
    # the GT meshes themselves as predictions score (near) perfectly; the object moved by 3 cm does not
    d = tmp_path / "pred"
    d.mkdir()
    meshes["hand"].export(d / "left.ply")
    meshes["object"].export(d / "object.ply")
    out = tmp_path / "m.json"
    res = run("eval", d, path, "--frame", 0, "-o", out)
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["inputs"]["frame"] == 0 and set(doc["parts"]) == {"hand", "object", "scene"}
    # two samplings of one surface (500 points on 0.021 m²: ~6.5 mm apart) are a few mm from each other
    assert doc["parts"]["object"]["fscore@10mm"] > 0.97 and doc["parts"]["object"]["cd_mean_mm"] < 4.0
    assert doc["parts"]["hand"]["fscore@10mm"] > 0.97
    moved = meshes["object"].copy()
    moved.apply_translation([0.03, 0, 0])
    moved.export(d / "object.ply")
    res = run("eval", d, path, "--frame", 0, "-o", out, "--force")
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["parts"]["object"]["fscore@10mm"] < 0.5
    # --frame is required with a cache, and must exist
    res = run("eval", d, path, "-o", tmp_path / "x.json")
    assert isinstance(res.exception, InputError) and res.exception.field == "frame"
    res = run("eval", d, path, "--frame", 3, "-o", tmp_path / "x.json")
    assert isinstance(res.exception, InputError) and "outside" in str(res.exception)


def test_semantic_iou_of_hand_object_label_maps():
    """Cache labels (left hand = 2, object = 3) against hand-computed per-class IoUs, mean over 3 classes."""
    gt = np.zeros((4, 4), np.uint8)
    gt[0, :2] = 2  # hand: 2 px
    gt[2:, 2:] = 3  # object: 4 px
    pred = gt.copy()
    pred[0, 1] = 0  # a hand pixel missed
    pred[1, 3] = 3  # an extra object pixel
    iou, n = view_semantic_iou(pred, gt)
    bg = 9 / 11  # |P∩G| = 9, |P∪G| = 11
    hand = 1 / 2
    objc = 4 / 5
    assert n == 3 and iou == pytest.approx(100 * (bg + hand + objc) / 3)
