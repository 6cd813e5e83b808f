"""Training, rendering and pose adaptation of HandNeRF / Pose-NeRF runs on a cache.

Glue between the cache, the targets, the model (``handnerf.py``) and the trainer: gets each frame's hand
geometry (blend-weight grids) on first use from a bounded LRU backed by the run's store
(``geometry_store.py``), draws foreground-focused ray batches, computes the six
losses, and renders whole views for snapshots and the ``render`` stage.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from handcli.data.cache import Cache
from handcli.data.raybatch import pick_eval_view, sample_batch, select_views
from handcli.data.viewpool import ViewPool, rank_part
from handcli.errors import InputError
from handcli.methods import losses as L
from handcli.methods.base import Method, RunFolder, sum_losses
from handcli.methods.handnerf.deform import HandGeometry
from handcli.methods.handnerf.geometry_store import FrameGeometry
from handcli.methods.handnerf.model import PRESETS, HandNeRF, HandNeRFConfig, preset


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


FEATURES_RAM = 256 << 20  # teacher features kept in RAM when the file is at most this big (bytes)


class HandNeRFMethod(Method):
    """A HandNeRF or Pose-NeRF run: ``method`` is "handnerf" or "posenerf" (contract: handcli.methods.base)."""

    Config = HandNeRFConfig
    PRESETS = PRESETS
    preset = staticmethod(preset)
    default_method = "handnerf"
    capabilities = frozenset({"adapt"})
    adapt_curves = ("loss", "depth", "dfm")
    extra_outputs = frozenset({"feature"})
    targets = {"depth": "depth_path", "features": "feat_path"}
    uses_radii = True
    render_chunk = 8192  # rays per model.render call (the field chunks its points by cfg.chunk)

    def setup_training(self, *, train_cameras: list[str] | None = None, train_frames: list[int] | None = None,
                       depth_path: Path | None = None, feat_path: Path | None = None,
                       eval_cameras: list[str] | None = None, depth_only: bool = False, seed: int = 0) -> None:
        """Training views (a pool), targets and a fresh model; ``depth_only``: pose adaptation (depth and
        deformation losses only)."""
        cfg = self.cfg
        self.frames = self.training_frames(train_frames)
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
            raise InputError("no training views match the camera/frame selection", path=self.cache_path,
                             field="views")
        self.pool = ViewPool(self.cache, rank_part(view_ids), self.frames, depth=self.depth, capacity=cfg.view_pool,
                             refresh_every=cfg.pool_refresh, replace=cfg.pool_replace, seed=seed)
        self.frames = self.pool.frames
        self.model = HandNeRF(cfg, len(self.frame_codes)).to(self.device)
        self.eval_view = pick_eval_view(self.cache, self.frames[0], train_cameras, eval_cameras)

    def setup_run(self, run: RunFolder, state: dict) -> None:
        """Frame codes of the training cache (none for another cache); frame geometry from the run's store
        (``run_dir/geometry``), built (and stored) only when missing."""
        self.frame_codes = {int(k): v for k, v in run.data["frame_codes"].items()} if run.same_cache else {}
        self.frames = list(range(self.cache.num_frames))
        self.geoms = geometry_cache(self.cache, self.cfg, self.device, run.path)
        self.model = HandNeRF(self.cfg, int(run.data["num_codes"])).to(self.device)
        self.depth = self.features = None
        self.depth_only = False

    def attach_run(self, run_dir: Path) -> None:
        """Called by the trainer: keep the per-frame geometry in ``run_dir/geometry`` (reused on resume)."""
        self.geoms.attach(run_dir)

    @classmethod
    def adaptation(cls, run_dir: Path, cache: Path, *, frames: list[int] | None, steps: int, lr: float, seed: int,
                   device: str, depth: Path | None, workdir: Path, cameras: list[str] | None = None,
                   check_cameras: list[str] | None = None) -> tuple["HandNeRFMethod", list[str]]:
        """Guo §3.4 (``handcli.methods.adapt``): depth-only fine-tuning of the deformation field; the
        pseudo-depth of ``cache`` is rendered from its meshes into ``workdir`` when ``depth`` is None. Nothing is
        checked against held-back cameras (``check_cameras`` must be None)."""
        from handcli.methods.adapt import check_adaptable, prepare_adaptation
        from handcli.methods.base import read_run_config

        if check_cameras is not None:
            raise InputError("HandNeRF adapts to the novel frames' depth; --check-cameras is HandOcc's",
                             field="check_cameras")

        doc = read_run_config(run_dir)
        check_adaptable(doc["config"], Path(run_dir) / "config.json")
        trained = cls.from_run(run_dir, device=device)
        if depth is None:
            from handcli.targets.depth import compute_depth

            depth = Path(workdir) / "depth.h5"
            compute_depth(cache, depth)
        return prepare_adaptation(trained, cache, depth_path=depth, frames=frames, steps=steps, lr=lr, seed=seed,
                                  device=device, method=doc["method"], cameras=cameras)

    def run_data(self) -> dict:
        return {"frame_codes": {str(f): i for f, i in self.frame_codes.items()}, "num_codes": len(self.frame_codes)}

    def render_state(self, frame: int, outputs: frozenset[str]):
        geoms = self.geoms[frame]
        return (geoms, self.frame_codes.get(frame)), [(g.box_min, g.box_max) for g in geoms]

    def render_rays(self, state, origins, dirs, outputs: frozenset[str], radii=None) -> dict:
        """rgb, depth (ray distance), opacity, feature (the distillation feature) of R rays through the hands."""
        geoms, code = state
        out = self.model.render(geoms, origins, dirs, radii, code, perturb=False, want_feature="feature" in outputs)
        res = {k: out["feat" if k == "feature" else k] for k in outputs}
        res["evaluated"] = out["evaluated"]
        return res

    def empty_outputs(self) -> dict:
        return {"feature": ((self.cfg.feat_dim,), torch.float32)}

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
        loss, logs = sum_losses(terms)
        logs["mse"] = float(((out["rgb"] - b["rgb"]) ** 2).mean().detach())
        logs["rays"] = len(b["rgb"])
        logs["samples"] = out["evaluated"]
        return loss, logs
