"""Finger flexion of a 21-joint hand skeleton (handcli's joint order): what the viewer's sliders edit.

Each finger bends at its three joints (base, middle, distal for the long fingers; CMC, MCP, IP for the
thumb) by the same angle, about the axis perpendicular to the bone and to the palm normal of
``skeleton_frames.canonical_frame``; positive angles curl towards the palm (the side of +z there, as a
fist's fingertips are), negative ones stretch backwards. Left hands are edited as mirrored right hands.
"""

from __future__ import annotations

import numpy as np
import torch

from handcli.hand.skeleton_frames import canonical_frame, mirror_x


def _rotate(points: np.ndarray, pivot: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    R = Rotation.from_rotvec(axis * angle).as_matrix()
    return (points - pivot) @ R.T + pivot


def flex_fingers(joints: np.ndarray, flex_deg, side: str = "right") -> np.ndarray:
    """Bend each finger of a skeleton: joints (21, 3) world, flex_deg (5,) degrees per joint for thumb, index,
    middle, ring, pinky -> (21, 3). Bone lengths, the wrist and the palm (finger bases) are unchanged."""
    flex = np.asarray(flex_deg, dtype=np.float64).reshape(5)
    j = np.asarray(joints, dtype=np.float64).copy()
    if side == "left":
        j = mirror_x(torch.from_numpy(j)).numpy()
    R, _ = canonical_frame(torch.from_numpy(j))
    normal = R[2].numpy()
    for f in range(5):
        if flex[f] == 0.0:
            continue
        chain = [4 * f + 1 + k for k in range(4)]  # base .. tip
        for k in range(3):
            pivot = j[chain[k]]
            d = j[chain[k + 1]] - pivot
            axis = np.cross(d, normal)
            n = np.linalg.norm(axis)
            if n < 1e-9:
                continue
            tail = chain[k + 1:]
            j[tail] = _rotate(j[tail], pivot, axis / n, np.radians(flex[f]))
    if side == "left":
        j = mirror_x(torch.from_numpy(j)).numpy()
    return j.astype(np.asarray(joints).dtype)
