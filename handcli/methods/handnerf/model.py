"""HandNeRF (Guo et al., CVPR 2023) and its Pose-NeRF baseline, on the shared rendering core.

Per ray and per hand, samples are drawn inside the hand's padded mesh box; samples farther than
``norm_th`` from the posed mesh are empty and never evaluated (geometry-guided sampling). A kept
sample is warped to the shared canonical hand by inverse LBS with nearest-face skinning weights
(precomputed grids, ``deform.py``), mirrored into the right hand's frame for left hands (ψ), and
corrected by a pose-conditioned error-correction MLP. A canonical Mip-NeRF (IPE of the warped
frustum) gives density and a colour feature f_c (distilled to 2D teacher features) from which the
colour is read, conditioned on a per-frame latent code. The two hands' sample sets are merged by
depth and volume-rendered together.

``deform="none"`` is the paper's Pose-NeRF baseline: the same sampler and field, with samples in the
hand's wrist-centred world frame (mirrored for left hands) and the pose fed to the field instead of
being undone by a deformation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from handcli.hand.skeleton import mirror_axis_angle
from handcli.methods.handnerf.deform import HandGeometry, sample_distance, sample_grid, warp_to_canonical
from handcli.nn.encoding import (
    conical_frustum_to_gaussian,
    encoding_dim,
    integrated_positional_encoding,
    positional_encoding,
)
from handcli.nn.mlp import MLP, density_activation, linear_cat
from handcli.render.bounds import ray_aabb
from handcli.render.composite import composite_samples
from handcli.render.samplers import stratified_samples
from handcli.render.volume import render_depth, render_features, render_opacity, render_rgb, render_weights

MIRROR = torch.tensor([-1.0, 1.0, 1.0])
CANON_CENTER = (0.09, 0.0, 0.0)  # middle of the open/MANO hand along the fingers, metres
CANON_SCALE = 1.0 / 0.15  # canonical coordinates are scaled to about [-1, 1] before encoding


@dataclass(frozen=True)
class HandNeRFConfig:
    """Hyperparameters. ``paper`` = the published sizes; ``fast`` trains in minutes on 2 CPU cores."""

    deform: str = "lbs"  # "lbs": HandNeRF; "none": Pose-NeRF baseline
    n_samples: int = 64
    rays_per_step: int = 8192
    fg_fraction: float = 0.5
    box_padding: float = 0.05
    norm_th: float = 0.05
    voxel: float = 0.005
    ipe_deg: int = 10
    dir_deg: int = 4
    hidden: int = 256
    layers: int = 8
    skips: tuple = (4,)
    color_hidden: int = 128
    latent_dim: int = 128
    feat_dim: int = 256
    error_correction: bool = True
    ec_pe_deg: int = 10
    ec_hidden: int = 256
    ec_layers: int = 8
    ec_skips: tuple = (4,)
    pose_hidden: int = 256
    pose_layers: int = 8
    pose_embed: int = 128
    ec_scale: float = 0.05
    density_bias: float = -1.0
    w_rgb: float = 1.0
    w_depth: float = 1.0
    depth_beta: float = 1.0
    w_dst: float = 1.0
    w_dfm: float = 0.1
    w_hs: float = 0.1
    w_cvar: float = 10.0
    cvar_decay_start: int = 2000
    lr: float = 5e-4
    lr_final: float = 5e-5
    steps: int = 200_000
    chunk: int = 65536  # at most this many points per field evaluation (see `field_chunk`)
    geometry_cache: int = 64  # frames of geometry kept in memory (LRU); every built frame is stored in the run
    # out-of-core training (handcli.data.viewpool): training views held in memory at once (<= 0: all),
    # steps between pool refreshes and the fraction of the pool replaced at each
    view_pool: int = 256
    pool_refresh: int = 50
    pool_replace: float = 0.25


PRESETS = {
    "paper": HandNeRFConfig(),
    "fast": HandNeRFConfig(n_samples=32, rays_per_step=1024, norm_th=0.02, voxel=0.008, ipe_deg=8, hidden=128,
                           layers=4, skips=(2,), color_hidden=64, latent_dim=16, feat_dim=32, ec_pe_deg=6,
                           ec_hidden=64, ec_layers=3, ec_skips=(), pose_hidden=64, pose_layers=2, pose_embed=32,
                           depth_beta=0.01, lr=2e-3, lr_final=2e-4, steps=2000, cvar_decay_start=500),
}


# Points per field evaluation on each device, chosen by measurement (bench/bench_render_speed.py --chunks):
# on CPU 4,096-point chunks keep the 256-wide activations in cache and run faster than larger ones.
FIELD_CHUNK = {"cpu": 4096}


# A rendered ray stops being evaluated behind this transmittance (see `HandNeRF.hand_samples`; 0: never).
STOP_TRANSMITTANCE = 1e-5


def _waves(n_samples: int, width: int = 4) -> list[tuple[int, int]]:
    """Front-to-back groups of a ray's kept samples, by place on the ray: [0, 4), [4, 8), ... ."""
    return [(a, min(a + width, n_samples)) for a in range(0, n_samples, width)]


