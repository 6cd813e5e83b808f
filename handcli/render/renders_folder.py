"""The renders folder (schema ``handcli.renders/1``, docs/renders.md) and picture helpers.

A render stage writes, inside ``handcli.outputs.atomic_path(out, force, is_dir=True)``::

    renders/
      renders.json      schema, handcli_version, method, run, cache, kind, config, views[...]
      rgb/0000.png      8-bit RGB
      depth/0000.npy    float32 z-depth in metres, 0 where empty;  depth/0000.png colour-mapped for people
      opacity/0000.png  8-bit accumulated opacity
      semantic/0000.png optional label map (cache labels: 0 background, 1 right, 2 left, 3 object)

`read_renders` validates a folder (InputError naming renders.json and the field, or the missing file);
`load_render_view` reads one view's arrays back. `colorize_depth` and `contact_sheet` make pictures for people.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from handcli import __version__
from handcli.errors import InputError
from handcli.labels import NUM_LABELS

SCHEMA = "handcli.renders/1"
KINDS = ("views", "orbit", "poses")
_VIEW_FILES = ("rgb", "depth", "opacity")


def to_uint8(img: np.ndarray) -> np.ndarray:
    """An image as uint8: uint8 is kept, floats in [0, 1] are clipped, scaled by 255 and rounded."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    return np.round(np.clip(np.nan_to_num(img.astype(np.float64)), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: str | Path, img: np.ndarray) -> Path:
    """Write an (H, W, 3) RGB or (H, W) grey uint8 image as PNG, whatever the file name's suffix.

    Encoding in memory lets callers write to the temporary names of `handcli.outputs.atomic_path`.
    """
    img = np.asarray(img)
    if img.ndim == 3:
        img = np.ascontiguousarray(img[..., ::-1])  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for an image of shape {img.shape}")
    path = Path(path)
    path.write_bytes(buf.tobytes())
    return path


