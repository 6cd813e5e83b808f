"""LPIPS v0.1 with an AlexNet backbone ('alex'), the standard forward metric, without the lpips package.

Same computation as `lpips.LPIPS(net='alex', version='0.1')(x, y, normalize=True)`: scale the inputs,
take the five AlexNet ReLU outputs, unit-normalise each over channels, square the difference, weight the
channels with the learned 1x1 heads, average over space, sum over layers.

Weights cannot be downloaded here, so `load_lpips` only uses files that are present (see docs/metrics.md):
the torchvision AlexNet checkpoint and the lpips v0.1 linear heads. When either is missing it returns None
and the reason, and the eval stage reports `lpips: null`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from handcli.errors import InputError
from handcli.nn.alexnet import (
    ALEXNET_CHECKPOINT_NAME,
    ALEXNET_MIN_SIDE,
    ALEXNET_TAP_CHANNELS,
    AlexNetFeatures,
    check_state_dict,
    load_alexnet_features,
    read_state_dict,
)

LIN_SHAPES: dict[str, tuple[int, ...]] = {
    f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(ALEXNET_TAP_CHANNELS)
}


def normalize_channels(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit-normalise (N, C, H, W) features over C, as lpips.normalize_tensor (eps added to the norm)."""
    return feat / (torch.sqrt((feat * feat).sum(dim=1, keepdim=True)) + eps)


def layer_distance(feat0: torch.Tensor, feat1: torch.Tensor, lin_weight: torch.Tensor) -> torch.Tensor:
    """One layer's LPIPS term: mean over space of sum_c w_c (f0_c/|f0| - f1_c/|f1|)^2.

    feat0, feat1: (N, C, H, W); lin_weight: (1, C, 1, 1) -> (N,).
    """
    diff = (normalize_channels(feat0) - normalize_channels(feat1)) ** 2
    return F.conv2d(diff, lin_weight).mean(dim=(1, 2, 3))


class ScalingLayer(nn.Module):
    """Input scaling of LPIPS v0.1: (x - shift) / scale per RGB channel, x in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """1x1 conv head, C -> 1, no bias; the Dropout is kept only so the key is `model.1.weight` as in lpips.

    The metric never applies the dropout (LPIPS.forward uses the conv weight directly).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, stride=1, padding=0, bias=False))


class LPIPS(nn.Module):
    """LPIPS v0.1, AlexNet backbone. Parameters are frozen; gradients still flow to the inputs."""

    def __init__(self):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = AlexNetFeatures()
        self.lin0, self.lin1, self.lin2, self.lin3, self.lin4 = (NetLinLayer(c) for c in ALEXNET_TAP_CHANNELS)
        self.requires_grad_(False)
        self.eval()

    @property
    def lins(self) -> tuple[NetLinLayer, ...]:
        return (self.lin0, self.lin1, self.lin2, self.lin3, self.lin4)

    def forward(self, in0: torch.Tensor, in1: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Distance per image. in0, in1: (N, 3, H, W), in [0, 1] if normalize else in [-1, 1] -> (N,)."""
        if normalize:
            in0 = 2 * in0 - 1
            in1 = 2 * in1 - 1
        feats0 = self.net(self.scaling_layer(in0))
        feats1 = self.net(self.scaling_layer(in1))
        return sum(layer_distance(f0, f1, lin.model[1].weight) for f0, f1, lin in zip(feats0, feats1, self.lins))

    def distance(self, pred, gt) -> float:
        """LPIPS of two (H, W, 3) images in [0, 1] (numpy or torch), H, W >= 31."""
        pred = torch.as_tensor(np.asarray(pred, dtype=np.float32))
        gt = torch.as_tensor(np.asarray(gt, dtype=np.float32))
        if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
            raise InputError(f"LPIPS needs two (H, W, 3) images of one shape, got {tuple(pred.shape)} and "
                             f"{tuple(gt.shape)}", field="image")
        if min(pred.shape[:2]) < ALEXNET_MIN_SIDE:
            raise InputError(f"image of size {tuple(pred.shape[:2])} is too small for LPIPS (AlexNet needs "
                             f"at least {ALEXNET_MIN_SIDE} pixels a side)", field="image")
        device = self.scaling_layer.shift.device
        x0 = pred.permute(2, 0, 1)[None].to(device)
        x1 = gt.permute(2, 0, 1)[None].to(device)
        with torch.no_grad():
            return float(self(x0, x1, normalize=True)[0])


def default_backbone_path() -> Path:
    """Where torchvision caches the AlexNet checkpoint: $TORCH_HOME/hub/checkpoints (~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_CHECKPOINT_NAME


def bundled_lin_path() -> Path | None:
    """The lpips package's `weights/v0.1/alex.pth`, if that package is installed (it is not imported)."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / "v0.1" / "alex.pth"
        if path.is_file():
            return path
    return None


def load_lpips(backbone_weights: str | Path | None = None,
               lin_weights: str | Path | None = None) -> tuple[LPIPS | None, str]:
    """Build LPIPS-alex from files that are present: (model, where the weights came from) or (None, reason).

    backbone_weights: torchvision AlexNet checkpoint; default `default_backbone_path()`.
    lin_weights: lpips v0.1 `alex.pth` (keys `lin{0..4}.model.1.weight`); default the lpips package's copy.
    A path given explicitly must exist; a corrupt file or wrong keys/shapes raise InputError.
    """
    if backbone_weights is None:
        backbone = default_backbone_path()
        if not backbone.is_file():
            return None, (f"AlexNet backbone weights not found: no {backbone} (pass --lpips-weights PATH to "
                          f"the torchvision checkpoint {ALEXNET_CHECKPOINT_NAME}, or place it there)")
    else:
        backbone = Path(backbone_weights)
    if lin_weights is None:
        lin = bundled_lin_path()
        if lin is None:
            return None, ("LPIPS linear heads not found: the lpips package (weights/v0.1/alex.pth) is not "
                          "installed and no linear-head file was given")
    else:
        lin = Path(lin_weights)
    net = load_alexnet_features(backbone)
    heads = check_state_dict(read_state_dict(lin), LIN_SHAPES, lin)
    model = LPIPS()
    model.net.load_state_dict(net.state_dict())
    for k, head in enumerate(model.lins):
        head.model[1].weight.copy_(heads[f"lin{k}.model.1.weight"])
    return model, f"LPIPS v0.1 alex: backbone {backbone}, linear heads {lin}"
