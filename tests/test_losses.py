"""Each HandNeRF loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from handcli.methods import losses as L


def test_rgb_loss(device):
    pred = torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]], device=device)
    gt = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]], device=device)
    assert L.rgb_loss(pred, gt).item() == pytest.approx((0.25 + 1.0) / 6)


def test_depth_loss_smooth_l1_regimes(device):
    pred = torch.tensor([1.0, 1.0, 2.0, 5.0], device=device)
    gt = torch.tensor([1.005, 0.0, 1.0, 5.0], device=device)
    valid = torch.tensor([True, True, True, False], device=device)
    # beta = 0.01: |0.005| < beta -> 0.5 x^2 / beta; |1| >= beta -> |x| - beta/2
    expect = (0.5 * 0.005 ** 2 / 0.01 + (1 - 0.005) + (1 - 0.005)) / 3
    assert L.depth_loss(pred, gt, valid, beta=0.01).item() == pytest.approx(expect, rel=1e-5)
    # beta = 1 behaves like 0.5 * MSE for small errors
    assert L.depth_loss(pred[:1], gt[:1], valid[:1], beta=1.0).item() == pytest.approx(0.5 * 0.005 ** 2, rel=1e-4)
    assert L.depth_loss(pred, gt, torch.zeros(4, dtype=torch.bool, device=device)).item() == 0.0


def test_distillation_loss_sums_channels():
    pred = torch.zeros(2, 4)
    gt = torch.tensor([[1.0, 0, 0, 0], [1.0, 1.0, 0, 0]])
    assert L.distillation_loss(pred, gt).item() == pytest.approx((1 + 2) / 2)


def test_deformation_loss_mean_norm(device):
    off = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]], device=device)
    assert L.deformation_loss(off).item() == pytest.approx(3.0)
    assert L.deformation_loss(torch.zeros(0, 3, device=device)).item() == 0.0


def test_hard_surface_loss_minimum_at_0_and_1(device):
    w = torch.tensor([[0.0, 1.0, 0.5]], device=device)
    hs = -torch.log(torch.exp(-w.abs()) + torch.exp(-(1 - w).abs())) + math.log(1 + math.exp(-1))
    assert L.hard_surface_loss(w).item() == pytest.approx(hs.mean().item())
    assert hs[0, 0].item() == pytest.approx(0.0, abs=1e-7) and hs[0, 1].item() == pytest.approx(0.0, abs=1e-7)
    assert hs[0, 2].item() == pytest.approx(-math.log(2 * math.exp(-0.5)) + math.log(1 + math.exp(-1)))
    assert hs[0, 2] > 0
    valid = torch.tensor([[True, True, False]], device=device)
    assert L.hard_surface_loss(w, valid).item() == pytest.approx(0.0, abs=1e-7)


def test_color_variance_loss(device):
    gt = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], device=device)  # biased variance 0.25 per channel
    pred = torch.full((2, 3), 0.5, device=device)  # variance 0
    assert L.color_variance_loss(pred, gt).item() == pytest.approx(0.5 * 0.25 ** 2)
    assert L.color_variance_loss(gt, gt).item() == 0.0


def test_linear_decay():
    assert L.linear_decay(0, 10, 20) == 1.0 and L.linear_decay(15, 10, 20) == 0.5 and L.linear_decay(25, 10, 20) == 0
