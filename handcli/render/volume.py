"""Volume rendering of samples laid out as (N_rays, N_samples) intervals (nerfacc style).

alpha_i = 1 − exp(−σ_i·δ_i), T_i = Π_{j<i}(1 − α_j) = exp(−Σ_{j<i} σ_j·δ_j), w_i = T_i·α_i.
Densities σ are already activated (>= 0); δ_i = t_ends − t_starts.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _exclusive_cumsum(x: Tensor) -> Tensor:
    # Shifted rather than cumsum(x) − x, which gives inf − inf = nan after an infinite density.
    return torch.cat([torch.zeros_like(x[..., :1]), torch.cumsum(x[..., :-1], dim=-1)], dim=-1)


def render_weights(sigma: Tensor, t_starts: Tensor, t_ends: Tensor,
                   valid: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample weights from densities.

    sigma, t_starts, t_ends: (N, S); valid: (N, S) bool or None (invalid samples get alpha 0 and do not
    attenuate later ones). The transmittance is computed in log space, exp(−exclusive cumsum of σδ), which
    is exact and never divides. Returns weights, transmittance, alpha, each (N, S).
    """
    sd = sigma * (t_ends - t_starts)
    if valid is not None:
        sd = torch.where(valid, sd, torch.zeros_like(sd))
    alpha = 1.0 - torch.exp(-sd)
    trans = torch.exp(-_exclusive_cumsum(sd))
    return trans * alpha, trans, alpha


def weights_from_alpha(alpha: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Weights when a field predicts opacity directly (occupancy / inside-outside alpha).

    alpha: (N, S) in [0, 1]; T_i = exclusive cumprod of (1 − α). Returns weights, transmittance (N, S).
    """
    if valid is not None:
        alpha = torch.where(valid, alpha, torch.zeros_like(alpha))
    one_minus = 1.0 - alpha
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), one_minus[..., :-1]], dim=-1), dim=-1)
    return trans * alpha, trans


def render_opacity(weights: Tensor) -> Tensor:
    """Accumulated opacity Σ w_i: (N, S) -> (N,)."""
    return weights.sum(-1)


def render_features(weights: Tensor, feats: Tensor) -> Tensor:
    """Σ w_i·f_i for any per-sample features (distillation features, semantic logits or probabilities).

    weights (N, S), feats (N, S, C) -> (N, C).
    """
    return (weights.unsqueeze(-1) * feats).sum(-2)


def render_rgb(weights: Tensor, rgb: Tensor, background: Tensor | float | None = None) -> Tensor:
    """Colour Σ w_i·c_i, plus (1 − opacity)·background when one is given.

    weights (N, S), rgb (N, S, 3), background: None (black), a float, (3,) or (N, 3). Returns (N, 3).
    """
    out = render_features(weights, rgb)
    if background is not None:
        bg = torch.as_tensor(background, dtype=out.dtype, device=out.device)
        out = out + (1.0 - render_opacity(weights)).unsqueeze(-1) * bg
    return out


def render_depth(weights: Tensor, t_mid: Tensor, normalize: bool = False) -> Tensor:
    """Expected distance along the ray Σ w_i·t_i (N,).

    Unnormalised by default (rays that hit nothing give 0, as in NeRF and the HandNeRF code); with
    `normalize` it is divided by the opacity (clamped at 1e-10). For unit directions this is a ray
    distance, not a z-depth: see `ray_distance_to_z`.
    """
    depth = (weights * t_mid).sum(-1)
    if normalize:
        depth = depth / render_opacity(weights).clamp_min(1e-10)
    return depth


def ray_distance_to_z(depth: Tensor, dirs_world: Tensor, world_to_cam: Tensor) -> Tensor:
    """Convert a distance along unit rays from the camera centre into camera z-depth.

    depth (..., N), dirs_world (..., N, 3) unit, world_to_cam (4, 4) or (B, 4, 4) with leading (B,) on
    the others. z = depth · (R d)_z, the cosine between the ray and the optical axis. Pseudo-depth maps
    rendered from meshes are z-depth, so compare like with like.
    """
    r_z = world_to_cam[..., 2, :3].to(dirs_world.dtype)
    if world_to_cam.dim() > 2:
        r_z = r_z.unsqueeze(-2)
    return depth * (dirs_world * r_z).sum(-1)
