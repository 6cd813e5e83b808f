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
