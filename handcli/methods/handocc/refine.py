"""Per-frame skeleton refinement of HandOcc's training hands (docs/methods/handocc.md#skeleton-refinement).

Real annotations (and ``synth --profile realistic``) place the 3D joints a few millimetres off the hand
the images show. HandOcc is driven by the skeleton alone, so a joint error moves and bends the rendered
hand against every view of the frame. ``SkeletonRefinement`` holds a learned offset per joint of every
training hand (frame, side), initialised at zero and optimised with the network by the photometric and
mask losses (its parameters are ordinary model parameters: the trainer's optimiser, checkpoint and
``--resume`` carry them). Two priors keep the offsets small where the images do not ask for them:

- ``w_refine``: mean squared offset in millimetres (a Gaussian prior around the annotation);
- ``w_bone``: squared difference (mm) between the refined bone lengths and the mean annotated bone lengths
  of the same capture and side over all its training frames (bone lengths are a property of the subject;
  per-frame joint noise changes them, their mean over frames does not).

The offsets are stored as ``offsets * scale`` metres so that an Adam step of the run's learning rate moves
a joint by ``lr * scale`` (0.2 mm at the fast preset's initial lr and ``refine_scale`` = 0.1).

A trained run applies the offsets only to a frame whose cache joints equal the annotated joints it was
trained on (``anchor``): another cache, or a pose set with ``set_skeletons`` (the viewer's and ``render
--edit``'s edits), renders its own skeleton.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from handcli.hand.skeleton_frames import BONE_END, BONE_START, canonical_frame, mirror_x, segment_distance

SIDES = ("right", "left")
ANCHOR_TOL = 1e-5  # metres: cache joints within this of the training annotation are that annotation


class PerTrainingHand(nn.Module):
    """Learned parameters with one row per training hand (frame, side): the ``keys`` buffer (n, 2) long
    (frame, 0 right / 1 left) and the row lookup shared by ``SkeletonRefinement`` and ``LabelAlignment``."""

    def __init__(self, n: int, scale: float):
        super().__init__()
        self.scale = float(scale)
        self.register_buffer("keys", torch.zeros(n, 2, dtype=torch.long))
        self._index: dict[tuple[int, str], int] | None = None

    @staticmethod
    def hand_list(hands: dict[int, list[tuple[str, Tensor]]]) -> list[tuple[int, str, Tensor]]:
        """{frame: [(side, joints (21, 3))]} -> [(frame, side, joints)], the order of the rows."""
        return [(f, s, j) for f in sorted(hands) for s, j in hands[f]]

    def set_keys(self, rows: list[tuple[int, str, Tensor]]) -> None:
        self.keys.copy_(torch.tensor([[f, SIDES.index(s)] for f, s, _ in rows]))

    def row(self, frame: int, side: str) -> int | None:
        """Row of the training hand (frame, side), or None."""
        if self._index is None or len(self._index) != len(self.keys):
            self._index = {(int(f), SIDES[int(s)]): i for i, (f, s) in enumerate(self.keys.tolist())}
        return self._index.get((frame, side))

    def rows(self, frame: int, sides: list[str]) -> list[int]:
        """Rows of the frame's training hands among ``sides``."""
        return [i for i in (self.row(frame, s) for s in sides) if i is not None]

    def _load_from_state_dict(self, *args, **kwargs):
        self._index = None  # keys change with a loaded state
        super()._load_from_state_dict(*args, **kwargs)


