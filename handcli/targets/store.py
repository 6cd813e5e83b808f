"""Readers of the target files used by training: `DepthTargets` and `FeatureTargets`.

Both are vectorised over a batch of rays drawn from many views: `sample(view_indices (N,), pix (N, 2))`.
Pixel coordinates follow handcli's convention (conventions.md): (u, v) = (column, row), integer values at
pixel centres, at cache resolution. Each reader keeps the whole file's array in RAM when it fits in
`max_ram_bytes` (the typical case: depth is 4 bytes per pixel, features 2*D bytes per 8x8 cell), else it
reads the views a batch needs from the file.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from handcli.data.cache import read_errors
from handcli.errors import InputError

DEPTH_SCHEMA = "handcli.targets.depth/1"
FEATURES_SCHEMA = "handcli.targets.features/1"
DEFAULT_MAX_RAM = 2 << 30


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def pixel_index(pix: np.ndarray) -> np.ndarray:
    """Nearest pixel (column, row) of continuous pixel coordinates: (N, 2) float -> (N, 2) int64."""
    return np.floor(np.asarray(pix, dtype=np.float64) + 0.5).astype(np.int64)


def pixel_cells(pix: np.ndarray, stride: int, grid_h: np.ndarray, grid_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature cell (row, col) holding each pixel: cell (r, c) covers pixel rows [r*s, r*s + s), cols likewise.

    pix (N, 2) continuous (u, v); grid_h, grid_w (N,) or scalars, the view's cell grid. Pixels are rounded to
    the nearest centre first; coordinates outside the image are clamped to the border cells.
    Returns rows (N,), cols (N,) int64.
    """
    p = pixel_index(pix)
    rows = np.clip(p[:, 1] // stride, 0, np.asarray(grid_h) - 1)
    cols = np.clip(p[:, 0] // stride, 0, np.asarray(grid_w) - 1)
    return rows, cols


class _TargetFile:
    schema = ""
    kind = ""

    def __init__(self, path: str | Path, max_ram_bytes: int = DEFAULT_MAX_RAM):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.kind} targets file not found", path=self.path)
        try:
            self.f = h5py.File(self.path, "r")
        except OSError as e:
            raise InputError(f"not a readable HDF5 file ({e})", path=self.path) from None
        schema = self.f.attrs.get("schema")
        if schema is None or _s(schema) != self.schema:
            self.f.close()
            raise InputError(f"not a {self.kind} targets file (schema {schema!r}, expected {self.schema!r})",
                             path=self.path, field="schema")
        try:
            self._open(max_ram_bytes)
        except BaseException:
            self.f.close()
            raise

    def _open(self, max_ram_bytes: int) -> None:
        """Read the view table and check it against the data array (``InputError`` naming the field)."""
        for name in ("views/offset", "views/height", "views/width", self._dataset) + self._extra:
            if not isinstance(self.f.get(name), h5py.Dataset):
                raise InputError("required dataset missing", path=self.path, field=name)
        with read_errors(self.path, "views"):
            self.offset = self.f["views/offset"][()].astype(np.int64)
            self.height = self.f["views/height"][()].astype(np.int64)
            self.width = self.f["views/width"][()].astype(np.int64)
        self.num_views = len(self.offset)
        if len(self.height) != self.num_views or len(self.width) != self.num_views:
            raise InputError("views/offset, height and width differ in length", path=self.path, field="views")
        if self.num_views and (self.height.min() <= 0 or self.width.min() <= 0):
            raise InputError("view sizes must be positive", path=self.path, field="views/height")
        self._ds = self.f[self._dataset]
        end = self.offset + self._view_rows()
        if self.num_views and (self.offset.min() < 0 or end.max() > self._ds.shape[0]):
            raise InputError(f"view rows outside the {self._ds.shape[0]}-row array", path=self.path,
                             field="views/offset")
        with read_errors(self.path, self._dataset):
            self._ram = self._ds[()] if self._ds.size * self._ds.dtype.itemsize <= max_ram_bytes else None
        if self._ram is not None and not np.isfinite(self._ram).all():
            raise InputError("non-finite values", path=self.path, field=self._dataset)

    _extra: tuple[str, ...] = ()

    def _view_rows(self) -> np.ndarray:
        """(M,) rows of the data array each view uses."""
        return self.height * self.width

    _dataset = ""

    @property
    def in_ram(self) -> bool:
        return self._ram is not None

    @property
    def attrs(self) -> dict:
        return {k: (_s(v) if isinstance(v, (bytes, str)) else v) for k, v in self.f.attrs.items()}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.f.close()

    def summary(self) -> dict:
        """What ``handcli inspect`` shows: kind, the file's attributes and its top-level datasets' shapes."""
        attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in self.attrs.items()}
        return {"kind": "targets", **attrs,
                "datasets": {k: list(d.shape) for k, d in self.f.items() if isinstance(d, h5py.Dataset)}}

    def check_matches(self, cache) -> None:
        """Raise InputError (naming this file) unless it was made for `cache` (a `handcli.data.cache.Cache`):
        same number of views and the same image size for every view."""
        if cache.num_views != self.num_views:
            raise InputError(f"has {self.num_views} views but the cache {cache.path} has {cache.num_views}; "
                             f"recompute the targets for this cache", path=self.path, field="num_views")
        vt = cache.view_table()
        bad = np.flatnonzero((vt["height"] != self.height) | (vt["width"] != self.width))
        if len(bad):
            j = int(bad[0])
            raise InputError(f"view {j} is {self.width[j]}x{self.height[j]} but {cache.path} has "
                             f"{vt['width'][j]}x{vt['height'][j]}; recompute the targets for this cache",
                             path=self.path, field="views")

    def _check_views(self, views: np.ndarray) -> None:
        if len(views) and (views.min() < 0 or views.max() >= self.num_views):
            raise IndexError(f"view index out of range [0, {self.num_views}) in {self.path}")

    def _gather(self, views: np.ndarray, flat: np.ndarray, block: np.ndarray) -> np.ndarray:
        """Rows flat (N,) of the dataset, where flat is relative to each view's block start (block (M,))."""
        if self._ram is not None:
            return self._ram[block[views] + flat]
        out = np.empty((len(flat),) + self._ds.shape[1:], self._ds.dtype)
        for j in np.unique(views):
            sel = views == j
            lo, hi = flat[sel].min(), flat[sel].max() + 1
            with read_errors(self.path, self._dataset):
                part = self._ds[block[j] + lo:block[j] + hi]
            out[sel] = part[flat[sel] - lo]
        return out


