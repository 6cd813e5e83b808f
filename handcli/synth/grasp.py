"""Place the open hand model in a grasp around an object: palm against it, fingers curled until they touch.

Simple and fast by design (two batched forward passes per grasp):

1. orient the hand so that its palm faces the object along ``approach`` and the straight fingers point
   along ``finger_dir``; slide it along ``approach`` (bisection) until the open hand clears the surface by
   ``palm_gap``;
2. every finger curls with one scalar ``s`` in [0, 1] (flexion of its three joints, ``motion.finger_pose``);
   a batch of levels locates, per finger, the first level at which the finger comes within ``contact`` of
   the surface, and a second batch refines it, so each finger stops touching (within ``contact``) but not
   penetrating. Fingers are independent (each finger's vertices follow only its own joints), so all five
   are evaluated in the same batch.

Distances come from the object's signed distance function (negative inside; ``sdf_of_mesh`` wraps
trimesh's proximity query for arbitrary meshes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from handcli.hand.skeleton import MANO_FINGER_CHAINS, mirror_axis_angle
from handcli.synth.motion import FINGER_ORDER, finger_pose

# Flexion (radians) of base, middle and distal joint at s = 1, per finger (thumb first).
MAX_FLEX = np.array([[0.6, 0.9, 0.9], [1.4, 1.7, 1.2], [1.4, 1.7, 1.2], [1.4, 1.7, 1.2], [1.4, 1.7, 1.2]])


@dataclass
class Grasp:
    """A hand posed around an object, in the object's model frame (metres)."""

    side: str
    pose: np.ndarray  # (48,) absolute axis-angle (flat_hand_mean=True), global orient first
    betas: np.ndarray  # (10,)
    trans: np.ndarray  # (3,)
    vertices: np.ndarray  # (V, 3)
    joints: np.ndarray  # (21, 3) handcli order
    finger_gap: np.ndarray  # (5,) closest distance of each finger to the surface (thumb..pinky)
    min_gap: float  # closest distance of any hand vertex (negative = penetration)
    flex: np.ndarray  # (5,) the curl level s of each finger


def sdf_of_mesh(vertices: np.ndarray, faces: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Signed distance (negative inside) to a watertight mesh via trimesh (slower than analytic SDFs)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)

    def sdf(p: np.ndarray) -> np.ndarray:
        return -trimesh.proximity.signed_distance(mesh, p)  # trimesh: positive inside

    return sdf


def finger_parts(model) -> np.ndarray:
    """(V,) finger index (0 thumb .. 4 pinky) of each vertex by its dominant skinning joint; -1 palm/wrist."""
    owner = model.lbs_weights.detach().cpu().numpy().argmax(axis=1)
    part = np.full(len(owner), -1, np.int64)
    for fi, f in enumerate(FINGER_ORDER):
        part[np.isin(owner, MANO_FINGER_CHAINS[f])] = fi
    return part


def _fingers(side: str, s: np.ndarray, spread: float, oppose: float) -> np.ndarray:
    """(B, 5) curl levels -> (B, 45) absolute finger poses for ``side``; the thumb's opposition grows with
    its curl level (an open hand has the thumb in the palm plane)."""
    out = np.stack([finger_pose(MAX_FLEX * si[:, None], spread, oppose * si[0]) for si in s])
    return mirror_axis_angle(out) if side == "left" else out


def _frame(side: str) -> np.ndarray:
    """(3, 3) columns: finger direction, palm normal and their cross product in the hand model's frame."""
    f = np.array([1.0, 0.0, 0.0]) if side == "right" else np.array([-1.0, 0.0, 0.0])
    n = np.array([0.0, -1.0, 0.0])
    return np.stack([f, n, np.cross(f, n)], axis=1)


