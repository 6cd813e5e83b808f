"""The open hand model: a procedural hand stored in MANO's file format.

It stands in for MANO when the licensed files are absent. ``build_open_hand(side)`` returns a dict with
exactly MANO's keys (plus ``tip_vertex_ids`` and ``handcli_model``), so smplx loads it like the real thing.

Construction (all in millimetres, converted to metres at the end; see docs/hand-model.md):

1. a rest skeleton from adult bone lengths (16 MANO joints + 5 fingertip ends);
2. a signed distance field: tapered capsules per phalanx and thumb metacarpal, a palm made of four
   metacarpal capsules, a rounded box and a hypothenar pad, and a wrist stub, joined by smooth minima
   (each finger blends with the palm only, so neighbouring fingers never fuse);
3. marching cubes on a coarse grid, then a few rounds of tangential smoothing and projection of the
   vertices back onto the zero level set (accurate surface with few vertices);
4. linear-blend-skinning weights from distances to the bones (each vertex blends only along its own
   finger chain); a joint regressor from a ring of vertices around each joint that reproduces the joint
   exactly; shape blend shapes from re-posing vertices in bone-local coordinates under a changed skeleton;
   a PCA pose space from a set of plausible synthetic poses.

Axes (right hand): wrist joint at the origin, fingers along +x, back of the hand +y, palm facing -y, thumb
on the -z side (a true right hand in a right-handed frame). Finger flexion (curling towards the palm) is a
rotation about -z for a finger pointing along +x. The left model is the exact mirror x -> -x.
"""

from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path

import numpy as np

from handcli.hand.skeleton import FINGERS, KINTREE_ROOT, MANO_FINGER_CHAINS, MANO_PARENTS, mirror_axis_angle

MODEL_NAME = "open-hand/1"
MODEL_DIRNAME = "open-hand-1"

# Shape parameters: what one unit of each beta changes (relative change per unit; betas ~ N(0, 1)).
BETA_NAMES = [
    "overall scale",
    "finger length (all five)",
    "palm width",
    "palm thickness",
    "finger thickness",
    "thumb length",
    "index length",
    "ring length",
    "pinky length",
    "palm length",
]
BETA_SD = np.array([0.045, 0.04, 0.04, 0.06, 0.06, 0.05, 0.03, 0.03, 0.04, 0.04])

# ---------------------------------------------------------------------------------------------------------
# Rest design (millimetres, right hand)

# finger: (MCP position, direction in the xz plane as an angle towards +z in degrees,
#          bone lengths proximal/middle/distal, radii at MCP, PIP, DIP, distal end)
_FINGER_DESIGN = {
    "index": ((86.0, 0.0, -29.0), -7.0, (40.0, 22.0, 16.0), (9.4, 8.6, 7.8, 6.8)),
    "middle": ((90.0, 1.0, -9.5), -1.0, (45.0, 26.0, 17.0), (9.6, 8.8, 8.0, 7.0)),
    "ring": ((85.0, 0.0, 10.0), 6.0, (41.0, 26.0, 17.0), (9.0, 8.3, 7.6, 6.6)),
    "pinky": ((76.0, -2.0, 28.5), 14.0, (33.0, 18.0, 16.0), (8.0, 7.3, 6.7, 5.9)),
}
_THUMB_CMC = (24.0, -9.0, -19.0)
_THUMB_DIRS = ((0.72, -0.18, -0.67), (0.86, -0.12, -0.50), (0.90, -0.10, -0.42))
_THUMB_LENGTHS = (46.0, 32.0, 22.0)
_THUMB_RADII = (12.0, 10.5, 9.6, 8.2)


