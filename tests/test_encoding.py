"""Positional encodings, Mip-NeRF frustum Gaussians (vs Monte-Carlo) and the NeRF MLPs."""

from __future__ import annotations

import math

import pytest
import torch

from handcli.nn.encoding import (
    conical_frustum_to_gaussian,
    encoding_dim,
    integrated_positional_encoding,
    positional_encoding,
)
from handcli.nn.mlp import MLP, NeRFField, chunked_apply, density_activation, linear_cat

DT = torch.float64


def test_positional_encoding_shapes_and_values(device):
    x = torch.zeros(4, 5, 3, device=device)
    pe = positional_encoding(x, 0, 4, include_input=True)
    assert pe.device == x.device
    assert pe.shape == (4, 5, 3 + 3 * 2 * 4) == (4, 5, encoding_dim(3, 0, 4, True))
    assert torch.equal(pe[..., 3:15], torch.zeros(4, 5, 12, device=device))  # sin 0
    assert torch.equal(pe[..., 15:], torch.ones(4, 5, 12, device=device))  # cos 0
    assert positional_encoding(x, 2, 5, include_input=False).shape == (4, 5, 18)
    # ordering: [x, sin(2^l x) frequency-major, cos(...)]; frequencies 2^l without π
    x = torch.tensor([[0.1, 0.2]], dtype=DT, device=device)
    pe = positional_encoding(x, 0, 2, include_input=True)[0]
    y = [0.1, 0.2, 0.2, 0.4]
    ref = [0.1, 0.2] + [math.sin(v) for v in y] + [math.cos(v) for v in y]
    assert pe.tolist() == pytest.approx(ref)
    pe1 = positional_encoding(x, 1, 2, include_input=False)[0]
    assert pe1.tolist() == pytest.approx([math.sin(0.2), math.sin(0.4), math.cos(0.2), math.cos(0.4)])


def _frustum_mc(d: torch.Tensor, t0: float, t1: float, r: float, n: int, g: torch.Generator):
    """Points uniform in the volume of the cone frustum {t·d + ρ: t∈[t0,t1], |ρ| ≤ r·t, ρ ⊥ d}, unit d."""
    u = torch.rand(n, generator=g, dtype=DT)
    t = (t0 ** 3 + u * (t1 ** 3 - t0 ** 3)) ** (1 / 3)  # density ∝ t²
    rho = r * t * torch.sqrt(torch.rand(n, generator=g, dtype=DT))  # uniform in the disk
    phi = 2 * math.pi * torch.rand(n, generator=g, dtype=DT)
    e1 = torch.linalg.cross(d, torch.tensor([0.0, 0.0, 1.0], dtype=DT))
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(d, e1)
    return t[:, None] * d + (rho * torch.cos(phi))[:, None] * e1 + (rho * torch.sin(phi))[:, None] * e2


@pytest.mark.parametrize("t0,t1,r", [(1.0, 1.2, 0.05), (0.5, 2.0, 0.2), (0.05, 0.4, 0.5)])
def test_conical_frustum_gaussian_matches_monte_carlo(t0, t1, r, device):
    g = torch.Generator().manual_seed(0)
    d = torch.tensor([0.3, -0.5, 0.8], dtype=DT)
    d = d / d.norm()
    n = 400_000
    pts = _frustum_mc(d, t0, t1, r, n, g)
    mean, cov = conical_frustum_to_gaussian(d[None].to(device), torch.tensor([[t0]], dtype=DT, device=device),
                                            torch.tensor([[t1]], dtype=DT, device=device),
                                            torch.tensor([r], dtype=DT, device=device))
    assert mean.device.type == cov.device.type == device.type
    mean, cov = mean.cpu(), cov.cpu()
    assert mean.shape == cov.shape == (1, 1, 3)
    mc_mean, mc_var = pts.mean(0), pts.var(0)
    se_mean = (mc_var / n).sqrt()
    assert ((mean[0, 0] - mc_mean).abs() <= 5 * se_mean).all()
    # standard error of a variance estimate ≈ var·sqrt(2/n) (slightly larger for non-Gaussian tails)
    assert ((cov[0, 0] - mc_var).abs() <= 6 * mc_var * math.sqrt(2.5 / n)).all()
    # the stable formulas equal the closed-form moments of Mip-NeRF's paper
    mu_t = 3 * (t1 ** 4 - t0 ** 4) / (4 * (t1 ** 3 - t0 ** 3))
    var_t = 3 * (t1 ** 5 - t0 ** 5) / (5 * (t1 ** 3 - t0 ** 3)) - mu_t ** 2
    var_r = r ** 2 * 3 * (t1 ** 5 - t0 ** 5) / (20 * (t1 ** 3 - t0 ** 3))
    assert torch.allclose(mean[0, 0], mu_t * d, rtol=1e-10)
    assert torch.allclose(cov[0, 0], var_t * d * d + var_r * (1 - d * d), rtol=1e-8)