@torch.no_grad()
def _verts(model, orient: np.ndarray, fingers: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """(B, V, 3) vertices for global orient (3,), finger poses (B, 45), zero translation."""
    b = len(fingers)
    pose = np.concatenate([np.tile(orient, (b, 1)), fingers], axis=1)
    out = model(torch.as_tensor(pose, dtype=torch.float32), torch.as_tensor(np.tile(betas, (b, 1)),
                                                                            dtype=torch.float32))
    return out.vertices.double().numpy()


def grasp_object(model, sdf: Callable[[np.ndarray], np.ndarray], centre: np.ndarray, approach: np.ndarray,
                 finger_dir: np.ndarray, betas: np.ndarray | None = None, *, contact: float = 0.0015,
                 palm_gap: float = 0.004, spread: float = 0.08, oppose: float = 0.9, levels: int = 24) -> Grasp:
    """Grasp the object whose ``sdf`` is given (model frame) with ``model`` (an absolute-pose HandModel,
    ``flat_hand_mean=True``).

    centre (3,): the point the palm is aimed at; approach (3,): direction from the object towards the palm;
    finger_dir (3,): direction of the straight fingers (made orthogonal to ``approach``).
    """
    side = model.side
    betas = np.zeros(10) if betas is None else np.asarray(betas, np.float64)
    a = np.asarray(approach, np.float64)
    a = a / np.linalg.norm(a)
    fd = np.asarray(finger_dir, np.float64)
    fd = fd - a * (fd @ a)
    fd = fd / np.linalg.norm(fd)
    target = np.stack([fd, -a, np.cross(fd, -a)], axis=1)
    R = target @ _frame(side).T
    orient = Rotation.from_matrix(R).as_rotvec()
    parts = finger_parts(model)

    # 1. slide the slightly curled hand along the approach until it clears the surface by palm_gap
    s0 = np.zeros((1, 5))
    v_open = _verts(model, orient, _fingers(side, s0, spread, oppose), betas)[0]
    with torch.no_grad():
        j = model.forward_joints(torch.as_tensor(np.concatenate([orient, _fingers(side, s0, spread, oppose)[0]])[None],
                                                 dtype=torch.float32),
                                 torch.as_tensor(betas[None], dtype=torch.float32))[0].double().numpy()
    palm = 0.35 * j[0] + 0.65 * j[[5, 9, 13, 17]].mean(0)  # aim between the wrist and the knuckles
    lo, hi = -0.05, 0.30
    for _ in range(40):
        d = 0.5 * (lo + hi)
        gap = sdf(v_open + (centre + a * d - palm)).min()
        lo, hi = (d, hi) if gap < palm_gap else (lo, d)
    trans = centre + a * hi - palm

    # 2. curl each finger until it is within `contact` of the surface
    def finger_gaps(s: np.ndarray) -> np.ndarray:  # (B, 5) levels -> (B, 5) min distance per finger
        v = _verts(model, orient, _fingers(side, s, spread, oppose), betas) + trans
        d = sdf(v.reshape(-1, 3)).reshape(v.shape[:2])
        return np.stack([d[:, parts == f].min(axis=1) for f in range(5)], axis=1)

    grid = np.linspace(0.0, 1.0, levels)
    g = finger_gaps(np.tile(grid[:, None], (1, 5)))
    lo_s, hi_s = np.zeros(5), np.ones(5)
    for f in range(5):
        hit = np.nonzero(g[:, f] < contact)[0]
        if len(hit) == 0:
            lo_s[f] = hi_s[f] = 1.0  # never reaches the object: fully curled
        elif hit[0] == 0:
            lo_s[f] = hi_s[f] = 0.0  # already touching when open
        else:
            lo_s[f], hi_s[f] = grid[hit[0] - 1], grid[hit[0]]
    fine = lo_s + np.linspace(0.0, 1.0, levels)[:, None] * (hi_s - lo_s)
    g = finger_gaps(fine)
    flex = np.empty(5)
    for f in range(5):
        ok = np.nonzero(g[:, f] >= contact)[0]
        flex[f] = fine[ok[-1], f] if len(ok) else fine[0, f]

    fingers = _fingers(side, flex[None], spread, oppose)[0]
    pose = np.concatenate([orient, fingers])
    with torch.no_grad():
        out = model(torch.as_tensor(pose[None], dtype=torch.float32), torch.as_tensor(betas[None], dtype=torch.float32),
                    torch.as_tensor(trans[None], dtype=torch.float32))
    verts = out.vertices[0].double().numpy()
    d = sdf(verts)
    gaps = np.array([d[parts == f].min() for f in range(5)])
    return Grasp(side, pose, betas, trans, verts, out.joints[0].double().numpy(), gaps, float(d.min()), flex)
