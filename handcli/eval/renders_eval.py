"""The eval stage for rendered images: a renders folder + the cache -> metrics (docs/renders.md).

For each rendered view with a `cache_view`, the ground truth is the cache view's image with the background
(label 0) set to black, as HandNeRF's `mask_bkgd` does, and the metrics are the named conventions of
`handcli.eval.image_metrics` (docs/metrics.md): psnr_full, psnr_box (pixels inside the view's `box2d`),
psnr_full_camcal (the camera's colour
response fitted on its other views, `handcli.eval.camera_calibration`), ssim_gaussian, ssim_skimage_default,
lpips_alex, depth_error_mm with its two parts depth_error_shown_mm and depth_shown (the pixels where the render
shows a surface) and, when the render has a semantic map,
semantic_iou. Everything is validated and computed before anything is written; the command writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from handcli import __version__
from handcli.errors import InputError
from handcli.eval.camera_calibration import camera_calibrated_psnr, view_stats
from handcli.eval.image_metrics import (
    METRIC_CONVENTIONS,
    box_mask,
    depth_error_mm,
    depth_shown,
    psnr_full,
    psnr_masked,
    semantic_iou,
    ssim_gaussian,
    ssim_skimage_default,
)

SCHEMA = "handcli.metrics.images/1"
METRICS = ("psnr_full", "psnr_box", "psnr_full_camcal", "ssim_gaussian", "ssim_skimage_default", "lpips_alex",
           "depth_error_mm", "depth_error_shown_mm", "depth_shown", "semantic_iou")
# Cache labels (0 background, 1 right, 2 left, 3 object) -> Choi's classes (0 background, 1 object, 2 hand).
CACHE_TO_CHOI = np.array([0, 2, 2, 1], np.uint8)
GT_IMAGE = "cache view RGB with background pixels (label 0) set to black (HandNeRF mask_bkgd); [0,1]"
GT_DEPTH_RASTER = ("z-depth rasterized from the cache's posed hand meshes (frames/{side}/vertices, "
                   "hand_model/{side}/faces) with the cache camera; 0 where no mesh")
PSNR_INF_NOTE = ("a PSNR is +inf when the prediction equals the ground truth exactly (MSE 0); JSON has no "
                 "infinity, so such values (and a mean over views that includes one) are written as null and "
                 "the views are listed under 'infinite'")
SEMANTIC_NOTE = ("semantic_iou: cache labels are mapped to Choi's classes (right and left hand -> hand, "
                 "object -> object); a view scores the 3 classes background/object/hand when an object label "
                 "appears in the prediction or the ground truth, else the 2 classes background/hand")


def gt_image(rgb: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Ground-truth image: rgb (H, W, 3) uint8 with label-0 pixels set to black -> (H, W, 3) float64 [0, 1]."""
    img = np.asarray(rgb, dtype=np.float64) / 255.0
    img[np.asarray(label) == 0] = 0.0
    return img


def semantic_classes(label: np.ndarray) -> np.ndarray:
    """(H, W) cache labels 0..3 -> (H, W) uint8 Choi classes: 0 background, 1 object, 2 hand."""
    return CACHE_TO_CHOI[np.asarray(label, dtype=np.intp)]


