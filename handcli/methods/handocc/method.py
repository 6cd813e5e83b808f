"""Training, rendering, appearance transfer and mesh extraction of HandOcc runs (API: handcli.methods.base).

Glue between the cache, the model (``handocc.py``) and the trainer. At inference only the cache's 21-joint
skeletons (``frames/{side}/joints``) drive the model; posed meshes are read only in training, to measure the
bone capsules and to label occupancy points (``supervision="mesh"``). Appearance comes from masked hand
crops of training views (a random view of the same capture per step, so the code describes the subject,
not the pose) or, at render time, from a reference image (``set_appearance``).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from handcli.data.cache import Cache
from handcli.data.raybatch import pick_eval_view, sample_batch, select_views
from handcli.data.shards import open_cache
from handcli.data.viewpool import ViewPool, rank_part
from handcli.errors import InputError
from handcli.labels import LABELS, hand_pixels
from handcli.methods.base import Method, RunFolder, sum_losses
from handcli.methods.handocc.label_align import LabelAlignment
from handcli.methods.handocc.model import (
    PRESETS,
    REF_CROPS,
    AppearanceEncoder,
    ColorNet,
    HandOcc,
    HandOccConfig,
    HandSkeleton,
    migrate_config,
    occ_weight,
    occupancy_grid,
)
from handcli.methods.handocc.model import render_rays as render_hand_rays
from handcli.methods.handocc.refine import SkeletonRefinement, carry_points, detach_hand, detach_sampling
from handcli.methods.handocc.render_calibration import fit_render_calibration
from handcli.methods.handocc.sampler import (
    grow_relative_radii,
    inside_capsules,
    labelled_points,
    outside_margin,
)
from handcli.methods.handocc.skeletons import frame_joints, frames_joints
from handcli.methods.handocc.visual_hull import FrameSilhouettes, in_visual_hull, mesh_misses
from handcli.methods.trainer import sum_across_ranks
from handcli.progress import log, progress
from handcli.render.driver import OPACITY_THRESHOLD

SIDE_LABEL = {"right": LABELS["right"], "left": LABELS["left"]}
CHOICE_VIEWS = 12  # training views the end of training fits the rendered calibration to (cal_render "auto")


class LabelledPools:
    """``pools[(frame, side)]`` -> (points (n, 3), inside labels (n,)) around that hand's posed mesh.

    Drawn on first use from a generator seeded by (seed, frame, side), so a pool is the same whenever and
    in whatever order it is drawn (a resumed run sees the pools an uninterrupted one saw); at most
    ``capacity`` pools stay in memory (least recently used dropped, redrawn identically when needed).
    """

    def __init__(self, cache: Cache, n: int, seed: int, capacity: int, device, margin: float = 0.0):
        self.cache, self.n, self.seed, self.capacity, self.device = cache, n, seed, capacity, device
        self.margin = margin
        self._lru: OrderedDict = OrderedDict()
        self._faces: dict = {}
        self.drawn = 0

    def __getitem__(self, key: tuple[int, str]) -> tuple[torch.Tensor, torch.Tensor]:
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        frame, side = key
        if side not in self._faces:
            self._faces[side] = torch.as_tensor(self.cache.hand_model(side)["faces"].astype(np.int64))
        V = torch.as_tensor(self.cache.frame_value(f"{side}/vertices", frame), dtype=torch.float32)
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + frame * 2 + (side == "left")) % (2 ** 63))
        pts, lab = labelled_points(V, self._faces[side], self.n, gen)
        if self.margin > 0:
            keep = outside_margin(pts, V, self._faces[side], self.margin, gen)
            pts, lab = pts[keep], lab[keep]
        self._lru[key] = (pts.to(self.device), lab.to(self.device))
        self.drawn += 1
        while len(self._lru) > self.capacity:
            self._lru.popitem(last=False)
        return self._lru[key]

    def __len__(self) -> int:
        return len(self._lru)


# ---------------------------------------------------------------------------------------------------------
# Inputs from the cache


RADII_FRAMES = 256  # training meshes measured for the capsule radii (all of them when there are fewer); on the
# 48-frame bench shard a quarter of the frames gave radii within 1.3 % of all of them (docs/benchmarks.md)


def hand_crop(rgb: np.ndarray, mask: np.ndarray, size: int, flip: bool = False) -> np.ndarray | None:
    """Square crop (size, size, 3) uint8 around a hand mask, background black; None if the mask is empty.

    The square is centred on the mask's box and 10 % larger than its long side; left hands are flipped
    horizontally (``flip``) so that the encoder always sees right-looking hands.
    """
    import cv2

    ys, xs = np.nonzero(mask)
    if len(ys) < 4:
        return None
    cx, cy = 0.5 * (xs.min() + xs.max()), 0.5 * (ys.min() + ys.max())
    half = 0.55 * max(xs.max() - xs.min(), ys.max() - ys.min()) + 1.0
    x0, y0 = int(np.floor(cx - half)), int(np.floor(cy - half))
    side = int(np.ceil(2 * half))
    img = (rgb * mask[..., None]).astype(np.uint8)
    H, W = mask.shape
    canvas = np.zeros((side, side, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, W), min(y0 + side, H)
    canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    out = cv2.resize(canvas, (size, size), interpolation=interp)
    return np.ascontiguousarray(out[:, ::-1]) if flip else out


def _read_image(path: Path, what: str) -> np.ndarray:
    """An image file as uint8 (H, W, C) in OpenCV's channel order (BGR / BGRA) or (H, W) grey."""
    import cv2

    if not Path(path).is_file():
        raise InputError(f"{what} not found", path=path)
    from handcli.checks import read_image_file

    img = read_image_file(path, cv2.IMREAD_UNCHANGED, what)  # truncated files are errors
    if img.ndim not in (2, 3):
        raise InputError("not a readable image", path=path)
    if img.dtype != np.uint8:
        img = (img.astype(np.float64) / max(float(np.iinfo(img.dtype).max), 1.0) * 255).astype(np.uint8)
    return img


