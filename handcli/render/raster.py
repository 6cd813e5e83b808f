"""Vectorised CPU triangle rasterizer (numpy): depth, face ids, barycentrics and mesh ids per pixel.

Conventions (the same as `handcli.render.rays`):
- camera frame is OpenCV (x right, y down, z forward); `K` is a (3, 3) pinhole matrix with last row [0, 0, 1];
- pixel (col=i, row=j) has its centre at the continuous image coordinate (i, j): a camera point (x, y, z)
  lands at u = fx*x/z + s*y/z + cx, v = fy*y/z + cy, and integer (u, v) are pixel centres. No half-pixel shift.
- a pixel is covered by a triangle when its centre lies inside the projected triangle (boundary included,
  with a 1e-6 px tolerance). Depth is the camera-frame z of the surface point seen through the pixel centre
  (not the distance along the ray); the nearest surface wins. No back-face culling.
- faces with any vertex at z < `near` are dropped whole (no clipping).

Method (scanline, fully vectorised, no Python loop per face or pixel): each face is split at its middle
corner (in y) into two spans of image rows, each bounded by one left and one right edge; every row's
covered column interval comes from the two edges' crossings with the row, computed by a formula that is
symmetric in an edge's end points, so faces sharing an edge get bit-identical crossings and no pixel centre
between them is lost (no cracks). Rows are expanded into pixels, 1/z (affine in screen space) is evaluated
per pixel and a single `np.maximum.at` over int64 keys that pack 1/z and the face index keeps the nearest
surface. Barycentrics are computed once per covered pixel, for the winning face only. Work is chunked so
that memory stays bounded (faces covering the whole image are fine), and the large temporaries live in
per-thread scratch arrays reused across calls (fresh multi-MB arrays cost page faults on every call).
Cost: O(F) per-face setup + O(rows) + O(candidate pixels), where candidates are the pixels of all faces,
front and back (about twice the silhouette area for a closed mesh).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from handcli.camera import project

# A pixel centre within this many pixels of a triangle edge counts as inside (covers float rounding at
# vertices shared by fans of triangles; double coverage is harmless, the z-test keeps one).
_TOL = 1e-6
# Bounds on the work per step: image rows per span chunk, candidate pixels per row chunk, covered pixels
# per barycentric chunk.
_MAX_ROWS = 1 << 16
_MAX_PIXELS = 1 << 17
_MAX_RESOLVE = 1 << 16
# Scratch arrays larger than this (elements) are not kept between calls.
_MAX_SCRATCH = 1 << 21


@dataclass
class Raster:
    """Per-pixel rasterization result of an (H, W) image.

    depth: (H, W) float32 camera-frame z of the visible surface (input units), 0 where empty.
    face_id: (H, W) int32 index into the (concatenated) faces, -1 where empty.
    bary: (H, W, 3) float32 perspective-correct barycentrics of the pixel centre in `face_id`, 0 where empty.
    mesh_id: (H, W) int16 index of the input mesh that owns `face_id`, -1 where empty.
    """

    depth: np.ndarray
    face_id: np.ndarray
    bary: np.ndarray
    mesh_id: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: pixels covered by some face."""
        return self.face_id >= 0


def rasterize(verts_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, height: int, width: int, *,
              near: float = 1e-3) -> Raster:
    """Rasterize one triangle mesh.

    verts_cam: (V, 3) camera-frame vertices; faces: (F, 3) int vertex indices; K: (3, 3).
    Returns a `Raster` of shape (height, width); `mesh_id` is 0 on covered pixels.
    """
    return rasterize_meshes([(verts_cam, faces)], K, height, width, near=near)