def view_semantic_iou(pred_label: np.ndarray, gt_label: np.ndarray) -> tuple[float, int]:
    """semantic_iou of two cache-label maps after `semantic_classes`; (score, number of classes scored).

    With no object in either map the object class would score a free IoU of 1, so only background and hand
    are scored then (hand relabelled 1 for `semantic_iou(num_classes=2)`).
    """
    p, g = semantic_classes(pred_label), semantic_classes(gt_label)
    if (p == 1).any() or (g == 1).any():
        return semantic_iou(p, g, num_classes=3), 3
    return semantic_iou(p // 2, g // 2, num_classes=2), 2


class CacheDepth:
    """GT z-depth of cache views rasterized from the cache's posed hand meshes (handcli.render.raster)."""

    source = GT_DEPTH_RASTER

    def __init__(self, cache):
        from handcli.data.cache import SIDES

        self.cache = cache
        self._faces = {s: m["faces"] for s in SIDES if (m := cache.hand_model(s)) is not None}
        self._cams = cache.cameras()

    def view(self, j: int, frame: int, camera: int, height: int, width: int) -> np.ndarray:
        """(height, width) float32 z-depth in metres, 0 where no mesh covers the pixel."""
        from handcli.targets.depth import frame_meshes, mesh_depth

        cam = self._cams[camera]
        return mesh_depth(frame_meshes(self.cache, frame, self._faces), cam["world_to_cam"], cam["K"], height, width)


class TargetsDepth:
    """GT z-depth from a depth targets file (`handcli.targets.depth/1`, read by `targets.store.DepthTargets`)."""

    def __init__(self, path: str | Path, cache):
        from handcli.targets.store import DEPTH_SCHEMA, DepthTargets

        self.targets = DepthTargets(path, max_ram_bytes=0)  # views are read one at a time
        try:
            self.targets.check_matches(cache)
        except BaseException:
            self.targets.close()
            raise
        self.path = self.targets.path
        self.source = f"depth targets file {self.path} ({DEPTH_SCHEMA})"

    def view(self, j: int, frame: int, camera: int, height: int, width: int) -> np.ndarray:
        """(height, width) float32 z-depth in metres of cache view j (its size checked at open)."""
        d = self.targets.view(j)
        if np.isnan(d).any():
            raise InputError(f"view {j} depth contains NaN", path=self.path, field="depth")
        return d

    def close(self) -> None:
        self.targets.close()


def view_metrics(pred: dict, gt_rgb: np.ndarray, label: np.ndarray, box2d, gt_depth: np.ndarray,
                 lpips_model=None) -> dict:
    """All metrics of one view (raw floats: PSNR may be +inf; None where undefined).

    pred: `load_render_view` arrays; gt_rgb: (H, W, 3) float [0, 1] (background black); label: (H, W) cache
    labels; box2d: (4,) x0, y0, x1, y1; gt_depth: (H, W) z-depth metres; lpips_model: `LPIPS` or None.
    """
    p, g = pred["rgb"], gt_rgb
    H, W = label.shape
    out = {
        "psnr_full": psnr_full(p, g),
        "psnr_box": psnr_masked(p, g, box_mask(H, W, box2d)),
        "ssim_gaussian": ssim_gaussian(p, g),
        "ssim_skimage_default": ssim_skimage_default(p, g),
        "lpips_alex": None if lpips_model is None else lpips_model.distance(p, g),
        "depth_error_mm": depth_error_mm(pred["depth"], gt_depth, label > 0),
        "semantic_iou": None,
    }
    out["depth_error_shown_mm"], out["depth_shown"] = depth_shown(pred["depth"], gt_depth, label > 0)
    if pred.get("semantic") is not None:
        out["semantic_iou"], out["semantic_classes"] = view_semantic_iou(pred["semantic"], label)
    return out


def json_number(x: float | None) -> float | None:
    """A float for JSON: None for None and non-finite values (see PSNR_INF_NOTE)."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def summarize(rows: list[dict], metrics=METRICS) -> tuple[dict, dict, dict]:
    """Means over views: (mean, count, infinite) per metric.

    mean: the mean over views with a value (None when none has one); +inf when a PSNR is +inf in some view.
    count: views that have a value; infinite: indices (the `index` of each row) with a +inf value.
    """
    mean, count, infinite = {}, {}, {}
    for m in metrics:
        vals = [r[m] for r in rows if r.get(m) is not None]
        inf = [r["index"] for r in rows if r.get(m) is not None and math.isinf(r[m])]
        count[m] = len(vals)
        if inf:
            infinite[m] = inf
        mean[m] = float(np.mean(vals)) if vals else None
    return mean, count, infinite


@dataclass
class EvalResult:
    doc: dict  # metrics.json content (JSON-safe)
    rows: list[dict]  # per-view raw metrics (PSNR may be +inf), with index/name
    sheet: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (pred, gt) of up to 8 views
    sheet_labels: list[str] = field(default_factory=list)


def _check_view_against_cache(v: dict, cache, vt: dict, cams: list[dict], keys, jp: Path) -> int:
    """Validate a rendered view against its cache view; returns the cache view index."""
    f = f"views[{v['index']}]"
    j = v["cache_view"]
    if j >= cache.num_views:
        raise InputError(f"cache view {j} does not exist (the cache {cache.path} has {cache.num_views} views)",
                         path=jp, field=f"{f}.cache_view")
    frame, cam = int(vt["frame"][j]), int(vt["camera"][j])
    H, W = int(vt["height"][j]), int(vt["width"][j])
    if (v["height"], v["width"]) != (H, W):
        raise InputError(f"render is {v['width']}x{v['height']} but cache view {j} is {W}x{H}", path=jp,
                         field=f"{f}.width")
    if v["frame"] is not None and v["frame"] != frame:
        raise InputError(f"frame {v['frame']} but cache view {j} belongs to frame {frame}", path=jp,
                         field=f"{f}.frame")
    key = keys[frame]
    key = key.decode() if isinstance(key, bytes) else str(key)
    if v["frame_key"] is not None and v["frame_key"] != key:
        raise InputError(f"frame_key {v['frame_key']!r} but cache view {j} is frame {key!r}", path=jp,
                         field=f"{f}.frame_key")
    c = cams[cam]
    if v["camera"] is not None and v["camera"] != c["name"]:
        raise InputError(f"camera {v['camera']!r} but cache view {j} is camera {c['name']!r}", path=jp,
                         field=f"{f}.camera")
    if not np.allclose(v["K"], c["K"], rtol=1e-5, atol=1e-3):
        raise InputError(f"K differs from cache view {j}'s camera {c['name']}", path=jp, field=f"{f}.K")
    if not np.allclose(v["world_to_cam"], c["world_to_cam"], rtol=1e-5, atol=1e-5):
        raise InputError(f"world_to_cam differs from cache view {j}'s camera {c['name']}", path=jp,
                         field=f"{f}.world_to_cam")
    return j


def evaluate_renders(renders_dir: str | Path, cache_path: str | Path, depth_path: str | Path | None = None,
                     lpips_weights: str | Path | None = None, lpips_lin_weights: str | Path | None = None,
                     sheet_views: int = 8, on_view: Callable[[int, int], None] | None = None) -> EvalResult:
    """Evaluate a renders folder against a cache; writes nothing.

    Bad input (renders.json, image files, cache/renders mismatch, depth targets, LPIPS weight files given
    but unusable) raises InputError before any metric is returned. on_view(done, total) reports progress.
    """
    from handcli.data.shards import open_cache
    from handcli.eval.lpips import load_lpips
    from handcli.render.renders_folder import load_render_view, read_renders

    t0 = time.perf_counter()
    renders = read_renders(renders_dir)
    jp = Path(renders["path"]) / "renders.json"
    todo = [v for v in renders["views"] if v["cache_view"] is not None]
    skipped = [{"index": v["index"], "name": v["name"], "reason": "no cache_view (not a cache view, e.g. an "
                "orbit or a new pose): no ground truth"} for v in renders["views"] if v["cache_view"] is None]
    if not todo:
        raise InputError(f"no view has a cache_view (kind {renders['kind']!r}); nothing to evaluate", path=jp,
                         field="views")
    notes = [PSNR_INF_NOTE]
    with open_cache(cache_path) as cache:
        vt = cache.view_table()
        cams = cache.cameras()
        keys = cache.frame_column("key")
        cache_views = [_check_view_against_cache(v, cache, vt, cams, keys, jp) for v in todo]
        if renders.get("cache") and Path(renders["cache"]).resolve() != Path(cache_path).resolve():
            notes.append(f"renders.json names the cache {renders['cache']}; evaluated against {cache_path}")
        lpips_model, lpips_info = load_lpips(lpips_weights, lpips_lin_weights)
        gt_depth = TargetsDepth(depth_path, cache) if depth_path is not None else CacheDepth(cache)
        try:
            rows, sheet, labels, stats = [], [], [], []
            pick = set(np.unique(np.linspace(0, len(todo) - 1, min(sheet_views, len(todo))).round().astype(int)))
            for k, (v, j) in enumerate(zip(todo, cache_views)):
                pred = load_render_view(renders, v)
                cv = cache.view(j)
                gt = gt_image(cv["rgb"], cv["label"])
                depth = gt_depth.view(j, cv["frame"], cv["camera"], v["height"], v["width"])
                m = view_metrics(pred, gt, cv["label"], cv["box2d"], depth, lpips_model)
                row = {"index": v["index"], "name": v["name"], "cache_view": j, "frame": cv["frame"],
                       "camera": cams[cv["camera"]]["name"], **m}
                rows.append(row)
                stats.append(view_stats(pred["rgb"], gt))
                if k in pick:
                    sheet.append((pred["rgb"], gt))
                    labels.append(f"{v['name']}  PSNR {m['psnr_full']:.2f}" if math.isfinite(m["psnr_full"])
                                  else f"{v['name']}  PSNR inf")
                if on_view is not None:
                    on_view(k + 1, len(todo))
        finally:
            if isinstance(gt_depth, TargetsDepth):
                gt_depth.close()
        depth_source = gt_depth.source
    for r, x in zip(rows, camera_calibrated_psnr(stats, [r["camera"] for r in rows])):
        r["psnr_full_camcal"] = x
    if not any(r["semantic_iou"] is not None for r in rows):
        metrics = tuple(m for m in METRICS if m != "semantic_iou")
    else:
        metrics = METRICS
        notes.append(SEMANTIC_NOTE)
    if lpips_model is None:
        notes.append(f"lpips_alex is null: {lpips_info}")
    mean, count, infinite = summarize(rows, metrics)
    views_json = []
    for r in rows:
        vj = {k: r[k] for k in ("index", "name", "cache_view", "frame", "camera")}
        vj.update({m: json_number(r[m]) for m in metrics})
        if "semantic_classes" in r:
            vj["semantic_classes"] = r["semantic_classes"]
        views_json.append(vj)
    doc = {
        "schema": SCHEMA, "handcli_version": __version__,
        "inputs": {"renders": str(renders_dir), "cache": str(cache_path),
                   "depth": None if depth_path is None else str(depth_path),
                   "method": renders.get("method"), "run": renders.get("run"), "renders_kind": renders["kind"]},
        "config": {"lpips_weights": None if lpips_weights is None else str(lpips_weights),
                   "lpips_lin_weights": None if lpips_lin_weights is None else str(lpips_lin_weights),
                   "sheet_views": sheet_views},
        "ground_truth": {"image": GT_IMAGE, "depth": depth_source, "box": "the cache view's box2d (projection "
                         "of the hand meshes' box padded by 5 cm, clipped to the image)"},
        "conventions": {m: METRIC_CONVENTIONS[m] for m in metrics},
        "lpips": {"available": lpips_model is not None, "info": lpips_info},
        "num_views": len(rows), "num_skipped": len(skipped),
        "mean": {m: json_number(mean[m]) for m in metrics}, "count": count, "infinite": infinite,
        "views": views_json, "skipped": skipped, "notes": notes,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return EvalResult(doc, rows, sheet, labels)