def field_chunk(cfg: HandNeRFConfig, device: torch.device) -> int:
    """Points per field evaluation: the measured best for the device, never more than ``cfg.chunk``."""
    return max(1, min(cfg.chunk, FIELD_CHUNK.get(device.type, cfg.chunk)))


def preset(name: str, method: str = "handnerf") -> HandNeRFConfig:
    cfg = PRESETS[name]
    return replace(cfg, deform="none", error_correction=False) if method == "posenerf" else cfg


class CanonicalField(nn.Module):
    """Mip-NeRF-style field: IPE -> trunk -> (density, f_sigma); [f_sigma, PE(d), latent] -> f_c -> rgb."""

    def __init__(self, pos_dim: int, dir_dim: int, cfg: HandNeRFConfig, cond_dim: int = 0):
        super().__init__()
        self.trunk = MLP(pos_dim + cond_dim, cfg.hidden, cfg.layers, None, skips=cfg.skips)
        self.density = nn.Linear(cfg.hidden, 1)
        self.bottleneck = nn.Linear(cfg.hidden, cfg.hidden)
        # one hidden layer: `forward` folds the bottleneck into it and then only applies the output layer
        self.color = MLP(cfg.hidden + dir_dim + cfg.latent_dim, cfg.color_hidden, 1, cfg.feat_dim)
        self.rgb = nn.Linear(cfg.feat_dim, 3)
        self.density_bias = cfg.density_bias

    def forward(self, pos: Tensor, dirs: Tensor, latent: Tensor, cond: Tensor | None = None) -> dict[str, Tensor]:
        """pos (M, P) encoded positions, dirs (M, D) encoded directions, latent (L,) the frame's code, cond
        (C,) the pose condition (Pose-NeRF) or None -> sigma (M,), rgb (M, 3), feat (M, feat_dim).

        The same function as `forward_reference`, computed with fewer products: the per-frame latent and
        pose enter as biases, and the bottleneck (linear, no activation) is folded into the colour MLP's
        first layer, ``W_b (B h + c) = (W_b B) h + W_b c``.
        """
        h = self.trunk([pos], [] if cond is None else [cond])
        sigma = density_activation(self.density(h)[..., 0], "softplus", self.density_bias)
        first = self.color.layers[0]
        hidden = self.bottleneck.weight.shape[0]
        w_b = first.weight[:, :hidden]
        weight = torch.cat([w_b @ self.bottleneck.weight, first.weight[:, hidden:]], 1)
        bias = torch.addmv(first.bias, w_b, self.bottleneck.bias)
        f_c = self.color.finish(F.relu_(linear_cat(weight, bias, [h, dirs], [latent])))
        rgb = torch.sigmoid(self.rgb(F.relu(f_c)))
        return {"sigma": sigma, "rgb": rgb, "feat": f_c}

    def forward_reference(self, pos: Tensor, dirs: Tensor, latent: Tensor, cond: Tensor | None = None
                          ) -> dict[str, Tensor]:
        """The field as first written: pos (M, P), dirs (M, D), latent (L,), cond (C,) or None, concatenated
        per point; every layer separately."""
        rows = lambda v: v.expand(len(pos), -1)  # noqa: E731
        x = pos if cond is None else torch.cat([pos, rows(cond)], -1)
        h = self.trunk.forward_reference(x)
        sigma = density_activation(self.density(h)[..., 0], "softplus", self.density_bias)
        f_c = self.color.forward_reference(torch.cat([self.bottleneck(h), dirs, rows(latent)], -1))
        rgb = torch.sigmoid(self.rgb(F.relu(f_c)))
        return {"sigma": sigma, "rgb": rgb, "feat": f_c}


