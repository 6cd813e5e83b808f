"""Canonicalisation and per-bone local frames of a 21-joint hand skeleton (HandOcc's only hand input).

Pure torch functions, batched over any leading dimensions. Joint order is handcli's (wrist, then thumb,
index, middle, ring, pinky, base to tip); bone ``b`` (0..19) runs from joint ``PARENTS_21[b + 1]`` to joint
``b + 1``, so finger ``f`` (0 thumb .. 4 pinky) owns bones ``4f .. 4f + 3`` and bones 0, 4, 8, 12, 16 start
at the wrist ("root bones").

Left hands are handled as mirrored right hands: their joints (and every query point) are mirrored
x -> -x in world coordinates before anything else, so one network serves both sides.

Canonical frame (our choice, HALO's converter up to the axis names): origin at the wrist, +x along the
middle root bone (wrist -> middle base), +z along the normal of the index / middle root-bone plane
(index root x middle root, made orthogonal to x), +y = z x x. For a right hand (or a mirrored left one)
this is a proper rotation.

Bone frames follow the kinematic chain by parallel transport: a root bone's frame is the canonical frame
turned by the smallest rotation that takes +x onto the bone; every child bone's frame is its parent's
turned by the smallest rotation between the two bone directions. The first axis is the bone direction;
no twist is introduced, and the construction never degenerates because consecutive bones never point in
opposite directions (unlike a frame built from a fixed reference vector, which fails when a bone lines up
with it, e.g. a finger flexed by 90 degrees).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from handcli.hand.skeleton import PARENTS_21

NUM_BONES = 20
BONE_START = [PARENTS_21[b + 1] for b in range(NUM_BONES)]  # parent joint of each bone
BONE_END = list(range(1, NUM_BONES + 1))  # child joint of each bone
ROOT_BONES = [0, 4, 8, 12, 16]
# Parent bone of each bone (-1 for root bones): the bone that ends at this bone's start joint.
BONE_PARENT = [-1 if BONE_START[b] == 0 else BONE_START[b] - 1 for b in range(NUM_BONES)]
MIRROR = (-1.0, 1.0, 1.0)


def mirror_x(p: Tensor) -> Tensor:
    """Points (..., 3) mirrored x -> -x (left <-> right)."""
    return p * p.new_tensor(MIRROR)


def _unit(v: Tensor, eps: float = 1e-12) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def canonical_frame(joints: Tensor) -> tuple[Tensor, Tensor]:
    """World -> canonical rigid transform of right-hand skeletons: c = R (x - wrist).

    joints: (..., 21, 3). Returns R (..., 3, 3) (rows = canonical axes in world coordinates, det +1)
    and the wrist (..., 3).
    """
    wrist = joints[..., 0, :]
    ex = _unit(joints[..., 9, :] - wrist)
    n = torch.cross(joints[..., 5, :] - wrist, joints[..., 9, :] - wrist, dim=-1)
    ez = _unit(n - (n * ex).sum(-1, keepdim=True) * ex)
    ey = torch.cross(ez, ex, dim=-1)
    return torch.stack([ex, ey, ez], dim=-2), wrist


def canonicalize(joints: Tensor) -> Tensor:
    """Joints (..., 21, 3) expressed in their own canonical frame (wrist at the origin)."""
    R, wrist = canonical_frame(joints)
    return torch.einsum("...ij,...kj->...ki", R, joints - wrist[..., None, :])


def min_rotation(a: Tensor, b: Tensor) -> Tensor:
    """Smallest rotation taking unit vectors a onto b: (..., 3), (..., 3) -> (..., 3, 3).

    R = I + [v]x + [v]x^2 / (1 + c) with v = a x b, c = a . b (Rodrigues); defined for c > -1.
    """
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum(-1)
    z = torch.zeros_like(c)
    vx = torch.stack([torch.stack([z, -v[..., 2], v[..., 1]], -1),
                      torch.stack([v[..., 2], z, -v[..., 0]], -1),
                      torch.stack([-v[..., 1], v[..., 0], z], -1)], dim=-2)
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand(vx.shape)
    return eye + vx + (vx @ vx) / (1.0 + c).clamp_min(1e-6)[..., None, None]


@dataclass
class BoneFrames:
    """Per-bone geometry of right-hand (or mirrored left-hand) skeletons; leading dims (...)."""

    start: Tensor  # (..., 20, 3) bone start (parent joint), world
    end: Tensor  # (..., 20, 3) bone end (child joint)
    axes: Tensor  # (..., 20, 3, 3) columns = local x (bone direction), y, z in world coordinates
    length: Tensor  # (..., 20)
    canon: Tensor  # (..., 3, 3) world -> canonical rotation (rows = axes)
    wrist: Tensor  # (..., 3)


def bone_frames(joints: Tensor) -> BoneFrames:
    """Bone frames of right-hand skeletons (mirror left ones first): joints (..., 21, 3)."""
    R, wrist = canonical_frame(joints)
    start = joints[..., BONE_START, :]
    end = joints[..., BONE_END, :]
    vec = end - start
    length = vec.norm(dim=-1)
    d = _unit(vec)
    axes = [None] * NUM_BONES
    ex = R[..., 0, :]
    parent_frame = R.transpose(-1, -2)  # columns = canonical axes
    for finger in range(5):  # 5 chains of 4 bones: a fixed 20-step loop over bones, not over points
        frame, prev_dir = parent_frame, ex
        for k in range(4):
            b = 4 * finger + k
            frame = min_rotation(prev_dir, d[..., b, :]) @ frame
            axes[b] = frame
            prev_dir = d[..., b, :]
    return BoneFrames(start, end, torch.stack(axes, dim=-3), length, R, wrist)


def segment_distance(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance of points x (P, 3) to segments a-b (B, 3): (P, B).

    Written with (P, 3) x (3, B) products (no (P, B, 3) temporaries); coordinates are taken relative to
    the segments' centroid first so that the expanded squares keep float32 precision.
    """
    c = a.mean(0)
    x, a, b = x - c, a - c, b - c
    ab = b - a
    len2 = (ab * ab).sum(-1).clamp_min(1e-12)
    xab = x @ ab.T - (a * ab).sum(-1)  # (x - a) . ab
    s = (xab / len2).clamp(0.0, 1.0)
    ax2 = (x * x).sum(-1, keepdim=True) - 2.0 * (x @ a.T) + (a * a).sum(-1)  # |x - a|^2
    d2 = (ax2 - 2.0 * s * xab + s * s * len2).clamp_min(0.0)
    return sqrt_zero_safe(d2)


def sqrt_zero_safe(x: Tensor) -> Tensor:
    """sqrt of x >= 0 whose gradient at 0 is 0, not NaN (sqrt has no finite gradient there): same values."""
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, 1.0).sqrt(), 0.0)


def offset_from_bone(local: Tensor) -> Tensor:
    """(R, 3) offset of points from their bone's segment, in the bone's frame and in bone lengths: local (R, 3)
    with x along the bone (0 at its start, 1 at its end); the x part is how far past the segment's ends."""
    return torch.cat([local[:, :1] - local[:, :1].clamp(0.0, 1.0), local[:, 1:]], -1)


def hand_size(joints: Tensor) -> Tensor:
    """Sum of the 20 bone lengths (metres): (..., 21, 3) -> (...). About 0.6 m for an adult hand."""
    return (joints[..., BONE_END, :] - joints[..., BONE_START, :]).norm(dim=-1).sum(-1)


def pose_code(joints: Tensor, scale: float = 10.0) -> Tensor:
    """Global pose descriptor: the 20 non-wrist canonical joints, times ``scale`` (~unit range): (..., 60)."""
    c = canonicalize(joints)[..., 1:, :]
    return (c * scale).flatten(-2)
