"""Training, rendering and pose adaptation of HandNeRF / Pose-NeRF runs on a cache.

Glue between the cache, the targets, the model (``handnerf.py``) and the trainer: gets each frame's hand
geometry (blend-weight grids) on first use from a bounded LRU backed by the run's store
(``geometry_store.py``), draws foreground-focused ray batches, computes the six
losses, and renders whole views for snapshots and the ``render`` stage.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from handcli.data.cache import Cache
from handcli.data.raybatch import pick_eval_view, sample_batch, select_views
from handcli.data.shards import open_cache
from handcli.data.viewpool import ViewPool, rank_part
from handcli.errors import InputError
from handcli.methods import losses as L
from handcli.methods.base import RendersCacheViews, load_model_weights, read_checkpoint, read_run_config
from handcli.methods.handnerf.deform import HandGeometry
from handcli.methods.handnerf.geometry_store import FrameGeometry
from handcli.methods.handnerf.model import HandNeRF, HandNeRFConfig
from handcli.render.rays import camera_rays, pixel_radii
from handcli.render.volume import ray_distance_to_z


def frame_geometry(cache: Cache, frame: int, cfg: HandNeRFConfig) -> list[HandGeometry]:
    """Deformation data of every hand in a cache frame (right first), built now (no store, no LRU)."""
    return geometry_cache(cache, cfg, "cpu").build(cache.frame(frame))


def geometry_cache(cache: Cache, cfg: HandNeRFConfig, device, run_dir: Path | None = None) -> FrameGeometry:
    """Per-frame geometry built on first use: at most ``cfg.geometry_cache`` frames in memory, stored in
    ``run_dir/geometry`` when given (see ``geometry_store``)."""
    g = FrameGeometry(cache, cfg.voxel, cfg.norm_th + cfg.voxel, device, cfg.geometry_cache)
    if run_dir is not None:
        g.attach(run_dir)
    return g


def render_image(model: HandNeRF, geoms: list[HandGeometry], K: np.ndarray, w2c: np.ndarray, height: int,
                 width: int, frame_code: int | None, device, chunk: int = 8192) -> dict[str, np.ndarray]:
    """Render a whole (H, W) view; pixels whose rays miss every hand box stay black.

    Returns rgb (H, W, 3) in [0, 1], depth (H, W) z-depth metres (0 where empty), opacity (H, W),
    and ``evaluated`` (field evaluations) / ``rays``.
    """
    from handcli.render.bounds import ray_aabb
    from handcli.render.rays import pixel_grid

    Kt = torch.as_tensor(K, dtype=torch.float32, device=device)
    Wt = torch.as_tensor(w2c, dtype=torch.float32, device=device)
    pix = pixel_grid(height, width, device=device)
    o, d = camera_rays(Kt, Wt, pix)
    hit = torch.zeros(len(pix), dtype=torch.bool, device=device)
    for g in geoms:
        hit |= ray_aabb(o, d, g.box_min, g.box_max)[2]
    idx = torch.nonzero(hit)[:, 0]
    radii = pixel_radii(Kt, Wt, pix[idx])
    rgb = torch.zeros(len(pix), 3, device=device)
    depth = torch.zeros(len(pix), device=device)
    opac = torch.zeros(len(pix), device=device)
    evaluated = 0
    for s in range(0, len(idx), chunk):
        sl = idx[s:s + chunk]
        out = model.render(geoms, o[sl], d[sl], radii[s:s + chunk], frame_code, perturb=False, want_feature=False)
        rgb[sl] = out["rgb"]
        op = out["opacity"]
        z = ray_distance_to_z(out["depth"] / op.clamp_min(1e-6), d[sl], Wt)
        depth[sl] = torch.where(op > 0.5, z, torch.zeros_like(z))
        opac[sl] = op
        evaluated += out["evaluated"]
    return {"rgb": rgb.reshape(height, width, 3).clamp(0, 1).cpu().numpy(),
            "depth": depth.reshape(height, width).cpu().numpy(), "opacity": opac.reshape(height, width).cpu().numpy(),
            "evaluated": evaluated, "rays": int(len(idx))}


FEATURES_RAM = 256 << 20  # teacher features kept in RAM when the file is at most this big (bytes)


class HandNeRFMethod(RendersCacheViews):
    """A HandNeRF or Pose-NeRF run: ``method`` is "handnerf" or "posenerf" (API: handcli.methods.base)."""

    Config = HandNeRFConfig

    @staticmethod
    def presets(method: str) -> dict:
        from handcli.methods.handnerf.model import PRESETS, preset

        return {name: preset(name, method) for name in PRESETS}

    @classmethod
    def from_data(cls, cfg: HandNeRFConfig, data: dict, method: str, device: str) -> "HandNeRFMethod":
        def opt(k):
            return Path(data[k]) if data.get(k) else None

        return cls(cfg, Path(data["cache"]), method=method, train_cameras=data.get("cameras"),
                   train_frames=data.get("frames"), depth_path=opt("depth"), feat_path=opt("features"),
                   device=device, eval_cameras=data.get("eval_cameras"), seed=int(data.get("seed") or 0))

    @classmethod
    def from_run(cls, run_dir: Path, cache_path: Path | None = None, device: str = "cpu") -> "HandNeRFMethod":
        return load_run(run_dir, cache_path, device)

    def attach_run(self, run_dir: Path) -> None:
        """Called by the trainer: keep the per-frame geometry in ``run_dir/geometry`` (reused on resume)."""
        self.geoms.attach(run_dir)

    def run_data(self) -> dict:
        return {"frame_codes": {str(f): i for f, i in self.frame_codes.items()}, "num_codes": len(self.frame_codes)}

    def render_camera(self, frame: int, K, world_to_cam, height: int, width: int) -> dict:
        """Render cache frame ``frame`` seen by any camera: rgb, depth (z), opacity, evaluated, rays."""
        return render_image(self.model, self.geoms[frame], K, world_to_cam, height, width,
                            self.frame_codes.get(frame), self.device)

    def __init__(self, cfg: HandNeRFConfig, cache_path: Path, *, method: str = "handnerf",
                 train_cameras: list[str] | None = None, train_frames: list[int] | None = None,
                 depth_path: Path | None = None, feat_path: Path | None = None, device: str = "cpu",
                 eval_cameras: list[str] | None = None, depth_only: bool = False, seed: int = 0):
        self.method = method
        self.device = torch.device(device)
        self.cache = open_cache(cache_path)
        self.cache_path = Path(cache_path)
        n_frames = self.cache.num_frames
        self.frames = list(range(n_frames)) if train_frames is None else list(train_frames)
        bad = [f for f in self.frames if not 0 <= f < n_frames]
        if bad:
            raise InputError(f"frame indices {bad} outside 0..{n_frames - 1}", path=cache_path, field="frames")
        self.frame_codes = {f: i for i, f in enumerate(self.frames)}
        self.features = None
        if feat_path is not None:
            from handcli.targets.store import FeatureTargets

            # in RAM up to a fixed size whatever the cache size, else read per batch from the file
            self.features = FeatureTargets(feat_path, max_ram_bytes=FEATURES_RAM)
            self.features.check_matches(self.cache)
            cfg = replace(cfg, feat_dim=self.features.dim)
        self.depth = None
        if depth_path is not None:
            from handcli.targets.store import DepthTargets

            self.depth = DepthTargets(depth_path, max_ram_bytes=0)  # read per view into the view pool
            self.depth.check_matches(self.cache)
        self.cfg = cfg
        self.depth_only = depth_only
        self.geoms = geometry_cache(self.cache, cfg, self.device)  # built on first use; stored once attached
        view_ids = select_views(self.cache, train_cameras, self.frames)
        if len(view_ids) == 0:
            raise InputError("no training views match the camera/frame selection", path=cache_path, field="views")
        self.pool = ViewPool(self.cache, rank_part(view_ids), self.frames, depth=self.depth, capacity=cfg.view_pool,
                             refresh_every=cfg.pool_refresh, replace=cfg.pool_replace, seed=seed)
        self.frames = self.pool.frames
        self.model = HandNeRF(cfg, len(self.frame_codes)).to(self.device)
        self.eval_view = pick_eval_view(self.cache, self.frames[0], train_cameras, eval_cameras)

    # -----------------------------------------------------------------------------------------------------
    def train_step(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        views, frame = self.pool.draw(step, gen)
        b = sample_batch(views, frame, cfg.rays_per_step, cfg.fg_fraction, gen, self.features)
        b = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in b.items()}
        out = self.model.render(self.geoms[frame], b["origins"], b["dirs"], b["radii"], self.frame_codes[frame],
                                perturb=True, gen=gen, want_feature="feat" in b)
        return self.losses(out, b, step)

    def losses(self, out: dict, b: dict, step: int) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        terms = {}
        if not self.depth_only:
            terms["rgb"] = cfg.w_rgb * L.rgb_loss(out["rgb"], b["rgb"])
        if "z" in b and cfg.w_depth > 0:
            # z-depth on both sides. The rendered depth is sum(w t), not normalised by opacity, and the
            # pseudo-depth is 0 off the hand: the loss also drives opacity to 1 on and 0 off the mesh.
            cos = torch.einsum("nj,nj->n", b["w2c"][:, 2, :3], b["dirs"])  # z of the unit direction
            z = out["depth"] * cos
            terms["depth"] = cfg.w_depth * L.depth_loss(z, b["z"], torch.ones_like(b["z"], dtype=torch.bool),
                                                        cfg.depth_beta)
        if "feat" in b and cfg.w_dst > 0 and not self.depth_only:
            terms["dst"] = cfg.w_dst * L.distillation_loss(out["feat"], b["feat"])
        if cfg.w_dfm > 0 and out["offsets"].numel():
            terms["dfm"] = cfg.w_dfm * L.deformation_loss(out["offsets"])
        if cfg.w_hs > 0 and not self.depth_only:
            terms["hs"] = cfg.w_hs * L.hard_surface_loss(out["weights"], out["valid"])
        if cfg.w_cvar > 0 and not self.depth_only:
            decay = L.linear_decay(step, cfg.cvar_decay_start, max(cfg.steps // 2, cfg.cvar_decay_start + 1))
            if decay > 0:
                fg = b["label"] > 0
                if int(fg.sum()) > 1:
                    terms["cvar"] = cfg.w_cvar * decay * L.color_variance_loss(out["rgb"][fg], b["rgb"][fg])
        loss = sum(terms.values())
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs["loss"] = float(loss.detach())
        logs["mse"] = float(((out["rgb"] - b["rgb"]) ** 2).mean().detach())
        logs["rays"] = len(b["rgb"])
        logs["samples"] = out["evaluated"]
        return loss, logs

    # -----------------------------------------------------------------------------------------------------
    def snapshot(self, step: int, out_png: Path) -> dict:
        if self.eval_view is None:
            return {}
        from handcli.eval.image_metrics import psnr_full
        from handcli.render.outputs import contact_sheet

        self.model.eval()
        r = self.render_view(self.eval_view)
        self.model.train()
        v = self.cache.view(self.eval_view)
        gt = v["rgb"].astype(np.float32) / 255.0 * (v["label"] > 0)[..., None]
        contact_sheet([(r["rgb"], gt)], [f"step {step} view {self.eval_view}"], out_png)
        return {"eval_psnr_full": psnr_full(r["rgb"], gt)}


# ---------------------------------------------------------------------------------------------------------
# Run folders


def load_run(run_dir: Path, cache_path: Path | None = None, device: str = "cpu", frames: list[int] | None = None,
             **overrides) -> HandNeRFMethod:
    """Rebuild a trained method from its folder (model weights from checkpoint.pt).

    ``cache_path`` defaults to the training cache; ``frames`` restricts which frames are rendered. Frame
    geometry comes from the run's store (``run_dir/geometry``) and is built (and stored) only when missing.
    """
    doc = read_run_config(run_dir)
    cfg = HandNeRFConfig.from_dict(doc["config"])
    data = doc["data"]
    cache = Path(cache_path) if cache_path else Path(data["cache"])
    m = HandNeRFMethod.__new__(HandNeRFMethod)
    m.method = doc["method"]
    m.device = torch.device(device)
    m.cache = open_cache(cache)
    m.cache_path = cache
    m.cfg = cfg
    same_cache = cache.resolve() == Path(data["cache"]).resolve()
    m.frame_codes = {int(k): v for k, v in data["frame_codes"].items()} if same_cache else {}
    m.frames = frames if frames is not None else list(range(m.cache.num_frames))
    m.geoms = geometry_cache(m.cache, cfg, m.device, run_dir)
    m.model = HandNeRF(cfg, int(data["num_codes"])).to(m.device)
    state, ckpt = read_checkpoint(run_dir, m.device)
    load_model_weights(m.model, state, ckpt)
    m.depth = m.features = None
    m.eval_view = None
    m.depth_only = False
    for k, v in overrides.items():
        setattr(m, k, v)
    return m