def read_reference_image(path: Path, size: int, mask_path: Path | None = None) -> np.ndarray:
    """A reference image for appearance transfer -> a (size, size, 3) uint8 hand crop.

    The hand mask is, in order: the image ``mask_path`` (same size; non-zero = hand, e.g. a photo's
    segmentation), the image's alpha channel, or the non-black pixels (a masked crop such as the training
    crops). Raises InputError for unreadable, mismatched or empty images.
    """
    img = _read_image(path, "appearance image")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    rgb = np.ascontiguousarray(img[..., 2::-1])
    if mask_path is not None:
        m = _read_image(mask_path, "appearance mask")
        m = m if m.ndim == 2 else m.max(-1)
        if m.shape != rgb.shape[:2]:
            raise InputError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {rgb.shape[1]}x{rgb.shape[0]}",
                             path=mask_path)
        mask = m > 127 if m.max() > 1 else m > 0
    elif img.shape[2] == 4:
        mask = img[..., 3] > 127
    else:
        mask = rgb.max(-1) > 10
        if mask.mean() > 0.95:  # a photo, not a hand on black: the "hand" would be the whole picture
            raise InputError("the image has no black background and no alpha channel, so the hand cannot be "
                             "told apart; give its mask with --appearance-mask, or use a cache view "
                             "(--appearance CACHE.h5 --appearance-view N)", path=path)
    crop = hand_crop(rgb, mask, size)
    if crop is None:
        where = mask_path if mask_path is not None else path
        raise InputError("no hand pixels found (expected a hand on a black background, an alpha mask or "
                         "--appearance-mask)", path=where)
    return crop


def reference_crop_from_cache(cache_path: Path, view: int, size: int) -> np.ndarray:
    """The hand of a cache view (masked with the cache's labels) -> a (size, size, 3) uint8 crop.

    The hand with more pixels in the view is used (a left hand is mirrored, as in training). Raises
    InputError for a view index out of range or a view without hand pixels.
    """
    with open_cache(cache_path) as c:
        if not 0 <= view < c.num_views:
            raise InputError(f"view {view} out of range (the cache has {c.num_views} views)", path=cache_path,
                             field="appearance_view")
        v = c.view(view)
    counts = {side: int((v["label"] == lab).sum()) for side, lab in SIDE_LABEL.items()}
    side = max(counts, key=counts.get)
    crop = hand_crop(v["rgb"], v["label"] == SIDE_LABEL[side], size, flip=side == "left")
    if crop is None:
        raise InputError(f"view {view} has no hand pixels", path=cache_path, field="appearance_view")
    return crop


def reference_picks(cameras: np.ndarray, ok: np.ndarray, n: int) -> np.ndarray:
    """Indices of up to ``n`` views with a crop (``ok`` (M,) bool), one per camera (``cameras`` (M,)): the first such
    view of each camera, the cameras spread evenly over those present when there are more than ``n``."""
    idx = np.nonzero(ok)[0]
    _, first = np.unique(cameras[idx], return_index=True)
    picks = idx[np.sort(first)]
    if len(picks) > n:
        picks = picks[np.linspace(0, len(picks) - 1, n).round().astype(int)]
    return picks


