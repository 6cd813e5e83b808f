"""The HDF5 cache that every later stage reads (schema ``handcli.cache/1``, docs/cache.md).

Layout (N frames, M views = images, C cameras, P pixels over all views)::

    /  attrs: schema, handcli_version, dataset, scale, config (JSON), inputs (JSON), command
    /cameras/{name, capture, K (C,3,3) at cache resolution, world_to_cam (C,4,4) metres, width, height}
    /frames/{key, split, capture, seq, frame_idx}                     (N,)
    /frames/{right,left}/{present (N,), joints (N,21,3) world m, joint_valid (N,21),
                          mano_valid (N,), mano_pose (N,48), mano_shape (N,10), mano_trans (N,3),
                          vertices (N,V,3) posed mesh world m, box (N,2,3) mesh AABB}
    /hand_model/{right,left}/{faces (F,3), weights (V,16), parents (16,)}  attrs: kind, flat_hand_mean, ...
    /views/{frame (M,), camera (M,), offset (M,), height (M,), width (M,), near_far (M,2), box2d (M,4),
            fg_pixels (M,)}
    /views/rgb (P,3) uint8, /views/label (P,) uint8   all views' pixels, row-major, concatenated
    /views/depth (P,) float16 metres                  optional (hand-object datasets with --depth)
    /views/hand_estimate/{valid (M,), vertices (M,V,3), joints (M,21,3)} world m   optional (hand-object
                        datasets with --hand-estimates): each view's estimated input hand (test time)
    /frames/object/{present (N,), name (N,), pose (N,4,4) object->world m, box (N,2,3)}   hand-object caches
    /objects/{name}/{vertices (V,3), faces (F,3), points (P,3)}  each object model once, model frame, metres

Labels: 0 background, 1 right hand, 2 left hand, 3 object (nearer surface wins).
Views of variable size (portrait and landscape cameras) share the flat pixel buffers;
``offset`` says where each view's pixels start. Everything is appended frame by frame,
so the writer holds one frame at a time whatever the dataset size.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from handcli import __version__
from handcli.errors import InputError

SCHEMA = "handcli.cache/1"
SIDES = ("right", "left")
_STR = h5py.string_dtype()
# Every numeric dataset carries an HDF5 Fletcher-32 checksum per chunk, so corrupted bytes are found on read
# (``read_errors``) instead of flowing into training; variable-length strings cannot carry filters.
CHECKSUM = {"fletcher32": True}


def _checksum(data_or_dtype) -> dict:
    """``CHECKSUM`` for a numeric array or dtype; ``{}`` for strings and scalars (HDF5 cannot filter them)."""
    dt = np.dtype(data_or_dtype) if isinstance(data_or_dtype, (str, np.dtype)) else np.asarray(data_or_dtype).dtype
    if dt.kind in "OSU" or h5py.check_string_dtype(dt) is not None:
        return {}
    if not isinstance(data_or_dtype, (str, np.dtype)) and np.ndim(data_or_dtype) == 0:
        return {}
    return CHECKSUM


@contextlib.contextmanager
def read_errors(path: str | Path, field: str | None = None):
    """Map h5py's read failures (a failed Fletcher-32 checksum, a damaged chunk or header) to ``InputError``
    naming the file and the dataset."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        raise InputError(f"corrupt data: {e} (the file is damaged; re-create it)", path=path,
                         field=field) from None


@dataclass
class HandRecord:
    joints: np.ndarray  # (21, 3) world metres
    joint_valid: np.ndarray  # (21,) bool
    mano: dict | None  # {pose (48,), shape (10,), trans (3,)} or None
    vertices: np.ndarray | None  # (V, 3) posed mesh, world metres
    box: np.ndarray | None = None  # (2, 3) AABB of the mesh
    # Parameters of the cache's own hand model that produce ``vertices``: absolute axis-angle pose
    # (flat_hand_mean=True convention), betas and translation. ``mano`` is the dataset's record.
    model_params: dict | None = None  # {pose (48,), shape (10,), trans (3,)}


@dataclass
class ObjectRecord:
    """The object of a hand-object frame: its model name, pose and posed bounds."""

    name: str  # YCB model name, e.g. "003_cracker_box"; the mesh is ``Cache.object_mesh(name)``
    pose: np.ndarray  # (4, 4) object model frame -> world, metres
    box: np.ndarray  # (2, 3) world AABB of the posed model (mesh vertices and points)


@dataclass
class FrameRecord:
    key: str
    split: str
    capture: int
    seq: str
    frame_idx: int
    hands: dict[str, HandRecord] = field(default_factory=dict)
    object: ObjectRecord | None = None


