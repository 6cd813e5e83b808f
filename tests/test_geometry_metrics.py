"""Chamfer distance and F-score against hand-computed values on point sets with known nearest neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from handcli.errors import InputError
from handcli.eval.geometry import (
    chamfer_and_fscore,
    load_mesh,
    load_points,
    mesh_metrics,
    sample_points,
    scene_metrics,
)


def _grid(spacing: float, n: int = 6) -> np.ndarray:
    """(n³, 3) cubic grid: every point's nearest other grid point is ``spacing`` away."""
    r = np.arange(n) * spacing
    return np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)


def test_identical_sets_score_perfectly():
    pts = _grid(0.01)
    m = chamfer_and_fscore(pts, pts)
    assert m["cd_paper_x1000"] == 0.0 and m["cd_mean_mm"] == 0.0
    assert m["fscore@5mm"] == 1.0 and m["fscore@10mm"] == 1.0
    assert m["failed"] is False


@pytest.mark.parametrize(
    "shift_mm, f5, f10",
    [(3.0, 1.0, 1.0), (7.0, 0.0, 1.0), (20.0, 0.0, 0.0)],
)
def test_shifted_sparse_grid_has_exact_distances(shift_mm, f5, f10):
    # spacing 50 mm > 2 × shift: every nearest neighbour is the shifted copy, at exactly shift_mm
    gt = _grid(0.05)
    pred = gt + [shift_mm / 1000, 0, 0]
    m = chamfer_and_fscore(pred, gt)
    assert m["cd_mean_mm"] == pytest.approx(shift_mm, rel=1e-9)
    assert m["cd_paper_x1000"] == pytest.approx(2 * (shift_mm / 1000) ** 2 * 1000, rel=1e-9)
    assert m["cd_m2"] == pytest.approx(2 * (shift_mm / 1000) ** 2, rel=1e-9)
    assert m["fscore@5mm"] == f5 and m["fscore@10mm"] == f10


def test_threshold_is_strict_like_the_reference():
    gt = _grid(0.05)
    m = chamfer_and_fscore(gt + [0.0, 0.0, 0.0050001], gt)
    assert m["fscore@5mm"] == 0.0 and m["fscore@10mm"] == 1.0


def test_outliers_lower_precision_only():
    gt = _grid(0.01, n=10)[:100]  # x varies slowest: a 10 x 10 grid in the plane x = 0
    assert np.ptp(gt[:, 0]) == 0.0
    outliers = gt[:25] + [1.0, 0.0, 0.0]  # nearest GT point is the one 1 m below (plane is x = 0)
    m = chamfer_and_fscore(np.concatenate([gt, outliers]), gt)
    assert m["precision@5mm"] == pytest.approx(100 / 125)
    assert m["recall@5mm"] == 1.0
    assert m["fscore@5mm"] == pytest.approx(2 * 0.8 / 1.8)
    assert m["cd_m2"] == pytest.approx(25 * 1.0 / 125)  # gt->pred is 0
    assert m["cd_mean_mm"] == pytest.approx(0.5 * 25 / 125 * 1000)


def test_concentric_sphere_vertices_are_3mm_apart():
    inner = trimesh.creation.icosphere(subdivisions=5, radius=0.1)
    outer = trimesh.creation.icosphere(subdivisions=5, radius=0.103)
    m = chamfer_and_fscore(outer.vertices, inner.vertices)  # same directions: NN is radial, 3 mm
    assert m["cd_mean_mm"] == pytest.approx(3.0, abs=1e-6)
    assert m["cd_paper_x1000"] == pytest.approx(2 * 9e-6 * 1000, rel=1e-5)
    assert m["fscore@5mm"] == 1.0


def test_mesh_metrics_samples_as_many_points_as_gt():
    inner = trimesh.creation.icosphere(subdivisions=5, radius=0.1)
    outer = trimesh.creation.icosphere(subdivisions=5, radius=0.103)
    m = mesh_metrics(outer, inner.vertices, seed=3)
    assert m["num_pred"] == m["num_gt"] == len(inner.vertices)
    # every surface point of the outer sphere is >= 3 mm from the inner one; lateral sampling gaps add a little
    assert 3.0 < m["cd_mean_mm"] < 3.6
    assert m["precision@5mm"] == 1.0 and m["fscore@10mm"] == 1.0
    assert m == mesh_metrics(outer, inner.vertices, seed=3)  # seeded
    np.testing.assert_array_equal(sample_points(outer, 50, seed=1), sample_points(outer, 50, seed=1))


@pytest.mark.parametrize("empty", [None, trimesh.Trimesh()])
def test_empty_mesh_scores_the_paper_penalty(empty):
    m = mesh_metrics(empty, _grid(0.01))
    assert m["failed"] is True
    assert m["cd_paper_x1000"] == 10000.0 and m["cd_m2"] == 10.0
    assert m["fscore@5mm"] == 0.0 and m["fscore@10mm"] == 0.0
    assert m["cd_mean_mm"] is None


def test_scene_metrics_concatenates_parts():
    hand = trimesh.creation.icosphere(subdivisions=4, radius=0.04)
    obj = trimesh.creation.box(extents=[0.05, 0.05, 0.05])
    obj.apply_translation([0.3, 0, 0])
    gt = {"hand": hand.vertices, "object": sample_points(obj, 500, seed=0)}
    res = scene_metrics({"hand": hand, "object": None}, gt, seed=0)
    assert set(res) == {"hand", "object", "scene"}
    assert res["object"]["failed"] and not res["hand"]["failed"]
    assert res["hand"]["fscore@10mm"] == 1.0
    scene = res["scene"]
    n_hand, n_obj = len(hand.vertices), 500
    assert scene["num_gt"] == n_hand + n_obj
    # the hand is perfect, the object missing and 26 cm away: recall = hand share, precision = 1
    assert scene["precision@10mm"] == 1.0
    assert scene["recall@10mm"] == pytest.approx(n_hand / (n_hand + n_obj))
    full = scene_metrics({"hand": hand, "object": obj}, gt, seed=0)
    assert full["scene"]["fscore@10mm"] == 1.0 and full["object"]["fscore@10mm"] == 1.0


def test_bad_points_are_rejected():
    with pytest.raises(ValueError):
        chamfer_and_fscore(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError):
        chamfer_and_fscore(np.full((4, 3), np.nan), np.zeros((4, 3)))


def test_loaders(tmp_path):
    box = trimesh.creation.box(extents=[0.1, 0.1, 0.1])
    box.export(tmp_path / "box.ply")
    mesh = load_mesh(tmp_path / "box.ply")
    assert mesh is not None and len(mesh.faces) == 12
    np.testing.assert_allclose(load_points(tmp_path / "box.ply"), box.vertices)
    np.save(tmp_path / "p.npy", box.vertices)
    np.testing.assert_allclose(load_points(tmp_path / "p.npy"), box.vertices)
    trimesh.PointCloud(box.vertices).export(tmp_path / "empty.ply")
    assert load_mesh(tmp_path / "empty.ply") is None  # no faces: a failed reconstruction
    with pytest.raises(InputError):
        load_mesh(tmp_path / "missing.ply")
    (tmp_path / "bad.ply").write_text("not a ply")
    with pytest.raises(InputError):
        load_mesh(tmp_path / "bad.ply")