class SkeletonRefinement(PerTrainingHand):
    """Learned joint offsets of ``n`` training hands.

    Buffers: ``keys`` (see ``PerTrainingHand``), ``anchor`` (n, 21, 3) the annotated joints (metres) the
    offsets apply to, ``bone_target`` (n, 20) the bone-length prior (metres). Parameter: ``offsets``
    (n, 21, 3), in units of ``scale`` metres.
    """

    def __init__(self, n: int, scale: float):
        super().__init__(n, scale)
        self.register_buffer("anchor", torch.zeros(n, 21, 3))
        self.register_buffer("bone_target", torch.zeros(n, 20))
        self.offsets = nn.Parameter(torch.zeros(n, 21, 3))

    @classmethod
    def for_hands(cls, hands: dict[int, list[tuple[str, Tensor]]], captures: np.ndarray, scale: float
                  ) -> "SkeletonRefinement":
        """From the training hands {frame: [(side, joints (21, 3))]} and the cache's capture per frame."""
        keys = cls.hand_list(hands)
        m = cls(len(keys), scale)
        if not keys:
            return m
        J = torch.stack([j.detach().float().cpu() for _, _, j in keys])
        lengths = bone_lengths(J)
        group = [(int(captures[f]), s) for f, s, _ in keys]
        target = torch.zeros_like(lengths)
        for g in set(group):
            rows = [i for i, x in enumerate(group) if x == g]
            target[rows] = lengths[rows].mean(0)
        m.set_keys(keys)
        m.anchor.copy_(J)
        m.bone_target.copy_(target)
        return m.to(hands[keys[0][0]][0][1].device)

    def index(self, frame: int, side: str, joints: Tensor) -> int | None:
        """Row of the hand (frame, side) when ``joints`` (21, 3) are the annotation it was trained on."""
        i = self.row(frame, side)
        if i is None:
            return None
        if not torch.allclose(joints.detach().to(self.anchor), self.anchor[i], rtol=0.0, atol=ANCHOR_TOL):
            return None
        return i

    def refine(self, frame: int, side: str, joints: Tensor) -> Tensor:
        """(21, 3) refined joints of the hand (frame, side); ``joints`` unchanged for any other hand."""
        i = self.index(frame, side, joints)
        if i is None:
            return joints
        return joints.to(self.offsets.dtype) + self.scale * self.offsets[i]

    def offset_m(self) -> Tensor:
        """(n, 21, 3) offsets in metres."""
        return self.scale * self.offsets

    def common_offset(self, side: str) -> Tensor | None:
        """(21, 3) mean offset (metres, no gradient) of the training hands of ``side``, each expressed in its
        annotated hand's canonical frame (right-hand space: left hands mirrored); None without such hands."""
        rows = self.keys[:, 1] == SIDES.index(side)
        if not bool(rows.any()):
            return None
        anchor, off = self.anchor[rows], self.offset_m().detach()[rows]
        if side == "left":
            anchor, off = mirror_x(anchor), mirror_x(off)
        R, _ = canonical_frame(anchor)
        return torch.einsum("nij,nkj->nki", R, off).mean(0)

    def transfer(self, side: str, joints: Tensor) -> Tensor:
        """(..., 21, 3) joints of hands of ``side`` the offsets were not learned for, in the annotation's convention,
        moved by the training hands' common offset (``common_offset``, rotated into each hand's canonical frame).

        Why: on a set's training frames the offsets and the networks settle together, and part of what the
        offsets learn is common to all frames (1.3 mm of 1.9 mm on the ideal bench sequence): the networks
        expect it, so an unseen annotated pose renders better with it (docs/methods/handocc.md#skeleton-refinement).
        """
        c = self.common_offset(side)
        if c is None:
            return joints
        j = joints.to(c)
        R, _ = canonical_frame(mirror_x(j) if side == "left" else j)
        off = torch.einsum("...ij,ki->...kj", R, c)  # canonical -> world: R^T c per joint (R is orthonormal)
        return j + (mirror_x(off) if side == "left" else off)

    def penalty(self, frame: int, sides: list[str], w_offset: float, w_bone: float) -> Tensor:
        """Prior of the frame's refined hands: w_offset * mean offset² + w_bone * mean bone-length error²
        (both in mm²); zero when the frame has no refined hand."""
        rows = self.rows(frame, sides)
        if not rows:
            return self.offsets.sum() * 0.0
        d = self.scale * self.offsets[rows] * 1000.0  # (R, 21, 3) mm
        out = w_offset * (d ** 2).sum(-1).mean()
        if w_bone > 0:
            J = self.anchor[rows] + self.scale * self.offsets[rows]
            out = out + w_bone * ((bone_lengths(J) - self.bone_target[rows]) * 1000.0).pow(2).mean()
        return out


def bone_lengths(joints: Tensor) -> Tensor:
    """(..., 21, 3) -> (..., 20) bone lengths (same unit)."""
    return (joints[..., BONE_END, :] - joints[..., BONE_START, :]).norm(dim=-1)


def detach_sampling(hand):
    """The hand with its capsules and box (where rays are sampled) cut from the gradient: the refinement is
    driven through the occupancy and colour at the samples, not through where the samples lie."""
    from dataclasses import replace

    return replace(hand, radii=hand.radii.detach(), start=hand.start.detach(), end=hand.end.detach(),
                   box_min=hand.box_min.detach(), box_max=hand.box_max.detach())


def detach_hand(hand):
    """The hand cut from the gradient entirely (the occupancy labels come from the annotated mesh, which is
    no evidence for the refinement)."""
    from dataclasses import fields, replace

    from handcli.hand.skeleton_frames import BoneFrames

    fr = hand.frames
    frames = BoneFrames(**{f.name: getattr(fr, f.name).detach() for f in fields(BoneFrames)})
    return replace(detach_sampling(hand), joints=hand.joints.detach(), frames=frames, pose=hand.pose.detach())


def carry_points(x: Tensor, annotated, refined) -> Tensor:
    """World points (P, 3) near the ``annotated`` hand, each attached to its nearest bone (capsule distance, as
    the occupancy network ranks bones) and moved rigidly with that bone to where it lies in ``refined`` (a
    HandSkeleton of the same side): the coordinates in the bone's frame are kept, except the one along the
    bone, which scales with the bone's length (thickness is absolute). -> (P, 3) world.

    Used for the mesh-occupancy labels (``labels_pose`` "bones"; "joints" and "refined" carry them from the posed
    mesh's own skeleton): the labelled points belong to the annotated mesh, posed on the annotated skeleton; the
    refined skeleton is the annotation corrected toward the images, so the labels follow that correction instead of
    contradicting it.
    """
    fa, fr = annotated.frames, refined.frames
    xa = annotated.to_right(x)
    b = (segment_distance(xa, fa.start, fa.end) - annotated.radii).argmin(-1)  # (P,)
    v = torch.einsum("pij,pi->pj", fa.axes[b], xa - fa.start[b])  # coordinates along the bone's axes (columns)
    v = torch.cat([v[:, :1] * (fr.length[b] / fa.length[b])[:, None], v[:, 1:]], -1)
    return refined.to_right(fr.start[b] + torch.einsum("pij,pj->pi", fr.axes[b], v))
