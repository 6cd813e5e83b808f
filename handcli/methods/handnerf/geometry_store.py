"""Per-frame hand geometry built on first use, kept in a bounded LRU and stored in the run folder.

HandNeRF needs each frame's deformation data (blend-weight grids, ``deform.build_hand_geometry``),
seconds of work per frame at the paper's 5 mm voxel. :class:`FrameGeometry` builds it the first time a
frame is drawn, keeps at most ``capacity`` frames on the device (least recently used dropped), and
writes every frame it builds to ``run/geometry/`` so that ``--resume``, ``render`` and ``adapt`` load
it instead of building it again. Time to the first training step does not grow with the number of
frames.

The store: one compressed ``.npz`` per frame, ``run/geometry/<frame // 1000>/f<frame>-<key>.npz``,
written to a temporary name and renamed (a crash leaves either the whole file or none; concurrent
writers under torchrun write identical bytes under one name). ``key`` hashes what the geometry
depends on: the frame's hand model parameters and posed vertices, the cache's hand models, the grid
spacing and padding, and the store version. A frame of another cache (``render`` on a test cache,
``adapt`` on novel poses) gets its own key; stale entries are never read. Arrays are stored
losslessly (float32), so a resumed run computes exactly what an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from handcli.methods.handnerf.deform import HandGeometry, build_hand_geometry
from handcli.outputs import replace_file
from handcli.progress import log

STORE_VERSION = 1
STORE_DIR = "geometry"
_FIELDS = ("box_min", "box_max", "grid", "A_pose", "A_can", "trans", "pose", "wrist")
SIDES = ("right", "left")


def model_digest(hand_model: dict | None) -> str:
    """Hash of a cache's hand model arrays (``Cache.hand_model(side)``); "" when the side has none."""
    if hand_model is None:
        return ""
    h = hashlib.sha1()
    mano = hand_model.get("mano", {})
    for k in sorted(mano):
        a = np.ascontiguousarray(np.asarray(mano[k]))
        if a.dtype.kind in "OUS":
            h.update(f"{k}={a!r}".encode())
        else:
            h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    h.update(str(hand_model.get("kind", "")).encode())
    return h.hexdigest()


def frame_key(rec, model_digests: dict[str, str], voxel: float, pad: float) -> str:
    """Hex key of one frame's geometry inputs (``rec`` is a ``Cache.frame`` record)."""
    h = hashlib.sha1(f"v{STORE_VERSION} voxel={voxel!r} pad={pad!r}".encode())
    for side in SIDES:
        hand = rec.hands.get(side)
        if hand is None or hand.vertices is None:
            continue
        h.update(side.encode() + model_digests.get(side, "").encode())
        for k in ("pose", "shape", "trans"):
            h.update(np.asarray(hand.model_params[k], np.float64).tobytes())
        h.update(np.asarray(hand.vertices, np.float64).tobytes())
    return h.hexdigest()[:20]