def open_targets(path: str | Path, max_ram_bytes: int = 0) -> "DepthTargets | FeatureTargets | None":
    """The reader of a targets file chosen by its schema; None for an HDF5 file that is not one (a cache)."""
    try:
        with h5py.File(path, "r") as f:
            schema = f.attrs.get("schema")
    except OSError:
        raise InputError("not a readable HDF5 file", path=path) from None
    reader = {DEPTH_SCHEMA: DepthTargets, FEATURES_SCHEMA: FeatureTargets}.get(_s(schema) if schema is not None else None)
    return reader(path, max_ram_bytes=max_ram_bytes) if reader is not None else None


class DepthTargets(_TargetFile):
    """Pseudo-depth file reader (``handcli.targets.depth/1``): z-depth in metres, 0 = no hand."""

    schema = DEPTH_SCHEMA
    kind = "depth"
    _dataset = "depth"

    def view(self, j: int) -> np.ndarray:
        """(H, W) float32 z-depth map of view j."""
        H, W, off = int(self.height[j]), int(self.width[j]), int(self.offset[j])
        src = self._ram if self._ram is not None else self._ds
        with read_errors(self.path, self._dataset):
            return np.asarray(src[off:off + H * W], dtype=np.float32).reshape(H, W)

    def sample(self, views, pix) -> np.ndarray:
        """z-depth at pixels: views int or (N,), pix (N, 2) (u, v) (rounded to the nearest centre) -> (N,) float32.

        Pixels outside the image are clamped to the border.
        """
        p = pixel_index(pix).reshape(-1, 2)
        views = np.broadcast_to(np.asarray(views, dtype=np.int64), (len(p),))
        self._check_views(views)
        u = np.clip(p[:, 0], 0, self.width[views] - 1)
        v = np.clip(p[:, 1], 0, self.height[views] - 1)
        return self._gather(views, v * self.width[views] + u, self.offset).astype(np.float32)


class FeatureTargets(_TargetFile):
    """Teacher-feature file reader (``handcli.targets.features/1``)."""

    schema = FEATURES_SCHEMA
    kind = "feature"
    _dataset = "features"

    _extra = ("views/grid_h", "views/grid_w")

    def _view_rows(self) -> np.ndarray:
        with read_errors(self.path, "views/grid_h"):
            self.grid_h = self.f["views/grid_h"][()].astype(np.int64)
            self.grid_w = self.f["views/grid_w"][()].astype(np.int64)
        if self.grid_h.shape != self.offset.shape or self.grid_w.shape != self.offset.shape:
            raise InputError("views/grid_h and grid_w differ in length from views/offset", path=self.path,
                             field="views/grid_h")
        if "stride" not in self.f.attrs or int(self.f.attrs["stride"]) < 1:
            raise InputError("missing or non-positive stride", path=self.path, field="stride")
        self.stride = int(self.f.attrs["stride"])
        if self._ds.ndim != 2:
            raise InputError(f"shape {self._ds.shape}, expected (cells, D)", path=self.path, field="features")
        self.dim = int(self._ds.shape[1])
        return self.grid_h * self.grid_w

    def view(self, j: int) -> np.ndarray:
        """(grid_h, grid_w, D) float32 feature map of view j at the teacher's stride."""
        h, w, off = int(self.grid_h[j]), int(self.grid_w[j]), int(self.offset[j])
        src = self._ram if self._ram is not None else self._ds
        with read_errors(self.path, self._dataset):
            return np.asarray(src[off:off + h * w], dtype=np.float32).reshape(h, w, self.dim)

    def sample(self, views, pix) -> np.ndarray:
        """Target features of rays: views int or (N,), pix (N, 2) (u, v) at cache resolution -> (N, D) float32.

        Nearest neighbour: the cell holding the pixel (`pixel_cells`), as the official nearest upsampling.
        """
        pix = np.asarray(pix).reshape(-1, 2)
        views = np.broadcast_to(np.asarray(views, dtype=np.int64), (len(pix),))
        self._check_views(views)
        rows, cols = pixel_cells(pix, self.stride, self.grid_h[views], self.grid_w[views])
        return self._gather(views, rows * self.grid_w[views] + cols, self.offset).astype(np.float32)


def sample_features(store: FeatureTargets | str | Path, view_index, pix) -> np.ndarray:
    """(N, D) float32 teacher features of pixels pix (N, 2) (u, v) of view(s) view_index (int or (N,)).

    `store` is an open `FeatureTargets` or a path to a features file.
    """
    if isinstance(store, FeatureTargets):
        return store.sample(view_index, pix)
    with FeatureTargets(store) as s:
        return s.sample(view_index, pix)