def rest_design() -> dict:
    """The rest skeleton in millimetres.

    Returns a dict with ``joints`` (16, 3) MANO-ordered joints, ``ends`` (16, 3) the far end of the segment
    each joint owns (its child, or the distal bone end for the last joint of a finger; the wrist's entry
    is unused), ``radii`` (16, 2) segment radii at the joint and at the end, ``finger_dirs`` dict of unit
    rest directions per finger (of the proximal bone).
    """
    joints = np.zeros((16, 3))
    ends = np.zeros((16, 3))
    radii = np.zeros((16, 2))
    finger_dirs = {}
    for name, (mcp, ang, lengths, rad) in _FINGER_DESIGN.items():
        a = np.deg2rad(ang)
        d = np.array([np.cos(a), 0.0, np.sin(a)])
        finger_dirs[name] = d
        chain = MANO_FINGER_CHAINS[name]
        p = np.array(mcp, dtype=float)
        for i, j in enumerate(chain):
            joints[j] = p
            p = p + lengths[i] * d
            ends[j] = p
            radii[j] = (rad[i], rad[i + 1])
    p = np.array(_THUMB_CMC, dtype=float)
    for i, j in enumerate(MANO_FINGER_CHAINS["thumb"]):
        d = np.array(_THUMB_DIRS[i]) / np.linalg.norm(_THUMB_DIRS[i])
        joints[j] = p
        p = p + _THUMB_LENGTHS[i] * d
        ends[j] = p
        radii[j] = (_THUMB_RADII[i], _THUMB_RADII[i + 1])
    finger_dirs["thumb"] = (ends[13] - joints[13]) / np.linalg.norm(ends[13] - joints[13])
    return {"joints": joints, "ends": ends, "radii": radii, "finger_dirs": finger_dirs,
            "up": np.array([0.0, 1.0, 0.0]), "side": "right"}


# ---------------------------------------------------------------------------------------------------------
# Signed distance field (mm)


def _segment_param(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 3) points -> (N,) clamped parameter of the closest point on segment a-b."""
    ab = b - a
    return np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0)


def _round_cone(p: np.ndarray, a, b, ra: float, rb: float) -> np.ndarray:
    """Approximate SDF of a tapered capsule (radius interpolated along the segment). (N, 3) -> (N,)."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    t = _segment_param(p, a, b)
    c = a + t[:, None] * (b - a)
    return np.linalg.norm(p - c, axis=1) - (ra + t * (rb - ra))


def _round_box(p: np.ndarray, lo, hi, r: float) -> np.ndarray:
    """SDF of the box [lo, hi] with edges rounded by r (the outer extent stays [lo, hi])."""
    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    c = 0.5 * (lo + hi)
    b = 0.5 * (hi - lo) - r
    q = np.abs(p - c) - b
    return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0) - r


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum with blend width k."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def _palm_sdf(p: np.ndarray, design: dict) -> np.ndarray:
    joints = design["joints"]
    bases = {"index": (14.0, 1.0, -14.0), "middle": (12.0, 2.0, -4.0), "ring": (12.0, 1.0, 6.0),
             "pinky": (15.0, -1.0, 15.0)}
    d = _round_box(p, (16.0, -15.0, -33.0), (82.0, 11.0, 31.0), 10.0)
    for name, base in bases.items():
        mcp = joints[MANO_FINGER_CHAINS[name][0]]
        d = _smin(d, _round_cone(p, base, mcp, 11.0, design["radii"][MANO_FINGER_CHAINS[name][0], 0] + 2.0), 8.0)
    d = _smin(d, _round_cone(p, (22.0, -6.0, 21.0), (66.0, -6.0, 30.0), 10.0, 9.0), 8.0)  # hypothenar pad
    d = _smin(d, _round_box(p, (-20.0, -16.0, -27.0), (24.0, 14.0, 27.0), 14.0), 14.0)  # wrist stub
    return d


def _chain_sdf(p: np.ndarray, design: dict, chain) -> np.ndarray:
    d = None
    for j in chain:
        dj = _round_cone(p, design["joints"][j], design["ends"][j], *design["radii"][j])
        d = dj if d is None else np.minimum(d, dj)
    return d


def hand_sdf(p: np.ndarray, design: dict) -> np.ndarray:
    """Signed distance (mm, negative inside) of the rest hand at (N, 3) points (mm)."""
    palm = _palm_sdf(p, design)
    d = _smin(palm, _chain_sdf(p, design, MANO_FINGER_CHAINS["thumb"]), 12.0)
    for name in FINGERS[1:]:
        d = np.minimum(d, _smin(palm, _chain_sdf(p, design, MANO_FINGER_CHAINS[name]), 7.0))
    return d


# ---------------------------------------------------------------------------------------------------------
# Mesh


def _sdf_grad(p: np.ndarray, design: dict, eps: float = 0.05) -> np.ndarray:
    g = np.zeros_like(p)
    for i in range(3):
        e = np.zeros(3)
        e[i] = eps
        g[:, i] = (hand_sdf(p + e, design) - hand_sdf(p - e, design)) / (2 * eps)
    return g


