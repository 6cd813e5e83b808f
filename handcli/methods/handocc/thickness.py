"""A learned thickness of the rendered hand about each bone.

The occupancy labels come from the annotated hand model's mesh. A real hand is not in the model's shape space:
its fingers can be thicker or thinner than any shape the model has (the realistic profile's `thicken_mm`). The
images see that thickness at the outer silhouette of every view, but inside the silhouette (a finger in front of
the palm or of another finger) only the colour sees it, weakly, and there the labels keep the field at the model's
thickness. `BoneThickness` learns one radial scale per side and finger bone, shared by every frame, from the
photometric and mask losses only: the field is rendered at the sample's coordinates scaled towards the bone, so what
the masks show at the outer silhouettes thickens the whole bone, also where the silhouette cannot show it. The
labels keep supervising the unscaled field (the model's shape), as `DensityCalibration` keeps them on the
uncalibrated one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from handcli.hand.skeleton_frames import NUM_BONES, ROOT_BONES, offset_from_bone, sqrt_zero_safe


def thicken(local: Tensor, length: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
    """Coordinates at which a field ``exp(log_scale)`` times thicker about its bone is evaluated.

    local (R, 3): samples in their bone's frame divided by the bone's length (x along the bone, 0 at its start, 1
    at its end); length (R,) that bone's length (metres); log_scale (R,) the bone's log radial scale. The radial
    part (y, z) is divided by the scale; along the bone nothing changes. Returns the scaled local coordinates
    (R, 3) and their distance to the bone's segment (R,) in metres (the distance of the scaled point).
    """
    k = torch.exp(-log_scale)
    u = torch.cat([local[:, :1], local[:, 1:] * k[:, None]], -1)
    return u, length * sqrt_zero_safe(offset_from_bone(u).square().sum(-1))


class BoneThickness(nn.Module):
    """Per side (right, left) and finger bone a log radial scale of the rendered field, 0 at the start (the
    labels' thickness). ``scale`` s makes an Adam step of the run's learning rate move a log scale by lr·s. The root
    bones (wrist to each finger's first joint: the palm and the thumb's base) keep scale 1: a radial scale about one
    bone models a finger's round cross-section, not the flat palm, whose edge bones it thinned where their
    neighbours could take over (docs/benchmarks.md, "Fourteenth round")."""

    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.scale = float(scale)
        self.p = nn.Parameter(torch.zeros(2, NUM_BONES))
        learned = torch.ones(NUM_BONES)
        learned[ROOT_BONES] = 0.0
        self.register_buffer("learned", learned, persistent=False)

    def log_scale(self, side: str) -> Tensor:
        """(20,) log radial scales of the ``side`` ("right" / "left") hand's bones."""
        return self.scale * self.p[0 if side == "right" else 1] * self.learned

    def in_use(self) -> bool:
        """Whether renders apply the scales: while they are learned (``p`` requires a gradient and one is being
        recorded) or once they differ from 1. A thickness never learned (``bone_thickness`` "auto" on data the labels
        fit) renders the field itself, bit for bit."""
        return (self.p.requires_grad and torch.is_grad_enabled()) or bool(self.p.detach().any())

    def mean_scale(self) -> float:
        """The learned scales' mean over both sides (a log line)."""
        keep = self.learned > 0
        return float(torch.exp(self.scale * self.p.detach()[:, keep]).mean())
