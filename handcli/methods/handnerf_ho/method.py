"""Training, rendering and meshing of HandNeRF (Choi) / PixelNeRF runs on a hand-object cache.

Glue between the cache (DexYCB or HO-3D, with objects and labels 0 background, 1 right hand, 2 left hand,
3 object), the model (``handnerf_ho.py``) and the trainer. Per training frame it precomputes the scene
input (input-view crop, feature grid, hand and object voxels; the encoder maps too when the encoder is
frozen) and square crops of every view around its hand-object mask (the render targets, background black);
the frames of a window of at most ``view_pool`` views stay in memory (all of them, built at start-up, when
they fit; else the window slides every ``pool_refresh`` steps, ``handcli.data.viewpool.FrameWindow``).
A step picks a frame and one of its views and renders ``rays_per_step`` rays of that view inside the 3D
box, a growing fraction of them on object pixels.

Semantic classes: the network predicts Choi's 3 classes (0 background, 1 object, 2 hand); renders use the
cache's convention, so a predicted hand becomes 1 or 2 by the frame's hand side and the object 3.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from handcli.camera import box_corners, project
from handcli.data.cache import Cache, FrameRecord
from handcli.data.viewpool import FrameWindow, rank_part
from handcli.errors import InputError
from handcli.labels import LABELS
from handcli.methods.base import Method, RunFolder, sum_losses
from handcli.methods.handnerf_ho.model import (
    PRESETS,
    HandNeRFHO,
    HandNeRFHOConfig,
    SceneInput,
    balanced_bce,
    check_config,
    grid_dims,
    mesh_from_cube,
    preset,
    remove_dust,
    semantic_loss,
)
from handcli.progress import log, progress
from handcli.render.bounds import ray_aabb
from handcli.render.rays import camera_rays, pixel_grid

CACHE_TO_CLASS = np.array([0, 2, 2, 1], np.int64)  # cache label -> Choi class (0 bg, 1 object, 2 hand)
SIDE_LABEL = {"right": LABELS["right"], "left": LABELS["left"]}


# ---------------------------------------------------------------------------------------------------------
# Scene geometry and crops (numpy, per frame)


def frame_hand(rec: FrameRecord) -> tuple[str, object] | None:
    """(side, HandRecord) of the frame's hand with a posed mesh (right first), or None."""
    for side in ("right", "left"):
        h = rec.hands.get(side)
        if h is not None and h.vertices is not None:
            return side, h
    return None


def scene_box(rec: FrameRecord, pad: float, hand_verts: np.ndarray | None = None) -> np.ndarray:
    """(2, 3) world box: AABB of the hand mesh (``hand_verts`` (V, 3), default the frame's GT mesh) and the
    posed object (vertices and points), padded by ``pad``."""
    pts = [frame_hand(rec)[1].vertices.astype(np.float64) if hand_verts is None else hand_verts]
    if rec.object is not None:
        pts.append(np.asarray(rec.object.box, np.float64))
    p = np.concatenate(pts)
    return np.stack([p.min(0) - pad, p.max(0) + pad])


def square_crop_matrix(bbox: np.ndarray, size: int, scale: float) -> np.ndarray:
    """(3, 3) pixel affine mapping an image onto an S x S crop of the square around ``bbox`` (x0, y0, x1, y1)
    enlarged ``scale`` times (centred; pixel centres at integers on both sides)."""
    c = 0.5 * (bbox[:2] + bbox[2:])
    side = max(float(np.max(bbox[2:] - bbox[:2])), 1.0) * scale
    s = size / side
    a = c - (size - 1) / (2 * s)
    return np.array([[s, 0, -s * a[0]], [0, s, -s * a[1]], [0, 0, 1.0]])


