"""A directory of shard caches read as one dataset, and ``open_cache`` for every cache-reading stage.

``preprocess --shard i/N -o DIR/part-i.h5`` writes contiguous blocks of one dataset (``pipeline.shard_items``).
``open_cache(DIR)`` reads every ``*.h5`` of DIR in natural file-name order (``part-2`` before ``part-10``)
as the cache ``handcli cache merge`` would write from the same files in that order: global frame and view
indices run over the shards one after the other, cameras are shared by (capture, name) in first-seen order,
and pixel offsets are those of the merged buffer. Nothing is copied; each view is read from its shard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from handcli.data.cache import SIDES, Cache, FrameRecord
from handcli.errors import InputError


def shard_paths(directory: Path) -> list[Path]:
    """The ``*.h5`` files of a shard directory in natural name order (digit runs compare as numbers)."""
    def key(p: Path):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]

    paths = sorted((p for p in Path(directory).glob("*.h5") if p.is_file()), key=key)
    if not paths:
        raise InputError("directory holds no shard caches (*.h5)", path=directory)
    return paths


def _model_faces(cache: Cache, side: str) -> np.ndarray | None:
    """The hand model's faces (F, 3), or None without a model: only what the shards must agree on, not the
    whole model (its gzip-compressed MANO arrays cost ~16 ms a shard to read)."""
    name = f"hand_model/{side}"
    return cache.read(f"{name}/faces") if name in cache.f else None


def open_cache(path: str | Path) -> Cache:
    """A cache file (``Cache``) or a directory of shard caches (``ShardedCache``), with the same read API."""
    path = Path(path)
    if path.is_dir():
        return ShardedCache(path)
    return Cache(path)


class ShardedCache(Cache):
    """Shard caches of one dataset read as one (global frame/view indices; the ``Cache`` read API)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory)
        self._hand_modules: dict = {}  # as Cache (hand_model_module)
        self.paths = shard_paths(self.path)
        self.shards: list[Cache] = []
        try:
            for p in self.paths:
                self.shards.append(Cache(p))
            self._index()
        except BaseException:
            self.close()
            raise

    def _index(self) -> None:
        first = self.shards[0]
        a0 = first.attrs
        models0 = {s: _model_faces(first, s) for s in SIDES}
        kinds0 = (first.has_objects, first.has_depth, first.has_hand_estimates)
        cams, cam_index, tables, frame_off, view_off, pix = [], {}, [], [0], [0], 0
        for p, c in zip(self.paths, self.shards):
            a = c.attrs
            for k in ("dataset", "scale"):
                if a.get(k) != a0.get(k):
                    raise InputError(f"differs from {self.paths[0].name} ({a.get(k)!r} vs {a0.get(k)!r})", path=p,
                                     field=k)
            for s in SIDES:
                m = _model_faces(c, s)
                if (m is None) != (models0[s] is None) or (m is not None and not np.array_equal(m, models0[s])):
                    raise InputError("hand model differs from the first shard's", path=p, field=f"hand_model/{s}")
            if (c.has_objects, c.has_depth, c.has_hand_estimates) != kinds0:
                raise InputError("object, depth or hand-estimate groups differ from the first shard's", path=p,
                                 field="frames/object")
            remap = []
            for cm in c.cameras():
                key = (cm["capture"], cm["name"])
                if key not in cam_index:
                    cam_index[key] = len(cams)
                    cams.append(cm)
                remap.append(cam_index[key])
            vt = c.view_table()
            vt["frame"] = vt["frame"] + frame_off[-1]
            if len(vt["camera"]):
                vt["camera"] = np.asarray(remap, vt["camera"].dtype)[vt["camera"]]
            vt["offset"] = vt["offset"] + pix
            pix += int((vt["height"].astype(np.int64) * vt["width"]).sum())
            tables.append(vt)
            frame_off.append(frame_off[-1] + c.num_frames)
            view_off.append(view_off[-1] + c.num_views)
        self._cameras = cams
        self._vt = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
        self._frame_off = np.asarray(frame_off)
        self._view_off = np.asarray(view_off)

    # ---------------------------------------------------------------------------------------------------
    def _frame_shard(self, i: int) -> tuple[Cache, int]:
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame {i} outside 0..{self.num_frames - 1}")
        s = int(np.searchsorted(self._frame_off, i, side="right")) - 1
        return self.shards[s], i - int(self._frame_off[s])

    def _view_shard(self, j: int) -> tuple[Cache, int]:
        if not 0 <= j < self.num_views:
            raise IndexError(f"view {j} outside 0..{self.num_views - 1}")
        s = int(np.searchsorted(self._view_off, j, side="right")) - 1
        return self.shards[s], j - int(self._view_off[s])

    def close(self) -> None:
        for c in self.shards:
            c.close()

    @property
    def attrs(self) -> dict:
        a = self.shards[0].attrs
        a["inputs"] = json.dumps({"shards": [str(p) for p in self.paths]})
        a["num_frames"] = self.num_frames
        a["num_views"] = self.num_views
        return a

    @property
    def num_frames(self) -> int:
        return int(self._frame_off[-1])

    @property
    def num_views(self) -> int:
        return int(self._view_off[-1])

    @property
    def has_objects(self) -> bool:
        return self.shards[0].has_objects

    @property
    def has_depth(self) -> bool:
        return self.shards[0].has_depth

    @property
    def has_hand_estimates(self) -> bool:
        return self.shards[0].has_hand_estimates

    def hand_estimate(self, j: int) -> dict | None:
        c, k = self._view_shard(int(j))
        return c.hand_estimate(k)

    def object_names(self) -> list[str]:
        return sorted({n for c in self.shards for n in c.object_names()})

    def object_mesh(self, name: str) -> dict:
        for c in self.shards:
            if name in c.object_names():
                return c.object_mesh(name)
        raise InputError(f"no shard holds an object model {name!r}", path=self.path, field=f"objects/{name}")

    def cameras(self) -> list[dict]:
        return [dict(c) for c in self._cameras]

    def hand_model(self, side: str) -> dict | None:
        return self.shards[0].hand_model(side)

    def frame(self, i: int) -> FrameRecord:
        c, k = self._frame_shard(int(i))
        return c.frame(k)

    def frame_value(self, key: str, i: int):
        c, k = self._frame_shard(int(i))
        return c.frame_value(key, k)

    def frame_column(self, key: str) -> np.ndarray:
        return np.concatenate([c.frame_column(key) for c in self.shards])

    def view_table(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._vt.items()}

    def read(self, name: str, sel=()) -> np.ndarray:
        """``Cache.read`` for the per-frame (``frames/<key>``) and per-view metadata (``views/<key>``) arrays,
        in global indices; other datasets are read through ``frame``/``view``/``object_mesh``."""
        group, _, key = name.partition("/")
        if group == "frames":
            if isinstance(sel, (int, np.integer)):
                return self.frame_value(key, int(sel))
            return self.frame_column(key)[sel]
        if group == "views" and key in self._vt:
            return self._vt[key][sel]
        raise KeyError(f"{name} is not readable across shards; use the Cache API")

    def view(self, j: int) -> dict:
        c, k = self._view_shard(int(j))
        out = c.view(k)
        out["frame"] = int(self._vt["frame"][j])
        out["camera"] = int(self._vt["camera"][j])
        return out

    def views_of_frame(self, i: int) -> list[int]:
        return [int(j) for j in np.nonzero(self._vt["frame"] == i)[0]]
