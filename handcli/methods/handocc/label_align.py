"""Rigid alignment of HandOcc's occupancy labels to the images (docs/methods/handocc.md#label-alignment-align_labels).

The mesh-occupancy labels are drawn around the cache's posed mesh, i.e. the *annotated* hand-model fit. On
real data (InterHand2.6M's MANO fits are ~5 mm off; ``synth --profile realistic``) that mesh sits a few
millimetres off the hand the images show, partly as a whole (a per-sequence translation, a global rotation
error), and the labels then pull the surface away from where the masks and colours put it.
``LabelAlignment`` learns one rigid transform per training hand (frame, side) that moves its labelled
points: ``x' = R(w) (x - c) + c + t`` about the hand's centre ``c`` (mean annotated joint). It is driven by
the occupancy loss alone: with the field held by the images, moving the labels rigidly to where the field
already puts the hand is the cheapest way to lower that loss, so the rigid part of the annotation's error
stops fighting the images, while the labels' shape (what the images say little about) stays. A prior keeps
it near the identity: ``w_align`` x (mean squared translation + mean squared displacement of a point
``ALIGN_RADIUS`` from the centre by the rotation), in mm².

Parameters are scaled like the skeleton offsets (``scale`` metres or radians per unit), start at zero, and
are ordinary model parameters (optimiser, checkpoint, ``--resume``). Only training uses them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from handcli.methods.handocc.refine import PerTrainingHand

ALIGN_RADIUS = 0.05  # metres: a rotation's prior is the displacement it causes this far from the centre


class LabelAlignment(PerTrainingHand):
    """Per training hand a rotation vector and a translation of its labelled points.

    Buffers: ``keys`` (see ``PerTrainingHand``), ``centre`` (n, 3) metres. Parameters: ``rot`` (n, 3) in units
    of ``scale`` radians, ``trans`` (n, 3) in units of ``scale`` metres.
    """

    def __init__(self, n: int, scale: float):
        super().__init__(n, scale)
        self.register_buffer("centre", torch.zeros(n, 3))
        self.rot = nn.Parameter(torch.zeros(n, 3))
        self.trans = nn.Parameter(torch.zeros(n, 3))

    @classmethod
    def for_hands(cls, hands: dict[int, list[tuple[str, Tensor]]], scale: float) -> "LabelAlignment":
        """From the training hands {frame: [(side, joints (21, 3))]}."""
        keys = cls.hand_list(hands)
        m = cls(len(keys), scale)
        if keys:
            m.set_keys(keys)
            m.centre.copy_(torch.stack([j.detach().float().cpu().mean(0) for _, _, j in keys]))
            m = m.to(hands[keys[0][0]][0][1].device)
        return m

    def apply(self, frame: int, side: str, x: Tensor) -> Tensor:
        """Labelled points x (P, 3) of the hand (frame, side), moved by its transform -> (P, 3); unchanged for a
        hand that is not a training hand."""
        i = self.row(frame, side)
        if i is None:
            return x
        from smplx.lbs import batch_rodrigues

        R = batch_rodrigues(self.scale * self.rot[i:i + 1])[0]  # (3, 3)
        c = self.centre[i]
        return (x - c) @ R.T + c + self.scale * self.trans[i]

    def penalty(self, frame: int, sides: list[str], w: float) -> Tensor:
        """w x (mean squared translation + mean squared rotation displacement at ALIGN_RADIUS), mm², of the
        frame's training hands; zero when it has none."""
        rows = self.rows(frame, sides)
        if not rows:
            return self.trans.sum() * 0.0
        t = self.scale * self.trans[rows] * 1000.0
        r = self.scale * self.rot[rows] * ALIGN_RADIUS * 1000.0
        return w * ((t ** 2).sum(-1).mean() + (r ** 2).sum(-1).mean())

    def shift_mm(self) -> Tensor:
        """(n,) translation of each hand's labels in millimetres."""
        return (self.scale * self.trans).norm(dim=-1) * 1000.0


THICKNESS_RADIUS = 0.01  # metres: a thickness scale's prior is the displacement it causes this far from the bone


class LabelThickness(nn.Module):
    """Per side and bone a radial scale of the labelled points about the bone's segment: the labels of a subject
    whose fingers are thicker (or thinner) than the hand model's fit (docs/methods/handocc.md#label-thickness).

    A point is attached to its nearest bone by capsule distance (as the occupancy network ranks bones) and moved
    along the line from the nearest point c of that bone's segment: ``x' = c + (x - c)(1 + scale * p)``. Shared by
    all frames (a subject's shape does not change from frame to frame; one subject per run is assumed). Driven by
    the occupancy loss alone, like `LabelAlignment`; the prior ``w`` x mean squared displacement at
    ``THICKNESS_RADIUS`` (mm²) keeps it near 1. Parameters ``p`` (2, 20): right, left; start at zero.
    """

    def __init__(self, scale: float, num_bones: int = 20):
        super().__init__()
        self.scale = scale
        self.p = nn.Parameter(torch.zeros(2, num_bones))

    def factors(self, side: str) -> Tensor:
        """(20,) radial scale of each bone's labels for ``side``."""
        return 1.0 + self.scale * self.p[0 if side == "right" else 1]

    def apply(self, hand, x: Tensor) -> Tensor:
        """Labelled points x (P, 3) around ``hand`` (a HandSkeleton) -> (P, 3) scaled about their bones."""
        from handcli.hand.skeleton_frames import segment_distance

        a, b = hand.start, hand.end
        with torch.no_grad():
            k = (segment_distance(x, a, b) - hand.radii).argmin(-1)  # (P,)
        ab = b[k] - a[k]
        t = (((x - a[k]) * ab).sum(-1) / ab.square().sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
        c = a[k] + t[:, None] * ab
        return c + (x - c) * self.factors(hand.side)[k][:, None]

    def penalty(self, sides: list[str], w: float) -> Tensor:
        """w x mean squared displacement (mm²) at THICKNESS_RADIUS of the bones of ``sides``."""
        rows = [0 if s == "right" else 1 for s in sides]
        d = self.scale * self.p[rows] * THICKNESS_RADIUS * 1000.0
        return w * d.square().mean()

    def percent(self) -> float:
        """Mean radial scale of the labels, less 1, in percent (both sides)."""
        return float(self.scale * self.p.detach().mean()) * 100.0