def test_conical_frustum_origins_and_shapes():
    dirs = torch.nn.functional.normalize(torch.randn(4, 3, dtype=DT), dim=-1)
    t0 = torch.linspace(0.5, 1.5, 6, dtype=DT).expand(4, 6)
    t1 = t0 + 0.1
    radius = torch.full((4,), 0.01, dtype=DT)
    m0, c0 = conical_frustum_to_gaussian(dirs, t0, t1, radius)
    o = torch.randn(4, 3, dtype=DT)
    m1, c1 = conical_frustum_to_gaussian(dirs, t0, t1, radius[:, None], origins=o)
    assert m0.shape == c0.shape == (4, 6, 3)
    assert torch.allclose(m1 - m0, o[:, None].expand(4, 6, 3)) and torch.equal(c0, c1)
    assert (c0 > 0).all()


def test_ipe_limits(device):
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(7, 5, 3, generator=g, dtype=DT).to(device)
    # zero variance: IPE == PE without input
    ipe0 = integrated_positional_encoding(mean, torch.zeros_like(mean), 0, 6)
    assert ipe0.shape == (7, 5, 36)
    assert torch.allclose(ipe0, positional_encoding(mean, 0, 6, include_input=False))
    ipe_small = integrated_positional_encoding(mean, torch.full_like(mean, 1e-10), 0, 6)
    assert torch.allclose(ipe_small, ipe0, atol=1e-7)
    # growing variance damps high frequencies first: per-frequency amplitude sqrt(sin²+cos²) = exp(−4^l var/2)
    var = torch.full_like(mean, 1e-3)
    ipe = integrated_positional_encoding(mean, var, 0, 6)
    s, c = ipe[..., :18].reshape(7, 5, 6, 3), ipe[..., 18:].reshape(7, 5, 6, 3)
    amp = (s ** 2 + c ** 2).sqrt()
    expected = torch.exp(-0.5 * 4.0 ** torch.arange(6, dtype=DT, device=device) * 1e-3)
    assert torch.allclose(amp, expected[:, None].expand(7, 5, 6, 3))
    assert (amp[..., 1:, :] < amp[..., :-1, :]).all()
    bigger = integrated_positional_encoding(mean, 10 * var, 0, 6)
    assert (bigger.abs() <= ipe.abs() + 1e-15).all()
    top = torch.cat([bigger[..., 15:18], bigger[..., 33:36]], dim=-1)  # l = 5: exp(−0.5·1024·0.01)
    assert top.abs().max() <= math.exp(-5.12) + 1e-12


def test_mlp_shapes_and_skip_reinjects_input():
    torch.manual_seed(0)
    mlp = MLP(5, 16, 4, 2, skips=(2,), out_activation="sigmoid")
    x = torch.randn(3, 7, 5)
    y = mlp(x)
    assert y.shape == (3, 7, 2) and ((y > 0) & (y < 1)).all()
    assert mlp.layers[2].in_features == 16 + 5
    # cut the path through layers 0-1: the output still depends on x only through the skip
    with torch.no_grad():
        mlp.layers[1].weight.zero_()
        mlp.layers[1].bias.zero_()
    x.requires_grad_(True)
    mlp(x).sum().backward()
    assert x.grad.abs().sum() > 0
    no_skip = MLP(5, 16, 4, 2)
    with torch.no_grad():
        no_skip.layers[1].weight.zero_()
    x.grad = None
    no_skip(x).sum().backward()
    assert x.grad.abs().sum() == 0
    assert MLP(5, 16, 3).out_dim == 16 and MLP(5, 16, 3)(x).shape == (3, 7, 16)
    with pytest.raises(ValueError):
        MLP(5, 16, 3, 1, skips=(3,))


