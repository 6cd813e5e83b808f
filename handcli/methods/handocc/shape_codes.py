"""Per-frame shape codes of HandOcc's training hands (``frame_codes``, docs/methods/handocc.md#per-frame-shape-codes).

The skeleton refinement (refine.py) moves a training hand's joints toward its images, but the occupancy network
maps every frame's skeleton to a surface with the same function: where the refined skeletons keep a per-frame
error against the surfaces the images show (about 1.2 mm per joint on the realistic bench), the network learns
the blur of those surfaces. ``FrameShapeCodes`` holds a learned offset of each training hand's per-bone
conditioning (the pose projection of ``OccupancyNet``, (20, pose_proj)), initialised at zero, that lets a frame's
surface differ from what its skeleton alone gives; a prior keeps it small. A hand the run did not train on (a
novel pose, an edited skeleton) renders without one, as the network alone gives it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from handcli.methods.handocc.refine import PerTrainingHand, SkeletonRefinement


class FrameShapeCodes(PerTrainingHand):
    """Learned conditioning offsets of ``n`` training hands: parameter ``codes`` (n, bones, dim) in units of
    ``scale``; ``keys`` as the skeleton refinement's rows (the same hands, the same order)."""

    def __init__(self, n: int, bones: int, dim: int, scale: float):
        super().__init__(n, scale)
        self.codes = nn.Parameter(torch.zeros(n, bones, dim))

    @classmethod
    def like(cls, refine: SkeletonRefinement, bones: int, dim: int, scale: float) -> "FrameShapeCodes":
        """One code per row of ``refine`` (its keys copied)."""
        m = cls(len(refine.keys), bones, dim, scale).to(refine.keys.device)
        m.keys.copy_(refine.keys)
        return m

    def code(self, i: int) -> Tensor:
        """(bones, dim) code of row ``i``."""
        return self.scale * self.codes[i]

    def penalty(self, rows: list[int], weight: float) -> Tensor:
        """weight * mean squared code value of ``rows`` (zero without rows)."""
        if not rows:
            return self.codes.sum() * 0.0
        return weight * (self.scale * self.codes[rows]).pow(2).mean()
