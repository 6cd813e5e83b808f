"""Skeleton constants shared by every hand model, and left/right mirroring.

Two joint orders appear everywhere:

- MANO's 16 joints: 0 wrist; 1-3 index (MCP, PIP, DIP); 4-6 middle; 7-9 pinky; 10-12 ring;
  13-15 thumb (CMC, MCP, IP). ``MANO_PARENTS`` is MANO's ``kintree_table[0]``.
- handcli's 21 joints: wrist, then thumb, index, middle, ring, pinky, each base to tip.

``MANO_TO_21`` indexes the 16 MANO joints followed by the 5 tips (thumb, index, middle, ring,
pinky), i.e. a (21, 3) array ``concat(joints16, tips)``, into handcli's order.
"""

from __future__ import annotations

import numpy as np

NUM_MANO_JOINTS = 16
NUM_JOINTS = 21

MANO_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]
MANO_JOINT_NAMES = [
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
]
# Root parent as stored in the official pickles (uint32 -1).
KINTREE_ROOT = 4294967295

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
# MANO joint indices of each finger's chain, base to distal (tips excluded), in handcli finger order.
MANO_FINGER_CHAINS = {
    "thumb": [13, 14, 15],
    "index": [1, 2, 3],
    "middle": [4, 5, 6],
    "ring": [10, 11, 12],
    "pinky": [7, 8, 9],
}

# (16 MANO joints + 5 tips thumb..pinky) -> handcli's 21-joint order.
MANO_TO_21 = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
JOINT_NAMES_21 = ["wrist"] + [f"{f}{i}" for f in FINGERS for i in range(1, 5)]
PARENTS_21 = [-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19]
TIPS_21 = [4, 8, 12, 16, 20]
BASES_21 = [1, 5, 9, 13, 17]

# InterHand2.6M 42-joint order (right 0-20, left 21-41; tip->base per finger, wrist last) -> ours.
IH_TO_21 = [20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16]
IH_TO_21_LEFT = [i + 21 for i in IH_TO_21]
# HO-3D handJoints3D (MANO order + tips) -> ours. DexYCB is already in handcli's order.
HO3D_TO_21 = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]

# Fingertip vertices of the real MANO mesh (778 vertices): thumb, index, middle, ring, pinky.
MANO_TIP_VERTEX_IDS = [744, 320, 443, 554, 671]


def mano_to_21(joints16, tips):
    """(…, 16, 3) MANO joints and (…, 5, 3) tips (thumb..pinky) -> (…, 21, 3) in handcli order.

    Works on numpy arrays and torch tensors alike.
    """
    if isinstance(joints16, np.ndarray):
        full = np.concatenate([joints16, tips], axis=-2)
    else:
        import torch

        full = torch.cat([joints16, tips], dim=-2)
    return full[..., MANO_TO_21, :]


def mirror_points_x(p):
    """Mirror points left<->right: (…, 3) -> (…, 3) with x negated (numpy or torch)."""
    q = p.copy() if isinstance(p, np.ndarray) else p.clone()
    q[..., 0] = -q[..., 0]
    return q


def mirror_axis_angle(aa):
    """Mirror axis-angle rotations left<->right.

    (…, 3k) -> (…, 3k): for each joint (x, y, z) -> (x, -y, -z), which is M R M with M = diag(-1, 1, 1).
    """
    q = aa.copy() if isinstance(aa, np.ndarray) else aa.clone()
    q[..., 1::3] = -q[..., 1::3]
    q[..., 2::3] = -q[..., 2::3]
    return q