def _project(v: np.ndarray, design: dict, iters: int = 3) -> np.ndarray:
    for _ in range(iters):
        f = hand_sdf(v, design)
        g = _sdf_grad(v, design)
        v = v - (f / np.maximum((g * g).sum(1), 1e-6))[:, None] * g
    return v


def _vertex_adjacency(faces: np.ndarray, n: int):
    import scipy.sparse as sp

    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    a = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    a.data[:] = 1.0
    deg = np.asarray(a.sum(1)).ravel()
    return sp.diags(1.0 / deg) @ a


def _vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _build_mesh(design: dict, h: float = 4.4, smooth_iters: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the SDF, then tangential smoothing + projection. Returns (V, 3) mm, (F, 3) int."""
    import mcubes
    import trimesh

    lo = np.array([-34.0, -36.0, -98.0])
    hi = np.array([200.0, 26.0, 60.0])
    n = np.ceil((hi - lo) / h).astype(int) + 1
    axes = [lo[i] + h * np.arange(n[i]) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    # A tiny offset keeps grid samples off the zero level (no degenerate marching-cubes triangles).
    sdf = hand_sdf(grid, design).reshape(n) + 1e-4
    v, f = mcubes.marching_cubes(-sdf, 0.0)
    v = lo + v * h
    mesh = trimesh.Trimesh(v, f.astype(np.int64), process=True)
    mesh.remove_unreferenced_vertices()
    v, f = np.asarray(mesh.vertices, float), np.asarray(mesh.faces, np.int64)
    if trimesh.Trimesh(v, f, process=False).volume < 0:
        f = f[:, ::-1].copy()
    avg = _vertex_adjacency(f, len(v))
    v = _project(v, design)
    for _ in range(smooth_iters):
        nrm = _vertex_normals(v, f)
        delta = avg @ v - v
        delta -= (delta * nrm).sum(1, keepdims=True) * nrm
        v = _project(v + 0.6 * delta, design, iters=2)
    # Projection can fold a few triangles that straddle the crease between two fingers; untangle them by
    # moving their vertices to the mean of their neighbours (a dozen web vertices end up to ~2 mm off the surface).
    for _ in range(20):
        tri = v[f]
        fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        g = _sdf_grad(tri.mean(1), design)
        cos = (fn * g).sum(1) / np.maximum(np.linalg.norm(fn, axis=1) * np.linalg.norm(g, axis=1), 1e-12)
        bad = np.unique(f[cos < 0.05])
        if len(bad) == 0:
            break
        v[bad] = (avg @ v)[bad]
    return v, f


# ---------------------------------------------------------------------------------------------------------
# Skinning weights and joint regressor

_SKIN_SIGMA = 5.0  # mm; width of the blend across a joint


def _bone_segments(design: dict) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per MANO joint, the segments of the body part it moves (the wrist moves the palm and wrist stub)."""
    j = design["joints"]
    palm = [(np.array([-20.0, 0.0, 0.0]), np.zeros(3))]
    palm += [(np.zeros(3), j[c]) for c in (1, 4, 7, 10, 13)]
    # palmar and hypothenar segments keep the middle of the palm on the wrist rather than the thumb
    palm += [(np.array([12.0, -7.0, z0]), np.array([72.0, -7.0, z1])) for z0, z1 in ((-14, -20), (0, 0), (14, 24))]
    palm += [(np.array([22.0, -6.0, 21.0]), np.array([66.0, -6.0, 30.0]))]
    segs = [palm]
    for b in range(1, 16):
        segs.append([(j[b], design["ends"][b])])
    return segs


def _distances_to_bones(v: np.ndarray, design: dict) -> np.ndarray:
    """(V, 3) mm -> (V, 16) distance of each vertex to each joint's body part."""
    out = np.empty((len(v), 16))
    for b, segs in enumerate(_bone_segments(design)):
        ds = []
        for a, e in segs:
            t = _segment_param(v, a, e)
            ds.append(np.linalg.norm(v - (a + t[:, None] * (e - a)), axis=1))
        out[:, b] = np.min(ds, axis=0)
    return out


def skinning_weights(v: np.ndarray, design: dict, sigma: float = _SKIN_SIGMA) -> np.ndarray:
    """(V, 3) mm -> (V, 16) LBS weights: softmax of -d^2/sigma^2 over the nearest bone, its parent and children.

    Restricting to one kinematic neighbourhood keeps a finger's vertices off its neighbours' bones.
    """
    d = _distances_to_bones(v, design)
    nearest = d.argmin(1)
    allowed = np.zeros((16, 16), bool)
    for b in range(16):
        allowed[b, b] = True
        if MANO_PARENTS[b] >= 0:
            allowed[b, MANO_PARENTS[b]] = True
        for c in range(16):
            if MANO_PARENTS[c] == b:
                allowed[b, c] = True
    mask = allowed[nearest]
    d2 = d**2 - (d.min(1, keepdims=True)) ** 2
    w = np.where(mask, np.exp(-d2 / sigma**2), 0.0)
    w[w < 1e-4] = 0.0
    return w / w.sum(1, keepdims=True)


def _affine_weights(pts: np.ndarray, target: np.ndarray, w0: np.ndarray) -> np.ndarray:
    """Nonnegative weights closest to w0 with sum 1 and w @ pts == target (active-set projection)."""
    active = np.ones(len(pts), bool)
    w = w0.copy()
    for _ in range(50):
        A = np.concatenate([pts[active].T, np.ones((1, active.sum()))])
        c = np.concatenate([target, [1.0]])
        wa = w0[active] + A.T @ np.linalg.solve(A @ A.T, c - A @ w0[active])
        w = np.zeros(len(pts))
        w[active] = wa
        if (wa >= -1e-12).all():
            break
        idx = np.flatnonzero(active)
        active[idx[wa < 0]] = False
    return np.maximum(w, 0.0)


def joint_regressor(v: np.ndarray, design: dict) -> np.ndarray:
    """(V, 3) mm -> (16, V) regressor: per joint, weights on a ring of vertices around it, reproducing it."""
    j = design["joints"]
    R = np.zeros((16, len(v)))
    for b in range(16):
        u = np.array([1.0, 0.0, 0.0]) if b == 0 else (design["ends"][b] - j[b]) / np.linalg.norm(design["ends"][b] - j[b])
        rad = 30.0 if b in (0, 13) else 2.5 * design["radii"][b, 0]
        rel = v - j[b]
        along = rel @ u
        near = np.linalg.norm(rel, axis=1) < rad
        for slab in (2.5, 4.0, 6.0, 9.0):
            idx = np.flatnonzero(near & (np.abs(along) < slab))
            if len(idx) >= 8:
                break
        R[b, idx] = _affine_weights(v[idx], j[b], np.full(len(idx), 1.0 / len(idx)))
    return R


def tip_vertex_ids(v: np.ndarray, weights: np.ndarray, design: dict) -> list[int]:
    """Per finger (thumb..pinky), the vertex furthest along the distal bone among the distal bone's vertices."""
    ids = []
    for name in FINGERS:
        last = MANO_FINGER_CHAINS[name][-1]
        u = design["ends"][last] - design["joints"][last]
        u /= np.linalg.norm(u)
        own = weights.argmax(1) == last
        score = np.where(own, (v - design["joints"][last]) @ u, -np.inf)
        ids.append(int(score.argmax()))
    return ids


# ---------------------------------------------------------------------------------------------------------
# Shape blend shapes


def _shape_factors(beta: np.ndarray) -> dict:
    s = 1.0 + BETA_SD * np.asarray(beta, float)
    fl = {"thumb": s[1] * s[5], "index": s[1] * s[6], "middle": s[1], "ring": s[1] * s[7], "pinky": s[1] * s[8]}
    return {"scale": s[0], "finger_len": fl, "palm": np.array([s[9], s[3], s[2]]), "thick": s[4]}


def _reshape_vertices(v: np.ndarray, weights: np.ndarray, design: dict, beta: np.ndarray) -> np.ndarray:
    """Vertices (mm) of the hand with shape ``beta``: each bone carries its vertices in bone-local coordinates
    (along-bone distance scaled with the bone length, radial offset with the thickness); blended by ``weights``.
    """
    f = _shape_factors(beta)
    A = f["scale"] * f["palm"]  # diagonal palm map about the wrist (length, thickness, width)
    j, ends = design["joints"], design["ends"]
    new_j = np.zeros_like(j)
    for b in range(1, 16):
        if MANO_PARENTS[b] == 0:
            new_j[b] = A * j[b]
    finger_of = {jj: name for name, chain in MANO_FINGER_CHAINS.items() for jj in chain}
    out = weights[:, :1] * (A * v)
    for b in range(1, 16):
        lf = f["scale"] * f["finger_len"][finger_of[b]]
        rho = f["scale"] * f["thick"]
        L = np.linalg.norm(ends[b] - j[b])
        u = (ends[b] - j[b]) / L
        for c in range(16):
            if MANO_PARENTS[c] == b:
                new_j[c] = new_j[b] + u * L * lf
        rel = v - j[b]
        s = rel @ u
        radial = rel - s[:, None] * u
        sc = np.clip(s, 0.0, L)
        s_new = sc * lf + (s - sc) * rho
        out += weights[:, b : b + 1] * (new_j[b] + s_new[:, None] * u + radial * rho)
    return out


def shape_blendshapes(v: np.ndarray, weights: np.ndarray, design: dict) -> np.ndarray:
    """(V, 3, 10) mm per unit beta. The map is affine in each single beta, so a unit step is the exact slope."""
    base = _reshape_vertices(v, weights, design, np.zeros(10))
    dirs = np.zeros((len(v), 3, 10))
    for k in range(10):
        e = np.zeros(10)
        e[k] = 1.0
        dirs[:, :, k] = _reshape_vertices(v, weights, design, e) - base
    return dirs


# ---------------------------------------------------------------------------------------------------------
# Pose space (local axis-angle per joint, rest frames aligned to the model axes)

def _rotvec(axis: np.ndarray, angle) -> np.ndarray:
    """(3,) unit axis, (N,) angles (rad) -> (N, 3) axis-angle."""
    return np.asarray(angle)[..., None] * axis


def _compose(*rotvecs: np.ndarray) -> np.ndarray:
    """Axis-angles (N, 3) composed left to right as matrices R1 @ R2 @ ... -> (N, 3)."""
    from scipy.spatial.transform import Rotation

    r = Rotation.from_rotvec(rotvecs[0])
    for rv in rotvecs[1:]:
        r = r * Rotation.from_rotvec(rv)
    return r.as_rotvec()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def _orth(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    return _unit(x - (x @ d) * d)


def design_from_joints(joints16: np.ndarray, tips: np.ndarray, side: str = "right") -> dict:
    """A pose-design dict (as ``rest_design``) from any MANO-format model's rest joints (16, 3) and tips (5, 3,
    thumb..pinky), so that ``synth_poses`` works on the real MANO model and on left hands too."""
    joints16 = np.asarray(joints16, float)
    ends = np.zeros((16, 3))
    for f, name in enumerate(FINGERS):
        chain = MANO_FINGER_CHAINS[name]
        for a, b in zip(chain[:-1], chain[1:]):
            ends[a] = joints16[b]
        ends[chain[-1]] = tips[f]
    w = joints16[0]
    back = np.cross(joints16[4] - w, joints16[1] - w)  # back of the hand for a right hand
    up = _unit(back if side == "right" else -back)
    dirs = {name: _unit(ends[MANO_FINGER_CHAINS[name][0]] - joints16[MANO_FINGER_CHAINS[name][0]])
            for name in FINGERS}
    return {"joints": joints16, "ends": ends, "finger_dirs": dirs, "up": up, "side": side}


def finger_axes(design: dict) -> dict:
    """Rotation axes in the rest frame, built from cross products so that they mirror correctly.

    Per finger: ``flex`` (a positive rotation curls the finger towards the palm) and ``spread`` (a positive
    rotation moves it towards the thumb). Thumb: ``flex`` (MCP and IP curl towards the palm and little
    finger), ``oppose`` (metacarpal swings towards the palm), ``twist`` (about the metacarpal; its sign
    flips between sides) and ``spread``.
    """
    up = np.asarray(design.get("up", (0.0, 1.0, 0.0)), float)
    j = design["joints"]
    thumb_side = _unit(j[1] - j[7])  # from the little finger's knuckle towards the index's
    axes = {}
    for name in FINGERS[1:]:
        d = design["finger_dirs"][name]
        axes[name] = {"flex": _unit(np.cross(d, -up)), "spread": _unit(np.cross(d, _orth(thumb_side, d)))}
    d_meta = _unit(design["ends"][13] - j[13])
    d_prox = _unit(design["ends"][14] - j[14])
    bend = _orth(-0.75 * up - 0.65 * thumb_side, d_prox)
    opp = _orth(-1.0 * up - 0.35 * thumb_side, d_meta)
    axes["thumb"] = {"flex": _unit(np.cross(d_prox, bend)), "oppose": _unit(np.cross(d_meta, opp)),
                     "twist": d_meta, "spread": _unit(np.cross(d_meta, _orth(thumb_side, d_meta)))}
    return axes


def synth_poses(design: dict, closure, spread, oppose, rng: np.random.Generator | None = None,
                noise_deg: float = 0.0) -> np.ndarray:
    """Plausible hand poses from a few latent factors. (N,) closure in [0, 1] (0 open, 1 fist), spread
    (fingers fanned apart, ~[-0.3, 1]), thumb opposition in [0, 1] -> (N, 45) local axis-angles (joints 1-15).

    With ``rng``, each finger's flexion and each joint get independent perturbations on top.
    """
    closure = np.atleast_1d(np.asarray(closure, float))
    n = len(closure)
    spread = np.broadcast_to(np.asarray(spread, float), (n,))
    oppose = np.broadcast_to(np.asarray(oppose, float), (n,))
    ax = finger_axes(design)
    hand_sign = 1.0 if design.get("side", "right") == "right" else -1.0
    deg = np.deg2rad

    def jitter(scale):
        return rng.normal(0.0, scale, n) if rng is not None else np.zeros(n)

    out = np.zeros((n, 15, 3))
    spread_deg = {"index": 12.0, "middle": 1.5, "ring": -8.0, "pinky": -18.0}
    curl_gain = {"index": 0.9, "middle": 1.0, "ring": 1.05, "pinky": 1.1}
    for name in FINGERS[1:]:
        c = np.clip(closure * curl_gain[name] + jitter(0.18), -0.12, 1.05)
        mcp_flex = deg(85.0) * c + jitter(deg(5.0))
        pip_flex = np.clip(deg(100.0) * c + jitter(deg(8.0)), deg(-5.0), deg(110.0))
        dip_flex = np.clip(0.7 * pip_flex + jitter(deg(5.0)), deg(-5.0), deg(80.0))
        abd = deg(spread_deg[name]) * spread * (1.0 - 0.7 * np.clip(c, 0.0, 1.0)) + jitter(deg(2.0))
        j1, j2, j3 = MANO_FINGER_CHAINS[name]
        out[:, j1 - 1] = _compose(_rotvec(ax[name]["spread"], abd), _rotvec(ax[name]["flex"], mcp_flex))
        out[:, j2 - 1] = _rotvec(ax[name]["flex"], pip_flex)
        out[:, j3 - 1] = _rotvec(ax[name]["flex"], dip_flex)
    t = ax["thumb"]
    o = np.clip(oppose + jitter(0.1), 0.0, 1.0)
    # opposition swings the metacarpal towards the palm and pronates it (negative twist for the right hand);
    # amounts chosen so that the fist's thumb tip rests on the index/middle middle phalanges
    cmc = _compose(_rotvec(t["oppose"], deg(40.0) * o + jitter(deg(4.0))),
                   _rotvec(t["spread"], deg(8.0) * spread * (1.0 - o) + jitter(deg(4.0))),
                   _rotvec(t["twist"], hand_sign * (deg(-60.0) * o + jitter(deg(4.0)))))
    ct = np.clip(closure + jitter(0.15), -0.1, 1.0)
    out[:, 12] = cmc
    out[:, 13] = _rotvec(t["flex"], np.clip(deg(32.0) * ct + jitter(deg(6.0)), deg(-10.0), deg(55.0)))
    out[:, 14] = _rotvec(t["flex"], np.clip(deg(50.0) * ct + jitter(deg(8.0)), deg(-15.0), deg(80.0)))
    out = out.reshape(n, 45)
    if rng is not None and noise_deg > 0:
        out = out + rng.normal(0.0, np.deg2rad(noise_deg), out.shape)
    return out


def relaxed_pose(design: dict) -> np.ndarray:
    """(45,) the relaxed, slightly flexed pose used as ``hands_mean``."""
    return synth_poses(design, closure=[0.2], spread=[0.25], oppose=[0.3])[0]


def pose_space(design: dict, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(hands_components (45, 45) orthonormal rows by decreasing variance, hands_mean (45,))."""
    rng = np.random.default_rng(seed)
    closure = np.clip(rng.uniform(-0.15, 1.05, n), -0.1, 1.0)
    spread = np.clip(rng.normal(0.2, 0.45, n), -0.3, 1.0)
    oppose = np.clip(0.6 * closure + rng.uniform(0.0, 0.5, n), 0.0, 1.0)
    x = synth_poses(design, closure, spread, oppose, rng=rng, noise_deg=3.0)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt *= np.sign(vt[np.arange(45), np.abs(vt).argmax(1)])[:, None]  # deterministic signs
    return vt, relaxed_pose(design)


# ---------------------------------------------------------------------------------------------------------
# The model dict


@functools.lru_cache(maxsize=1)
def _build_right() -> dict:
    design = rest_design()
    v, f = _build_mesh(design)
    weights = skinning_weights(v, design)
    J = joint_regressor(v, design)
    design = dict(design)
    design["joints"] = J @ v  # the model's rest joints are exactly the regression
    shapedirs = shape_blendshapes(v, weights, design)
    comps, mean = pose_space(design)
    kintree = np.array([[KINTREE_ROOT] + MANO_PARENTS[1:], list(range(16))], dtype=np.int64)
    return {
        "v_template": v / 1000.0,
        "shapedirs": shapedirs / 1000.0,
        "posedirs": np.zeros((len(v), 3, 135)),
        "J_regressor": J,
        "weights": weights,
        "kintree_table": kintree,
        "f": f.astype(np.uint32),
        "hands_components": comps,
        "hands_mean": mean,
        "tip_vertex_ids": np.array(tip_vertex_ids(v, weights, design), dtype=np.int64),
        "handcli_model": MODEL_NAME,
    }


def mirror_model(d: dict) -> dict:
    """Mirror a MANO-format dict left<->right (x -> -x); faces flipped to keep outward normals."""
    out = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
    out["v_template"][:, 0] *= -1
    out["shapedirs"][:, 0, :] *= -1
    out["posedirs"][:, 0, :] *= -1  # zero for the open model; a full mirror would also permute pose features
    out["f"] = d["f"][:, ::-1].copy()
    out["hands_components"] = mirror_axis_angle(d["hands_components"])
    out["hands_mean"] = mirror_axis_angle(d["hands_mean"])
    return out


def build_open_hand(side: str = "right") -> dict:
    """The open hand model as a MANO-format dict (metres). Deterministic. ``side`` is 'right' or 'left'."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', not {side!r}")
    right = _build_right()
    d = right if side == "right" else mirror_model(right)
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def handcli_home() -> Path:
    """``$HANDCLI_HOME`` or ``~/.cache/handcli``."""
    env = os.environ.get("HANDCLI_HOME")
    return Path(env) if env else Path.home() / ".cache" / "handcli"


def _source_stamp() -> str:
    """Fingerprint of the code that builds the model: a cached copy from older code is rebuilt."""
    import hashlib

    h = hashlib.sha1()
    for mod in (__file__, Path(__file__).with_name("skeleton.py")):
        h.update(Path(mod).read_bytes())
    return f"{MODEL_NAME} {h.hexdigest()[:16]}"


def _write_atomic(path: Path, data: bytes) -> None:
    from handcli.outputs import replace_file

    replace_file(path, lambda tmp: tmp.write_bytes(data))


def open_model_dir() -> Path:
    """A folder with ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` of the open model.

    Written once (atomically, temp file + rename) and rewritten only when the building code changes
    (``build.txt`` holds a fingerprint of it).
    """
    folder = handcli_home() / "models" / MODEL_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _source_stamp()
    names = {"right": "MANO_RIGHT.pkl", "left": "MANO_LEFT.pkl"}
    stamp_file = folder / "build.txt"
    current = stamp_file.is_file() and stamp_file.read_text().strip() == stamp
    if current and all((folder / n).is_file() for n in names.values()):
        return folder
    for side, name in names.items():
        _write_atomic(folder / name, pickle.dumps(build_open_hand(side), protocol=4))
    _write_atomic(stamp_file, (stamp + "\n").encode())
    return folder