class GeometryStore:
    """The on-disk half: ``root/<frame // 1000>/f<frame>-<key>.npz`` (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.writable = True

    def path(self, frame: int, key: str) -> Path:
        return self.root / f"{frame // 1000:04d}" / f"f{frame:07d}-{key}.npz"

    def load(self, frame: int, key: str) -> list[HandGeometry] | None:
        p = self.path(frame, key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                sides = [str(s) for s in z["sides"]]
                return [HandGeometry(s, *(_tensor(z[f"{i}_{k}"]) for k in _FIELDS)) for i, s in enumerate(sides)]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # a damaged entry is rebuilt, not trusted
            log(f"[yellow]geometry store: ignoring unreadable {p} ({e})[/yellow]")
            return None

    def save(self, frame: int, key: str, geoms: list[HandGeometry]) -> None:
        if not self.writable:
            return
        p = self.path(frame, key)
        arrays = {"sides": np.array([g.side for g in geoms], dtype="U5")}
        for i, g in enumerate(geoms):
            for k in _FIELDS:
                arrays[f"{i}_{k}"] = getattr(g, k).detach().cpu().numpy()
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            replace_file(p, lambda tmp: _savez(tmp, arrays))
        except OSError as e:  # a read-only run folder: keep working, just do not store
            self.writable = False
            log(f"[yellow]geometry store: cannot write {p.parent} ({e}); geometry is not stored[/yellow]")


def _tensor(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


class FrameGeometry:
    """``geoms[frame]`` -> the frame's [HandGeometry] (right first) on ``device``, built on first use.

    Lookup order: the in-memory LRU (at most ``capacity`` frames), then the store (when attached),
    then a build (which is written to the store). ``built``, ``loaded`` and ``hits`` count each.
    """

    def __init__(self, cache, voxel: float, pad: float, device, capacity: int, store: GeometryStore | None = None):
        if capacity < 1:
            raise ValueError("geometry cache capacity must be >= 1 frame")
        self.cache = cache
        self.voxel, self.pad = float(voxel), float(pad)
        self.device = device
        self.capacity = int(capacity)
        self.store = store
        self._lru: OrderedDict[int, list[HandGeometry]] = OrderedDict()
        self._models: dict | None = None
        self._digests: dict[str, str] | None = None
        self.built = self.loaded = self.hits = 0
        self._hand_models()  # cheap; a damaged hand model in the cache fails before any output is written

    def attach(self, run_dir: Path) -> None:
        """Store built geometry in (and read it from) ``run_dir/geometry``; frames already in memory are
        written there too."""
        self.store = GeometryStore(Path(run_dir) / STORE_DIR)
        for frame, geoms in self._lru.items():
            key = frame_key(self.cache.frame(frame), self._model_digests(), self.voxel, self.pad)
            if not self.store.path(frame, key).is_file():
                self.store.save(frame, key, geoms)

    def _hand_models(self) -> dict:
        if self._models is None:
            self._models = {s: self.cache.hand_model_module(s) for s in SIDES if self.cache.hand_model(s) is not None}
        return self._models

    def _model_digests(self) -> dict[str, str]:
        if self._digests is None:
            self._digests = {s: model_digest(self.cache.hand_model(s)) for s in SIDES}
        return self._digests

    def build(self, rec) -> list[HandGeometry]:
        """The deformation data of every hand in frame record ``rec`` (CPU tensors, right first)."""
        models = None
        out = []
        for side in SIDES:
            h = rec.hands.get(side)
            if h is None or h.vertices is None:
                continue
            models = models or self._hand_models()
            out.append(build_hand_geometry(models[side], side, h.model_params, h.vertices.astype(np.float64),
                                           self.voxel, self.pad))
        return out

    def __getitem__(self, frame: int) -> list[HandGeometry]:
        frame = int(frame)
        if frame in self._lru:
            self._lru.move_to_end(frame)
            self.hits += 1
            return self._lru[frame]
        rec = self.cache.frame(frame)
        geoms = None
        key = None
        if self.store is not None:
            key = frame_key(rec, self._model_digests(), self.voxel, self.pad)
            geoms = self.store.load(frame, key)
            if geoms is not None:
                self.loaded += 1
        if geoms is None:
            geoms = self.build(rec)
            self.built += 1
            if self.store is not None:
                self.store.save(frame, key, geoms)
        geoms = [g.to(self.device) for g in geoms]
        self._lru[frame] = geoms
        while len(self._lru) > self.capacity:
            self._lru.popitem(last=False)
        return geoms

    get = __getitem__

    def __contains__(self, frame: int) -> bool:
        return int(frame) in self._lru

    def __len__(self) -> int:
        return len(self._lru)

    def stats(self) -> dict:
        return {"built": self.built, "loaded": self.loaded, "hits": self.hits, "in_memory": len(self._lru),
                "capacity": self.capacity}


def _savez(path: Path, arrays: dict) -> None:
    with open(path, "wb") as f:  # a file object: numpy would append ".npz" to a name
        np.savez_compressed(f, **arrays)
