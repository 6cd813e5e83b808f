"""Inverse LBS and nearest-face skinning weights (HandNeRF's deformation prior)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from handcli.hand.lbs import closest_point_on_triangles, inverse_lbs, joint_transforms, nearest_face_weights
from handcli.hand.model import HandModel
from handcli.methods.handnerf.deform import (
    build_hand_geometry,
    canonical_pose,
    sample_grid,
    warp_to_canonical,
)


def test_closest_point_on_triangle_hand_computed():
    a, b, c = np.array([[0.0, 0, 0]]), np.array([[1.0, 0, 0]]), np.array([[0.0, 1, 0]])
    cases = {  # point -> expected closest point
        (0.2, 0.2, 5.0): (0.2, 0.2, 0.0),  # above the face
        (-1.0, -1.0, 0.0): (0.0, 0.0, 0.0),  # vertex a region
        (2.0, -0.5, 1.0): (1.0, 0.0, 0.0),  # vertex b region
        (0.5, -2.0, 0.0): (0.5, 0.0, 0.0),  # edge ab
        (1.0, 1.0, 0.0): (0.5, 0.5, 0.0),  # edge bc
    }
    for p, q_exp in cases.items():
        q, bary = closest_point_on_triangles(np.array([p]), a, b, c)
        assert np.allclose(q[0], q_exp) and np.isclose(bary.sum(), 1.0)
        assert np.allclose(bary[0] @ np.stack([a[0], b[0], c[0]]), q[0])


@pytest.fixture(scope="module")
def posed():
    m = HandModel.load("right", flat_hand_mean=True)
    g = torch.Generator().manual_seed(0)
    pose = torch.randn(1, 48, generator=g) * 0.35
    shape = torch.randn(1, 10, generator=g) * 0.5
    trans = torch.tensor([[0.1, -0.2, 0.9]])
    with torch.no_grad():
        v = m(pose, shape, trans).vertices[0].double().numpy()
    return m, pose, shape, trans, v


def test_nearest_face_distance_matches_trimesh(posed):
    m, _, _, _, v = posed
    pts = v.mean(0) + np.random.default_rng(1).normal(0, 0.03, (500, 3))
    W, d = nearest_face_weights(pts, v, m.faces, m.lbs_weights.numpy())
    _, d_ref, _ = trimesh.proximity.closest_point(trimesh.Trimesh(v, m.faces, process=False), pts)
    assert np.mean(np.abs(d - d_ref) < 1e-6) > 0.99 and np.abs(d - d_ref).max() < 2e-3
    assert np.allclose(W.sum(1), 1.0, atol=1e-5)


def test_inverse_lbs_maps_posed_vertices_to_canonical(posed, device):
    m, pose, shape, trans, v = posed
    W, d = nearest_face_weights(v, v, m.faces, m.lbs_weights.numpy())
    assert d.max() < 1e-9
    rest_j = m.rest_joints(shape).double()
    A_pose = joint_transforms(pose.double(), rest_j, m.parents)[0]
    A_can = joint_transforms(canonical_pose(m).double()[None], rest_j, m.parents)[0]
    x_can, _ = inverse_lbs(torch.as_tensor(v, device=device), torch.as_tensor(W, device=device).double(),
                           A_pose.to(device), trans[0].double().to(device), A_can.to(device))
    assert x_can.device.type == device.type
    x_can = x_can.cpu()
    with torch.no_grad():
        v_can = m(canonical_pose(m)[None], shape).vertices[0].double()
    err_mm = (x_can - v_can).norm(dim=1).max().item() * 1000
    assert err_mm < 1.0, err_mm


def test_grid_lookup_approximates_the_exact_warp(posed, device):
    m, pose, shape, trans, v = posed
    params = {"pose": pose[0].numpy(), "shape": shape[0].numpy(), "trans": trans[0].numpy()}
    geom = build_hand_geometry(m, "right", params, v, voxel=0.004, pad=0.03).to(device)
    x = torch.as_tensor(v, dtype=torch.float32, device=device)
    w, dist = sample_grid(geom, x)
    assert w.device.type == dist.device.type == device.type
    assert float(dist.max()) < 0.004  # interpolated distance at the surface is within a voxel
    x_can, _ = warp_to_canonical(geom, x, w)
    assert x_can.device.type == device.type
    x_can = x_can.cpu()
    with torch.no_grad():
        v_can = m(canonical_pose(m)[None], shape).vertices[0]
    err = (x_can - v_can).norm(dim=1)
    assert float(err.median()) < 0.002 and float(err.mean()) < 0.004
    far = torch.as_tensor(v.mean(0) + np.array([[1.0, 0, 0]]), dtype=torch.float32, device=device)
    assert torch.isinf(sample_grid(geom, far)[1]).all()
