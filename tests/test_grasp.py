"""Gripper geometry, the antipodal planner and the grasp-success test on analytic shapes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import trimesh
from trimesh.collision import CollisionManager

from handcli.eval import gripper as gr
from handcli.eval.grasp import (
    Grasp,
    GraspEvaluator,
    MeshCollider,
    evaluate_grasp,
    grasp_success_ratio,
    propose_antipodal_grasps,
    read_grasps,
    render_grasps_png,
    sample_cone,
    write_grasps,
)

MU = 0.5
ALPHA = np.arctan(MU)


def _cube(size: float, center=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    m = trimesh.creation.box(extents=[size] * 3)
    m.apply_translation(center)
    return m


def _fcl_collides(mesh: trimesh.Trimesh, pose: np.ndarray) -> bool:
    """Plain FCL test of the opened gripper (independent of grasp.MeshCollider)."""
    manager = CollisionManager()
    manager.add_object("m", mesh)
    return manager.in_collision_single(gr.gripper_mesh(), transform=pose)


@pytest.fixture(scope="module")
def cube_grasps():
    cube = _cube(0.04)
    return cube, propose_antipodal_grasps(cube, n_samples=300, seed=0, max_checked=120)


# ------------------------------------------------------------------------------------------ gripper


def test_gripper_geometry_matches_contact_graspnet():
    boxes = gr.gripper_boxes(gr.MAX_OPENING)
    lo_l, hi_l = boxes["finger_left"]
    lo_r, hi_r = boxes["finger_right"]
    assert lo_l[0] == pytest.approx(0.04) and hi_r[0] == pytest.approx(-0.04)  # pads' inner faces at ±q
    assert hi_l[2] == pytest.approx(0.1122) and lo_l[2] == pytest.approx(0.0584)
    np.testing.assert_allclose(gr.pad_centres(0.08), [[0.04, 0, 0.1034], [-0.04, 0, 0.1034]])
    hull = trimesh.util.concatenate(list(gr.gripper_meshes(0.08).values())).convex_hull
    control = np.array(
        [[0.05269, 0, 0.0753], [-0.05269, 0, 0.0753], [0.05269, 0, 0.10527], [-0.05269, 0, 0.10527]]
    )
    assert hull.contains(control).all()
    # the closing region lies between the pads; only its base (z < 0.066) overlaps the palm, as on the robot
    lo, hi = gr.closing_region_bounds(0.06)
    inner = np.random.default_rng(0).uniform(lo + 1e-6, hi - 1e-6, size=(4000, 3))
    for name, (blo, bhi) in gr.gripper_boxes(0.06).items():
        hit = gr.points_in_box(inner, blo + 1e-9, bhi - 1e-9)
        assert name == "palm" or not hit.any(), name
        assert (inner[hit, 2] < gr.PALM_TOP_Z).all()
    with pytest.raises(ValueError):
        gr.gripper_boxes(0.1)


def test_grasp_pose_places_pad_midpoint_on_contact_centre():
    c = np.array([0.1, -0.2, 0.5])
    b = np.array([0.0, 1.0, 0.0])
    a = np.array([0.3, 0.2, 1.0])  # not ⊥ b: the b component is removed
    T = gr.grasp_pose(c, b, a)
    R = T[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R[:, 0], b)
    a_perp = np.array([0.3, 0.0, 1.0]) / np.linalg.norm([0.3, 0.0, 1.0])
    np.testing.assert_allclose(R[:, 2], a_perp)
    np.testing.assert_allclose(T @ [0, 0, gr.PAD_DEPTH, 1], [*c, 1], atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], c - 0.1034 * a_perp)
    batched = gr.grasp_poses(c[None], b[None], a[None])
    np.testing.assert_allclose(batched[0], T, atol=1e-12)
    with pytest.raises(ValueError):
        gr.grasp_pose(c, b, b)


def test_sample_cone_is_uniform_on_the_cap():
    rng = np.random.default_rng(0)
    axis = np.tile([[0.0, 0.0, -1.0]], (20000, 1))
    d = sample_cone(axis, ALPHA, rng)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    cos = -d[:, 2]
    assert cos.min() >= np.cos(ALPHA) - 1e-12
    assert cos.mean() == pytest.approx((1 + np.cos(ALPHA)) / 2, abs=2e-3)  # cos θ is uniform on a cap
    assert np.abs(d[:, :2].mean(0)).max() < 5e-3  # no azimuth bias


# ------------------------------------------------------------------------------------------ planner


def _face_normal_of(point: np.ndarray, half: float) -> np.ndarray:
    """Outward normal of the axis-aligned cube face that ``point`` lies on."""
    k = int(np.argmax(np.abs(point)))
    assert abs(abs(point[k]) - half) < 1e-9
    n = np.zeros(3)
    n[k] = np.sign(point[k])
    return n


def test_planner_on_a_graspable_cube(cube_grasps):
    cube, grasps = cube_grasps
    assert len(grasps) > 20
    scores = [g.score for g in grasps]
    assert scores == sorted(scores, reverse=True)
    for g in grasps[:40]:
        c1, c2 = g.contacts
        b = g.pose[:3, 0]
        assert g.width == pytest.approx(np.linalg.norm(c2 - c1)) and g.width <= 0.08
        np.testing.assert_allclose(b, (c2 - c1) / g.width, atol=1e-9)
        # antipodal: the closing axis lies in both friction cones (independent face normals)
        ang1 = np.arccos(np.clip(b @ -_face_normal_of(c1, 0.02), -1, 1))
        ang2 = np.arccos(np.clip(b @ _face_normal_of(c2, 0.02), -1, 1))
        assert max(ang1, ang2) <= ALPHA + 1e-9
        assert g.score == pytest.approx(ALPHA - max(ang1, ang2), abs=1e-9)
        np.testing.assert_allclose(g.pose[:3, :3] @ [0, 0, gr.PAD_DEPTH] + g.pose[:3, 3], (c1 + c2) / 2)
        assert not _fcl_collides(cube, g.pose)


def test_cube_grasps_succeed_against_the_same_cube(cube_grasps):
    cube, _ = cube_grasps
    res = grasp_success_ratio(cube, None, cube, None, top_k=30, n_samples=300, n_points=4000, max_checked=120)
    assert res["num_evaluated"] == 30 and res["num_proposals"] >= 30
    assert res["success_ratio"] > 0.5
    assert res["num_success"] == sum(g["success"] for g in res["grasps"])
    json.dumps(res)  # JSON-ready


def test_wide_cube_has_no_antipodal_grasp():
    big = _cube(0.12)
    assert propose_antipodal_grasps(big, n_samples=400, seed=0) == []
    res = grasp_success_ratio(big, None, big, None, n_samples=400)
    assert res["num_proposals"] == 0 and res["success_ratio"] == 0.0 and res["grasps"] == []


def test_inside_out_mesh_gives_the_same_grasps():
    cube = _cube(0.04)
    flipped = cube.copy()
    flipped.invert()
    assert flipped.volume < 0
    grasps = propose_antipodal_grasps(flipped, n_samples=200, seed=1, max_checked=50)
    assert len(grasps) > 20
    for g in grasps:  # antipodal with respect to the true outward normals
        c1, c2 = g.contacts
        b = g.pose[:3, 0]
        assert b @ -_face_normal_of(c1, 0.02) >= np.cos(ALPHA) - 1e-9
        assert b @ _face_normal_of(c2, 0.02) >= np.cos(ALPHA) - 1e-9


def test_grasps_through_the_hand_are_dropped(cube_grasps):
    cube, free = cube_grasps
    hand = trimesh.creation.box(bounds=[[0.025, -0.06, -0.06], [0.07, 0.06, 0.06]])  # slab beside +x face
    kept = propose_antipodal_grasps(cube, n_samples=300, seed=0, max_checked=120, avoid=[hand])
    hits_hand = [_fcl_collides(hand, g.pose) for g in free]
    assert any(hits_hand)  # without the filter, some grasps go through the slab
    assert 0 < len(kept) < len(free)
    assert not any(_fcl_collides(hand, g.pose) for g in kept)
    # a grasp closing along x would put a finger in the slab
    assert all(abs(g.pose[0, 0]) < 0.9 for g in kept)
    assert len(kept) == len(free) - sum(hits_hand)


def test_empty_prediction_gives_no_grasps():
    assert propose_antipodal_grasps(None) == []
    assert propose_antipodal_grasps(trimesh.Trimesh()) == []
    res = grasp_success_ratio(None, None, _cube(0.04))
    assert res["num_evaluated"] == 0 and res["success_ratio"] == 0.0


# ------------------------------------------------------------------------------------------ success test


def _top_grasp(center=(0.0, 0.0, 0.0), approach=(0.0, 0.0, 1.0)) -> Grasp:
    """Closing along world x, approaching along ``approach``, pads centred on ``center``."""
    return Grasp(pose=gr.grasp_pose(np.asarray(center), [1.0, 0.0, 0.0], approach), width=0.04, score=0.4)


def test_centred_grasp_succeeds_and_counts_enveloped_points():
    cube = _cube(0.04)
    r = evaluate_grasp(_top_grasp(), cube, n_points=10000)
    assert r["success"] and not r["collides"] and r["rays_hit"] == [True, True] and r["force_closure"]
    # closing box in world: |x| <= 0.04, |y| <= 0.01, z in [-0.045, 0.0088]. Cube surface inside it:
    # faces x = ±0.02 (0.02 × 0.0288 each) and the face z = −0.02 (0.04 × 0.02) of 6 × 0.04² in all
    frac = (2 * 0.02 * 0.0288 + 0.04 * 0.02) / (6 * 0.04**2)
    sigma = np.sqrt(10000 * frac * (1 - frac))
    assert abs(r["enveloped_points"] - 10000 * frac) < 5 * sigma


def test_gripper_intersecting_the_object_fails():
    cube = _cube(0.04)
    deep = _top_grasp(center=(0.0, 0.0, 0.06))  # palm top at z = 0.06 − 0.0374: inside the cube
    r = evaluate_grasp(deep, cube)
    assert r["collides"] and not r["success"]
    offset = _top_grasp(center=(0.035, 0.0, 0.0))  # the left finger cuts through the cube
    r = evaluate_grasp(offset, cube)
    assert r["collides"] and not r["success"]


def test_far_grasp_is_not_enveloped():
    r = evaluate_grasp(_top_grasp(center=(0.5, 0.0, 0.0)), _cube(0.04))
    assert not r["collides"] and r["enveloped_points"] == 0 and r["rays_hit"] == [False, False]
    assert not r["success"]


def test_shallow_grasp_envelops_but_fails_the_ray_test():
    # a plate between the fingers but below the pad centres (gripper z in [0.07, 0.095], pads at 0.1034)
    plate = trimesh.creation.box(
        bounds=[[-0.02, -0.02, 0.07 - gr.PAD_DEPTH], [0.02, 0.02, 0.095 - gr.PAD_DEPTH]]
    )
    r = evaluate_grasp(_top_grasp(), plate)
    assert not r["collides"] and r["enveloped_points"] >= 100 and r["rays_hit"] == [False, False]
    assert not r["success"]
    assert evaluate_grasp(_top_grasp(), plate, check_rays=False)["success"]


def test_touching_the_gt_hand_fails():
    cube = _cube(0.04)
    hand = trimesh.creation.box(bounds=[[0.045, -0.03, -0.03], [0.08, 0.03, 0.03]])  # where the +x finger is
    r = evaluate_grasp(_top_grasp(), cube, gt_hand=hand)
    assert r["collides_hand"] and not r["collides"] and not r["success"]


def test_containment_counts_as_collision():
    # FCL reports no contact for a gripper fully inside a non-convex closed mesh (here a torus tube) ...
    tube = trimesh.creation.torus(0.5, 0.15, major_sections=64, minor_sections=32)
    pose = gr.grasp_pose(np.array([0.5, 0.0, 0.05]), [1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    assert not _fcl_collides(tube, pose)
    assert MeshCollider([tube]).collides(pose[None]).all()
    r = evaluate_grasp(Grasp(pose=pose, width=0.04, score=0.0), tube)
    assert r["collides"] and not r["success"]
    # ... or for a small non-convex object fully inside the palm
    ring = trimesh.creation.torus(0.006, 0.002)
    ring.apply_translation([0.0, 0.0, 0.02])
    assert not _fcl_collides(ring, np.eye(4))
    assert MeshCollider([ring]).collides(np.eye(4)[None]).all()


def test_shifted_reconstruction_scores_zero():
    gt = _cube(0.04)
    pred = _cube(0.04, center=(0.1, 0.0, 0.0))
    res = grasp_success_ratio(pred, None, gt, None, top_k=20, n_samples=200, n_points=3000, max_checked=60)
    assert res["num_evaluated"] == 20 and res["success_ratio"] == 0.0


def test_evaluator_batch_equals_single(cube_grasps):
    cube, grasps = cube_grasps
    ev = GraspEvaluator(cube, n_points=3000, seed=2)
    batch = ev.evaluate(grasps[:5])
    for g, r in zip(grasps[:5], batch):
        assert evaluate_grasp(g, cube, n_points=3000, seed=2) == r


# ------------------------------------------------------------------------------------------ outputs


def test_write_read_and_render(tmp_path, cube_grasps):
    cube, grasps = cube_grasps
    paths = write_grasps(grasps[:5], tmp_path / "grasps.json", mesh=cube, scene_path=tmp_path / "scene.glb")
    assert [p.name for p in paths] == ["grasps.json", "scene.glb"]
    back = read_grasps(tmp_path / "grasps.json")
    assert len(back) == 5
    np.testing.assert_allclose(back[0].pose, grasps[0].pose)
    scene = trimesh.load(tmp_path / "scene.glb")
    assert len(scene.geometry) == 6
    write_grasps(grasps[:2], tmp_path / "g2.json", mesh=cube, scene_path=tmp_path / "scene.ply")
    merged = trimesh.load(tmp_path / "scene.ply")
    assert len(merged.faces) == 12 + 2 * 4 * 12
    with pytest.raises(Exception):
        write_grasps(grasps[:2], tmp_path / "g2.json")  # refuses to overwrite

    png = render_grasps_png(cube, [{**grasps[0].to_dict(), "success": True}], tmp_path / "g.png", size=128)
    img = cv2.imread(str(png))
    assert img.shape == (128, 256, 3)
    green = (img[..., 1] > 150) & (img[..., 2] < 120) & (img[..., 0] < 120)
    grey = (np.abs(img.astype(int) - img[..., :1]).max(-1) < 3) & (img[..., 0] < 240)
    assert green.sum() > 20 and grey.sum() > 200
