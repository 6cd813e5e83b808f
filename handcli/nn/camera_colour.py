"""A learned per-camera colour response: an affine map of each camera's RGB, identity at test time.

Real captures (and the synthetic datasets' realistic profile, docs/datasets.md#realistic-profile) differ in
gain and white balance per camera. A radiance field trained on them either averages the cameras' colours or
bends its geometry to explain them. Applying ``rgb' = A_c rgb + b_c`` (camera ``c``) to the rendered colour
before the photometric loss lets the field keep one colour per point; the maps start at the identity, a
small penalty keeps them near it (which fixes the overall scale the field and the maps could trade), and
renders for evaluation use the field's own colour (the identity map).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CameraColour(nn.Module):
    """Per-camera affine colour maps: ``A`` (C, 3, 3) initialised to I and ``b`` (C, 3) to 0."""

    def __init__(self, n_cameras: int):
        super().__init__()
        self.A = nn.Parameter(torch.eye(3).repeat(n_cameras, 1, 1))
        self.b = nn.Parameter(torch.zeros(n_cameras, 3))

    def forward(self, rgb: Tensor, camera: Tensor) -> Tensor:
        """rgb (N, 3) rendered colour, camera (N,) long cache camera indices -> (N, 3) as that camera sees it."""
        return torch.einsum("nij,nj->ni", self.A[camera], rgb) + self.b[camera]

    def penalty(self) -> Tensor:
        """Mean squared distance of the maps from the identity (a scalar)."""
        eye = torch.eye(3, device=self.A.device)
        return ((self.A - eye) ** 2).mean() + (self.b ** 2).mean()

    def gains(self) -> Tensor:
        """(C,) mean diagonal of each map: the camera's learned exposure gain."""
        return torch.diagonal(self.A, dim1=1, dim2=2).mean(dim=1)