def crops_to_tensor(crops: np.ndarray, device) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float in [0, 1]."""
    return torch.as_tensor(crops, device=device).permute(0, 3, 1, 2).float() / 255.0


class HandOccMethod(Method):
    """A HandOcc run (contract: handcli.methods.base)."""

    Config = HandOccConfig
    PRESETS = PRESETS
    default_method = "handocc"
    capabilities = frozenset({"mesh", "appearance", "skeleton", "adapt"})
    adapt_curves = ("loss", "rgb", "mask", "refine")
    outputs = frozenset({"rgb", "depth", "opacity", "semantic"})
    render_counts = ("evaluated", "occ_evals", "color_evals")

    migrate_config = staticmethod(migrate_config)  # labels_follow_bones (into labels_pose); occ_anneal "on" when absent
    # adapt (adapt.prepare_adaptation): the networks are frozen; training neither learns the bone thickness nor
    # chooses cal_render "auto", and its end checks the adaptation instead (finish_training)
    frozen_networks = False
    # adapt (adapt.prepare_adaptation): the cameras fitted and those held back to check the fit
    fit_cameras: list[str] | None = None
    check_cameras: list[str] | None = None

    @classmethod
    def check_config(cls, cfg: HandOccConfig) -> None:
        cfg.check()

    def run_data(self) -> dict:
        out = {"train_frames_used": list(self.frames)}
        if self.check_cameras is not None:  # an adaptation: the cameras it fitted, and those that checked it
            out.update(cameras=self.fit_cameras, check_cameras=self.check_cameras)
        return out

    @classmethod
    def adaptation(cls, run_dir: Path, cache: Path, *, frames: list[int] | None, steps: int, lr: float, seed: int,
                   device: str, depth: Path | None, workdir: Path, cameras: list[str] | None = None,
                   check_cameras: list[str] | None = None) -> tuple["HandOccMethod", list[str]]:
        """Skeleton refinement of the novel frames against their images, networks frozen
        (``handcli.methods.handocc.adapt``; ``depth`` is not used), checked on ``check_cameras`` (None: every
        fifth camera, []: none) when its steps end (``finish_training``)."""
        from handcli.methods.handocc.adapt import prepare_adaptation

        if depth is not None:
            raise InputError("HandOcc adapts to the novel frames' images; it takes no --depth", path=depth,
                             field="depth")
        return prepare_adaptation(cls.from_run(run_dir, device=device), cache, frames=frames, steps=steps, lr=lr,
                                  seed=seed, device=device, cameras=cameras, check_cameras=check_cameras)

    def finish_training(self) -> dict | None:
        """An adaptation (``frozen_networks``): the novel frames whose adapted skeletons fit the check cameras worse
        go back to the start (``adapt.keep_checked``); the trained run's ``cal_render`` choice is kept.

        Otherwise, ``cal_render`` "auto": fit the density calibration that every later render applies to
        ``CHOICE_VIEWS`` of the training views (a fixed pick; ``render_calibration``), or none where the network's own
        occupancy fits them best. Returns the summary of the fit (``render_calibration.fit_render_calibration``), or
        None where there is nothing to fit."""
        if self.frozen_networks:
            from handcli.methods.handocc.adapt import keep_checked

            return keep_checked(self)
        cal = getattr(self.model, "density_cal", None)
        if cal is None or self.cfg.cal_render != "auto" or self.cfg.stage != "full":
            return None
        ids = np.asarray(self.pool.view_ids)
        pick = sorted(np.random.default_rng(0).choice(ids, size=min(CHOICE_VIEWS, len(ids)), replace=False).tolist())
        fit = fit_render_calibration(self, pick)
        how = (f"apply the density calibration slope {fit['slope']:.2f}, offset {fit['offset']:+.2f}" if fit["cal_render"]
               else "leave out the density calibration")
        log(f"renders {how} (cal_render auto, fitted to {fit['views']} training views: {fit['psnr']:.2f} dB; "
            f"{fit['psnr_without']:.2f} dB without, {fit['psnr_trained']:.2f} dB with the trained slope "
            f"{fit['trained_slope']:.2f}, offset {fit['trained_offset']:+.2f})")
        return fit

    def setup_run(self, run: RunFolder, state: dict) -> None:
        """The model (weights, capsule radii and reference crops come from the checkpoint); the cache only
        provides skeletons and cameras."""
        self.joints = {}
        self.edited: set[int] = set()  # frames whose skeletons set_skeletons replaced
        self.app_override = None
        self.cfg = config_for_state(self.cfg, state.get("model", {}))
        self.model = HandOcc(self.cfg).to(self.device)
        attach_training_modules(self.model, state.get("model", {}))

    # -----------------------------------------------------------------------------------------------------
    def setup_training(self, *, train_cameras: list[str] | None = None, train_frames: list[int] | None = None,
                       eval_cameras: list[str] | None = None, seed: int = 0) -> None:
        cfg = self.cfg
        cache_path = self.cache_path
        frames = self.training_frames(train_frames)
        self.edited: set[int] = set()
        self.joints = {f: [(s, torch.as_tensor(j, device=self.device)) for s, j in js]
                       for f, js in frames_joints(self.cache, frames, cfg.skeleton).items()}
        view_ids = select_views(self.cache, train_cameras, frames)
        if len(view_ids) == 0:
            raise InputError("no training views match the camera/frame selection", path=cache_path, field="views")
        self.pool = ViewPool(self.cache, rank_part(view_ids), [f for f in frames if self.joints[f]],
                             capacity=cfg.view_pool, refresh_every=cfg.pool_refresh, replace=cfg.pool_replace,
                             seed=seed)
        self.frames = self.pool.frames
        if not self.frames:
            raise InputError("no training frame has both a valid skeleton and a view", path=cache_path,
                             field="frames")
        self.model = HandOcc(cfg).to(self.device)
        if cfg.camera_colour:  # training-only colour maps; renders use the field's own colour
            from handcli.nn.camera_colour import CameraColour

            self.model.colour = CameraColour(len(self.cache.cameras())).to(self.device)
            self.view_camera = torch.as_tensor(self.cache.view_table()["camera"].astype(np.int64))
        if cfg.refine:  # per-frame joint offsets of the training hands (refine.py)
            self.model.refine = SkeletonRefinement.for_hands({f: self.joints[f] for f in self.frames},
                                                             self.cache.frame_column("capture"), cfg.refine_scale)
        if cfg.align_labels and cfg.supervision == "mesh":  # rigid per-hand moves of the labels (label_align.py)
            self.model.label_align = LabelAlignment.for_hands({f: self.joints[f] for f in self.frames},
                                                              cfg.align_scale)
        self.app_override: torch.Tensor | None = None
        self.seed = seed
        self.pools = LabelledPools(self.cache, cfg.pool_points, seed, cfg.pool_cache, self.device,
                                   cfg.label_margin)
        self._silhouettes = FrameSilhouettes(cfg.label_hull_px, self.device) if cfg.label_hull != "off" else None
        self._carved_closed = False  # the anneal's evidence (model.label_carved, label_missed) is complete
        self._annealed = cfg.occ_anneal == "on"  # labels_annealed(), decided when the evidence is complete
        self._view_misses: dict[int, tuple[int, int]] = {}  # cache view -> mesh_misses, until the evidence is complete
        # a frame's posed-mesh skeletons (a hand-model forward, ~12 ms), kept for as many frames as the pools
        self._mesh_skeletons = functools.lru_cache(maxsize=cfg.pool_cache)(
            lambda f: [(s, torch.as_tensor(j, device=self.device)) for s, j in frame_joints(self.cache, f, "mesh")])
        models = {s: self.cache.hand_model(s) for s in ("right", "left")}
        self._faces = {s: torch.as_tensor(m["faces"].astype(np.int64)) for s, m in models.items() if m is not None}
        self._has_model = {s: s in self._faces for s in ("right", "left")}
        if cfg.supervision == "mesh":
            self._measure_meshes()
        self._crops_of = None
        self._prepare_crops(self.pool.at(0), self.pool.resident_frames, reference=True)
        self.eval_view = pick_eval_view(self.cache, self.frames[0], train_cameras, eval_cameras)

    def _hand_mesh(self, f: int, side: str) -> torch.Tensor:
        """(V, 3) posed mesh of a training hand (one read, not a whole frame record)."""
        v = self.cache.frame_value(f"{side}/vertices", f) if self._has_model[side] else None
        if v is None or v.size == 0 or not np.any(v):
            raise InputError("supervision=mesh needs posed meshes; use --set supervision=silhouette",
                             path=self.cache_path, field=f"frames/{side}/vertices")
        return torch.as_tensor(v, dtype=torch.float32)

    def _measure_meshes(self) -> None:
        """Capsule radii from the training meshes (at most RADII_FRAMES frames, evenly spaced, so start-up does
        not grow with the dataset); the labelled points are drawn on first use (``LabelledPools``)."""
        rel = None
        frames = self.frames
        if len(frames) > RADII_FRAMES:
            frames = [frames[i] for i in np.unique(np.linspace(0, len(frames) - 1, RADII_FRAMES).round().astype(int))]
        with progress() as bar:
            task = bar.add_task("capsule radii", total=len(frames))
            for f in frames:
                for side, j in self.joints[f]:
                    rel = grow_relative_radii(rel, self._hand_mesh(f, side), j.cpu())
                bar.advance(task)
        self.model.rel_radii.copy_(rel.to(self.device))

    def _prepare_crops(self, vs, resident: list[int], reference: bool = False) -> None:
        """Masked hand crops of the resident training views (left hands flipped); ``reference``: also the
        run's reference crops (one per camera of the pool, ``_set_reference_crops``)."""
        self._crops_of = vs
        S = self.cfg.crop_size
        captures = self.cache.frame_column("capture")
        crops = np.zeros((len(vs.view_ids), 2, S, S, 3), np.uint8)
        ok = np.zeros((len(vs.view_ids), 2), bool)
        for i in range(len(vs.view_ids)):
            rgb, lab = vs.rgb[i].numpy(), vs.label[i].numpy()
            for k, side in enumerate(("right", "left")):
                c = hand_crop(rgb, lab == SIDE_LABEL[side], S, flip=side == "left")
                if c is not None:
                    crops[i, k], ok[i, k] = c, True
        self.crops = crops
        self.crop_ok = ok
        cap = captures[vs.frames]
        self.crop_index = {(int(c), k): np.nonzero((cap == c) & ok[:, k])[0]
                           for c in np.unique(cap) for k in (0, 1)}
        self.frame_capture = {f: int(captures[f]) for f in resident}
        if reference:
            self._set_reference_crops(crops, ok, self.cache.view_table()["camera"][vs.view_ids])

    def _set_reference_crops(self, crops: np.ndarray, ok: np.ndarray, cameras: np.ndarray) -> None:
        """Store the run's reference crops: per side one crop per camera (``reference_picks``), equally weighted
        (a side without crops takes the other side's). crops (M, 2, S, S, 3) uint8, ok (M, 2), cameras (M,)."""
        S = crops.shape[2]
        ref = np.zeros((2, REF_CROPS, S, S, 3), np.uint8)
        weight = np.zeros((2, REF_CROPS), np.float32)
        for k in (0, 1):
            kk = k if ok[:, k].any() else 1 - k
            picks = reference_picks(cameras, ok[:, kk], REF_CROPS)
            ref[k, :len(picks)] = crops[picks, kk]
            weight[k, :len(picks)] = 1.0 / max(len(picks), 1)
        self.model.ref_crops.copy_(crops_to_tensor(ref.reshape(-1, S, S, 3), self.device).view(2, REF_CROPS, 3, S, S))
        self.model.ref_weight.copy_(torch.as_tensor(weight, device=self.device))

    # -----------------------------------------------------------------------------------------------------
    def hands(self, frame: int) -> list[HandSkeleton]:
        """The frame's hands (right first) built from its skeletons alone."""
        js = self.joints.get(frame)
        if js is None:
            js = [(s, torch.as_tensor(j, device=self.device))
                  for s, j in frame_joints(self.cache, frame, self.cfg.skeleton)]
        return [self.model.hand(self._refined(frame, s, j), s) for s, j in js]

    def _refined(self, frame: int, side: str, joints: torch.Tensor) -> torch.Tensor:
        """The hand's joints with the run's learned offsets (refine.py) when they are a training annotation; the
        cache's joints of a hand it did not train on with the training hands' common offset (``transfer``);
        skeletons set with ``set_skeletons`` as given."""
        ref = getattr(self.model, "refine", None)
        if ref is None or frame in self.edited:
            return joints
        if ref.index(frame, side, joints) is None:
            return ref.transfer(side, joints)
        return ref.refine(frame, side, joints)

    def train_codes(self, frame: int, hands: list[HandSkeleton], gen: torch.Generator) -> list[torch.Tensor]:
        """Appearance codes from random training crops of the same capture (same side when there is one): per hand
        the mean code of ``app_crops`` of them (1: one crop's code)."""
        cap = self.frame_capture[frame]
        picks = []
        for h in hands:
            k = 0 if h.side == "right" else 1
            for kk in (k, 1 - k):
                pool = self.crop_index.get((cap, kk), np.zeros(0, int))
                if len(pool):
                    if self.cfg.app_crops == 1:
                        rows = [pool[int(torch.randint(len(pool), (1,), generator=gen))]]
                    else:
                        rows = pool[torch.randperm(len(pool), generator=gen)[:self.cfg.app_crops].numpy()]
                    picks.append(self.crops[rows, kk])
                    break
            else:
                picks.append(np.zeros_like(self.crops[:1, 0]))
        codes = self.model.app(crops_to_tensor(np.concatenate(picks), self.device))
        return [c.mean(0) for c in codes.split([len(p) for p in picks])]

    def appearance_codes(self, hands: list[HandSkeleton]) -> list[torch.Tensor]:
        if self.app_override is not None:
            code = self.model.app(self.app_override)[0]
            return [code for _ in hands]
        return self.model.default_codes(hands)

    def set_appearance(self, image: Path, mask: Path | None = None, view: int | None = None) -> None:
        """Render every hand with the appearance of a reference (``render --appearance``): an image (with an
        optional mask image), or, for a cache file, its view ``view`` masked with the cache's labels."""
        crop = (reference_crop_from_cache(Path(image), view, self.cfg.crop_size) if view is not None
                else read_reference_image(Path(image), self.cfg.crop_size, mask))
        self.set_appearance_crop(crop)

    def set_appearance_crop(self, crop: np.ndarray | None) -> None:
        """Render every hand with the appearance of a (crop_size, crop_size, 3) uint8 hand crop on black
        (see ``hand_crop``); None restores the run's own appearance."""
        self.app_override = None if crop is None else crops_to_tensor(crop[None], self.device)

    def appearance_crops(self) -> dict[str, np.ndarray]:
        """One reference crop per capture (subject) of the cache: {"capture N": (S, S, 3) uint8}, from the
        first view of the capture with a hand mask (left hands flipped, as in training)."""
        captures = self.cache.frame_column("capture")
        vt = self.cache.view_table()
        out = {}
        for cap in np.unique(captures):
            for j in np.nonzero(captures[vt["frame"]] == cap)[0]:
                v = self.cache.view(int(j))
                crops = [hand_crop(v["rgb"], v["label"] == SIDE_LABEL[s], self.cfg.crop_size, flip=s == "left")
                         for s in ("right", "left")]
                crops = [c for c in crops if c is not None]
                if crops:
                    out[f"capture {int(cap)}"] = crops[0]
                    break
        return out

    def skeletons(self, frame: int) -> list[tuple[str, np.ndarray]]:
        """[(side, joints (21, 3) world)] that drive ``frame``'s render (the cache's, unless replaced)."""
        js = self.joints.get(frame)
        if js is None:
            js = [(s, torch.as_tensor(j, device=self.device))
                  for s, j in frame_joints(self.cache, frame, self.cfg.skeleton)]
        return [(s, self._refined(frame, s, j).detach().cpu().numpy()) for s, j in js]

    def set_skeletons(self, frame: int, skeletons: list[tuple[str, np.ndarray]] | None) -> None:
        """Render ``frame`` with other skeletons [(side, joints (21, 3))], as given (no learned offsets added: the
        viewer's and ``render --edit``'s edits start from ``skeletons(frame)``, which has them); None restores the
        cache's."""
        if skeletons is None:
            skeletons = frame_joints(self.cache, frame, self.cfg.skeleton)
            self.edited.discard(frame)
        else:
            self.edited.add(frame)
        self.joints[frame] = [(s, torch.as_tensor(np.asarray(j), dtype=torch.float32, device=self.device))
                              for s, j in skeletons]

    # -----------------------------------------------------------------------------------------------------
    def train_step(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        views, frame = self.pool.draw(step, gen)
        if views is not self._crops_of:
            self._prepare_crops(views, self.pool.resident_frames)
        refine = getattr(self.model, "refine", None)
        if refine is not None and step < cfg.refine_start * cfg.steps:
            refine = None  # offsets stay at zero (and out of the graph) until the field has taken shape
        align = getattr(self.model, "label_align", None) if step >= cfg.refine_start * cfg.steps else None
        annotated = [self.model.hand(j, s) for s, j in self.joints[frame]]
        hands = self.hands(frame) if refine is not None else annotated
        terms: dict[str, torch.Tensor] = {}
        logs: dict = {"rays": 0, "samples": 0}
        if not self._carved_closed and step >= cfg.occ_anneal_start * cfg.steps:
            # the anneal's evidence is complete: every rank of a torchrun job decides from all ranks' (the ratio of
            # the sums does not change when a resumed run, whose checkpoint holds the sums already, adds them again)
            evidence = torch.cat([self.model.label_carved, self.model.label_missed])  # one all-reduce for both
            sum_across_ranks(evidence)
            self.model.label_carved.copy_(evidence[:2])
            self.model.label_missed.copy_(evidence[2:])
            self._carved_closed = True
            self._view_misses = {}
            self._annealed = self.labels_annealed()  # read once: the evidence no longer changes
        thick = getattr(self.model, "thickness", None)
        if thick is not None and not self.frozen_networks:  # no gradient, no Adam step while not learned
            thick.p.requires_grad_(step >= cfg.refine_start * cfg.steps and self.thickness_learned())
        # before occ_anneal_start the schedule is w_occ whatever the decision, so it is only needed from there on
        w_occ = occ_weight(cfg, step, self._annealed)
        logs["w_occ"] = w_occ
        if cfg.supervision == "mesh" and (w_occ > 0 or (len(hands) == 2 and cfg.w_int > 0)):
            # labels from the annotated mesh: no evidence for the refinement
            src = dst = None  # labels carried with their bones from the src skeletons to dst (None: the hands)
            labels_pose = self.labels_pose()
            if labels_pose in ("joints", "refined"):
                src = self._label_skeletons(frame)
                dst = annotated if labels_pose == "joints" else None
            elif refine is not None and labels_pose == "bones":
                src = annotated
            hull = self._silhouettes.of_frame(views, frame) if self._silhouettes is not None else None
            self._occupancy_losses(frame, [detach_hand(h) for h in hands] if refine else hands, w_occ, gen, terms,
                                   logs, src=src, align=align, dst=dst, hull=hull)
            if "hull_carved" in logs and not self._carved_closed:
                self.model.label_carved += torch.tensor([logs["hull_carved"], 1.0], device=self.model.label_carved.device)
            if cfg.occ_anneal == "auto" and not self._carved_closed:
                missed = self._label_missed(views, frame)
                if missed is not None:
                    logs["label_missed"] = missed
                    self.model.label_missed += torch.tensor([missed, 1.0], device=self.model.label_missed.device)
            if align is not None:
                terms["align"] = align.penalty(frame, [h.side for h in hands], cfg.w_align)
                logs["align_mm"] = float(align.shift_mm().detach().mean())
        if cfg.stage == "full" or cfg.supervision == "silhouette":
            self._ray_losses(views, frame, [detach_sampling(h) for h in hands] if refine else hands, gen, terms,
                             logs)
            if refine is not None:
                terms["refine"] = refine.penalty(frame, [h.side for h in hands], cfg.w_refine, cfg.w_bone)
                logs["refine_mm"] = float(refine.offset_m().detach().norm(dim=-1).mean()) * 1000.0
        return sum_losses(terms, logs)

    def labels_annealed(self) -> bool:
        """Whether the mesh-occupancy labels' weight follows the anneal schedule (``occ_anneal``): "on" / "off" as
        said; "auto" when, on average over the steps before ``occ_anneal_start``, the visual-hull check carved more
        than ``anneal_carved`` of the inside labels (``model.label_carved``; labels sticking out of the hand) or the
        labels' mesh left more than ``anneal_missed`` of the training views' hand pixels uncovered
        (``model.label_missed``; labels thinner than the hand). The schedule keeps ``w_occ`` until that step, so the
        decision is only read once its evidence is complete."""
        if self.cfg.occ_anneal != "auto":
            return self.cfg.occ_anneal == "on"
        (carved, n), (missed, m) = self.model.label_carved.tolist(), self.model.label_missed.tolist()
        return (n > 0 and carved / n > self.cfg.anneal_carved) or (m > 0 and missed / m > self.cfg.anneal_missed)

    def labels_pose(self) -> str:
        """Where the occupancy labels are posed now: ``labels_pose``, "auto" resolved to "refined" where the labels
        are annealed (``labels_annealed``, read at ``occ_anneal_start``) and "joints" otherwise."""
        if self.cfg.labels_pose != "auto":
            return self.cfg.labels_pose
        return "refined" if self._annealed else "joints"

    def thickness_learned(self) -> bool:
        """Whether the bone thickness is learned (from ``refine_start`` on): ``bone_thickness`` "on", or "auto" where
        the labels are annealed."""
        return self.cfg.bone_thickness == "on" or (self.cfg.bone_thickness == "auto" and self._annealed)

    def _label_missed(self, views, frame: int) -> float | None:
        """The share of the hand pixels of ``frame``'s resident training views that the frame's posed hand models
        (the mesh the labels are drawn around) leave uncovered (``mesh_misses``; each view measured once), or None
        without hand pixels or a hand model."""
        sides = [s for s, _ in self.joints[frame] if self._has_model[s]]
        local = views.positions_of_frame(frame).tolist()
        if not sides or not local:
            return None
        meshes = None
        for lv in local:
            vid = int(views.view_ids[lv])
            if vid not in self._view_misses:
                if meshes is None:
                    meshes = [(self._hand_mesh(frame, s).numpy(), self._faces[s].numpy()) for s in sides]
                hand = hand_pixels(views.label[lv], sides)
                self._view_misses[vid] = mesh_misses(meshes, views.K[lv].numpy(), views.w2c[lv].numpy(), hand)
        missed, hand = (sum(x) for x in zip(*(self._view_misses[int(views.view_ids[lv])] for lv in local)))
        return missed / hand if hand else None

    def _label_skeletons(self, frame: int) -> list[HandSkeleton]:
        """The frame's hands on the skeletons of the cache's posed hand model: the pose the labelled points were
        drawn in (``labels_pose`` "joints" / "refined" carries them from there to the model's skeletons)."""
        return [self.model.hand(j, s) for s, j in self._mesh_skeletons(frame)]

    def _placed_labels(self, frame, i, h, gen, src=None, align=None, dst=None, hull=None):
        """``occ_points`` labelled points of hand ``h`` (the ``i``-th of the frame) where the loss uses them ->
        points (P, 3), labels (P,) float and the share of its inside labels the hull carved (None without one).

        With ``src`` (the same hands on other skeletons: the annotated joints', or the posed mesh's) the points
        are first carried with their bones from ``src[i]`` to ``dst[i]`` (default: ``h``, e.g. the refined
        skeleton); with ``align`` (LabelAlignment) they are then moved by the hand's learned rigid transform;
        with ``hull`` (K, w2c, silhouettes of the frame's training views) the inside labels off the visual hull
        are dropped or flipped (``label_hull``)."""
        P, Y = self.pools[(frame, h.side)]
        sel = torch.randint(len(P), (self.cfg.occ_points,), generator=gen).to(self.device)
        x, y = P[sel], Y[sel].float()
        if src is not None:
            x = carry_points(x, src[i], h if dst is None else dst[i])
        if align is not None:
            x = align.apply(frame, h.side, x)
        if hull is None:
            return x, y, None
        off = (y > 0.5) & ~in_visual_hull(x.detach(), *hull)
        carved = float(off.sum()) / max(float((y > 0.5).sum()), 1.0)
        if self.cfg.label_hull == "flip":
            return x, y.masked_fill(off, 0.0), carved
        return x[~off], y[~off], carved

    def _occupancy_losses(self, frame, hands, w_occ, gen, terms, logs, **placing) -> None:
        """Mesh-occupancy BCE (and the intersection term) of the frame's ``hands``, on the labelled points
        ``_placed_labels(..., **placing)`` puts where the loss uses them."""
        cfg = self.cfg
        occ_l, inside, inter, tp, fp_fn, carved = [], [], [], 0.0, 0.0, []
        for i, h in enumerate(hands):
            x, y, c = self._placed_labels(frame, i, h, gen, **placing)
            if c is not None:
                carved.append(c)
            inside.append(x[y > 0.5])
            if not len(x):  # "drop" carved every label of this hand
                continue
            o = self.model.occ(h, x, soft=True)["occ"]
            occ_l.append(F.binary_cross_entropy(o.clamp(1e-5, 1 - 1e-5), y))
            pred = (o.detach() > 0.5).float()
            tp += float((pred * y).sum())
            fp_fn += float((pred != y).float().sum())
        if occ_l:
            terms["occ"] = w_occ * torch.stack(occ_l).mean()
        logs["occ_iou"] = tp / max(tp + fp_fn, 1.0)
        if carved:
            logs["hull_carved"] = sum(carved) / len(carved)
        if len(hands) == 2 and cfg.w_int > 0:
            for a, b in ((0, 1), (1, 0)):
                xa = inside[a]
                if not len(xa):
                    continue
                near = inside_capsules(xa, hands[b].start, hands[b].end, hands[b].radii)
                ob = self.model.occ(hands[b], xa[near], soft=True)["occ"] if near.any() else xa.new_zeros(0)
                inter.append(ob.sum() / len(xa))
            if inter:
                terms["int"] = cfg.w_int * sum(inter)

    def _ray_losses(self, views, frame, hands, gen, terms, logs) -> None:
        cfg = self.cfg
        b = sample_batch(views, frame, cfg.rays_per_step, cfg.fg_fraction, gen)
        o, d = b["origins"].to(self.device), b["dirs"].to(self.device)
        label, target = b["label"].to(self.device), b["rgb"].to(self.device)
        full = cfg.stage == "full"
        codes = self.train_codes(frame, hands, gen) if full else None
        out = render_hand_rays(self.model, hands, codes, o, d, perturb=True, gen=gen, train=True)
        masks = torch.stack([(label == SIDE_LABEL[h.side]).float() for h in hands], -1)
        op = out["hand_opacity"].clamp(1e-5, 1 - 1e-5)
        w_mask = cfg.w_mask if (full or cfg.supervision == "mesh") else 1.0
        terms["mask"] = w_mask * F.binary_cross_entropy(op, masks)
        if full:
            rgb = out["rgb"]
            if cfg.camera_colour:  # the rendered colour as this ray's camera records it
                rgb = self.model.colour(rgb, self.view_camera[b["view"]].to(self.device))
                terms["colour"] = cfg.w_colour * self.model.colour.penalty()
            terms["rgb"] = cfg.w_rgb * F.mse_loss(rgb, target)
            logs["mse"] = float(((rgb.detach() - target) ** 2).mean())
        cal = getattr(self.model, "density_cal", None)
        if cal is not None:
            logs["cal_slope"], logs["cal_offset"] = cal.slope_offset()
        thick = getattr(self.model, "thickness", None)
        if thick is not None:
            logs["thickness"] = thick.mean_scale()
        logs["rays"] = len(o)
        logs["samples"] = out["evaluated"]
        logs["color_evals_per_ray"] = out["color_evals"] / max(len(o), 1)

    # -----------------------------------------------------------------------------------------------------
    def render_state(self, frame: int, outputs: frozenset[str]):
        """The frame's hands (its skeletons only), their appearance codes (when rgb is asked) and labels."""
        hands = self.hands(frame)
        codes = self.appearance_codes(hands) if hands and "rgb" in outputs else None
        labels = torch.tensor([SIDE_LABEL[h.side] for h in hands], dtype=torch.uint8, device=self.device)
        return (hands, codes, labels), [(h.box_min, h.box_max) for h in hands]

    def render_rays(self, state, origins, dirs, outputs: frozenset[str], **extra) -> dict:
        """rgb, depth (ray distance), opacity and semantic (the label of the hand with the larger opacity where
        the opacity reaches the driver's threshold, else 0) of R rays."""
        hands, codes, labels = state
        out = render_hand_rays(self.model, hands, codes, origins, dirs)
        res = {k: out[k] for k in outputs if k != "semantic"}
        if "semantic" in outputs:
            on = out["opacity"] >= OPACITY_THRESHOLD
            res["semantic"] = torch.where(on, labels[out["hand_opacity"].argmax(-1)], torch.zeros_like(labels[:1]))
        res.update({k: out[k] for k in self.render_counts})
        return res

    def snapshot_panels(self, r: dict, gt, label, title: str) -> tuple[list, list]:
        if self.cfg.stage == "full":
            return [(r["rgb"], gt)], [title]
        fg = label > 0
        return [(np.repeat(r["opacity"][..., None], 3, -1), np.repeat(fg[..., None], 3, -1).astype(np.float32))], \
            [title]

    def snapshot_metrics(self, r: dict, gt, label) -> dict:
        from handcli.eval.image_metrics import psnr_full

        fg = label > 0
        sil = r["opacity"] >= OPACITY_THRESHOLD
        logs = {"eval_mask_iou": float((sil & fg).sum() / max((sil | fg).sum(), 1))}
        if self.cfg.stage == "full":
            logs["eval_psnr_full"] = psnr_full(r["rgb"], gt)
        return logs

    # -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def extract_meshes(self, frame: int, resolution: int = 128) -> dict:
        """Marching cubes (PyMCubes) of each hand's occupancy at 0.5: {"hand"} or {"right", "left"} -> trimesh."""
        import mcubes
        import trimesh

        if resolution < 8:
            raise InputError("resolution must be at least 8", field="resolution")
        hands = self.hands(frame)
        if not hands:
            raise InputError(f"frame {frame} has no hand with a valid skeleton", path=self.cache_path,
                             field="frames")
        self.model.eval()
        out = {}
        for h in hands:
            grid, lo, cell = occupancy_grid(self.model, h, resolution)
            v, f = mcubes.marching_cubes(grid.cpu().numpy().astype(np.float64), 0.5)
            mesh = trimesh.Trimesh(v * cell + lo.cpu().numpy(), f.astype(np.int64), process=False)
            if len(mesh.faces) and mesh.volume < 0:
                mesh.invert()
            out["hand" if len(hands) == 1 else h.side] = mesh
        return out


def config_for_state(cfg: HandOccConfig, state: dict) -> HandOccConfig:
    """``cfg`` with ``view_dir``, ``normal_in``, ``density_cal``, ``normal_detail`` and ``bone_thickness`` as the
    checkpoint's model was built: a run saved before these fields existed has none of them in its config.json, and
    the defaults may differ from what it was trained with."""
    w = state.get("color.mlp.layers.0.weight")
    if w is None:
        return cfg
    widths = {(v, n): ColorNet.input_dim(replace(cfg, view_dir=v, normal_in=n), AppearanceEncoder.code_dim(cfg))
              for v in (False, True) for n in (False, True)}
    # no match (not a HandOcc colour network of this config): as built, and load_state_dict names the mismatch
    view_dir, normal_in = next((k for k, width in widths.items() if width == w.shape[1]), (cfg.view_dir, cfg.normal_in))
    return replace(cfg, view_dir=view_dir, normal_in=normal_in, density_cal="density_cal.p" in state,
                   normal_detail=any(k.startswith("normal_detail.") for k in state),
                   bone_thickness=("on" if cfg.bone_thickness == "off" else cfg.bone_thickness)
                   if "thickness.p" in state else "off")


def attach_training_modules(model: HandOcc, state: dict) -> None:
    """Add the modules a training run attached to ``model`` (the skeleton refinement, the label alignment, the
    per-camera colour maps) in the sizes the checkpoint's state dict holds, so that it loads."""
    if "refine.offsets" in state:
        model.refine = SkeletonRefinement(len(state["refine.offsets"]), model.cfg.refine_scale).to(
            model.rel_radii.device)
    if "label_align.rot" in state:
        model.label_align = LabelAlignment(len(state["label_align.rot"]), model.cfg.align_scale).to(
            model.rel_radii.device)
    if "colour.A" in state:
        from handcli.nn.camera_colour import CameraColour

        model.colour = CameraColour(len(state["colour.A"])).to(model.rel_radii.device)
