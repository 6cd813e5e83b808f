"""The HandNeRF (Guo et al., CVPR'23) losses, as small pure functions (docs/formulas.md#handnerf-guo)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

HARD_SURFACE_OFFSET = math.log(1.0 + math.exp(-1.0))  # makes the hard-surface loss >= 0 (HandNeRF++)


def rgb_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """Mean squared error over rays: pred, gt (N, 3)."""
    return ((pred - gt) ** 2).mean()


def depth_loss(pred_z: Tensor, gt_z: Tensor, valid: Tensor, beta: float = 1.0) -> Tensor:
    """Smooth-L1 between rendered and pseudo z-depth (metres) over rays with valid targets: (N,)."""
    if not bool(valid.any()):
        return pred_z.sum() * 0.0
    return F.smooth_l1_loss(pred_z[valid], gt_z[valid], beta=beta)


def distillation_loss(pred_feat: Tensor, gt_feat: Tensor) -> Tensor:
    """Squared L2 between rendered colour features and teacher features, averaged: (N, D)."""
    return ((pred_feat - gt_feat) ** 2).sum(-1).mean()


def deformation_loss(offsets: Tensor) -> Tensor:
    """Mean L2 norm of the error-correction offsets: (M, 3)."""
    if offsets.numel() == 0:
        return offsets.sum() * 0.0
    return offsets.norm(dim=-1).mean()


def hard_surface_loss(weights: Tensor, valid: Tensor | None = None) -> Tensor:
    """LOLNeRF hard-surface loss -log(e^-|w| + e^-|1-w|) (offset to be >= 0), mean over samples (N, S)."""
    hs = -torch.log(torch.exp(-weights.abs()) + torch.exp(-(1.0 - weights).abs())) + HARD_SURFACE_OFFSET
    if valid is not None:
        if not bool(valid.any()):
            return weights.sum() * 0.0
        return hs[valid].mean()
    return hs.mean()


def color_variance_loss(pred: Tensor, gt: Tensor, beta: float = 1.0) -> Tensor:
    """Smooth-L1 between the biased colour variances of predicted and GT rays: (N, 3) each."""
    return F.smooth_l1_loss(pred.var(0, unbiased=False), gt.var(0, unbiased=False), beta=beta)


def linear_decay(step: int, start: int, end: int) -> float:
    """1 before ``start``, 0 after ``end``, linear in between (colour-variance weight schedule)."""
    if step <= start:
        return 1.0
    if step >= end:
        return 0.0
    return 1.0 - (step - start) / max(end - start, 1)