def rasterize_meshes(meshes: list[tuple[np.ndarray, np.ndarray]], K: np.ndarray, height: int, width: int,
                     *, near: float = 1e-3) -> Raster:
    """Rasterize several meshes into one z-buffer.

    meshes: list of (verts_cam (V_k, 3), faces (F_k, 3)). `face_id` indexes the concatenation of all faces
    (faces of mesh k offset by the number of faces of meshes 0..k-1); `mesh_id` says which mesh won the pixel.
    """
    verts, faces, owner = _concatenate(meshes)
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.array_equal(K[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"K must be a (3, 3) pinhole matrix with last row [0, 0, 1], got {K.tolist()}")
    H, W = int(height), int(width)
    out = Raster(depth=np.zeros((H, W), np.float32), face_id=np.full((H, W), -1, np.int32),
                 bary=np.zeros((H, W, 3), np.float32), mesh_id=np.full((H, W), -1, np.int16))
    if len(faces) == 0 or H <= 0 or W <= 0:
        return out
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):   # from faces that get no rows
        setup = _setup_faces(verts, faces, K, H, W, near)
    if setup is None:
        return out
    spans, live, Q = setup

    # Per pixel: 1/z with its low mantissa bits replaced by the face index, viewed as int64. Positive floats
    # order like their bit patterns, so one np.maximum.at keeps the nearest face (ties within the kept
    # 52 - bits mantissa bits, ~1e-10 relative, go to the higher face index); 0 means empty.
    bits = max(int(len(faces) - 1).bit_length(), 1)
    keybuf = _SCRATCH.get("keybuf", H * W, np.int64)
    keybuf.fill(0)
    row_end = np.cumsum(spans[1][live]).astype(np.int64)
    s0 = 0
    while s0 < len(row_end):
        # Spans live[s0:s1] hold at most _MAX_ROWS rows (but at least one span).
        s1 = max(int(np.searchsorted(row_end, (row_end[s0 - 1] if s0 else 0) + _MAX_ROWS, "right")), s0 + 1)
        _scan(spans, live[s0:s1], W, bits, keybuf)
        s0 = s1

    pix = np.flatnonzero(keybuf != 0)
    for p0 in range(0, len(pix), _MAX_RESOLVE):
        _resolve(pix[p0:p0 + _MAX_RESOLVE], keybuf, bits, Q, W, owner, out)
    return out


def interpolate(raster: Raster, vertex_attr: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Barycentric interpolation of per-vertex attributes over each pixel's winning face.

    vertex_attr: (V, C) (or (V,)); faces: the (F, 3) faces `raster.face_id` indexes (for `rasterize_meshes`,
    the concatenated faces with vertex indices into the concatenated vertices). Returns (H, W, C)
    (or (H, W)), 0 where empty; perspective-correct because `raster.bary` is.
    """
    attr = np.asarray(vertex_attr)
    squeeze = attr.ndim == 1
    if squeeze:
        attr = attr[:, None]
    H, W = raster.face_id.shape
    dtype = np.result_type(attr.dtype, np.float32)
    out = np.zeros((H * W, attr.shape[1]), dtype)
    pix = np.flatnonzero(raster.face_id.reshape(-1) >= 0)
    if len(pix):
        tri = np.asarray(faces)[raster.face_id.reshape(-1)[pix]]           # (n, 3)
        b = raster.bary.reshape(-1, 3)[pix].astype(dtype)                   # (n, 3)
        out[pix] = np.einsum("nk,nkc->nc", b, attr[tri].astype(dtype))
    out = out.reshape(H, W, -1)
    return out[..., 0] if squeeze else out


class _Scratch(threading.local):
    """Per-thread scratch arrays reused across calls.

    Fresh multi-megabyte temporaries are returned to the OS when freed and page-faulted back on the next
    call, which costs more than the arithmetic on them. The work chunks bound most sizes; arrays above
    _MAX_SCRATCH elements (huge meshes or images) are not kept.
    """

    def __init__(self) -> None:
        self.bufs: dict[str, np.ndarray] = {}
        self.ramp = np.arange(0, dtype=np.int64)

    def get(self, name: str, n: int, dtype=np.float64) -> np.ndarray:
        """A scratch array of n elements (contents undefined), valid until the next get of `name`."""
        buf = self.bufs.get(name)
        if buf is None or len(buf) < n:
            buf = np.empty(max(n, 1024), dtype)
            if n > _MAX_SCRATCH:
                return buf[:n]
            self.bufs[name] = buf
        return buf[:n]

    def arange(self, n: int) -> np.ndarray:
        """np.arange(n) (int64), read-only by convention."""
        if len(self.ramp) < n:
            self.ramp = np.arange(max(n, 2 * len(self.ramp)), dtype=np.int64)
        return self.ramp[:n]


_SCRATCH = _Scratch()


def _take(a: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[:] = a[idx] without a temporary (np.take buffers `out` in its default mode); idx must be valid
    and must not share memory with out."""
    return np.take(a, idx, out=out, mode="clip")


def _segment_ids(starts: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Segment index of every element: out (N,) int64, for strictly increasing starts (S,) with starts[0] = 0."""
    out.fill(0)
    out[starts[1:]] = 1
    return np.cumsum(out, out=out)


def _concatenate(meshes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate meshes: verts (V, 3) float64, faces (F, 3) int64 (offset), face -> mesh index (F,) int16."""
    verts, faces, owner = [], [], []
    nv = 0
    for k, (v, f) in enumerate(meshes):
        v = np.asarray(v, dtype=np.float64)
        f = np.asarray(f, dtype=np.int64)
        if f.size == 0:
            f = f.reshape(0, 3)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"mesh {k}: need verts (V, 3) and faces (F, 3), got {v.shape} and {f.shape}")
        if len(f) and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"mesh {k}: face indices out of range for {len(v)} vertices")
        verts.append(v)
        faces.append(f + nv if nv else f)
        owner.append(np.full(len(f), k, np.int16))
        nv += len(v)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.int16)
    if len(verts) == 1:
        return verts[0], faces[0], owner[0]
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(owner)