class HandNeRF(nn.Module):
    """HandNeRF / Pose-NeRF model for one subject's frames (``num_frames`` latent codes)."""

    def __init__(self, cfg: HandNeRFConfig, num_frames: int):
        super().__init__()
        self.cfg = cfg
        pos_dim = 3 * 2 * cfg.ipe_deg
        dir_dim = encoding_dim(3, 0, cfg.dir_deg, True)
        cond_dim = 48 if cfg.deform == "none" else 0
        self.field = CanonicalField(pos_dim, dir_dim, cfg, cond_dim)
        self.latent = nn.Embedding(max(num_frames, 1), cfg.latent_dim)
        nn.init.normal_(self.latent.weight, std=0.01)
        if cfg.deform == "lbs" and cfg.error_correction:
            self.pose_net = MLP(45, cfg.pose_hidden, cfg.pose_layers, cfg.pose_embed)
            self.ec = MLP(encoding_dim(3, 0, cfg.ec_pe_deg, True) + cfg.pose_embed, cfg.ec_hidden, cfg.ec_layers, 3,
                          skips=cfg.ec_skips)
            nn.init.zeros_(self.ec.out.weight)
            nn.init.zeros_(self.ec.out.bias)
        self.register_buffer("mirror", MIRROR.clone(), persistent=False)
        self.register_buffer("canon_center", torch.tensor(CANON_CENTER), persistent=False)

    # -----------------------------------------------------------------------------------------------------
    def latent_code(self, frame_code: int | None) -> Tensor:
        """Latent (L,) of a training frame, or the mean code for frames not seen in training."""
        if frame_code is None or frame_code < 0:
            return self.latent.weight.mean(0)
        return self.latent.weight[frame_code]

    def _to_local(self, geom: HandGeometry, x: Tensor, d: Tensor, t0: Tensor, t1: Tensor, radii: Tensor,
                  reference: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """Kept samples -> (position (M, 3), unit direction (M, 3), cov diag (M, 3), pose condition (48,) or
        None, offsets (M, 3) or None)."""
        left = geom.side == "left"
        offsets = None
        cond = None
        if self.cfg.deform == "lbs":
            w, _ = sample_grid(geom, x)
            xc, L = warp_to_canonical(geom, x, w)
            dc = torch.einsum("mab,mb->ma", L, d)
            if left:
                xc, dc = xc * self.mirror, dc * self.mirror
            if self.cfg.error_correction:
                pose = geom.pose[3:]
                if left:
                    pose = mirror_axis_angle(pose.reshape(15, 3)).reshape(45)
                emb = self.pose_net(pose[None])[0]
                pe = positional_encoding((xc - self.canon_center) * CANON_SCALE, 0, self.cfg.ec_pe_deg, True)
                raw = (self.ec.forward_reference(torch.cat([pe, emb.expand(len(pe), -1)], -1)) if reference
                       else self.ec([pe], [emb]))
                offsets = torch.tanh(raw) * self.cfg.ec_scale
                xc = xc + offsets
        else:  # Pose-NeRF: wrist-centred world frame, pose as input
            xc, dc = x - geom.wrist, d
            if left:
                xc, dc = xc * self.mirror, dc * self.mirror
            pose = geom.pose.reshape(16, 3)
            cond = (mirror_axis_angle(pose) if left else pose).reshape(48)
            xc = xc + self.canon_center  # same normalisation as the canonical space
        dc = dc / dc.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        _, cov = conical_frustum_to_gaussian(dc, t0[:, None], t1[:, None], radii)
        return (xc - self.canon_center) * CANON_SCALE, dc, cov[:, 0] * CANON_SCALE ** 2, cond, offsets

    def hand_samples(self, geom: HandGeometry, origins: Tensor, dirs: Tensor, radii: Tensor, latent: Tensor,
                     perturb: bool, gen: torch.Generator | None = None, want_feature: bool = True,
                     reference: bool = False, t_stop: Tensor | None = None) -> dict:
        """One hand's sample set along N rays (latent (L,) the frame's code): intervals (N, S), sigma (N, S),
        values rgb (N, S, 3) and, when ``want_feature``, feat (N, S, D); offsets (M, 3) of the kept samples,
        ``evaluated`` (int) the field evaluations and ``t_stop`` (N,) where each ray's evaluation stopped
        (inf where it did not).

        With gradients (training) the field runs on all kept samples, ``cfg.chunk`` at a time, and the
        outputs are scattered once. Without (rendering) it runs front to back in waves of
        `field_chunk`-point chunks, written in place, and stops on a ray once the ray's transmittance
        through this hand is below `STOP_TRANSMITTANCE`: what lies behind changes any output by at most
        that fraction (of 1 for colour and opacity, of the ray distance for depth), also where two hands are
        composited (the merged transmittance is never above one hand's). ``t_stop`` (N,), another hand's
        stopping distances: samples behind them are not evaluated either (the light reaching them is below
        the same bound). ``reference`` runs the simple path this one replaced (tests check that both agree).
        """
        if reference:
            return self._hand_samples_reference(geom, origins, dirs, radii, latent, perturb, gen)
        cfg = self.cfg
        t0, t1, x, keep, idx, ray = self._kept_samples(geom, origins, dirs, perturb, gen)
        N, S = keep.shape
        xf, t0f, t1f = x.reshape(-1, 3), t0.reshape(-1), t1.reshape(-1)
        names = ("sigma", "rgb", "feat") if want_feature else ("sigma", "rgb")
        flat = {"sigma": x.new_zeros(N * S), "rgb": x.new_zeros(N * S, 3)}
        if want_feature:
            flat["feat"] = x.new_zeros(N * S, cfg.feat_dim)

        def field(sl: Tensor, r: Tensor) -> tuple[dict, Tensor | None]:
            pos, dc, cov, cond, off = self._to_local(geom, xf[sl], dirs[r], t0f[sl], t1f[sl], radii[r])
            enc = integrated_positional_encoding(pos, cov, 0, cfg.ipe_deg)
            return self.field(enc, positional_encoding(dc, 0, cfg.dir_deg, True), latent, cond), off

        offs, evaluated = [], len(idx)
        stop = torch.full((N,), math.inf, device=x.device)
        if torch.is_grad_enabled():
            pieces: dict[str, list[Tensor]] = {k: [] for k in names}
            for s in range(0, len(idx), cfg.chunk):
                out, off = field(idx[s:s + cfg.chunk], ray[s:s + cfg.chunk])
                for k in names:
                    pieces[k].append(out[k])
                if off is not None:
                    offs.append(off)
            if len(idx):  # one scatter: in-place writes per chunk would copy the whole gradient per chunk
                for k in names:
                    flat[k].index_put_((idx,), pieces[k][0] if len(pieces[k]) == 1 else torch.cat(pieces[k]))
        else:
            chunk = field_chunk(cfg, x.device)
            if t_stop is not None:  # behind another hand that already stopped the ray
                front = t0f[idx] < t_stop[ray]
                idx, ray = idx[front], ray[front]
            rank = (keep.cumsum(1) - 1).reshape(-1)[idx]  # (M,) place of each kept sample on its ray
            depth = x.new_zeros(N)  # optical depth through this hand so far, per ray
            alive = torch.ones(N, dtype=torch.bool, device=x.device)
            evaluated = 0
            limit = -math.log(STOP_TRANSMITTANCE) if STOP_TRANSMITTANCE > 0 else math.inf
            for a, b in _waves(S):
                sel = (rank >= a) & (rank < b) & alive[ray]
                w_idx, w_ray = idx[sel], ray[sel]
                for s in range(0, len(w_idx), chunk):
                    sl = w_idx[s:s + chunk]
                    out, _ = field(sl, w_ray[s:s + chunk])
                    for k in names:
                        flat[k][sl] = out[k]
                evaluated += len(w_idx)
                depth.index_add_(0, w_ray, flat["sigma"][w_idx] * (t1f[w_idx] - t0f[w_idx]))
                alive = depth < limit
                ended = ~alive[w_ray]  # samples of the rays that stop in this wave: they stop at its far end
                end = torch.full_like(stop, -math.inf).scatter_reduce_(0, w_ray[ended], t1f[w_idx[ended]], "amax")
                stop = torch.where(end > -math.inf, end, stop)
        values = {"rgb": flat["rgb"].reshape(N, S, 3)}
        if want_feature:
            values["feat"] = flat["feat"].reshape(N, S, -1)
        return {"t_starts": t0, "t_ends": t1, "sigma": flat["sigma"].reshape(N, S), "valid": keep, "values": values,
                "offsets": torch.cat(offs) if offs else torch.zeros(0, 3, device=x.device), "evaluated": evaluated,
                "t_stop": stop}

    def _kept_samples(self, geom: HandGeometry, origins: Tensor, dirs: Tensor, perturb: bool,
                      gen: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Stratified samples in the hand's box and those near the mesh: t0, t1 (N, S), x (N, S, 3), keep
        (N, S) bool, idx (M,) flat indices of the kept samples, ray (M,) their rays."""
        cfg = self.cfg
        near, far, hit = ray_aabb(origins, dirs, geom.box_min, geom.box_max)
        t0, t1 = stratified_samples(near, far, cfg.n_samples, perturb, generator=gen)
        mid = 0.5 * (t0 + t1)
        x = origins[:, None] + mid[..., None] * dirs[:, None]
        N, S = mid.shape
        dist = sample_distance(geom, x.reshape(-1, 3))
        keep = (dist.reshape(N, S) < cfg.norm_th) & hit[:, None]
        idx = torch.nonzero(keep.reshape(-1))[:, 0]
        return t0, t1, x, keep, idx, idx // S

    def _hand_samples_reference(self, geom: HandGeometry, origins: Tensor, dirs: Tensor, radii: Tensor,
                                latent: Tensor, perturb: bool, gen: torch.Generator | None = None) -> dict:
        """`hand_samples` as first written: ``cfg.chunk`` points per chunk, whole-buffer copies per chunk,
        the feature always computed. Kept as the reference of the fast path."""
        cfg = self.cfg
        t0, t1, x, keep, idx, ray = self._kept_samples(geom, origins, dirs, perturb, gen)
        N, S = keep.shape
        sigma = torch.zeros(N * S, device=x.device)
        rgb = torch.zeros(N * S, 3, device=x.device)
        feat = torch.zeros(N * S, cfg.feat_dim, device=x.device)
        offs = []
        for s in range(0, len(idx), cfg.chunk):
            sl = idx[s:s + cfg.chunk]
            r = ray[s:s + cfg.chunk]
            pos, dc, cov, cond, off = self._to_local(geom, x.reshape(-1, 3)[sl], dirs[r], t0.reshape(-1)[sl],
                                                     t1.reshape(-1)[sl], radii[r], reference=True)
            enc = integrated_positional_encoding(pos, cov, 0, cfg.ipe_deg)
            denc = positional_encoding(dc, 0, cfg.dir_deg, True)
            out = self.field.forward_reference(enc, denc, latent, cond)
            sigma = sigma.index_put((sl,), out["sigma"])
            rgb = rgb.index_put((sl,), out["rgb"])
            feat = feat.index_put((sl,), out["feat"])
            if off is not None:
                offs.append(off)
        return {"t_starts": t0, "t_ends": t1, "sigma": sigma.reshape(N, S), "valid": keep,
                "values": {"rgb": rgb.reshape(N, S, 3), "feat": feat.reshape(N, S, -1)},
                "offsets": torch.cat(offs) if offs else torch.zeros(0, 3, device=x.device), "evaluated": len(idx)}

    def render(self, geoms: list[HandGeometry], origins: Tensor, dirs: Tensor, radii: Tensor,
               frame_code: int | None, perturb: bool = False, gen: torch.Generator | None = None,
               want_feature: bool = True, reference: bool = False) -> dict:
        """Volume-render N rays through all hands of one frame.

        Returns rgb (N, 3), depth (N,) expected ray distance, opacity (N,), weights (N, S_total), valid
        (N, S_total), offsets (M, 3), evaluated (int: field evaluations), and feat (N, D) when
        ``want_feature`` (the distillation loss needs it; rendering images does not: the feature is then
        neither stored, merged nor rendered). ``reference``: the simple path the fast one replaced.
        """
        latent = self.latent_code(frame_code)
        sets, t_stop = [], None
        for g in geoms:
            sets.append(self.hand_samples(g, origins, dirs, radii, latent, perturb, gen, want_feature or reference,
                                          reference, t_stop))
            if "t_stop" in sets[-1]:
                t_stop = sets[-1]["t_stop"] if t_stop is None else torch.minimum(t_stop, sets[-1]["t_stop"])
        merged = composite_samples([{k: s[k] for k in ("t_starts", "t_ends", "sigma", "valid", "values")}
                                    for s in sets]) if len(sets) > 1 else sets[0]
        w, _, _ = render_weights(merged["sigma"], merged["t_starts"], merged["t_ends"], merged["valid"])
        mid = 0.5 * (merged["t_starts"] + merged["t_ends"])
        out = {
            "rgb": render_rgb(w, merged["values"]["rgb"]),
            "depth": render_depth(w, mid),
            "opacity": render_opacity(w),
            "weights": w, "valid": merged["valid"],
            "offsets": torch.cat([s["offsets"] for s in sets]),
            "evaluated": sum(s["evaluated"] for s in sets),
        }
        if want_feature or reference:
            out["feat"] = render_features(w, merged["values"]["feat"])
        return out
