"""Camera rays for pinhole cameras in the OpenCV convention (x right, y down, z forward).

Pixel coordinates: integer (u, v) = (column, row) is the *centre* of that pixel, so a camera point
(x, y, z) lands at u = fx*x/z + cx, v = fy*y/z + cy (no half-pixel shift anywhere in handcli).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def pixel_grid(height: int, width: int, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """All pixel centres of an image, row-major.

    Returns (H*W, 2) with columns (u, v) = (col, row); row r, column c is at index r*W + c.
    """
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


def _camera_dirs(K: Tensor, pix: Tensor) -> Tensor:
    """Unnormalised camera-frame directions K^-1 [u, v, 1]: (..., N, 3) with z = 1."""
    pix_h = torch.cat([pix, torch.ones_like(pix[..., :1])], dim=-1)
    return pix_h @ torch.linalg.inv(K).transpose(-1, -2)


def camera_rays(K: Tensor, world_to_cam: Tensor, pix: Tensor) -> tuple[Tensor, Tensor]:
    """World-space rays through pixel centres.

    K: (3, 3) or (B, 3, 3) intrinsics; world_to_cam: (4, 4) or (B, 4, 4); pix: (N, 2) or (B, N, 2) as (u, v).
    Batch dimensions broadcast. Returns origins (..., N, 3) (the camera centre, repeated) and unit world
    directions (..., N, 3); distance t along a ray is in world units (metres).
    """
    pix = pix.to(K.dtype)
    d_cam = _camera_dirs(K, pix)
    R = world_to_cam[..., :3, :3]
    t = world_to_cam[..., :3, 3]
    # Row vectors: d_world = R^T d_cam  <=>  d_world^T = d_cam^T R.
    d_world = d_cam @ R
    d_world = d_world / torch.linalg.norm(d_world, dim=-1, keepdim=True)
    centre = -(R.transpose(-1, -2) @ t.unsqueeze(-1)).squeeze(-1)  # (..., 3)
    origins = centre.unsqueeze(-2).expand(d_world.shape)
    return origins, d_world


def pixel_radii(K: Tensor, world_to_cam: Tensor, pix: Tensor) -> Tensor:
    """Mip-NeRF cone base radius of each pixel's ray: radius = Δ·2/√12 (docs/formulas.md#mip-nerf-ipe).

    Δ is the distance between the unit direction of a pixel and the unit directions of its neighbours
    (u+1, v) and (u, v+1), computed analytically (no image grid needed). Mip-NeRF uses the neighbour along
    one image axis; we take the geometric mean of the two axes so non-square pixels get a cone of the same
    footprint area. With unit directions the cone radius at distance t is radius·t; for fx = fy = f at the
    principal point radius ≈ 2/(f·√12).

    Shapes as `camera_rays`; returns (..., N).
    """
    _, d = camera_rays(K, world_to_cam, pix)
    one_u = torch.tensor([1.0, 0.0], dtype=K.dtype, device=K.device)
    _, du = camera_rays(K, world_to_cam, pix.to(K.dtype) + one_u)
    _, dv = camera_rays(K, world_to_cam, pix.to(K.dtype) + one_u.flip(0))
    delta = torch.sqrt(torch.linalg.norm(du - d, dim=-1) * torch.linalg.norm(dv - d, dim=-1))
    return delta * (2.0 / math.sqrt(12.0))
