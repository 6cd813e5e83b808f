"""Edits of a 21-joint hand skeleton (handcli's joint order): what the viewer's skeleton sliders and
``handcli render --edit`` change (HandOcc's only hand input is the skeleton).

All edits are rotations in the hand's own frame (``skeleton_frames.canonical_frame``: x from the wrist to the
middle finger's base, z the palm normal on the palm side, y towards the little finger), so they mean the same
motion whatever the hand's orientation in the world. Left hands are edited as mirrored right hands, so an angle
means the same anatomical motion on both sides.

``edit_skeleton`` applies any of three edits:

- flexion: each finger bends at its three joints (base, middle, distal for the long fingers; CMC,
  MCP, IP for the thumb) by the same angle, about the axis perpendicular to the bone and to the palm normal;
  positive angles curl towards the palm (as a fist's fingertips are), negative ones stretch backwards.
- spread: each finger turns about the palm normal through its base joint (the thumb: its CMC joint);
  positive angles move it away from the middle finger (thumb, index and middle finger towards the thumb's side,
  ring and little finger towards the little finger's side).
- wrist: the whole hand turns about the wrist joint: flexion (fingers towards the palm), deviation
  (towards the thumb) and twist (about the axis from the wrist to the middle finger's base, right-hand rule in
  right-hand space).
Each leaves the bone lengths unchanged, and since each is a rotation in the hand's own frame, their order does
not change the result.
"""

from __future__ import annotations

import numpy as np
import torch

from handcli.errors import InputError
from handcli.hand.skeleton_frames import canonical_frame, mirror_x

SPREAD_SIGN = (-1.0, -1.0, -1.0, 1.0, 1.0)  # thumb..pinky: the turn about the palm normal that moves away from the middle
WRIST_MOTIONS = ("flexion", "deviation", "twist")  # the order of the wrist angles
WRIST_RANGE = {"flexion": (-70.0, 80.0), "deviation": (-30.0, 30.0), "twist": (-90.0, 90.0)}  # the viewer's sliders


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about the unit ``axis`` (right-hand rule)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.asarray(axis, dtype=np.float64) * angle).as_matrix()


def _rotate(points: np.ndarray, pivot: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    return (points - pivot) @ _rotation(axis, angle).T + pivot


def _right_space(joints: np.ndarray, side: str) -> np.ndarray:
    """(21, 3) float64 copy, mirrored for a left hand (mirroring is its own inverse)."""
    j = np.asarray(joints, dtype=np.float64).copy()
    return mirror_x(torch.from_numpy(j)).numpy() if side == "left" else j


def _axes(j: np.ndarray) -> np.ndarray:
    """(3, 3) rows x, y, z of the canonical frame of right-hand-space joints (21, 3)."""
    R, _ = canonical_frame(torch.from_numpy(j))
    return R.numpy()


def _chain(finger: int) -> list[int]:
    """Joint indices of a finger (0 thumb .. 4 pinky), base to tip."""
    return [4 * finger + 1 + k for k in range(4)]


def _spread(j: np.ndarray, spread_deg) -> np.ndarray:
    spread = np.asarray(spread_deg, dtype=np.float64).reshape(5)
    normal = _axes(j)[2]
    for f in range(5):
        if spread[f] != 0.0:
            c = _chain(f)
            j[c[1:]] = _rotate(j[c[1:]], j[c[0]], normal, SPREAD_SIGN[f] * np.radians(spread[f]))
    return j


def _flex(j: np.ndarray, flex_deg) -> np.ndarray:
    flex = np.asarray(flex_deg, dtype=np.float64).reshape(5)
    normal = _axes(j)[2]
    for f in range(5):
        if flex[f] == 0.0:
            continue
        chain = _chain(f)
        for k in range(3):
            pivot = j[chain[k]]
            axis = np.cross(j[chain[k + 1]] - pivot, normal)
            n = np.linalg.norm(axis)
            if n < 1e-9:
                continue
            tail = chain[k + 1:]
            j[tail] = _rotate(j[tail], pivot, axis / n, np.radians(flex[f]))
    return j


def _wrist(j: np.ndarray, wrist_deg) -> np.ndarray:
    flexion, deviation, twist = np.radians(np.asarray(wrist_deg, dtype=np.float64).reshape(3))
    ex, ey, ez = _axes(j)
    # x towards +z (palm) is a turn about -y; x towards -y (thumb) a turn about -z; applied twist first
    R = _rotation(-ey, flexion) @ _rotation(-ez, deviation) @ _rotation(ex, twist)
    return (j - j[0]) @ R.T + j[0]


def edit_skeleton(joints: np.ndarray, side: str = "right", flex=None, spread=None, wrist=None) -> np.ndarray:
    """Edited skeleton: joints (21, 3) world; flex (5,) and spread (5,) degrees for thumb..pinky, wrist (3,)
    degrees (flexion, deviation, twist); None or all zeros leaves that edit out -> (21, 3), the input's dtype.
    The edits commute (each is a rotation in the hand's own frame)."""
    j = _right_space(joints, side)
    if spread is not None and np.any(spread):
        j = _spread(j, spread)
    if flex is not None and np.any(flex):
        j = _flex(j, flex)
    if wrist is not None and np.any(wrist):
        j = _wrist(j, wrist)
    j = _right_space(j, side)
    return j.astype(np.asarray(joints).dtype)


EDIT_SIZES = {"flex": 5, "spread": 5, "wrist": 3}  # angles per kind of edit
MAX_EDIT_DEG = 360.0


def fanned(spread_deg: float) -> list[float]:
    """One spread angle -> (5,) per finger: every finger but the middle one away from it by that angle (the
    viewer's spread slider)."""
    s = float(spread_deg)
    return [s, s, 0.0, s, s]


def parse_edits(texts: list[str]) -> dict[str, dict[str, list[float]]]:
    """``render --edit`` values "SIDE:KIND=A,B,..." -> {side: {kind: angles in degrees}}.

    SIDE is right or left; KIND flex (5 angles thumb..pinky, or one for all five), spread (5, or one fanned as
    the viewer's slider: ``fanned``) or wrist (3: flexion, deviation, twist). A later value of the same side and
    kind replaces an earlier one. Raises InputError (field ``--edit``) naming the bad value."""
    out: dict[str, dict[str, list[float]]] = {}
    for text in texts:
        side, sep, rest = text.partition(":")
        kind, eq, values = rest.partition("=")
        side, kind = side.strip(), kind.strip()
        if not sep or not eq or side not in ("right", "left") or kind not in EDIT_SIZES:
            raise InputError(f"{text!r}: expected SIDE:KIND=ANGLES with SIDE right or left and KIND "
                             f"{', '.join(EDIT_SIZES)} (e.g. right:flex=0,60,60,60,60)", field="--edit")
        try:
            angles = [float(v) for v in values.split(",")]
        except ValueError:
            raise InputError(f"{text!r}: the angles must be numbers in degrees, comma-separated",
                             field="--edit") from None
        if not all(np.isfinite(a) and abs(a) <= MAX_EDIT_DEG for a in angles):
            raise InputError(f"{text!r}: every angle must be finite and within +-{MAX_EDIT_DEG:g} degrees",
                             field="--edit")
        n = EDIT_SIZES[kind]
        if len(angles) == 1 and kind != "wrist":
            angles = fanned(angles[0]) if kind == "spread" else angles * n
        if len(angles) != n:
            raise InputError(f"{text!r}: {kind} takes {n} angles" + (" (or one)" if kind != "wrist" else ""),
                             field="--edit")
        out.setdefault(side, {})[kind] = angles
    return out
