"""Franka Panda parallel-jaw gripper as a few boxes, in Contact-GraspNet's gripper frame.

Frame (NVlabs/contact_graspnet ``mesh_utils.PandaGripper``): origin at the hand's mounting flange, approach
axis +z, closing axis x, y = z × x. The fingers sit at x = ±q (q = opening / 2 ∈ [0, 0.04], so the maximum
opening is 8 cm), each finger pad's inner face on x = ±q, finger pad centres at (±q, 0, 0.1034), fingertips
at z = 0.1122.

The real meshes (``hand.stl``, ``finger.stl``) are approximated by axis-aligned boxes whose extents were
measured on those STL files (cross-sections at several heights):

| part | x (m) | y (m) | z (m) | real STL |
|---|---|---|---|---|
| ``body`` (lower housing) | ±0.101 | ±0.029 | [0, 0.040] | x −0.100…0.104, y ±0.031 (z=0) … ±0.023 (z=0.04) |
| ``palm`` (upper housing) | ±0.102 | ±0.0215 | [0.040, 0.066] | y ±0.023 (z=0.04) … ±0.016 (z=0.065), top 0.0660 |
| ``finger_left`` | [q, q+0.020] | ±0.0105 | [0.0584, 0.1122] | 0.026 thick at the base, 0.015 at the tip |
| ``finger_right`` | [−q−0.020, −q] | ±0.0105 | [0.0584, 0.1122] | mirror image |

The box hull contains Contact-GraspNet's convex-hull control points (±0.05269, 0, 0.0753) and
(±0.05269, 0, 0.10527) at full opening, and the origin. The mounting flange below z = 0 is left out.
"""

from __future__ import annotations

import numpy as np
import trimesh

MAX_OPENING = 0.08  # m, Contact-GraspNet ``gripper_width``
PAD_DEPTH = 0.1034  # m, z of the finger-pad centres (``gripper_*_center_flat``)
FINGER_BASE_Z = 0.0584  # m, where the fingers are mounted
FINGERTIP_Z = 0.1122  # m, ``gripper_*_tip_flat``
FINGER_THICKNESS = 0.020  # m along x, outside the opening
FINGER_HALF_Y = 0.0105  # m
CLOSING_HALF_Y = 0.01  # m, half-height of the closing region along y
PALM_TOP_Z = 0.066  # m

# name -> (lo, hi) for the parts that do not move with the opening
_HOUSING = {
    "body": (np.array([-0.101, -0.029, 0.0]), np.array([0.101, 0.029, 0.040])),
    "palm": (np.array([-0.102, -0.0215, 0.040]), np.array([0.102, 0.0215, PALM_TOP_Z])),
}


def _check_width(width: float) -> float:
    width = float(width)
    if not 0.0 <= width <= MAX_OPENING + 1e-9:
        raise ValueError(f"gripper opening must be in [0, {MAX_OPENING}] m, got {width}")
    return width


def gripper_boxes(width: float = MAX_OPENING) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Axis-aligned boxes of the gripper opened to ``width`` metres: name -> (lo (3,), hi (3,)), gripper frame."""
    q = _check_width(width) / 2
    boxes = {k: (lo.copy(), hi.copy()) for k, (lo, hi) in _HOUSING.items()}
    boxes["finger_left"] = (
        np.array([q, -FINGER_HALF_Y, FINGER_BASE_Z]),
        np.array([q + FINGER_THICKNESS, FINGER_HALF_Y, FINGERTIP_Z]),
    )
    boxes["finger_right"] = (
        np.array([-q - FINGER_THICKNESS, -FINGER_HALF_Y, FINGER_BASE_Z]),
        np.array([-q, FINGER_HALF_Y, FINGERTIP_Z]),
    )
    return boxes


def _box_mesh(lo: np.ndarray, hi: np.ndarray) -> trimesh.Trimesh:
    return trimesh.creation.box(bounds=np.stack([lo, hi]))


def gripper_meshes(width: float = MAX_OPENING) -> dict[str, trimesh.Trimesh]:
    """Gripper parts opened to ``width`` metres as watertight box meshes in the gripper frame."""
    return {name: _box_mesh(lo, hi) for name, (lo, hi) in gripper_boxes(width).items()}


def gripper_mesh(width: float = MAX_OPENING) -> trimesh.Trimesh:
    """All gripper parts concatenated into one mesh (for collision checks and export)."""
    return trimesh.util.concatenate(list(gripper_meshes(width).values()))


def closing_region_bounds(width: float = MAX_OPENING) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the closing box: |x| ≤ width/2, |y| ≤ 0.01, z ∈ [0.0584, 0.1122]."""
    q = _check_width(width) / 2
    return (
        np.array([-q, -CLOSING_HALF_Y, FINGER_BASE_Z]),
        np.array([q, CLOSING_HALF_Y, FINGERTIP_Z]),
    )


def closing_region(width: float = MAX_OPENING) -> trimesh.Trimesh:
    """The volume swept by the finger pads when closing from ``width``, as a box mesh (gripper frame)."""
    lo, hi = closing_region_bounds(width)
    return _box_mesh(lo, hi)


def points_in_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(..., 3) points in the box's frame -> (...,) bool, inclusive bounds."""
    return np.all((points >= lo) & (points <= hi), axis=-1)


def pad_centres(width: float = MAX_OPENING) -> np.ndarray:
    """(2, 3) finger-pad centres [left (+x), right (−x)] in the gripper frame."""
    q = _check_width(width) / 2
    return np.array([[q, 0.0, PAD_DEPTH], [-q, 0.0, PAD_DEPTH]])


def _unit(v: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(3)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"{name} must be a non-zero finite vector")
    return v / n


def grasp_pose(contact_center: np.ndarray, closing_dir: np.ndarray, approach: np.ndarray) -> np.ndarray:
    """4x4 gripper-to-world pose of a grasp (Contact-GraspNet ``build_6d_grasp``).

    Args:
        contact_center: (3,) midpoint between the two contacts; it lands between the pad centres.
        closing_dir: (3,) closing/baseline direction b (gripper x).
        approach: (3,) approach direction a (gripper z); its component along b is removed.
    Returns T with R = [b, a × b, a] and origin = contact_center − 0.1034·a.
    """
    b = _unit(closing_dir, "closing_dir")
    a = np.asarray(approach, dtype=np.float64).reshape(3)
    a = _unit(a - a.dot(b) * b, "approach (perpendicular to closing_dir)")
    T = np.eye(4)
    T[:3, :3] = np.stack([b, np.cross(a, b), a], axis=1)
    T[:3, 3] = np.asarray(contact_center, dtype=np.float64).reshape(3) - PAD_DEPTH * a
    return T


def grasp_poses(centers: np.ndarray, closing_dirs: np.ndarray, approaches: np.ndarray) -> np.ndarray:
    """Batched :func:`grasp_pose`: (K, 3) × 3 with unit b and a ⊥ b -> (K, 4, 4)."""
    b = closing_dirs / np.linalg.norm(closing_dirs, axis=-1, keepdims=True)
    a = approaches - np.sum(approaches * b, axis=-1, keepdims=True) * b
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    T = np.tile(np.eye(4), (len(b), 1, 1))
    T[:, :3, :3] = np.stack([b, np.cross(a, b), a], axis=-1)
    T[:, :3, 3] = centers - PAD_DEPTH * a
    return T
