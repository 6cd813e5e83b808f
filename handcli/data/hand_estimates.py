"""Estimated input hands for hand-object datasets: one npz per view, from a single-image hand-mesh estimator.

HandNeRF (Choi et al.) is trained with the ground-truth hand mesh and tested with the mesh that HandOccNet
estimates from the input image. ``handcli preprocess dexycb|ho3d --hand-estimates DIR`` reads such
estimates and stores them per view in the cache (``views/hand_estimate``, docs/cache.md); the ground-truth
hand stays in ``frames/{side}`` for training and metrics. Layout and fields (docs/datasets-ho.md#hand-estimates),
the same as ``handcli synth --profile realistic`` writes under ``ROOT/handcli_est``:

- DexYCB: ``DIR/{subject}/{sequence}/{serial}/mano_{f:06d}.npz`` (the colour image's folder, relative to
  the root) with ``vertices`` (V, 3) or (1, V, 3) and ``joint_3d`` (21, 3) or (1, 21, 3), DexYCB joint order,
  metres in that camera's (OpenCV) frame, like ``labels_{f:06d}.npz``;
- HO-3D: ``DIR/{split}/{SEQ}/{id:04d}.npz`` with ``vertices`` (V, 3) and ``handJoints3D`` (21, 3) in HO-3D
  order, metres in that camera's OpenGL frame, like ``meta/{id:04d}.pkl``.

V must be the cache's hand model's vertex count (778 for MANO). Other fields (``pose_m``, ``handPose``, ...)
are ignored.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handcli.camera import transform
from handcli.errors import InputError
from handcli.hand.skeleton import HO3D_TO_21

GL_TO_CV4 = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class EstimateFormat:
    """Where a dataset's estimate of a view lives and which fields hold it."""

    joints_key: str
    opengl: bool  # the file's camera frame is OpenGL (y up, z backwards) instead of OpenCV
    joint_order: np.ndarray | None = None  # file joint k -> handcli joint order index (None: same order)


def dexycb_estimate_path(est_root: Path, root: Path, color: Path, frame: int) -> Path:
    """``DIR/{subject}/{sequence}/{serial}/mano_{f:06d}.npz`` for the DexYCB image ``color`` under ``root``."""
    return Path(est_root) / Path(color).parent.relative_to(root) / f"mano_{frame:06d}.npz"


def ho3d_estimate_path(est_root: Path, split: str, seq: str, frame: int) -> Path:
    """``DIR/{split}/{SEQ}/{id:04d}.npz`` for HO-3D sequence (camera) ``seq`` and frame id ``frame``."""
    return Path(est_root) / split / seq / f"{frame:04d}.npz"


def _field(d, key: str, shapes: tuple, path: Path) -> np.ndarray:
    if key not in d.files:
        raise InputError("missing field (an estimated hand needs vertices and joints)", path=path, field=key)
    try:
        a = np.asarray(d[key], dtype=np.float64)
    except (ValueError, TypeError, OSError, zipfile.BadZipFile) as e:
        raise InputError(f"unreadable array ({e})", path=path, field=key) from None
    for shape in shapes:
        if a.shape == shape:
            break
        if a.shape == (1,) + shape:
            a = a[0]
            break
    else:
        raise InputError(f"shape {a.shape}, expected {' or '.join(str(s) for s in shapes)} (or with a leading 1)",
                         path=path, field=key)
    if not np.isfinite(a).all():
        raise InputError("contains NaN or Inf", path=path, field=key)
    return a


def read_estimate(path: Path, fmt: EstimateFormat, num_vertices: int, cam_to_world: np.ndarray) -> dict:
    """One view's estimated hand moved to the world: {"vertices": (V, 3), "joints": (21, 3)} float32 metres.

    ``cam_to_world`` (4, 4) is the view's OpenCV camera -> world. A missing, unreadable or malformed file is
    an ``InputError`` naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise InputError("estimated hand file not found (every selected view needs one with --hand-estimates)",
                         path=path, field="hand-estimates")
    try:
        d = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(f"not a readable npz file ({e})", path=path, field="hand-estimates") from None
    with d:
        verts = _field(d, "vertices", ((num_vertices, 3),), path)
        joints = _field(d, fmt.joints_key, ((21, 3),), path)
    if fmt.joint_order is not None:
        joints = joints[fmt.joint_order]
    M = np.asarray(cam_to_world, np.float64) @ (GL_TO_CV4 if fmt.opengl else np.eye(4))
    return {"vertices": transform(M, verts).astype(np.float32), "joints": transform(M, joints).astype(np.float32)}


DEXYCB = EstimateFormat("joint_3d", opengl=False)


HO3D = EstimateFormat("handJoints3D", opengl=True, joint_order=np.asarray(HO3D_TO_21))