def _setup_faces(verts, faces, K, H, W, near):
    """Project, cull and precompute per-face data.

    Returns None when no face can cover a pixel centre, else
    spans (11, 2F) float64, column f the top half of face f and column F + f its bottom half: first image
    row, number of rows, left edge (mx, my, slope), right edge (mx, my, slope), 1/z plane (gamma, alpha,
    beta) with 1/z = gamma + alpha*x + beta*y;
    live (S,) int64 the columns of `spans` with at least one row;
    Q (9, F) per face: corner 0 (x0, y0), screen barycentric gradients (dl1/dx, dl1/dy, dl2/dx, dl2/dy),
    1/z at the three corners.
    """
    z = verts[:, 2]
    front = z >= near
    if front.all():
        uv = project(verts, K)
        keep = True
    else:                                                 # behind-camera corners get dummy projections
        uv = project(np.where(front[:, None], verts, 1.0), K)
        keep = front[faces].all(axis=1)
    u, v = np.ascontiguousarray(uv[:, 0]), np.ascontiguousarray(uv[:, 1])
    tri = np.ascontiguousarray(faces.T)                   # (3, F)
    fx, fy = u[tri], v[tri]                               # (3, F) corner x, y
    e1x, e1y = fx[1] - fx[0], fy[1] - fy[0]
    e2x, e2y = fx[2] - fx[0], fy[2] - fy[0]
    area2 = e1x * e2y - e1y * e2x
    xmin = np.minimum(np.minimum(fx[0], fx[1]), fx[2])
    xmax = np.maximum(np.maximum(fx[0], fx[1]), fx[2])
    # Faces left out get no rows below: off-screen, degenerate, or behind the near plane.
    keep &= (xmin - _TOL <= W - 1) & (xmax + _TOL >= 0) & (area2 != 0) & np.isfinite(area2)
    F = len(faces)
    fw = 1.0 / np.where(front, z, 1.0)[tri]               # (3, F) 1/z per corner
    inv_a = 1.0 / area2
    Q = _SCRATCH.get("Q", 9 * F).reshape(9, F)
    Q[0], Q[1], Q[6:9] = fx[0], fy[0], fw
    np.multiply(e2y, inv_a, out=Q[2])
    np.multiply(e2x, -inv_a, out=Q[3])
    np.multiply(e1y, -inv_a, out=Q[4])
    np.multiply(e1x, inv_a, out=Q[5])

    # Spans: corners sorted by y are a (top), b (middle), c (bottom); the long edge a-c bounds every row on
    # one side, a-b the rows y <= yb on the other side (top half), b-c the rows y > yb (bottom half).
    spans = _SCRATCH.get("spans", 22 * F).reshape(11, 2 * F)
    xa, ya, xb, yb = _order_by_y(fx[0], fy[0], fx[1], fy[1])    # a 3-element sorting network
    xb, yb, xc, yc = _order_by_y(xb, yb, fx[2], fy[2])
    xa, ya, xb, yb = _order_by_y(xa, ya, xb, yb)
    # b right of the long edge <=> the short edges bound rows on the right.
    short_right = ((xb - xa) * (yc - ya) - (xc - xa) * (yb - ya)) > 0
    short_left = ~short_right
    row_a = np.maximum(np.ceil(ya - _TOL), 0)
    row_b = np.clip(np.floor(yb), -1, H - 1)
    row_c = np.minimum(np.floor(yc + _TOL), H - 1)
    spans[0, :F] = row_a
    spans[1, :F] = row_b - row_a + 1
    spans[0, F:] = np.maximum(row_b + 1, row_a)
    spans[1, F:] = row_c - spans[0, F:] + 1
    spans[1, :F] *= keep
    spans[1, F:] *= keep
    long_edge = _edge_line(xa, ya, xc, yc, ~short_right)
    for half, short in ((slice(0, F), _edge_line(xa, ya, xb, yb, short_right)),
                        (slice(F, 2 * F), _edge_line(xb, yb, xc, yc, short_right))):
        spans[2:5, half] = np.where(short_left, short, long_edge)
        spans[5:8, half] = np.where(short_left, long_edge, short)
    # 1/z is affine in screen space (perspective projection maps planes to planes).
    dw1, dw2 = fw[1] - fw[0], fw[2] - fw[0]
    alpha = (dw1 * e2y - dw2 * e1y) * inv_a
    beta = (dw2 * e1x - dw1 * e2x) * inv_a
    spans[8, :F] = fw[0] - alpha * fx[0] - beta * fy[0]
    spans[9, :F] = alpha
    spans[10, :F] = beta
    spans[8:11, F:] = spans[8:11, :F]
    live = np.flatnonzero(spans[1] > 0)
    if len(live) == 0:
        return None
    return spans, live, Q


