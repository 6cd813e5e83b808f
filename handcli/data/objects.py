"""YCB object models as DexYCB and HO-3D use them (docs/formats.md#dexycb-objects, #ho3d-meta).

A model lives at ``models/{ycb_name}/textured_simple.obj`` (metres, model frame; with ``.mtl`` and a
texture in the real download) next to ``points.xyz`` (one ``x y z`` line per point, the point set
HandNeRF (Choi) poses for its 3D metrics). Posing conventions:

- DexYCB ``pose_y[k]`` is a 3x4 ``[R | t]`` object->camera: ``X_cam = R X_model + t``;
- HO-3D ``objRot`` (axis-angle) and ``objTrans``: ``X = X_model R(objRot)^T + objTrans`` (OpenGL camera).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handcli.errors import InputError

# DexYCB's _YCB_CLASSES (dex_ycb_toolkit/dex_ycb.py); the hand is category 22 in its COCO evaluation.
YCB_CLASSES = {
    1: "002_master_chef_can", 2: "003_cracker_box", 3: "004_sugar_box", 4: "005_tomato_soup_can",
    5: "006_mustard_bottle", 6: "007_tuna_fish_can", 7: "008_pudding_box", 8: "009_gelatin_box",
    9: "010_potted_meat_can", 10: "011_banana", 11: "019_pitcher_base", 12: "021_bleach_cleanser",
    13: "024_bowl", 14: "025_mug", 15: "035_power_drill", 16: "036_wood_block", 17: "037_scissors",
    18: "040_large_marker", 19: "051_large_clamp", 20: "052_extra_large_clamp", 21: "061_foam_brick",
}
YCB_IDS = {name: i for i, name in YCB_CLASSES.items()}


@dataclass
class ObjectMesh:
    """A YCB model in its own frame (metres)."""

    name: str
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64; (0, 3) when only points.xyz exists
    points: np.ndarray  # (P, 3) float64, the points.xyz set (the mesh vertices when it is missing)
    source: str = ""


def read_points_xyz(path: str | Path) -> np.ndarray:
    """``points.xyz`` -> (P, 3) float64; malformed lines are an InputError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("missing object point file", path=path)
    rows = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            xyz = [float(x) for x in parts[:3]]
        except ValueError:
            raise InputError(f"line {n}: expected 'x y z' numbers", path=path) from None
        if len(xyz) != 3:
            raise InputError(f"line {n}: expected 'x y z'", path=path)
        rows.append(xyz)
    pts = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    if len(pts) == 0:
        raise InputError("no points", path=path)
    if not np.isfinite(pts).all():
        raise InputError("contains NaN or Inf", path=path)
    return pts


def read_obj_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) vertices and (F, 3) faces of a Wavefront OBJ (trimesh, vertices kept in file order)."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError("missing object mesh", path=path)
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False, skip_materials=True, maintain_order=True)
    except Exception as e:  # trimesh raises many types on malformed files
        raise InputError(f"malformed OBJ mesh ({type(e).__name__}: {e})", path=path) from None
    v = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64)
    f = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    if len(v) == 0 or len(f) == 0:
        raise InputError("OBJ mesh has no faces", path=path)
    if not np.isfinite(v).all():
        raise InputError("vertices contain NaN or Inf", path=path)
    return v, f


@functools.lru_cache(maxsize=32)
def _load_cached(models_root: str, name: str) -> ObjectMesh:
    d = Path(models_root) / name
    obj, xyz = d / "textured_simple.obj", d / "points.xyz"
    if not obj.is_file() and not xyz.is_file():
        raise InputError(f"no model for object {name!r} (expected textured_simple.obj or points.xyz)", path=d)
    if obj.is_file():
        v, f = read_obj_mesh(obj)
    else:
        v, f = None, np.zeros((0, 3), np.int64)
    pts = read_points_xyz(xyz) if xyz.is_file() else v
    if v is None:
        v = pts
    return ObjectMesh(name, v, f, pts, str(obj if obj.is_file() else xyz))


def load_object_mesh(models_root: str | Path, name: str) -> ObjectMesh:
    """The YCB model ``name`` under ``models_root`` (cached per process; do not mutate the arrays)."""
    return _load_cached(str(Path(models_root).resolve()), str(name))


def rigid(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(4, 4) matrix of ``X -> R X + t``."""
    M = np.eye(4)
    M[:3, :3] = np.asarray(R, dtype=np.float64).reshape(3, 3)
    M[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return M


def pose_from_3x4(P: np.ndarray) -> np.ndarray:
    """DexYCB ``pose_y[k]`` (3, 4) ``[R | t]`` object->camera -> (4, 4)."""
    P = np.asarray(P, dtype=np.float64).reshape(3, 4)
    return rigid(P[:, :3], P[:, 3])


def pose_from_rotvec(rotvec: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """HO-3D ``objRot`` (3,) or (3, 1) axis-angle and ``objTrans`` (3,) -> (4, 4) object->camera.

    ``X = X_model R^T + t`` for row vectors is ``R X_model + t`` for column vectors.
    """
    from scipy.spatial.transform import Rotation

    R = Rotation.from_rotvec(np.asarray(rotvec, dtype=np.float64).reshape(3)).as_matrix()
    return rigid(R, trans)


def apply_pose(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) model points -> posed points with a (4, 4) object->target matrix."""
    return np.asarray(points, dtype=np.float64) @ pose[:3, :3].T + pose[:3, 3]


def aabb(points: np.ndarray) -> np.ndarray:
    """(2, 3) min and max corner of (N, 3) points."""
    p = np.asarray(points, dtype=np.float64)
    return np.stack([p.min(0), p.max(0)])
