"""Positional encodings: NeRF's PE and Mip-NeRF's integrated PE of conical frustums.

Formulas and sources: docs/formulas.md#mip-nerf-ipe.

Feature ordering (both encodings, as in Mip-NeRF `pos_enc` / `integrated_pos_enc`): with
y = [2^min·x, 2^(min+1)·x, ..., 2^(max−1)·x] (frequency-major, the D coordinates inside each frequency),
the output is [x (PE with include_input only), sin(y), cos(y)]: all sines, then all cosines.
Frequencies are 2^l without a factor π.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _scales(min_deg: int, max_deg: int, like: Tensor) -> Tensor:
    return 2.0 ** torch.arange(min_deg, max_deg, device=like.device, dtype=like.dtype)


def encoding_dim(dim: int, min_deg: int, max_deg: int, include_input: bool) -> int:
    """Output width of `positional_encoding` (and of `integrated_positional_encoding` without input)."""
    return dim * 2 * (max_deg - min_deg) + (dim if include_input else 0)


def positional_encoding(x: Tensor, min_deg: int, max_deg: int, include_input: bool = True) -> Tensor:
    """PE(x) for x (..., D) -> (..., D·2·(max_deg − min_deg) [+ D]); ordering in the module docstring."""
    y = (x[..., None, :] * _scales(min_deg, max_deg, x)[:, None]).flatten(-2)
    parts = [x] if include_input else []
    parts += [torch.sin(y), torch.cos(y)]
    return torch.cat(parts, dim=-1)


def conical_frustum_to_gaussian(dirs: Tensor, t0: Tensor, t1: Tensor, base_radius: Tensor,
                                origins: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Gaussian (mean, diagonal covariance) of the conical frustum between t0 and t1 (Mip-NeRF).

    dirs: (N, 3) ray directions (the cone's radius at parameter t is base_radius·t); t0, t1: (N, S);
    base_radius: (N,) or (N, 1); origins: optional (N, 3) added to the mean.
    Uses the numerically stable forms in t_μ = (t0 + t1)/2, t_δ = (t1 − t0)/2:
    μ_t = t_μ + 2t_μt_δ²/(3t_μ² + t_δ²), σ_t² = t_δ²/3 − (4/15)t_δ⁴(12t_μ² − t_δ²)/(3t_μ² + t_δ²)²,
    σ_r² = r²(t_μ²/4 + (5/12)t_δ² − (4/15)t_δ⁴/(3t_μ² + t_δ²)); diag Σ = σ_t²·d∘d + σ_r²·(1 − d∘d/‖d‖²).
    Returns mean (N, S, 3), cov_diag (N, S, 3).
    """
    r = base_radius.reshape(base_radius.shape[0], 1) if base_radius.dim() == 1 else base_radius
    t_mu = 0.5 * (t0 + t1)
    t_delta = 0.5 * (t1 - t0)
    mu2, d2 = t_mu * t_mu, t_delta * t_delta
    denom = 3.0 * mu2 + d2
    mean_t = t_mu + 2.0 * t_mu * d2 / denom
    var_t = d2 / 3.0 - (4.0 / 15.0) * d2 * d2 * (12.0 * mu2 - d2) / (denom * denom)
    var_r = r * r * (mu2 / 4.0 + (5.0 / 12.0) * d2 - (4.0 / 15.0) * d2 * d2 / denom)
    d = dirs[:, None, :]
    dd = d * d
    mean = mean_t[..., None] * d
    if origins is not None:
        mean = mean + origins[:, None, :]
    null = 1.0 - dd / (dd.sum(-1, keepdim=True).clamp_min(1e-10))
    cov_diag = var_t[..., None] * dd + var_r[..., None] * null
    return mean, cov_diag


def integrated_positional_encoding(mean: Tensor, cov_diag: Tensor, min_deg: int, max_deg: int) -> Tensor:
    """IPE of Gaussians (..., D) -> (..., D·2·(max_deg − min_deg)), no identity term.

    [sin(y)·exp(−var/2), cos(y)·exp(−var/2)] with y = 2^l·μ, var = 4^l·diag Σ, l = min_deg..max_deg−1.
    """
    scales = _scales(min_deg, max_deg, mean)
    y = (mean[..., None, :] * scales[:, None]).flatten(-2)
    var = (cov_diag[..., None, :] * (scales * scales)[:, None]).flatten(-2)
    damp = torch.exp(-0.5 * var)
    return torch.cat([torch.sin(y) * damp, torch.cos(y) * damp], dim=-1)