def _order_by_y(x0, y0, x1, y1):
    """The two points (x0, y0), (x1, y1) (arrays (F,)) ordered by y: (upper x, upper y, lower x, lower y)."""
    swap = y1 < y0
    return np.where(swap, x1, x0), np.where(swap, y1, y0), np.where(swap, x0, x1), np.where(swap, y0, y1)


def _edge_line(x0, y0, x1, y1, right):
    """(3, F) edge lines (mx, my, slope): x = mx + slope*(y - my) on the edge; right (F,) bool: the edge
    bounds rows on the right.

    Symmetric in the end points (swapping them gives bit-identical values), so faces sharing an edge
    compute bit-identical row crossings and no pixel centre on the boundary between them is lost.
    A (near-)horizontal edge bounds only the row it lies on, where it covers its whole x extent; it becomes
    the vertical line through its right- or leftmost end (extrapolating its slope would be ill-conditioned).
    """
    dy = y1 - y0
    flat = np.abs(dy) <= _TOL
    mx = np.where(flat, np.where(right, np.maximum(x0, x1), np.minimum(x0, x1)), (x0 + x1) * 0.5)
    slope = np.where(flat, 0.0, (x1 - x0) / np.where(flat, 1.0, dy))
    return np.stack([mx, (y0 + y1) * 0.5, slope])


