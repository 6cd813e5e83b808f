"""Pinhole camera helpers (OpenCV convention: x right, y down, z forward).

Pixel convention used everywhere in handcli: integer pixel coordinates are pixel
*centres* (column ``u``, row ``v``), so ``u = fx * x / z + cx`` is the continuous
coordinate of a point and ``round(u)`` the pixel it falls in.
"""

from __future__ import annotations

import numpy as np


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) intrinsic matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics after resizing an image by (sx, sy) with pixel-centre alignment.

    cv2.resize maps source centre ``u`` to ``(u + 0.5) * s - 0.5``; the same affine map is
    applied to the principal point, and the focal lengths scale by ``s``.
    """
    K2 = np.array(K, dtype=np.float64).copy()
    K2[0, 0] *= sx
    K2[0, 1] *= sx
    K2[1, 1] *= sy
    K2[0, 2] = (K2[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K2[1, 2] + 0.5) * sy - 0.5
    return K2


def world_to_cam_matrix(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(4, 4) matrix ``[R | t]`` mapping world points to camera coordinates."""
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = np.asarray(t).reshape(3)
    return M


def transform(M, points):
    """Apply a (4, 4) rigid transform to (..., 3) points (numpy arrays or torch tensors alike)."""
    return points @ M[:3, :3].T + M[:3, 3]


def project(points_cam, K, min_depth: float | None = None):
    """(..., 3) camera-frame points -> (..., 2) continuous pixel coordinates (u, v).

    The one 3D->pixel projection of handcli; numpy arrays and torch tensors alike (K: (3, 3) of the same
    kind). ``min_depth``: clamp z from below first (points behind or on the camera plane stay finite);
    without it z must not be 0.
    """
    z = points_cam[..., 2:3]
    if min_depth is not None:
        z = z.clip(min=min_depth)
    return points_cam[..., :2] / z @ K[:2, :2].T + K[:2, 2]


def world_to_pixels(points, K, world_to_cam, min_depth: float | None = None):
    """World points (..., 3) -> pixel coordinates (..., 2) and camera depth z (...,) (numpy or torch)."""
    cam = transform(world_to_cam, points)
    return project(cam, K, min_depth), cam[..., 2]


def camera_center(world_to_cam: np.ndarray) -> np.ndarray:
    """(3,) camera centre in world coordinates."""
    R, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    return -R.T @ t


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-camera rotation R (3, 3) of an OpenCV camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that should appear upwards in the image (image -y).
    """
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-8:
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=0)


def box_corners(box_min: np.ndarray, box_max: np.ndarray) -> np.ndarray:
    """(8, 3) corners of the axis-aligned box [box_min, box_max]."""
    return np.array([[x, y, z] for x in (box_min[0], box_max[0]) for y in (box_min[1], box_max[1])
                     for z in (box_min[2], box_max[2])], dtype=np.float64)


def box_near_far(box_min: np.ndarray, box_max: np.ndarray, center: np.ndarray) -> np.ndarray:
    """(2,) distance from ``center`` to the box (0 inside) and to its farthest corner."""
    near = np.linalg.norm(center - np.clip(center, box_min, box_max))
    far = np.linalg.norm(box_corners(box_min, box_max) - center, axis=1).max()
    return np.array([near, far], dtype=np.float32)


def box_2d(box_min: np.ndarray, box_max: np.ndarray, world_to_cam: np.ndarray, K: np.ndarray, width: int,
           height: int) -> np.ndarray:
    """(4,) x0, y0, x1, y1 of the projected box corners (depth clamped to 1 mm), clipped to the image."""
    uv = project(transform(world_to_cam, box_corners(box_min, box_max)), K, min_depth=1e-3)
    lo = np.clip(uv.min(0), 0, [width - 1, height - 1])
    hi = np.clip(uv.max(0), 0, [width - 1, height - 1])
    return np.concatenate([lo, hi]).astype(np.float32)