@dataclass
class ViewRecord:
    camera: int  # index into /cameras
    rgb: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) uint8
    near_far: np.ndarray  # (2,) metres
    box2d: np.ndarray  # (4,) x0, y0, x1, y1 pixels
    depth: np.ndarray | None = None  # (H, W) metres, 0 = no measurement (caches written with depth=True)
    label_source: str | None = None  # where ``label`` came from ("seg", "rasterized"); counted in attrs
    # the view's estimated input hand {"vertices" (V, 3), "joints" (21, 3)} world metres (caches written with
    # hand_estimates=True; handcli.data.hand_estimates)
    hand_estimate: dict | None = None


def _append(ds: h5py.Dataset, values: np.ndarray) -> None:
    n = ds.shape[0]
    ds.resize(n + len(values), axis=0)
    ds[n:] = values


class CacheWriter:
    """Append frames and their views to a new cache file."""

    def __init__(self, path: str | Path, *, dataset: str, scale: float, config: dict, inputs: dict,
                 hand_models: dict[str, dict], command: str = "", objects: bool = False, depth: bool = False,
                 object_loader=None, hand_estimates: bool = False):
        """``objects``: also write ``frames/object`` and ``objects/`` (hand-object datasets);
        ``object_loader(name) -> (vertices, faces, points)`` supplies a model the first time a frame uses it.
        ``depth``: also write the per-pixel ``views/depth`` buffer (float16 metres). ``hand_estimates``: also
        write ``views/hand_estimate`` (each view's estimated input hand, or valid False)."""
        self.path = Path(path)
        self.f = h5py.File(self.path, "w")
        a = self.f.attrs
        a["schema"] = SCHEMA
        a["handcli_version"] = __version__
        a["dataset"] = dataset
        a["scale"] = float(scale)
        a["config"] = json.dumps(config, default=str)
        a["inputs"] = json.dumps(inputs, default=str)
        a["command"] = command
        self.num_verts = {}
        for side, hm in hand_models.items():
            g = self.f.create_group(f"hand_model/{side}")
            for k in ("faces", "weights", "parents"):
                g.create_dataset(k, data=np.asarray(hm[k]), **_checksum(hm[k]))
            for k, v in hm.get("mano", {}).items():
                g.create_dataset(f"mano/{k}", data=np.asarray(v), compression="gzip", compression_opts=4,
                                 **_checksum(v))
            for k, v in hm.items():
                if k not in ("faces", "weights", "parents", "mano"):
                    g.attrs[k] = v
            self.num_verts[side] = int(np.asarray(hm["weights"]).shape[0])
        c = self.f.create_group("cameras")
        c.create_dataset("name", (0,), maxshape=(None,), dtype=_STR)
        c.create_dataset("capture", (0,), maxshape=(None,), dtype="i4", **CHECKSUM)
        c.create_dataset("K", (0, 3, 3), maxshape=(None, 3, 3), dtype="f8", **CHECKSUM)
        c.create_dataset("world_to_cam", (0, 4, 4), maxshape=(None, 4, 4), dtype="f8", **CHECKSUM)
        c.create_dataset("width", (0,), maxshape=(None,), dtype="i4", **CHECKSUM)
        c.create_dataset("height", (0,), maxshape=(None,), dtype="i4", **CHECKSUM)
        fr = self.f.create_group("frames")
        for k, dt in (("key", _STR), ("split", _STR), ("seq", _STR), ("capture", "i4"), ("frame_idx", "i8")):
            fr.create_dataset(k, (0,), maxshape=(None,), dtype=dt, chunks=(1024,), **_checksum(dt))
        for side in SIDES:
            V = self.num_verts.get(side, 0)
            g = fr.create_group(side)
            for k, shape, dt in (("present", (), "b1"), ("joints", (21, 3), "f4"), ("joint_valid", (21,), "b1"),
                                 ("mano_valid", (), "b1"), ("mano_pose", (48,), "f4"), ("mano_shape", (10,), "f4"),
                                 ("mano_trans", (3,), "f4"), ("vertices", (V, 3), "f4"), ("box", (2, 3), "f4"),
                                 ("model_pose", (48,), "f4"), ("model_shape", (10,), "f4"),
                                 ("model_trans", (3,), "f4")):
                g.create_dataset(k, (0,) + shape, maxshape=(None,) + shape, dtype=dt, chunks=(64,) + shape,
                                 **CHECKSUM)
        v = self.f.create_group("views")
        for k, shape, dt in (("frame", (), "i4"), ("camera", (), "i4"), ("offset", (), "i8"), ("height", (), "i4"),
                             ("width", (), "i4"), ("near_far", (2,), "f4"), ("box2d", (4,), "f4"),
                             ("fg_pixels", (), "i4")):
            v.create_dataset(k, (0,) + shape, maxshape=(None,) + shape, dtype=dt, chunks=(1024,) + shape, **CHECKSUM)
        self.hand_estimates = bool(hand_estimates)
        if self.hand_estimates:
            V = max(self.num_verts.values(), default=0)
            g = v.create_group("hand_estimate")
            for k, shape, dt in (("valid", (), "b1"), ("vertices", (V, 3), "f4"), ("joints", (21, 3), "f4")):
                g.create_dataset(k, (0,) + shape, maxshape=(None,) + shape, dtype=dt, chunks=(64,) + shape,
                                 **CHECKSUM)
        self.depth = bool(depth)  # the pixel datasets are created with the first view (_pixel_datasets)
        self.objects = bool(objects)
        self._object_loader = object_loader
        self._object_names: set[str] = set()
        if self.objects:
            g = fr.create_group("object")
            g.create_dataset("present", (0,), maxshape=(None,), dtype="b1", chunks=(1024,), **CHECKSUM)
            g.create_dataset("name", (0,), maxshape=(None,), dtype=_STR, chunks=(1024,))
            g.create_dataset("pose", (0, 4, 4), maxshape=(None, 4, 4), dtype="f8", chunks=(256, 4, 4), **CHECKSUM)
            g.create_dataset("box", (0, 2, 3), maxshape=(None, 2, 3), dtype="f4", chunks=(256, 2, 3), **CHECKSUM)
            self.f.create_group("objects")
        self._cam_index: dict[tuple[int, str], int] = {}
        self._num_pixels = 0
        self._label_sources: dict[str, int] = {}

    def _pixel_datasets(self, view_pixels: int) -> None:
        """Create views/rgb, label (and depth) chunked by one view's pixel count, so that a view of that size
        is exactly one chunk (views of one dataset share H*W; portrait and landscape too): reading a view
        touches one chunk of each buffer. Older caches (65536-pixel chunks) read the same way."""
        v = self.f["views"]
        if "rgb" in v:
            return
        n = max(int(view_pixels), 1)
        v.create_dataset("rgb", (0, 3), maxshape=(None, 3), dtype="u1", chunks=(n, 3), **CHECKSUM)
        v.create_dataset("label", (0,), maxshape=(None,), dtype="u1", chunks=(n,), **CHECKSUM)
        if self.depth:
            v.create_dataset("depth", (0,), maxshape=(None,), dtype="f2", chunks=(n,), **CHECKSUM)

    def add_object_mesh(self, name: str, vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> None:
        """Store an object model once (model frame, metres); later calls with the same name are ignored."""
        if not self.objects:
            raise ValueError("this cache was not opened with objects=True")
        if name in self._object_names:
            return
        g = self.f["objects"].create_group(name)
        g.create_dataset("vertices", data=np.asarray(vertices, dtype=np.float32), compression="gzip",
                         compression_opts=4, **CHECKSUM)
        g.create_dataset("faces", data=np.asarray(faces, dtype=np.int32).reshape(-1, 3), compression="gzip",
                         compression_opts=4, **CHECKSUM)
        g.create_dataset("points", data=np.asarray(points, dtype=np.float32), compression="gzip",
                         compression_opts=4, **CHECKSUM)
        self._object_names.add(name)

    def add_camera(self, name: str, capture: int, K: np.ndarray, world_to_cam: np.ndarray, width: int,
                   height: int) -> int:
        """Register a camera (once per (capture, name)); returns its index."""
        key = (int(capture), str(name))
        if key in self._cam_index:
            return self._cam_index[key]
        c = self.f["cameras"]
        _append(c["name"], np.array([name], dtype=object))
        _append(c["capture"], np.array([capture]))
        _append(c["K"], np.asarray(K, dtype=np.float64)[None])
        _append(c["world_to_cam"], np.asarray(world_to_cam, dtype=np.float64)[None])
        _append(c["width"], np.array([width]))
        _append(c["height"], np.array([height]))
        self._cam_index[key] = len(self._cam_index)
        return self._cam_index[key]

    def add_frame(self, rec: FrameRecord, views: list[ViewRecord]) -> None:
        """Append one frame and all its views."""
        fr = self.f["frames"]
        index = fr["key"].shape[0]
        _append(fr["key"], np.array([rec.key], dtype=object))
        _append(fr["split"], np.array([rec.split], dtype=object))
        _append(fr["seq"], np.array([rec.seq], dtype=object))
        _append(fr["capture"], np.array([rec.capture]))
        _append(fr["frame_idx"], np.array([rec.frame_idx]))
        for side in SIDES:
            g = fr[side]
            h = rec.hands.get(side)
            V = self.num_verts.get(side, 0)
            present = h is not None
            mano = h.mano if present else None
            verts = h.vertices if present and h.vertices is not None else None
            if verts is not None and verts.shape != (V, 3):
                raise ValueError(f"{side} vertices {verts.shape} do not match the hand model ({V}, 3)")
            _append(g["present"], np.array([present]))
            _append(g["joints"], (h.joints if present else np.zeros((21, 3)))[None])
            _append(g["joint_valid"], (h.joint_valid if present else np.zeros(21, bool))[None])
            _append(g["mano_valid"], np.array([mano is not None]))
            for k, n in (("pose", 48), ("shape", 10), ("trans", 3)):
                _append(g[f"mano_{k}"], (np.asarray(mano[k]) if mano is not None else np.zeros(n))[None])
            _append(g["vertices"], (verts if verts is not None else np.zeros((V, 3)))[None])
            box = h.box if present and h.box is not None else np.zeros((2, 3))
            _append(g["box"], np.asarray(box)[None])
            mp = h.model_params if present else None
            for k, n in (("pose", 48), ("shape", 10), ("trans", 3)):
                _append(g[f"model_{k}"], (np.asarray(mp[k]) if mp is not None else np.zeros(n))[None])
        if self.objects:
            g = fr["object"]
            ob = rec.object
            if ob is not None and ob.name not in self._object_names:
                if self._object_loader is None:
                    raise ValueError(f"object {ob.name!r} has no stored mesh (call add_object_mesh first)")
                self.add_object_mesh(ob.name, *self._object_loader(ob.name))
            _append(g["present"], np.array([ob is not None]))
            _append(g["name"], np.array([ob.name if ob is not None else ""], dtype=object))
            _append(g["pose"], (np.asarray(ob.pose) if ob is not None else np.eye(4))[None])
            _append(g["box"], (np.asarray(ob.box) if ob is not None else np.zeros((2, 3)))[None])
        elif rec.object is not None:
            raise ValueError("frame has an object but the cache was not opened with objects=True")
        v = self.f["views"]
        if views:
            self._pixel_datasets(views[0].label.size)
        offsets, rgbs, labels = [], [], []
        for vr in views:
            if vr.label_source is not None:
                self._label_sources[vr.label_source] = self._label_sources.get(vr.label_source, 0) + 1
            H, W = vr.label.shape
            offsets.append(self._num_pixels)
            self._num_pixels += H * W
            rgbs.append(vr.rgb.reshape(-1, 3))
            labels.append(vr.label.reshape(-1))
        if views:
            _append(v["frame"], np.full(len(views), index))
            _append(v["camera"], np.array([vr.camera for vr in views]))
            _append(v["offset"], np.array(offsets))
            _append(v["height"], np.array([vr.label.shape[0] for vr in views]))
            _append(v["width"], np.array([vr.label.shape[1] for vr in views]))
            _append(v["near_far"], np.stack([vr.near_far for vr in views]))
            _append(v["box2d"], np.stack([vr.box2d for vr in views]))
            _append(v["fg_pixels"], np.array([int((vr.label > 0).sum()) for vr in views]))
            _append(v["rgb"], np.concatenate(rgbs))
            _append(v["label"], np.concatenate(labels))
            if self.hand_estimates:
                g = v["hand_estimate"]
                V = g["vertices"].shape[1]
                for vr in views:
                    e = vr.hand_estimate
                    if e is not None and np.shape(e["vertices"]) != (V, 3):
                        raise ValueError(f"estimated hand vertices {np.shape(e['vertices'])} do not match the hand "
                                         f"model ({V}, 3)")
                _append(g["valid"], np.array([vr.hand_estimate is not None for vr in views]))
                _append(g["vertices"], np.stack([vr.hand_estimate["vertices"] if vr.hand_estimate is not None
                                                 else np.zeros((V, 3)) for vr in views]))
                _append(g["joints"], np.stack([vr.hand_estimate["joints"] if vr.hand_estimate is not None
                                               else np.zeros((21, 3)) for vr in views]))
            if self.depth:
                _append(v["depth"], np.concatenate([
                    (vr.depth if vr.depth is not None else np.zeros(vr.label.shape)).reshape(-1).astype(np.float16)
                    for vr in views]))

    def close(self) -> None:
        self._pixel_datasets(1 << 16)  # a cache without views still has the (empty) buffers
        if self._label_sources:
            self.f.attrs["label_source"] = json.dumps(dict(sorted(self._label_sources.items())))
        self.f.attrs["num_frames"] = self.f["frames/key"].shape[0]
        self.f.attrs["num_views"] = self.f["views/frame"].shape[0]
        self.f.close()


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _py(v):
    """HDF5 attribute -> plain Python (JSON-serialisable) value."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


VIEW_META = ("frame", "camera", "offset", "height", "width", "near_far", "box2d", "fg_pixels")
_REQUIRED = {
    "cameras": {"name": (), "capture": (), "K": (3, 3), "world_to_cam": (4, 4), "width": (), "height": ()},
    "frames": {"key": (), "split": (), "seq": (), "capture": (), "frame_idx": ()},
    "views": {"frame": (), "camera": (), "offset": (), "height": (), "width": (), "near_far": (2,), "box2d": (4,),
              "fg_pixels": (), "rgb": (3,), "label": ()},
}
_HAND = {"present": (), "joints": (21, 3), "joint_valid": (21,), "mano_valid": (), "mano_pose": (48,),
         "mano_shape": (10,), "mano_trans": (3,), "box": (2, 3)}


def validate_cache(f: h5py.File, path: str | Path) -> None:
    """Check an open cache before any stage uses it; raise ``InputError`` naming the file and the field.

    Checks the schema, the required groups and datasets and their shapes (docs/cache.md), cameras (finite K
    with positive focal lengths and ``[0, 0, 1]`` last row, finite world->camera with an orthonormal
    right-handed rotation, positive image sizes), and the view table (frame and camera indices in range, view
    sizes equal to their camera's, pixel ranges inside the pixel buffers, finite near <= far). Reads only the
    small per-camera and per-view arrays (their checksums are verified on the way); pixel buffers and per-frame
    arrays are checked by their checksums when read (``Cache.read``).
    """
    schema = f.attrs.get("schema")
    if schema is None or _s(schema) != SCHEMA:
        raise InputError(f"not a handcli cache (schema {schema!r}, expected {SCHEMA!r})", path=path, field="schema")

    def bad(field: str, msg: str):
        raise InputError(msg, path=path, field=field)

    def get(name: str):
        with read_errors(path, name):
            return f[name][()]

    with read_errors(path):
        for grp, spec in _REQUIRED.items():
            if not isinstance(f.get(grp), h5py.Group):
                bad(grp, "required group missing (not a complete cache; re-run preprocess)")
            for k, tail in spec.items():
                ds = f[grp].get(k)
                if not isinstance(ds, h5py.Dataset):
                    bad(f"{grp}/{k}", "required dataset missing")
                if ds.ndim != 1 + len(tail) or tuple(ds.shape[1:]) != tail:
                    bad(f"{grp}/{k}", f"shape {ds.shape}, expected (n, {', '.join(map(str, tail))})".replace(", )", ")"))
        for grp in ("cameras", "frames"):
            n = {k: f[grp][k].shape[0] for k in _REQUIRED[grp]}
            if len(set(n.values())) != 1:
                bad(grp, f"datasets disagree on the count: {n}")
        N = f["frames/key"].shape[0]
        for side in SIDES:
            g = f["frames"].get(side)
            if g is None:
                continue
            for k, tail in _HAND.items():
                if k not in g or g[k].shape != (N,) + tail:
                    bad(f"frames/{side}/{k}", f"missing or shape {g[k].shape if k in g else None}, expected "
                        f"{(N,) + tail}")
            hm = f.get(f"hand_model/{side}")
            if "vertices" in g and hm is not None and "faces" in hm and "weights" in hm:
                V = g["vertices"].shape[1] if g["vertices"].ndim == 3 else -1
                faces = get(f"hand_model/{side}/faces")
                if g["vertices"].shape[0] != N or V != hm["weights"].shape[0]:
                    bad(f"frames/{side}/vertices", f"shape {g['vertices'].shape} does not match the hand model "
                        f"({hm['weights'].shape[0]} vertices)")
                if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or faces.max() >= V)):
                    bad(f"hand_model/{side}/faces", f"faces must be (F, 3) indices in [0, {V})")

    K, M = get("cameras/K"), get("cameras/world_to_cam")
    cw, ch = get("cameras/width"), get("cameras/height")
    C = len(K)
    for i in range(C):
        k, m = K[i], M[i]
        if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0, 0, 1]):
            bad("cameras/K", f"camera {i}: intrinsics must be finite with positive focal lengths and last row "
                f"[0, 0, 1], got {np.round(k, 4).tolist()}")
        R = m[:3, :3]
        if (not np.isfinite(m).all() or not np.allclose(R @ R.T, np.eye(3), atol=1e-4)
                or np.linalg.det(R) < 0 or not np.allclose(m[3], [0, 0, 0, 1])):
            bad("cameras/world_to_cam", f"camera {i}: must be finite with an orthonormal right-handed rotation "
                f"and last row [0, 0, 0, 1]")
        if cw[i] <= 0 or ch[i] <= 0:
            bad("cameras/width", f"camera {i}: image size {cw[i]}x{ch[i]} must be positive")

    vt = {k: get(f"views/{k}") for k in VIEW_META}
    counts = {k: len(a) for k, a in vt.items()}
    if len(set(counts.values())) != 1:
        bad("views", f"per-view datasets disagree on the count: {counts}")
    if not len(vt["frame"]):
        return
    P = f["views/rgb"].shape[0]
    M = len(vt["frame"])
    if "hand_estimate" in f["views"]:
        for k in ("valid", "vertices", "joints"):
            ds = f["views/hand_estimate"].get(k)
            if not isinstance(ds, h5py.Dataset) or ds.shape[0] != M:
                bad(f"views/hand_estimate/{k}", f"missing or {ds.shape[0] if ds is not None else 0} entries for "
                    f"{M} views")
    for k in ("label", "depth"):
        if k in f["views"] and f[f"views/{k}"].shape[0] != P:
            bad(f"views/{k}", f"{f[f'views/{k}'].shape[0]} pixels but views/rgb has {P}")
    checks = (
        ("views/frame", (vt["frame"] < 0) | (vt["frame"] >= N), f"frame index outside [0, {N})"),
        ("views/camera", (vt["camera"] < 0) | (vt["camera"] >= C), f"camera index outside [0, {C})"),
    )
    for field_, mask, msg in checks:
        if mask.any():
            bad(field_, f"view {int(np.flatnonzero(mask)[0])}: {msg}")
    cam = vt["camera"]
    size_bad = (vt["height"] != ch[cam]) | (vt["width"] != cw[cam])
    if size_bad.any():
        j = int(np.flatnonzero(size_bad)[0])
        bad("views/height", f"view {j} is {vt['width'][j]}x{vt['height'][j]} but its camera {cam[j]} is "
            f"{cw[cam[j]]}x{ch[cam[j]]}")
    end = vt["offset"].astype(np.int64) + vt["height"].astype(np.int64) * vt["width"]
    range_bad = (vt["offset"] < 0) | (end > P)
    if range_bad.any():
        bad("views/offset", f"view {int(np.flatnonzero(range_bad)[0])}: pixels outside the {P}-pixel buffer")
    nf = vt["near_far"]
    nf_bad = ~np.isfinite(nf).all(1) | (nf[:, 0] < 0) | (nf[:, 1] < nf[:, 0])
    if nf_bad.any():
        bad("views/near_far", f"view {int(np.flatnonzero(nf_bad)[0])}: near/far must be finite with "
            f"0 <= near <= far, got {nf[int(np.flatnonzero(nf_bad)[0])].tolist()}")


class Cache:
    """Read access to a cache file (opened read-only; use as a context manager)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._hand_modules: dict = {}  # side -> HandModel, built on first use (hand_model_module)
        if not self.path.is_file():
            raise InputError("cache file not found", path=self.path)
        try:
            self.f = h5py.File(self.path, "r")
        except OSError as e:
            raise InputError(f"not a readable HDF5 file ({e})", path=self.path) from None
        try:
            validate_cache(self.f, self.path)
        except BaseException:
            self.f.close()
            raise

    def read(self, name: str, sel=()) -> np.ndarray:
        """``self.f[name][sel]``; a damaged chunk (failed checksum) is an ``InputError`` naming the dataset."""
        with read_errors(self.path, name):
            return self.f[name][sel]

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.f.close()

    @property
    def attrs(self) -> dict:
        return {k: _py(v) for k, v in self.f.attrs.items()}

    @property
    def num_frames(self) -> int:
        return int(self.f["frames/key"].shape[0])

    @property
    def num_views(self) -> int:
        return int(self.f["views/frame"].shape[0])

    @property
    def has_objects(self) -> bool:
        """A hand-object cache (``frames/object`` and ``objects/``)."""
        return "frames/object" in self.f

    @property
    def has_depth(self) -> bool:
        return "views/depth" in self.f

    @property
    def has_hand_estimates(self) -> bool:
        """The cache holds estimated input hands per view (preprocess ``--hand-estimates``)."""
        return "views/hand_estimate" in self.f

    def hand_estimate(self, j: int) -> dict | None:
        """View j's estimated input hand {"vertices" (V, 3), "joints" (21, 3)} world metres, or None (no
        estimates in the cache, or none for this view)."""
        if not self.has_hand_estimates or not self.read("views/hand_estimate/valid", int(j)):
            return None
        return {k: self.read(f"views/hand_estimate/{k}", int(j)) for k in ("vertices", "joints")}

    def object_names(self) -> list[str]:
        """Names of the object models stored in the cache."""
        return sorted(self.f["objects"]) if "objects" in self.f else []

    def object_mesh(self, name: str) -> dict:
        """An object model in its own frame: vertices (V,3), faces (F,3), points (P,3) (metres)."""
        if "objects" not in self.f or name not in self.f["objects"]:
            raise InputError(f"cache holds no object model {name!r}", path=self.path, field=f"objects/{name}")
        g = f"objects/{name}"
        return {"vertices": self.read(f"{g}/vertices").astype(np.float64),
                "faces": self.read(f"{g}/faces").astype(np.int64), "points": self.read(f"{g}/points").astype(np.float64)}

    def cameras(self) -> list[dict]:
        c = {k: self.read(f"cameras/{k}") for k in ("name", "capture", "width", "height", "K", "world_to_cam")}
        return [
            {"name": _s(c["name"][i]), "capture": int(c["capture"][i]), "width": int(c["width"][i]),
             "height": int(c["height"][i]), "K": c["K"][i], "world_to_cam": c["world_to_cam"][i]}
            for i in range(c["name"].shape[0])
        ]

    def hand_model(self, side: str) -> dict | None:
        if f"hand_model/{side}" not in self.f:
            return None
        name = f"hand_model/{side}"
        g = self.f[name]
        out = {k: self.read(f"{name}/{k}") for k in g if isinstance(g[k], h5py.Dataset)}
        if "mano" in g:
            out["mano"] = {k: self.read(f"{name}/mano/{k}") for k in g["mano"]}
        out.update({k: _py(v) for k, v in g.attrs.items()})
        return out

    def hand_model_module(self, side: str):
        """The HandModel that posed this cache's meshes (absolute poses: flat_hand_mean=True); built once per
        open cache and side."""
        from handcli.hand.export import model_from_dict
        from handcli.hand.mano_io import check_mano_arrays

        built = self._hand_modules
        if side not in built:
            hm = self.hand_model(side)
            if hm is None or "mano" not in hm:
                raise InputError("cache holds no hand model arrays", path=self.path,
                                 field=f"hand_model/{side}/mano")
            check_mano_arrays(hm["mano"], self.path, prefix=f"hand_model/{side}/mano/")
            built[side] = model_from_dict(hm["mano"], side, kind=hm.get("kind", "open-hand/1"))
        return built[side]

    def frame(self, i: int) -> FrameRecord:
        r = self.read
        rec = FrameRecord(_s(r("frames/key", i)), _s(r("frames/split", i)), int(r("frames/capture", i)),
                          _s(r("frames/seq", i)), int(r("frames/frame_idx", i)))
        for side in SIDES:
            g = f"frames/{side}"
            if not r(f"{g}/present", i):
                continue
            mano = None
            if r(f"{g}/mano_valid", i):
                mano = {k: r(f"{g}/mano_{k}", i).astype(np.float64) for k in ("pose", "shape", "trans")}
            verts = r(f"{g}/vertices", i) if self.f[f"{g}/vertices"].shape[1] else None
            params = {k: r(f"{g}/model_{k}", i).astype(np.float64) for k in ("pose", "shape", "trans")}
            rec.hands[side] = HandRecord(r(f"{g}/joints", i), r(f"{g}/joint_valid", i), mano, verts,
                                         r(f"{g}/box", i), params)
        if self.has_objects and r("frames/object/present", i):
            g = "frames/object"
            rec.object = ObjectRecord(_s(r(f"{g}/name", i)), r(f"{g}/pose", i), r(f"{g}/box", i))
        return rec

    def frame_value(self, key: str, i: int):
        """``frames/<key>`` of frame i (e.g. "capture", "right/present")."""
        return self.read(f"frames/{key}", i)

    def frame_column(self, key: str) -> np.ndarray:
        """``frames/<key>`` of every frame: (N, ...)."""
        return self.read(f"frames/{key}")

    def view_table(self) -> dict[str, np.ndarray]:
        """All per-view metadata arrays (small), keyed by dataset name."""
        return {k: self.read(f"views/{k}") for k in VIEW_META}

    def view(self, j: int) -> dict:
        """One view: rgb (H,W,3) uint8, label (H,W) uint8 and its metadata."""
        r = self.read
        if getattr(self, "_meta", None) is None:  # the small per-view arrays, read once (not 7 reads per view)
            self._meta = self.view_table()
        m = self._meta
        off, H, W = int(m["offset"][j]), int(m["height"][j]), int(m["width"][j])
        px = slice(off, off + H * W)
        out = {
            "frame": int(m["frame"][j]), "camera": int(m["camera"][j]),
            "rgb": r("views/rgb", px).reshape(H, W, 3),
            "label": r("views/label", px).reshape(H, W),
            "near_far": m["near_far"][j].copy(), "box2d": m["box2d"][j].copy(),
        }
        if "depth" in self.f["views"]:
            out["depth"] = r("views/depth", px).reshape(H, W).astype(np.float32)
        return out

    def views_of_frame(self, i: int) -> list[int]:
        return [int(j) for j in np.nonzero(self.read("views/frame") == i)[0]]

    def summary(self, all_frames: bool = False) -> dict:
        """The JSON summary of ``handcli inspect cache.h5 --json`` (docs/design.md#inspect-json)."""
        a = self.attrs
        cams = [{"name": c["name"], "capture": c["capture"], "width": c["width"], "height": c["height"],
                 "K": np.round(c["K"], 6).tolist(), "world_to_cam": np.round(c["world_to_cam"], 9).tolist()}
                for c in self.cameras()]
        n = self.num_frames if all_frames else min(self.num_frames, 100)
        frames = []
        for i in range(n):
            rec = self.frame(i)
            hands = {}
            for side, h in rec.hands.items():
                mano = None
                if h.mano is not None:
                    mano = {k: np.round(v, 7).tolist() for k, v in h.mano.items()}
                hands[side] = {"joints": np.round(h.joints.astype(np.float64), 6).tolist(), "mano": mano}
            entry = {"id": rec.key, "capture": rec.capture, "seq": rec.seq, "frame_idx": rec.frame_idx,
                     "hands": hands, "views": len(self.views_of_frame(i))}
            if rec.object is not None:
                entry["object"] = {"name": rec.object.name, "pose": np.round(rec.object.pose, 9).tolist()}
            frames.append(entry)
        hm = {}
        for side in SIDES:
            m = self.hand_model(side)
            if m is not None:
                hm[side] = {k: v for k, v in m.items() if k not in ("faces", "weights", "parents", "mano")}
                hm[side]["num_vertices"] = int(m["weights"].shape[0])
                hm[side]["num_faces"] = int(m["faces"].shape[0])
        out = {
            "schema": a.get("schema"), "handcli_version": a.get("handcli_version"), "dataset": a.get("dataset"),
            "path": str(self.path), "scale": float(a.get("scale", 1.0)), "num_frames": self.num_frames,
            "num_views": self.num_views, "num_cameras": len(cams), "cameras": cams, "hand_model": hm,
            "frames_truncated": n < self.num_frames, "frames": frames,
            "config": json.loads(a.get("config", "{}")), "inputs": json.loads(a.get("inputs", "{}")),
        }
        if self.has_objects:
            out["objects"] = self.object_names()
        return out


def merge_caches(paths: list[Path], out_path: Path, command: str = "") -> dict:
    """Concatenate shard caches (in the given order) into ``out_path``; returns a small summary."""
    if not paths:
        raise InputError("no input caches given")
    first = Cache(paths[0])
    a0 = first.attrs
    hand_models = {s: first.hand_model(s) for s in SIDES if first.hand_model(s) is not None}
    first.close()
    inputs = {"merged_from": [str(p) for p in paths]}
    with Cache(paths[0]) as c0:
        objects, depth, estimates = c0.has_objects, c0.has_depth, c0.has_hand_estimates
    label_source: dict | None = None  # hand-object caches: where labels came from, counts summed over shards
    w = CacheWriter(out_path, dataset=a0["dataset"], scale=a0["scale"], config=json.loads(a0["config"]),
                    inputs=inputs, hand_models=hand_models, command=command, objects=objects, depth=depth,
                    hand_estimates=estimates)
    try:
        total = 0
        seen: dict[str, Path] = {}  # frame key -> the shard holding it: keys stay unique
        for p in paths:
            with Cache(p) as c:
                a = c.attrs
                for k in ("dataset", "scale"):
                    if a[k] != a0[k]:
                        raise InputError(f"differs from {paths[0]} ({a[k]!r} vs {a0[k]!r})", path=p, field=k)
                for s in SIDES:
                    m = c.hand_model(s)
                    if (m is None) != (s not in hand_models) or (
                            m is not None and not np.array_equal(m["faces"], hand_models[s]["faces"])):
                        raise InputError("hand model differs from the first shard's", path=p,
                                         field=f"hand_model/{s}")
                if (c.has_objects, c.has_depth, c.has_hand_estimates) != (objects, depth, estimates):
                    raise InputError("object, depth or hand-estimate groups differ from the first shard's", path=p,
                                     field="frames/object")
                if "label_source" in a:
                    ls = json.loads(a["label_source"])
                    if label_source is None:
                        label_source = ls
                    else:
                        for k, val in ls.items():
                            if isinstance(val, int) and isinstance(label_source.get(k), int):
                                label_source[k] += val
                for name in c.object_names():
                    m = c.object_mesh(name)
                    w.add_object_mesh(name, m["vertices"], m["faces"], m["points"])
                cams = c.cameras()
                remap = [w.add_camera(cm["name"], cm["capture"], cm["K"], cm["world_to_cam"], cm["width"],
                                      cm["height"]) for cm in cams]
                vt = c.view_table()
                for key in c.read("frames/key"):
                    if _s(key) in seen:
                        raise InputError(f"frame {_s(key)!r} is already in {seen[_s(key)]} (a shard given twice?)",
                                         path=p, field="frames/key")
                    seen[_s(key)] = p
                for i in range(c.num_frames):
                    views = []
                    for j in np.nonzero(vt["frame"] == i)[0]:
                        v = c.view(int(j))
                        views.append(ViewRecord(remap[v["camera"]], v["rgb"], v["label"], v["near_far"],
                                                v["box2d"], v.get("depth"),
                                                hand_estimate=c.hand_estimate(int(j))))
                    w.add_frame(c.frame(i), views)
                    total += 1
        if label_source is not None:
            w.f.attrs["label_source"] = json.dumps(label_source)
        w.close()
    except BaseException:
        w.f.close()
        raise
    return {"frames": total}