def test_mlp_blocks_equal_the_concatenated_input(device):
    """forward([blocks], [shared]) == forward_reference(cat) in values and gradients; a shared block is
    folded into the bias; a wrong total width is refused."""
    torch.manual_seed(0)
    mlp = MLP(9, 16, 4, 2, skips=(2,)).to(device)
    a, b = torch.randn(50, 4, device=device), torch.randn(50, 3, device=device)
    c = torch.randn(2, device=device)
    grads = []
    for blocks in (True, False):
        mlp.zero_grad()
        y = mlp([a, b], [c]) if blocks else mlp.forward_reference(torch.cat([a, b, c.expand(50, -1)], -1))
        y.square().sum().backward()
        grads.append((y.detach(), [p.grad.clone() for p in mlp.parameters()]))
    (y0, g0), (y1, g1) = grads
    assert torch.allclose(y0, y1, atol=1e-6)
    for p, q in zip(g0, g1):
        assert torch.allclose(p, q, atol=1e-5, rtol=1e-4)
    assert torch.allclose(linear_cat(mlp.layers[0].weight, mlp.layers[0].bias, [a], [b[0], c]),
                          mlp.layers[0](torch.cat([a, b[0].expand(50, -1), c.expand(50, -1)], -1)), atol=1e-6)
    with pytest.raises(ValueError, match="blocks of 7 columns"):
        linear_cat(mlp.layers[0].weight, mlp.layers[0].bias, [a, b])


def test_nerf_field_layout(device):
    torch.manual_seed(0)
    field = NeRFField(pos_dim=12, dir_dim=6, hidden=32, n_layers=4, skips=(2,), cond_dim=4,
                      view_hidden=16, extra_heads={"feature": 8, "semantic": 3}).to(device)
    pos = torch.randn(10, 12, device=device)
    dirs = torch.randn(10, 6, device=device, requires_grad=True)
    cond = torch.randn(4, device=device, requires_grad=True)
    out = field(pos, dirs, cond)
    assert all(v.device == pos.device for v in out.values())
    assert out["density_raw"].shape == (10,) and out["rgb"].shape == (10, 3)
    assert out["feature"].shape == (10, 8) and out["semantic"].shape == (10, 3)
    assert ((out["rgb"] > -0.001) & (out["rgb"] < 1.001)).all()
    # density does not depend on the view direction; rgb does; the condition reaches the density
    g_dir, g_cond = torch.autograd.grad(out["density_raw"].sum(), [dirs, cond], allow_unused=True)
    assert g_dir is None and g_cond.abs().sum() > 0
    (g_dir,) = torch.autograd.grad(out["rgb"].sum(), [dirs])
    assert g_dir.abs().sum() > 0
    with pytest.raises(ValueError):
        field(pos, dirs)
    plain = NeRFField(pos_dim=12, hidden=32, n_layers=4, skips=(2,)).to(device)
    assert plain(pos)["rgb"].shape == (10, 3)


def test_density_activation_and_chunking(device):
    raw = torch.tensor([0.0, 1.0, -5.0])
    assert density_activation(raw).tolist() == pytest.approx(
        [math.log1p(math.exp(-1)), math.log(2.0), math.log1p(math.exp(-6))])
    assert density_activation(raw, "relu", bias=0.5).tolist() == [0.5, 1.5, 0.0]
    with pytest.raises(ValueError):
        density_activation(raw, "exp")
    torch.manual_seed(0)
    field = NeRFField(pos_dim=6, dir_dim=3, hidden=16, n_layers=3, skips=(), view_hidden=8).to(device)
    pos, dirs = torch.randn(50, 6, device=device), torch.randn(50, 3, device=device)
    full = field(pos, dirs)
    parts = chunked_apply(field, pos, dirs, chunk_size=7)
    assert all(parts[k].device == pos.device and torch.allclose(full[k], parts[k], atol=1e-6) for k in full)
    mlp = MLP(6, 8, 2, 2).to(device)
    assert torch.allclose(chunked_apply(mlp, pos, chunk_size=16), mlp(pos), atol=1e-6)
