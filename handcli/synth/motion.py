"""Plausible hand motion for synthetic sequences, as absolute (flat) MANO-order poses.

Pose vectors here are *absolute* axis-angle rotations (flat_hand_mean=True convention):
writers subtract the model's ``hands_mean`` when the dataset stores poses relative to it.
Axes follow the open hand model (docs/hand-model.md): fingers along +x, palm facing -y,
right thumb on the -z side; curling a finger toward the palm is a rotation about -z.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from handcli.hand.skeleton import MANO_FINGER_CHAINS

FINGER_ORDER = ("thumb", "index", "middle", "ring", "pinky")
_FLEX_AXIS = {f: np.array([0.0, 0.0, -1.0]) for f in FINGER_ORDER}
# The thumb points along about (0.72, 0, -0.67): curling it toward the palm turns it about d x (-y).
_FLEX_AXIS["thumb"] = np.array([-0.67, 0.0, -0.72]) / np.hypot(0.67, 0.72)
_SPREAD_AXIS = np.array([0.0, 1.0, 0.0])  # +angle turns +x toward -z (the thumb side)
_SPREAD_SIGN = {"thumb": 1.0, "index": 1.0, "middle": 0.0, "ring": -0.6, "pinky": -1.0}
_OPPOSE_AXIS = np.array([-1.0, 0.0, 0.0])  # +angle brings the thumb (-z side) toward the palm (-y)


def finger_pose(flex: np.ndarray, spread: float = 0.0, oppose: float = 0.0) -> np.ndarray:
    """Absolute finger pose (45,) in MANO joint order (joints 1..15).

    Args:
        flex: (5, 3) flexion angles in radians, fingers thumb..pinky, joints base->distal.
        spread: abduction of the fingers (radians at the pinky; others scaled).
        oppose: thumb opposition at its base joint (radians).
    """
    aa = np.zeros((16, 3))
    for fi, f in enumerate(FINGER_ORDER):
        for ji, mano_j in enumerate(MANO_FINGER_CHAINS[f]):
            rot = Rotation.from_rotvec(_FLEX_AXIS[f] * flex[fi, ji])
            if ji == 0:
                rot = Rotation.from_rotvec(_SPREAD_AXIS * spread * _SPREAD_SIGN[f]) * rot
                if f == "thumb":
                    rot = Rotation.from_rotvec(_OPPOSE_AXIS * oppose) * rot
            aa[mano_j] = rot.as_rotvec()
    return aa[1:].reshape(45)


def _smooth(t: np.ndarray | float) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.asarray(t))


def gesture_flex(t: float, kind: str, rng_phase: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Finger flexion (5, 3), spread and thumb opposition at normalised time ``t`` in [0, 1]."""
    joint_scale = np.array([1.0, 1.2, 0.8])  # PIP bends most, DIP least
    if kind == "wave":  # fingers close one after another, like a wave
        amp = np.array([0.6, 1.2, 1.25, 1.25, 1.2])
        phase = np.array([0.0, 0.08, 0.16, 0.24, 0.32]) + rng_phase
        flex = (amp * _smooth(t - phase))[:, None] * joint_scale
        return 0.05 + flex, 0.25 * (1 - _smooth(t)), 0.5 * _smooth(t)
    if kind == "count":  # fist, then fingers open one by one
        opened = np.clip(t * 6.0 - np.arange(5) - 0.5 + rng_phase, 0.0, 1.0)
        flex = (1.25 * (1.0 - opened))[:, None] * joint_scale
        flex[0] *= 0.6
        return 0.05 + flex, 0.2 * opened.mean(), 0.7 * (1 - opened[0])
    if kind == "grab":  # all fingers together, a slow grasp
        c = _smooth(t + rng_phase[0])
        flex = np.full((5, 3), 0.9 * c) * joint_scale
        flex[0] *= 0.6
        return 0.1 + flex, 0.3 * (1 - c), 0.8 * c
    raise ValueError(f"unknown gesture {kind!r}")


def hand_orientation(t: float, yaw0: float, tilt: float, yaw_speed: float) -> np.ndarray:
    """World rotation (3, 3) of the hand: fingers up (+z world), palm toward -x, turning about z.

    Model axes: x (fingers) -> world +z, y (back of hand) -> world +x, z -> world +y.
    """
    base = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    yaw = yaw0 + yaw_speed * t
    r = Rotation.from_euler("z", yaw) * Rotation.from_euler("y", tilt * np.sin(2 * np.pi * t))
    return r.as_matrix() @ base


def mirror_rotation(R: np.ndarray) -> np.ndarray:
    """Rotation of the mirrored (x -> -x) hand: M R M with M = diag(-1, 1, 1)."""
    M = np.diag([-1.0, 1.0, 1.0])
    return M @ R @ M