def colorize_depth(depth: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Colour-mapped depth for people: (H, W) metres -> (H, W, 3) uint8 RGB.

    Inverse depth is normalised to [0, 1] over the pixels in `mask` (default: finite depth > 0) and mapped
    with OpenCV's turbo colormap (near = red, far = blue); pixels outside the mask are black.
    """
    depth = np.asarray(depth, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    out = np.zeros(depth.shape + (3,), np.uint8)
    if not valid.any():
        return out
    inv = np.zeros_like(depth)
    inv[valid] = 1.0 / depth[valid]
    lo, hi = inv[valid].min(), inv[valid].max()
    t = (inv - lo) / (hi - lo) if hi > lo else np.full_like(inv, 0.5)
    grey = np.round(np.clip(t, 0.0, 1.0) * 255.0).astype(np.uint8)
    rgb = cv2.applyColorMap(grey, cv2.COLORMAP_TURBO)[..., ::-1]
    out[valid] = rgb[valid]
    return out


def _matrix(value, shape: tuple[int, int], what: str) -> np.ndarray:
    m = np.asarray(value, dtype=np.float64)
    if m.shape != shape or not np.isfinite(m).all():
        raise ValueError(f"{what} must be a finite {shape[0]}x{shape[1]} matrix, got shape {m.shape}")
    return m


def _opt_int(value, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{what} must be an integer or None, got {value!r}")
    return int(value)


class RendersWriter:
    """Write a renders folder view by view; `close()` writes renders.json.

    out_dir: the (temporary) folder to fill, created if needed; method, run, cache: recorded as given
    (run and cache as paths); kind: "views" (cache views, evaluable), "orbit" or "poses"; config: the render
    stage's options (plain JSON).
    """

    def __init__(self, out_dir: str | Path, method: str, run: str | Path | None, cache: str | Path | None,
                 kind: str, config: dict):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.out_dir = Path(out_dir)
        for sub in _VIEW_FILES:
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)
        self.doc: dict[str, Any] = {
            "schema": SCHEMA, "handcli_version": __version__, "method": str(method),
            "run": str(run) if run is not None else None, "cache": str(cache) if cache is not None else None,
            "kind": kind, "config": json.loads(json.dumps(config, default=str)), "views": [],
        }
        self.closed = False

    def add(self, rgb: np.ndarray, depth: np.ndarray, opacity: np.ndarray, meta: dict,
            semantic: np.ndarray | None = None) -> dict:
        """Write one view and return its renders.json entry.

        rgb: (H, W, 3) float in [0, 1] (or uint8); depth: (H, W) float z-depth metres, 0 where empty;
        opacity: (H, W) float in [0, 1]; semantic: optional (H, W) int labels 0..3 (cache convention).
        meta: K (3x3), world_to_cam (4x4) required; optional name, cache_view, frame, frame_key, camera,
        seconds. Non-finite values are a bug of the renderer (ValueError), not something to hide.
        """
        if self.closed:
            raise ValueError("RendersWriter is closed")
        rgb = np.asarray(rgb)
        depth = np.asarray(depth, dtype=np.float32)
        opacity = np.asarray(opacity, dtype=np.float64)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be (H, W, 3), got {rgb.shape}")
        H, W = rgb.shape[:2]
        if depth.shape != (H, W) or opacity.shape != (H, W):
            raise ValueError(f"depth {depth.shape} and opacity {opacity.shape} must be ({H}, {W})")
        for name, a in (("rgb", rgb), ("depth", depth), ("opacity", opacity)):
            if not np.isfinite(a).all():
                raise ValueError(f"{name} contains NaN or Inf")
        i = len(self.doc["views"])
        stem = f"{i:04d}"
        entry = {
            "index": i, "name": str(meta.get("name", stem)),
            "cache_view": _opt_int(meta.get("cache_view"), "cache_view"),
            "frame": _opt_int(meta.get("frame"), "frame"),
            "frame_key": None if meta.get("frame_key") is None else str(meta["frame_key"]),
            "camera": None if meta.get("camera") is None else str(meta["camera"]),
            "width": int(W), "height": int(H),
            "K": _matrix(meta["K"], (3, 3), "K").tolist(),
            "world_to_cam": _matrix(meta["world_to_cam"], (4, 4), "world_to_cam").tolist(),
            "rgb": f"rgb/{stem}.png", "depth": f"depth/{stem}.npy", "opacity": f"opacity/{stem}.png",
            "seconds": float(meta.get("seconds", 0.0)),
        }
        write_png(self.out_dir / entry["rgb"], to_uint8(rgb))
        np.save(self.out_dir / entry["depth"], depth)
        write_png(self.out_dir / f"depth/{stem}.png", colorize_depth(depth))
        write_png(self.out_dir / entry["opacity"], to_uint8(opacity))
        if semantic is not None:
            sem = np.asarray(semantic)
            if sem.shape != (H, W) or not (np.issubdtype(sem.dtype, np.integer) or sem.dtype == bool):
                raise ValueError(f"semantic must be an (H, W) integer label map, got {sem.shape} {sem.dtype}")
            if sem.size and (sem.min() < 0 or sem.max() >= NUM_LABELS):
                raise ValueError(f"semantic labels must lie in [0, {NUM_LABELS})")
            (self.out_dir / "semantic").mkdir(exist_ok=True)
            entry["semantic"] = f"semantic/{stem}.png"
            write_png(self.out_dir / entry["semantic"], sem.astype(np.uint8))
        self.doc["views"].append(entry)
        return entry

    def close(self) -> Path:
        """Write renders.json (views in the order added); returns its path."""
        path = self.out_dir / "renders.json"
        path.write_text(json.dumps(self.doc, indent=1, allow_nan=False))
        self.closed = True
        return path


# --- reading --------------------------------------------------------------------------------------------

def _field(obj: dict, key: str, json_path: Path, field: str):
    if not isinstance(obj, dict) or key not in obj:
        raise InputError("missing field", path=json_path, field=field)
    return obj[key]


def _check_matrix(value, shape: tuple[int, int], json_path: Path, field: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"expected a {shape[0]}x{shape[1]} matrix of numbers", path=json_path,
                         field=field) from None
    if m.shape != shape:
        raise InputError(f"expected a {shape[0]}x{shape[1]} matrix, got shape {m.shape}", path=json_path,
                         field=field)
    if not np.isfinite(m).all():
        raise InputError("contains NaN or Inf", path=json_path, field=field)
    return m


def _check_int(value, json_path: Path, field: str, optional: bool = False, minimum: int = 0) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"expected an integer >= {minimum}{' or null' if optional else ''}, got {value!r}",
                         path=json_path, field=field)
    return value


def read_renders(renders_dir: str | Path) -> dict:
    """Read and validate a renders folder.

    Returns renders.json as a dict with `path` (the folder) added and each view's K (3, 3) and
    world_to_cam (4, 4) as float64 arrays. Raises InputError naming renders.json and the field
    (e.g. ``views[2].K``) for a missing or malformed entry, or naming a referenced image file that is missing.
    """
    from handcli.jsonio import load_json

    d = Path(renders_dir)
    if not d.is_dir():
        raise InputError("renders folder not found", path=d)
    jp = d / "renders.json"
    doc = load_json(jp, what="renders.json")
    if not isinstance(doc, dict):
        raise InputError("expected a JSON object", path=jp)
    schema = _field(doc, "schema", jp, "schema")
    if schema != SCHEMA:
        raise InputError(f"expected schema {SCHEMA!r}, got {schema!r}", path=jp, field="schema")
    kind = _field(doc, "kind", jp, "kind")
    if kind not in KINDS:
        raise InputError(f"expected one of {list(KINDS)}, got {kind!r}", path=jp, field="kind")
    for key in ("method", "run", "cache"):
        v = doc.get(key)
        if v is not None and not isinstance(v, str):
            raise InputError(f"expected a string, got {v!r}", path=jp, field=key)
    views = _field(doc, "views", jp, "views")
    if not isinstance(views, list):
        raise InputError("expected a list", path=jp, field="views")
    out_views = []
    for i, v in enumerate(views):
        f = f"views[{i}]"
        if not isinstance(v, dict):
            raise InputError("expected an object", path=jp, field=f)
        v = dict(v)
        v["index"] = _check_int(_field(v, "index", jp, f"{f}.index"), jp, f"{f}.index")
        if not isinstance(v.get("name", ""), str):
            raise InputError("expected a string", path=jp, field=f"{f}.name")
        v.setdefault("name", f"{i:04d}")
        v["cache_view"] = _check_int(v.get("cache_view"), jp, f"{f}.cache_view", optional=True)
        v["frame"] = _check_int(v.get("frame"), jp, f"{f}.frame", optional=True)
        for key in ("frame_key", "camera"):
            if v.get(key) is not None and not isinstance(v[key], str):
                raise InputError(f"expected a string or null, got {v[key]!r}", path=jp, field=f"{f}.{key}")
            v.setdefault(key, None)
        v["width"] = _check_int(_field(v, "width", jp, f"{f}.width"), jp, f"{f}.width", minimum=1)
        v["height"] = _check_int(_field(v, "height", jp, f"{f}.height"), jp, f"{f}.height", minimum=1)
        v["K"] = _check_matrix(_field(v, "K", jp, f"{f}.K"), (3, 3), jp, f"{f}.K")
        v["world_to_cam"] = _check_matrix(_field(v, "world_to_cam", jp, f"{f}.world_to_cam"), (4, 4), jp,
                                          f"{f}.world_to_cam")
        secs = v.get("seconds", 0.0)
        if isinstance(secs, bool) or not isinstance(secs, (int, float)) or not math.isfinite(secs):
            raise InputError(f"expected a number, got {secs!r}", path=jp, field=f"{f}.seconds")
        keys = _VIEW_FILES + (("semantic",) if v.get("semantic") is not None else ())
        for key in keys:
            rel = _field(v, key, jp, f"{f}.{key}")
            if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise InputError(f"expected a relative path inside the folder, got {rel!r}", path=jp,
                                 field=f"{f}.{key}")
            if not (d / rel).is_file():
                raise InputError(f"file referenced by renders.json {f}.{key} is missing", path=d / rel)
        out_views.append(v)
    doc["views"] = out_views
    doc["path"] = d
    return doc


def _read_png(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise InputError("image does not decode", path=path)
    return img


def load_render_view(renders: dict, view: dict) -> dict:
    """Arrays of one view of `read_renders(...)`: rgb (H, W, 3) float64 in [0, 1], depth (H, W) float32,
    opacity (H, W) float64 in [0, 1], semantic (H, W) uint8 or None.

    Sizes are checked against the view's width/height and depth must be finite (InputError naming the file).
    """
    d = Path(renders["path"])
    H, W = view["height"], view["width"]

    def check(arr: np.ndarray, rel: str) -> None:
        if arr.shape[:2] != (H, W):
            raise InputError(f"is {arr.shape[1]}x{arr.shape[0]} but renders.json views[{view['index']}] says "
                             f"{W}x{H}", path=d / rel)

    bgr = _read_png(d / view["rgb"], cv2.IMREAD_COLOR)
    check(bgr, view["rgb"])
    try:
        depth = np.load(d / view["depth"], allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(f"not a readable .npy array ({e})", path=d / view["depth"]) from None
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise InputError(f"expected an (H, W) float array, got {depth.shape} {depth.dtype}", path=d / view["depth"])
    check(depth, view["depth"])
    if not np.isfinite(depth).all():
        raise InputError("depth contains NaN or Inf", path=d / view["depth"])
    opacity = _read_png(d / view["opacity"], cv2.IMREAD_GRAYSCALE)
    check(opacity, view["opacity"])
    semantic = None
    if view.get("semantic") is not None:
        semantic = _read_png(d / view["semantic"], cv2.IMREAD_GRAYSCALE)
        check(semantic, view["semantic"])
        if semantic.max(initial=0) >= NUM_LABELS:
            raise InputError(f"semantic labels must lie in [0, {NUM_LABELS}), found {int(semantic.max())}",
                             path=d / view["semantic"])
    return {"rgb": bgr[..., ::-1].astype(np.float64) / 255.0, "depth": depth.astype(np.float32),
            "opacity": opacity.astype(np.float64) / 255.0, "semantic": semantic}


# --- contact sheets -------------------------------------------------------------------------------------

_PAD_GREY = 48
_GAP = 2
_STRIP = 16


def _tile(img: np.ndarray | None, H: int, W: int, text: str) -> np.ndarray:
    """(H + strip, W, 3) uint8: a caption strip above the image, padded with grey to (H, W)."""
    strip = np.zeros((_STRIP, W, 3), np.uint8)  # drawn apart so that descenders cannot touch the image
    cv2.putText(strip, text[: max(1, W // 7)], (3, _STRIP - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255),
                1, cv2.LINE_AA)
    body = np.full((H, W, 3), _PAD_GREY, np.uint8)
    if img is not None:
        body[:img.shape[0], :img.shape[1]] = img
    return np.concatenate([strip, body], axis=0)


def error_heatmap(pred: np.ndarray, gt: np.ndarray, err_scale: float = 0.25) -> np.ndarray:
    """|pred - gt| averaged over channels, colour-mapped: (H, W, 3) uint8 RGB.

    pred, gt: (H, W, 3) uint8 or float in [0, 1]. The error is divided by the fixed `err_scale` (clipped to
    1) so that colours compare across rows and sheets; OpenCV's inferno map (black = no error).
    """
    p = to_uint8(pred).astype(np.float64) / 255.0
    g = to_uint8(gt).astype(np.float64) / 255.0
    err = np.abs(p - g).mean(axis=2)
    grey = np.round(np.clip(err / err_scale, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO)[..., ::-1])


def grid_shape(n: int, tile_h: int, tile_w: int) -> tuple[int, int]:
    """(rows, cols) of a grid of n tiles of (tile_h, tile_w) pixels whose overall shape is nearest a square."""
    best = None
    for cols in range(1, n + 1):
        rows = -(-n // cols)
        score = abs(np.log((rows * tile_h) / (cols * tile_w))) + 1e-3 * (rows * cols - n)
        if best is None or score < best[0]:
            best = (score, rows, cols)
    return best[1], best[2]


def tile_grid(tiles: Sequence[np.ndarray], cols: int | None = None, gap: int = _GAP) -> np.ndarray:
    """Tiles (h_i, w_i, 3) uint8 laid out row-major in a grid (cols None: nearest a square), padded with
    black to the largest tile and separated by ``gap`` black pixels; returns (H', W', 3) uint8."""
    if not tiles:
        raise ValueError("tile_grid needs at least one tile")
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    rows, cols = grid_shape(len(tiles), h, w) if cols is None else (-(-len(tiles) // cols), cols)
    out = np.zeros((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = r * (h + gap), c * (w + gap)
        out[y:y + t.shape[0], x:x + t.shape[1]] = t
    return out


def contact_sheet(rows: Sequence[tuple[np.ndarray, np.ndarray | None]], labels: Sequence[str],
                  out_png: str | Path | None = None, err_scale: float = 0.25, cols: int | None = None) -> np.ndarray:
    """Contact sheet: one cell per view, prediction | ground truth | error heat-map, cells in a grid.

    rows: (pred (H, W, 3), gt (H, W, 3) or None) with uint8 or float [0, 1] images; sizes may differ between
    rows (tiles are padded with grey to the largest). labels: one caption per row (drawn on the prediction
    tile). The error tile is `error_heatmap(pred, gt, err_scale)`; rows without ground truth get empty tiles.
    The cells are laid out row-major, ``cols`` per row (None: the grid whose sheet is nearest a square; 1:
    one column). Writes a PNG when `out_png` is given (any file name); returns the (H', W', 3) uint8 RGB sheet.
    """
    if not rows:
        raise ValueError("contact_sheet needs at least one row")
    if len(labels) != len(rows):
        raise ValueError(f"{len(labels)} labels for {len(rows)} rows")
    imgs = []
    for pred, gt in rows:
        p = to_uint8(pred)
        g = None if gt is None else to_uint8(gt)
        if p.ndim != 3 or p.shape[2] != 3 or (g is not None and g.shape != p.shape):
            raise ValueError(f"each row needs pred (H, W, 3) and gt of the same shape, got {p.shape} and "
                             f"{None if g is None else g.shape}")
        imgs.append((p, g))
    H = max(p.shape[0] for p, _ in imgs)
    W = max(p.shape[1] for p, _ in imgs)
    out_rows = []
    for (p, g), label in zip(imgs, labels):
        err = None if g is None else error_heatmap(p, g, err_scale)
        tiles = [_tile(p, H, W, str(label)), _tile(g, H, W, "ground truth" if g is not None else "no ground truth"),
                 _tile(err, H, W, f"|error| (full scale {err_scale:g})" if g is not None else "")]
        gap = np.zeros((_STRIP + H, _GAP, 3), np.uint8)
        out_rows.append(np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1))
    sheet = tile_grid(out_rows, cols, gap=3 * _GAP)
    if out_png is not None:
        write_png(out_png, sheet)
    return sheet