def warp_crop(img: np.ndarray, A: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    """Resample an image onto the crop ``A`` (outside: 0). Shrinking blurs first (Gaussian) against aliasing."""
    s = A[0, 0]
    if not nearest and s < 0.8:
        sigma = 0.5 * np.sqrt(1.0 / s ** 2 - 1.0)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return cv2.warpAffine(img, A[:2], (size, size), flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_view(view: dict, K: np.ndarray, w2c: np.ndarray, box: np.ndarray, size: int, scale: float):
    """Square crop of a cache view around its hand-object mask (the projected box when the mask is empty).

    Returns rgb (S, S, 3) uint8 with the background black, label (S, S) uint8, K of the crop (3, 3).
    """
    label = view["label"]
    ys, xs = np.nonzero(label > 0)
    if len(xs):
        bbox = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)
    else:
        cam = box_corners(*box) @ w2c[:3, :3].T + w2c[:3, 3]
        uv = project(cam, K, min_depth=1e-6)
        bbox = np.concatenate([uv.min(0), uv.max(0)])
    A = square_crop_matrix(bbox, size, scale)
    rgb = view["rgb"] * (label > 0)[..., None].astype(np.uint8)
    return warp_crop(rgb, A, size, False), warp_crop(label, A, size, True), A @ K


def input_view_index(cache: Cache, frame: int, camera: str | None) -> int:
    """The cache view of ``frame`` taken by ``camera`` (DexYCB serial, HO-3D sequence...), else its first view."""
    views = cache.views_of_frame(frame)
    if not views:
        raise InputError(f"frame {frame} has no views", path=cache.path, field="views")
    if camera is not None:
        names = [c["name"] for c in cache.cameras()]
        cams = cache.view_table()["camera"]
        for j in views:
            if names[int(cams[j])] == camera:
                return j
    return views[0]


def build_scene(cache: Cache, frame: int, cfg: HandNeRFHOConfig, view: int | None = None,
                input_hand: str = "gt") -> tuple[SceneInput, int]:
    """The network input of one frame seen by its input view (CPU tensors) and that view's index.

    ``input_hand``: "gt" = the frame's ground-truth hand mesh (training); "estimated" = the input view's estimated
    hand (``views/hand_estimate``, preprocess ``--hand-estimates``): mesh, wrist and box come from it."""
    rec = cache.frame(frame)
    hand = frame_hand(rec)
    if hand is None or rec.object is None:
        raise InputError(f"frame {frame} needs a posed hand mesh and an object", path=cache.path,
                         field="frames")
    side, h = hand
    j = input_view_index(cache, frame, cfg.input_camera) if view is None else view
    cams = cache.cameras()
    v = cache.view(j)
    cam = cams[v["camera"]]
    verts, wrist = h.vertices.astype(np.float64), h.joints[0]
    if input_hand == "estimated":
        est = cache.hand_estimate(j)
        if est is None:
            raise InputError(f"frame {frame}: its input view {j} has no estimated hand (preprocess with "
                             "--hand-estimates, or --set test_hand=gt)", path=cache.path,
                             field="views/hand_estimate")
        verts, wrist = est["vertices"].astype(np.float64), est["joints"][0]
    box = scene_box(rec, cfg.box_padding, verts)
    rgb, label, Kc = crop_view(v, cam["K"], cam["world_to_cam"], box, cfg.input_size, cfg.crop_scale)
    dims = grid_dims(box[1] - box[0], cfg.voxel, cfg.grid_multiple)
    nx, ny, nz = dims
    hv = np.clip(np.round((verts - box[0]) / cfg.voxel).astype(np.int64), 0, np.array(dims) - 1)
    hand_flat = hv[:, 0] + nx * (hv[:, 1] + ny * hv[:, 2])
    # object voxels: grid points projecting into the input object mask, minus the hand's voxels
    iz, iy, ix = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    flat = (ix + nx * (iy + ny * iz)).reshape(-1)
    pts = box[0] + cfg.voxel * np.stack([ix.reshape(-1), iy.reshape(-1), iz.reshape(-1)], 1)
    w2c = cam["world_to_cam"]
    pc = pts @ w2c[:3, :3].T + w2c[:3, 3]
    uv = np.round(project(pc, Kc, min_depth=1e-6)).astype(np.int64)
    S = cfg.input_size
    ok = (pc[:, 2] > 1e-6) & (uv[:, 0] >= 0) & (uv[:, 0] < S) & (uv[:, 1] >= 0) & (uv[:, 1] < S)
    obj = np.zeros(len(pts), bool)
    obj[ok] = label[uv[ok, 1], uv[ok, 0]] == LABELS["object"]
    obj &= ~np.isin(flat, hand_flat)
    f32 = dict(dtype=torch.float32)
    scene = SceneInput(
        image=torch.tensor(rgb, **f32).permute(2, 0, 1) / 255.0, K=torch.tensor(Kc, **f32),
        w2c=torch.tensor(w2c, **f32), box_min=torch.tensor(box[0], **f32), box_max=torch.tensor(box[1], **f32),
        dims=dims, voxel=float(cfg.voxel), wrist=torch.tensor(wrist, **f32),
        hand_verts=torch.tensor(verts, **f32), hand_vox=torch.from_numpy(hand_flat),
        obj_pts=torch.tensor(pts[obj], **f32), obj_vox=torch.from_numpy(flat[obj]), side=side)
    return scene, j


class FrameTargets:
    """Square crops of a frame's views (render_size, around each view's mask): the training rays' targets."""

    def __init__(self, cache: Cache, frame: int, cfg: HandNeRFHOConfig, scene: SceneInput, input_view: int,
                 cameras: list[str] | None = None):
        cams = cache.cameras()
        names = [c["name"] for c in cams]
        box = np.stack([scene.box_min.numpy(), scene.box_max.numpy()]).astype(np.float64)
        R = cfg.render_size
        rgb, label, K, w2c, hit, is_input = [], [], [], [], [], []
        pix = pixel_grid(R, R)
        for j in cache.views_of_frame(frame):
            v = cache.view(j)
            cam = cams[v["camera"]]
            if cameras is not None and names[v["camera"]] not in cameras and j != input_view:
                continue
            c_rgb, c_label, Kc = crop_view(v, cam["K"], cam["world_to_cam"], box, R, cfg.crop_scale)
            Kt = torch.tensor(Kc, dtype=torch.float32)
            Wt = torch.tensor(cam["world_to_cam"], dtype=torch.float32)
            o, d = camera_rays(Kt, Wt, pix)
            h = ray_aabb(o, d, scene.box_min, scene.box_max)[2]
            if not bool(h.any()):
                continue
            rgb.append(torch.from_numpy(c_rgb.reshape(-1, 3)))
            label.append(torch.from_numpy(c_label.reshape(-1)))
            K.append(Kt)
            w2c.append(Wt)
            hit.append(h)
            is_input.append(j == input_view)
        if not rgb:
            raise InputError(f"frame {frame}: no view sees the hand-object box", path=cache.path, field="views")
        self.rgb, self.label = torch.stack(rgb), torch.stack(label)  # (V, R*R, 3) uint8, (V, R*R) uint8
        self.K, self.w2c, self.hit = torch.stack(K), torch.stack(w2c), torch.stack(hit)
        self.is_input = torch.tensor(is_input)
        self.size = R

    def sample(self, n: int, object_fraction: float, gen: torch.Generator) -> dict:
        """One view's rays: ``n`` pixels inside the 3D box, ``object_fraction`` of them on object pixels."""
        v = int(torch.randint(len(self.rgb), (1,), generator=gen))
        hit = torch.nonzero(self.hit[v])[:, 0]
        obj = torch.nonzero(self.hit[v] & (self.label[v] == LABELS["object"]))[:, 0]
        n_obj = int(round(n * object_fraction)) if len(obj) else 0
        idx = torch.cat([obj[torch.randint(len(obj), (n_obj,), generator=gen)],
                         hit[torch.randint(len(hit), (n - n_obj,), generator=gen)]])
        pix = torch.stack([idx % self.size, idx // self.size], -1).float()
        o, d = camera_rays(self.K[v], self.w2c[v], pix)
        lab = self.label[v][idx].long()
        return {"origins": o, "dirs": d, "rgb": self.rgb[v][idx].float() / 255.0, "label": lab,
                "view": v, "is_input": bool(self.is_input[v])}


# ---------------------------------------------------------------------------------------------------------


class HandNeRFHOMethod(Method):
    """A HandNeRF (Choi; ``handnerf-ho``) or PixelNeRF (``pixelnerf``) run (contract: handcli.methods.base)."""

    Config = HandNeRFHOConfig
    PRESETS = PRESETS
    preset = staticmethod(preset)
    default_method = "handnerf-ho"
    capabilities = frozenset({"mesh", "input_view"})
    outputs = frozenset({"rgb", "depth", "opacity", "semantic"})

    @classmethod
    def check_config(cls, cfg: HandNeRFHOConfig) -> None:
        try:
            check_config(cfg)
        except ValueError as e:  # the messages start with the setting's name
            key = str(e).split()[0]
            raise InputError(str(e), field=key if hasattr(cfg, key) else None) from None

    def check_cache(self) -> None:
        if not self.cache.has_objects:
            raise InputError("handnerf-ho needs a hand-object cache (preprocess dexycb or ho3d)",
                             path=self.cache_path, field="frames/object")

    def setup_run(self, run: RunFolder, state: dict) -> None:
        """The model shaped for the checkpoint's hand model (its vertex count); scenes are built on first use."""
        self.encoder_init = run.data.get("encoder_init", "checkpoint")
        latent = state.get("model", {}).get("hand_latent")
        n_verts = int(latent.shape[0]) if latent is not None else 778
        self.model = HandNeRFHO(self.cfg, num_hand_vertices=n_verts, load_encoder=False).to(self.device)
        self.frames = list(range(self.cache.num_frames))
        self.trained_frames = set(run.data.get("train_frames") or []) if run.same_cache else set()
        self.train_cameras = None
        self._train_data, self._scenes, self.input_views = OrderedDict(), OrderedDict(), {}

    def setup_training(self, *, train_frames: list[int] | None = None, train_cameras: list[str] | None = None,
                       eval_cameras: list[str] | None = None, seed: int = 0) -> None:
        cfg = self.cfg
        cache_path = self.cache_path
        self.encoder_init = "scratch"
        if cfg.encoder == "efficientnet-lite0":
            from handcli.nn.efficientnet_teacher import default_weights_path

            cfg = replace(cfg, encoder_weights=str(Path(cfg.encoder_weights or default_weights_path()).resolve()))
            self.encoder_init = f"imagenet (efficientnet-lite0: {cfg.encoder_weights})"
        elif cfg.encoder_weights:
            cfg = replace(cfg, encoder_weights=str(Path(cfg.encoder_weights).resolve()))
            self.encoder_init = f"imagenet (torchvision resnet18: {cfg.encoder_weights})"
        self.cfg = cfg
        n = self.cache.num_frames
        frames = self.training_frames(train_frames)
        ok = np.zeros(n, bool)  # frame_hand(rec) and rec.object, from whole columns (no per-frame reads)
        for side in ("right", "left"):
            if self.cache.hand_model(side) is not None:
                ok |= self.cache.frame_column(f"{side}/present").astype(bool)
        ok &= self.cache.frame_column("object/present").astype(bool)
        usable = [f for f in frames if ok[f]]
        if len(usable) < len(frames):
            log(f"handnerf-ho: {len(frames) - len(usable)} frames without a hand mesh or an object skipped")
        if not usable:
            raise InputError("no training frame has both a hand mesh and an object", path=cache_path, field="frames")
        self.frames = usable
        self.trained_frames = set(usable)  # their input hand is the GT one; other frames get cfg.test_hand
        n_verts = frame_hand(self.cache.frame(usable[0]))[1].vertices.shape[0]
        self.model = HandNeRFHO(cfg, num_hand_vertices=n_verts).to(self.device)
        self.train_cameras = train_cameras
        self._train_data: OrderedDict[int, tuple[SceneInput, FrameTargets]] = OrderedDict()
        self._scenes: OrderedDict[int, SceneInput] = OrderedDict()
        self.input_views: dict[int, int] = {}
        # the frames whose scene and target crops are in memory: a window of at most cfg.view_pool views
        # (handcli.data.viewpool), refreshed every cfg.pool_refresh steps; under torchrun a disjoint part per rank
        part = rank_part(self.frames)
        per_frame = np.bincount(self.cache.view_table()["frame"], minlength=n)[part]
        self.window = FrameWindow(part, per_frame, cfg.view_pool, cfg.pool_refresh, cfg.pool_replace, seed)
        self._epoch = None
        self._resident_frames(0)
        self.eval_view = self._pick_eval_view(eval_cameras)

    def _frame_data(self, f: int) -> tuple[SceneInput, FrameTargets]:
        """A training frame's scene input and target crops (kept while the frame is in the window)."""
        if f in self._train_data:
            self._train_data.move_to_end(f)
            return self._train_data[f]
        scene, j = build_scene(self.cache, f, self.cfg)
        targets = FrameTargets(self.cache, f, self.cfg, scene, j, self.train_cameras)
        self.input_views[f] = j
        self._train_data[f] = (self._cache_levels(scene).to(self.device), targets)
        return self._train_data[f]

    def _resident_frames(self, step: int) -> list[int]:
        """The window's frames at ``step``; frames that left it are dropped, new ones built."""
        e = self.window.epoch(step)
        if e != self._epoch:
            frames = self.window.resident(e)
            keep = set(frames)
            for f in [f for f in self._train_data if f not in keep]:
                del self._train_data[f]
            with progress() as bar:
                task = bar.add_task("scenes and target crops", total=len(frames))
                for f in frames:
                    self._frame_data(f)
                    bar.advance(task)
            self._epoch, self._resident = e, frames
        return self._resident

    def _cache_levels(self, scene: SceneInput) -> SceneInput:
        """Encoder maps computed once per scene when the encoder is frozen."""
        if not self.cfg.encoder_trainable:
            with torch.no_grad():
                scene.levels = [x.cpu() for x in self.model.encode_levels(scene.image.to(self.device))]
        return scene

    def _pick_eval_view(self, eval_cameras: list[str] | None) -> int | None:
        f = self.frames[0]
        names = [c["name"] for c in self.cache.cameras()]
        cams = self.cache.view_table()["camera"]
        views = self.cache.views_of_frame(f)
        cands = [j for j in views if eval_cameras and names[int(cams[j])] in eval_cameras]
        inp = self.input_views.get(f, input_view_index(self.cache, f, self.cfg.input_camera) if views else None)
        cands = cands or [j for j in views if j != inp] or views
        return int(cands[0]) if cands else None

    def run_data(self) -> dict:
        names = [c["name"] for c in self.cache.cameras()]
        cams = self.cache.view_table()["camera"]
        return {"encoder_init": self.encoder_init, "train_frames": self.frames,
                "test_hand": self.cfg.test_hand if self.cache.has_hand_estimates else "gt (the cache has no estimates)",
                "input_cameras": sorted({names[int(cams[j])] for j in self.input_views.values()})}

    # -----------------------------------------------------------------------------------------------------
    def train_step(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        frames = self._resident_frames(step)
        f = frames[int(torch.randint(len(frames), (1,), generator=gen))]
        ramp = min(1.0, step / max(cfg.object_ramp_steps, 1))
        scene, targets = self._frame_data(f)
        b = targets.sample(cfg.rays_per_step, cfg.object_fraction * ramp, gen)
        o, d = b["origins"].to(self.device), b["dirs"].to(self.device)
        near, far, _ = ray_aabb(o, d, scene.box_min, scene.box_max)
        enc = self.model.encode(scene)
        out = self.model.render_rays(enc, o, d, near, far, perturb=True, gen=gen)
        rgb, lab = b["rgb"].to(self.device), b["label"].to(self.device)
        target = torch.as_tensor(CACHE_TO_CLASS, device=self.device)[lab]
        cw = torch.tensor(cfg.class_weights, device=self.device)
        terms = {}
        passes = [("", out)] + ([("_coarse", out["coarse"])] if "coarse" in out else [])
        for suffix, p in passes:
            terms["rgb" + suffix] = cfg.w_rgb * ((p["rgb"] - rgb) ** 2).mean()
            terms["opacity" + suffix] = cfg.w_opacity * balanced_bce(p["opacity"], lab > 0)
            terms["semantic" + suffix] = cfg.w_semantic * semantic_loss(p["semantic"], target, cw)
        loss, logs = sum_losses(terms, scale=cfg.input_view_weight if b["is_input"] else 1.0)
        logs["mse"] = float(((out["rgb"] - rgb) ** 2).mean().detach())
        logs["rays"] = len(rgb)
        logs["samples"] = out["evaluated"]
        return loss, logs

    # -----------------------------------------------------------------------------------------------------
    def scene(self, frame: int) -> SceneInput:
        """The network input of a frame (built and kept on first use)."""
        if frame in self._train_data:
            return self._train_data[frame][0]
        if frame not in self._scenes:
            self.check_frame(frame)
            scene, j = build_scene(self.cache, frame, self.cfg, input_hand=self.input_hand(frame))
            n = len(self.model.hand_latent) if hasattr(self.model, "hand_latent") else len(scene.hand_verts)
            if len(scene.hand_verts) != n:
                raise InputError(f"the run was trained with a {n}-vertex hand model; frame {frame} has "
                                 f"{len(scene.hand_verts)} vertices", path=self.cache_path, field="hand_model")
            self.input_views[frame] = j
            self._scenes[frame] = self._cache_levels(scene).to(self.device)
            if len(self._scenes) > 8:
                self._scenes.popitem(last=False)
        self._scenes.move_to_end(frame)
        return self._scenes[frame]

    def input_hand(self, frame: int) -> str:
        """The input hand of ``frame``: "gt" for the frames the run trained on (Choi trains with GT meshes),
        else ``cfg.test_hand`` ("estimated" only where the cache holds estimates)."""
        if frame in self.trained_frames or self.cfg.test_hand == "gt" or not self.cache.has_hand_estimates:
            return "gt"
        return "estimated"

    def render_state(self, frame: int, outputs: frozenset[str]):
        """The frame's scene encoding (seen by its input view), its cache labels by class and its box."""
        scene = self.scene(frame)
        to_cache = torch.tensor([LABELS["background"], LABELS["object"], SIDE_LABEL[scene.side]], dtype=torch.uint8,
                                device=self.device)
        return (self.model.encode(scene), to_cache), [(scene.box_min, scene.box_max)]

    def render_rays(self, state, origins, dirs, outputs: frozenset[str], **extra) -> dict:
        """rgb, depth (ray distance), opacity and semantic (cache labels of the class argmax) of R rays."""
        enc, to_cache = state
        near, far, _ = ray_aabb(origins, dirs, enc.scene.box_min, enc.scene.box_max)
        out = self.model.render_rays(enc, origins, dirs, near, far, perturb=False)
        res = {k: out[k] for k in outputs if k != "semantic"}
        if "semantic" in outputs:
            res["semantic"] = to_cache[out["semantic"].argmax(-1)]
        res["evaluated"] = out["evaluated"]
        return res

    def render_crop(self, j: int, size: int | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
        """Render cache view ``j`` on its square crop around the hand-object mask (as in training and in
        Choi's evaluation): (render dict, GT rgb (S, S, 3) float with black background, GT label (S, S))."""
        vt = self.cache.view_table()
        frame = int(vt["frame"][j])
        scene = self.scene(frame)
        cam = self.cache.cameras()[int(vt["camera"][j])]
        box = np.stack([scene.box_min.cpu().numpy(), scene.box_max.cpu().numpy()]).astype(np.float64)
        S = size or self.cfg.render_size
        rgb, label, Kc = crop_view(self.cache.view(j), cam["K"], cam["world_to_cam"], box, S, self.cfg.crop_scale)
        r = self.render_camera(frame, Kc, cam["world_to_cam"], S, S)
        r["K"] = Kc
        return r, rgb.astype(np.float32) / 255.0, label

    def snapshot_view(self, j: int):
        r, gt, label = self.render_crop(j)
        return r, gt, label

    def snapshot_panels(self, r: dict, gt, label, title: str) -> tuple[list, list]:
        palette = np.array([[0, 0, 0], [230, 160, 120], [230, 160, 120], [80, 140, 230]], np.float32) / 255.0
        return [(r["rgb"], gt), (palette[r["semantic"]], palette[label])], [title, "semantic"]

    def snapshot_metrics(self, r: dict, gt, label) -> dict:
        from handcli.eval.image_metrics import psnr_full

        return {"eval_psnr_crop": psnr_full(r["rgb"], gt)}

    # -----------------------------------------------------------------------------------------------------
    def extract_meshes(self, frame: int, resolution: int | None = None) -> dict:
        """Marching cubes of the predicted density (Choi's ``recon.py``): {"hand", "object", "scene"} meshes.

        Grid: ``mesh_voxel`` (or the box's longest side / ``resolution``) over the hand-object box, restricted
        to points inside every view's hand-object mask (``mesh_masks="all"``, Choi), the input view's
        ("input") or nowhere ("none"); density zero elsewhere. Hand and object keep the density where the
        semantic argmax is theirs; components smaller than ``dust_ratio`` of the occupied voxels are removed;
        the surface is the level set ``mesh_level`` of the activated density (= the raw density's, > 0).
        Empty parts are empty meshes.
        """
        cfg = self.cfg
        scene = self.scene(frame)
        lo, hi = scene.box_min.cpu().numpy().astype(np.float64), scene.box_max.cpu().numpy().astype(np.float64)
        step = cfg.mesh_voxel if not resolution else float(np.max(hi - lo)) / int(resolution)
        n = np.floor((hi - lo) / step).astype(int) + 1
        axes = [lo[k] + step * np.arange(n[k]) for k in range(3)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)  # [ix, iy, iz] order
        inside = self._mesh_mask(frame, pts)
        sigma = np.zeros(len(pts))
        cls = np.zeros(len(pts), np.int64)
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                enc = self.model.encode(scene)
                p = torch.tensor(pts[inside], dtype=torch.float32, device=self.device)
                s, c = self.model.density_and_class(enc, p)
        finally:
            self.model.train(was)
        sigma[inside] = s.cpu().numpy()
        cls[inside] = c.cpu().numpy()
        cubes = {"scene": sigma, "hand": np.where(cls == 2, sigma, 0.0), "object": np.where(cls == 1, sigma, 0.0)}
        out = {}
        for name in ("hand", "object", "scene"):
            cube = remove_dust(cubes[name].reshape(n), cfg.dust_ratio)
            out[name] = mesh_from_cube(cube, cfg.mesh_level, lo, step)
        return out

    def _mesh_mask(self, frame: int, pts: np.ndarray) -> np.ndarray:
        """(N,) bool: grid points inside the hand-object masks of the views selected by ``mesh_masks``."""
        if self.cfg.mesh_masks == "none":
            return np.ones(len(pts), bool)
        cams = self.cache.cameras()
        views = self.cache.views_of_frame(frame)
        if self.cfg.mesh_masks == "input":
            self.scene(frame)
            views = [self.input_views[frame]]
        inside = np.ones(len(pts), bool)
        for j in views:
            v = self.cache.view(j)
            cam = cams[v["camera"]]
            M, K = cam["world_to_cam"], cam["K"]
            pc = pts @ M[:3, :3].T + M[:3, 3]
            uv = np.round(project(pc, K, min_depth=1e-6)).astype(np.int64)
            H, W = v["label"].shape
            ok = (pc[:, 2] > 1e-6) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
            fg = np.zeros(len(pts), bool)
            fg[ok] = v["label"][uv[ok, 1], uv[ok, 0]] > 0
            inside &= fg
        return inside
