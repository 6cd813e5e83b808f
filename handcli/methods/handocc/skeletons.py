"""The 21-joint skeletons that drive HandOcc, read from a cache.

Two sources (``HandOccConfig.skeleton``):

- ``"joints"`` (default): the cache's ``frames/{side}/joints``, the dataset's 3D joint annotation
  (InterHand2.6M's triangulated ``joint_3d``; DexYCB's and HO-3D's joints of the MANO fit).
- ``"mesh"``: the joints of the cache's posed hand model (``model_pose``, ``model_shape``, ``model_trans`` through
  ``hand_model/{side}``): the skeleton of the very mesh that the occupancy labels and the cache's hand masks come
  from. Where the dataset's joints and its mesh fit are separate annotations (InterHand2.6M), they disagree by
  both annotations' errors, and with ``"joints"`` the network learns a skeleton -> shape map that the labels
  contradict. A cache without hand model arrays (a skeleton-only pose file) falls back to its joints.

Hands that are absent or have an invalid joint are left out (both sources); non-finite joints are an
``InputError`` naming the cache and the field.
"""

from __future__ import annotations

import numpy as np
import torch

from handcli.data.cache import Cache
from handcli.errors import InputError
from handcli.methods.handocc.model import SKELETON_SOURCES

SIDES = ("right", "left")
_BATCH = 4096  # frames per forward_joints call


def _check_source(source: str) -> None:
    if source not in SKELETON_SOURCES:
        raise InputError(f"skeleton must be one of {', '.join(SKELETON_SOURCES)}, got {source!r}", field="skeleton")


def _model(cache: Cache, side: str):
    """The cache's ``side`` hand model (absolute poses, as ``model_pose`` is stored), or None when it holds none."""
    hm = cache.hand_model(side)
    return cache.hand_model_module(side) if hm is not None and "mano" in hm else None


def mesh_joints(cache: Cache, side: str, frames: np.ndarray) -> np.ndarray | None:
    """(n, 21, 3) float32 world joints of the cache's posed ``side`` hand model at ``frames`` (n,), or None when
    the cache holds no hand model arrays for that side."""
    model = _model(cache, side)
    if model is None:
        return None
    frames = np.asarray(frames, dtype=np.int64)
    cols = [cache.frame_column(f"{side}/model_{k}")[frames] for k in ("pose", "shape", "trans")]
    out = np.zeros((len(frames), 21, 3), np.float32)
    with torch.no_grad():
        for a in range(0, len(frames), _BATCH):
            pose, shape, trans = (torch.as_tensor(c[a:a + _BATCH], dtype=torch.float32) for c in cols)
            out[a:a + _BATCH] = model.forward_joints(pose, shape, trans).numpy()
    return out


def frames_joints(cache: Cache, frames: list[int], source: str = "joints") -> dict[int, list[tuple[str, np.ndarray]]]:
    """{frame: [(side, joints (21, 3) world float32)]} of many frames, right first, from whole columns (a few
    reads, not a few per frame). ``source``: "joints" or "mesh" (module docstring)."""
    _check_source(source)
    frames = list(frames)
    for f in frames:
        if not 0 <= f < cache.num_frames:
            raise InputError(f"frame {f} out of range (the cache has {cache.num_frames})", path=cache.path,
                             field="frames")
    wanted = np.array(sorted(set(frames)), dtype=np.int64)
    rows = {int(f): k for k, f in enumerate(wanted)}  # frame -> row of the joints read below
    cols = {}
    for s in SIDES:
        present, valid = cache.frame_column(f"{s}/present").astype(bool), cache.frame_column(f"{s}/joint_valid")
        joints = mesh_joints(cache, s, wanted) if source == "mesh" else None
        if joints is None:
            joints = cache.frame_column(f"{s}/joints")[wanted]
        cols[s] = (present, valid, joints)
    out = {}
    for f in frames:
        hands = []
        for side, (present, valid, joints) in cols.items():
            if not present[f] or not np.all(valid[f]):
                continue
            j = np.asarray(joints[rows[f]], dtype=np.float32)
            if not np.isfinite(j).all():
                raise InputError(f"non-finite joints in frame {f}", path=cache.path,
                                 field=f"frames/{side}/" + ("model_pose" if source == "mesh" else "joints"))
            hands.append((side, j))
        out[f] = hands
    return out


def frame_joints(cache: Cache, frame: int, source: str = "joints") -> list[tuple[str, np.ndarray]]:
    """[(side, joints (21, 3) world float32)] of one frame's hands, right first (see ``frames_joints``); reads
    that frame's values only."""
    _check_source(source)
    if not 0 <= frame < cache.num_frames:
        raise InputError(f"frame {frame} out of range (the cache has {cache.num_frames})", path=cache.path,
                         field="frames")
    out = []
    for side in SIDES:
        if not bool(cache.frame_value(f"{side}/present", frame)) or \
                not np.all(cache.frame_value(f"{side}/joint_valid", frame)):
            continue
        model = _model(cache, side) if source == "mesh" else None
        if model is not None:
            with torch.no_grad():
                j = model.forward_joints(*(torch.as_tensor(cache.frame_value(f"{side}/model_{k}", frame)[None],
                                                           dtype=torch.float32) for k in ("pose", "shape", "trans")))
            j, field = j[0].numpy(), f"frames/{side}/model_pose"
        else:
            j, field = cache.frame_value(f"{side}/joints", frame), f"frames/{side}/joints"
        j = np.asarray(j, dtype=np.float32)
        if not np.isfinite(j).all():
            raise InputError(f"non-finite joints in frame {frame}", path=cache.path, field=field)
        out.append((side, j))
    return out