def _scan(spans: np.ndarray, live: np.ndarray, W: int, bits: int, keybuf: np.ndarray) -> None:
    """Rasterize the columns `live` (S,) of spans (11, 2F) (see `_setup_faces`) into keybuf (H*W,) int64."""
    S = _SCRATCH
    F = spans.shape[1] // 2
    nrows = spans[1][live].astype(np.int64)
    first = np.cumsum(nrows) - nrows
    R = int(first[-1] + nrows[-1])
    seg = _segment_ids(first, S.get("seg", R, np.int64))  # index into live of each row
    iy = _take(first, seg, S.get("iy", R, np.int64))
    np.subtract(S.arange(R), iy, out=iy)                  # row index within its span
    sid = _take(live, seg, S.get("sid", R, np.int64))     # span (column of spans) of each row
    y = S.get("y", R)
    tmp = S.get("tmp", R)
    _take(spans[0], sid, y)
    y += iy

    def crossing(j: int, out: np.ndarray) -> np.ndarray:  # mx + slope*(y - my) of the edge at spans[j:j+3]
        _take(spans[j + 1], sid, tmp)
        np.subtract(y, tmp, out=out)
        _take(spans[j + 2], sid, tmp)
        out *= tmp
        _take(spans[j], sid, tmp)
        out += tmp
        return out

    xlo = crossing(2, S.get("xlo", R))
    xlo -= _TOL
    np.ceil(xlo, out=xlo)
    np.maximum(xlo, 0.0, out=xlo)
    cnt = crossing(5, S.get("cnt", R))
    cnt += _TOL
    np.floor(cnt, out=cnt)
    np.minimum(cnt, W - 1.0, out=cnt)
    cnt -= xlo
    cnt += 1.0                                            # pixels in the row (<= 0 or NaN: none)
    rows = np.flatnonzero(cnt > 0)
    if len(rows) == 0:
        return
    if len(rows) < R:
        sid, y, xlo, cnt = sid[rows], y[rows], xlo[rows], cnt[rows]
    n = cnt.astype(np.int64)
    alpha = spans[9][sid]
    c = spans[8][sid] + alpha * xlo + spans[10][sid] * y  # 1/z at the row's first pixel
    base = (y * W + xlo).astype(np.int64)                 # flat index of the row's first pixel
    face = np.where(sid >= F, sid - F, sid)
    end = np.cumsum(n)
    clear = ~np.int64((1 << bits) - 1)
    r0 = 0
    while r0 < len(n):
        # Rows r0..r1-1 hold at most _MAX_PIXELS pixels (but at least one row).
        r1 = max(int(np.searchsorted(end, end[r0] - n[r0] + _MAX_PIXELS, "right")), r0 + 1)
        start = end[r0:r1] - n[r0:r1]
        start -= start[0]
        N = int(start[-1] + n[r1 - 1])
        ramp = S.arange(N)
        rid = _segment_ids(start, S.get("rid", N, np.int64))   # row (within the chunk) of each pixel
        k = S.get("k", N, np.int64)
        _take(start, rid, k)
        np.subtract(ramp, k, out=k)                       # column offset within the row
        pix = S.get("pix", N, np.int64)
        _take(base[r0:r1], rid, pix)
        pix += k
        inv = S.get("inv", N)
        _take(alpha[r0:r1], rid, inv)
        inv *= k
        tmp = S.get("tmp", N)
        _take(c[r0:r1], rid, tmp)
        inv += tmp                                        # 1/z at the pixel centre
        key = inv.view(np.int64)
        key &= clear
        _take(face[r0:r1], rid, k)
        key |= k
        np.maximum.at(keybuf, pix, key)
        r0 = r1


def _resolve(pix: np.ndarray, keybuf: np.ndarray, bits: int, Q: np.ndarray, W: int, owner: np.ndarray,
             out: Raster) -> None:
    """Write depth, face, mesh and perspective-correct barycentrics of covered pixels pix (n,) into out."""
    S = _SCRATCH
    n = len(pix)
    wf = S.get("wf", n, np.int64)
    _take(keybuf, pix, wf)
    wf &= (1 << bits) - 1                                 # winning face
    py, px = S.get("py", n), S.get("px", n)
    np.divide(pix, W, out=py)
    np.floor(py, out=py)                                  # exact: pix < 2**53
    np.multiply(py, -W, out=px)
    px += pix
    tmp = S.get("rtmp", n)

    def gather(j: int) -> np.ndarray:
        return _take(Q[j], wf, tmp)

    dx, dy = S.get("dx", n), S.get("dy", n)
    np.subtract(px, gather(0), out=dx)
    np.subtract(py, gather(1), out=dy)
    l0, l1, l2 = S.get("l0", n), S.get("l1", n), S.get("l2", n)
    np.multiply(gather(2), dx, out=l1)                    # screen-space barycentrics
    l1 += np.multiply(gather(3), dy, out=tmp)
    np.multiply(gather(4), dx, out=l2)
    l2 += np.multiply(gather(5), dy, out=tmp)
    np.add(l1, l2, out=l0)
    np.subtract(1.0, l0, out=l0)
    for i, lam in enumerate((l0, l1, l2)):
        np.maximum(lam, 0.0, out=lam)                     # the edge tolerance / rounding can give -1e-9
        lam *= gather(6 + i)                              # weight by 1/z_i: perspective correction
    z = np.add(l0, l1, out=dx)
    z += l2
    np.divide(1.0, z, out=z)                              # 1 / sum(l_i / z_i): camera z
    bary = S.get("bary", 3 * n, np.float32).reshape(n, 3)
    for i, lam in enumerate((l0, l1, l2)):
        np.multiply(lam, z, out=bary[:, i])
    out.depth.reshape(-1)[pix] = z
    out.face_id.reshape(-1)[pix] = wf
    out.mesh_id.reshape(-1)[pix] = owner[wf]
    rec = np.dtype((np.void, 12))                         # one 12-byte item per pixel: a faster scatter
    out.bary.reshape(-1, 3).view(rec)[:, 0][pix] = bary.view(rec)[:, 0]
