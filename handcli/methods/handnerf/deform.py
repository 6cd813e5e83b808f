"""Per-frame hand geometry for the pose-driven deformation field (HandNeRF, Guo §3.2).

For every (frame, hand) the nearest-face skinning weights and the distance to the posed mesh are
precomputed on a regular grid over the padded mesh box (as the official code does) and sampled
trilinearly at run time; the joint transforms of the observed pose and of the canonical pose turn
weights into the inverse-LBS warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from handcli.hand.lbs import inverse_lbs, joint_transforms, nearest_face_weights
from handcli.hand.model import HandModel


@dataclass
class HandGeometry:
    """One hand in one frame. Grid channels: 16 skinning weights, then the distance to the mesh."""

    side: str
    box_min: Tensor  # (3,) padded world box
    box_max: Tensor  # (3,)
    grid: Tensor  # (17, Z, Y, X)
    A_pose: Tensor  # (16, 4, 4) rest -> observed pose (no translation)
    A_can: Tensor  # (16, 4, 4) rest -> canonical pose
    trans: Tensor  # (3,)
    pose: Tensor  # (48,) absolute axis-angle
    wrist: Tensor  # (3,) world position of the wrist joint

    def to(self, device) -> "HandGeometry":
        return HandGeometry(self.side, *(getattr(self, k).to(device) for k in
                                         ("box_min", "box_max", "grid", "A_pose", "A_can", "trans", "pose", "wrist")))


def canonical_pose(model: HandModel) -> Tensor:
    """(48,) the shared canonical pose: the model's mean (relaxed) pose, no global rotation."""
    return torch.cat([torch.zeros(3), model.hands_mean.float().cpu()])


def build_hand_geometry(model: HandModel, side: str, params: dict, verts: np.ndarray, voxel: float,
                        pad: float) -> HandGeometry:
    """Precompute one hand's deformation data.

    Args:
        model: the cache's hand model (absolute poses).
        params: {pose (48,), shape (10,), trans (3,)} model parameters that produce ``verts``.
        verts: (V, 3) posed world vertices.
        voxel: grid spacing in metres; pad: box padding in metres.
    """
    pose = torch.as_tensor(params["pose"], dtype=torch.float64)[None]
    shape = torch.as_tensor(params["shape"], dtype=torch.float64)[None]
    trans = torch.as_tensor(params["trans"], dtype=torch.float64)
    with torch.no_grad():
        rest_j = model.rest_joints(shape.float()).double()
        parents = model.parents
        A_pose = joint_transforms(pose, rest_j, parents)[0]
        A_can = joint_transforms(canonical_pose(model).double()[None], rest_j, parents)[0]
    bmin, bmax = verts.min(0) - pad, verts.max(0) + pad
    n = np.maximum(np.ceil((bmax - bmin) / voxel).astype(int) + 1, 2)
    axes = [np.linspace(bmin[i], bmax[i], n[i]) for i in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    pts = np.stack([xx, yy, zz], -1).reshape(-1, 3)
    W, dist = nearest_face_weights(pts, verts, model.faces, model.lbs_weights.cpu().numpy(), max_dist=pad + voxel)
    grid = np.concatenate([W, dist[:, None]], 1).T.reshape(17, n[2], n[1], n[0])
    wrist = (rest_j[0, 0] + trans).float()  # the root rotates about itself
    return HandGeometry(side, torch.as_tensor(bmin, dtype=torch.float32), torch.as_tensor(bmax, dtype=torch.float32),
                        torch.as_tensor(grid, dtype=torch.float32), A_pose.float(), A_can.float(), trans.float(),
                        pose[0].float(), wrist)


def _lookup(geom: HandGeometry, grid: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    u = 2.0 * (x - geom.box_min) / (geom.box_max - geom.box_min) - 1.0
    inside = (u.abs() <= 1.0).all(-1)
    g = F.grid_sample(grid[None], u.reshape(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border",
                      align_corners=True)[0, :, 0, 0]  # (C, M)
    return g, inside


def sample_distance(geom: HandGeometry, x: Tensor) -> Tensor:
    """Trilinear distance to the posed mesh (M,) at world points (M, 3); +inf outside the grid's box."""
    g, inside = _lookup(geom, geom.grid[16:], x)
    return torch.where(inside, g[0], torch.full_like(g[0], float("inf")))


def sample_grid(geom: HandGeometry, x: Tensor) -> tuple[Tensor, Tensor]:
    """Trilinear lookup of skinning weights (M, 16) and mesh distance (M,) at world points (M, 3).

    Points outside the grid's box get distance +inf.
    """
    g, inside = _lookup(geom, geom.grid, x)
    w = g[:16].T
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-8)
    d = torch.where(inside, g[16], torch.full_like(g[16], float("inf")))
    return w, d


def warp_to_canonical(geom: HandGeometry, x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Posed world points (M, 3) -> canonical points (M, 3) and the (M, 3, 3) linear part of the warp."""
    return inverse_lbs(x, weights, geom.A_pose, geom.trans, geom.A_can)
