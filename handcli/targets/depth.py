"""Pseudo-depth targets: z-depth maps rendered from the cache's posed hand meshes (HandNeRF, Guo §3.3).

Every view of the cache gets an (H, W) float32 map of the camera-frame **z** of the nearest mesh surface
seen through each pixel centre (metres; 0 where no hand). This is z-depth, the distance along the optical
axis, as the official code's pyrender pseudo-depth. A volume renderer's expected termination distance is a
distance along the (unit) ray, which is longer off the optical axis by the factor
``||K^-1 [u, v, 1]||``: compare like with like, either with `z_to_ray_distance` here or with
`handcli.render.volume.ray_distance_to_z` on the rendered side.

File layout (``handcli.targets.depth/1``), M views of the cache, P pixels of all views::

    /  attrs: schema, handcli_version, depth_kind = "z", units = "m", cache, cache_num_views, num_views,
              command, config (JSON), inputs (JSON)
    /views/offset, height, width   (M,)   the view's pixels are depth[offset : offset + height*width]
    /depth                         (P,) float32, row-major, 0 = no hand (gzip level 1 + shuffle)

The offsets equal the cache's ``views/offset``: pixel p of the cache's flat ``views/label`` buffer has its
depth at ``depth[p]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from handcli import __version__
from handcli.camera import transform
from handcli.data.cache import CHECKSUM, SIDES, Cache
from handcli.data.shards import open_cache
from handcli.errors import InputError
from handcli.outputs import atomic_path

SCHEMA = "handcli.targets.depth/1"
_CHUNK = 1 << 16


def mesh_depth(meshes_world: list[tuple[np.ndarray, np.ndarray]], world_to_cam: np.ndarray, K: np.ndarray,
               height: int, width: int) -> np.ndarray:
    """z-depth map of posed meshes seen by one camera.

    meshes_world: list of (verts (V, 3) world metres, faces (F, 3)); world_to_cam (4, 4); K (3, 3) at the
    output resolution (pixel-centre convention). Returns (height, width) float32: camera z of the nearest
    surface through each pixel centre, 0 where empty.
    """
    from handcli.render.raster import rasterize_meshes

    M = np.asarray(world_to_cam, dtype=np.float64)
    meshes = [(transform(M, np.asarray(v, dtype=np.float64)), f) for v, f in meshes_world]
    return rasterize_meshes(meshes, K, height, width).depth


def ray_length_scale(K: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """||K^-1 [u, v, 1]|| for pixel coordinates pix (..., 2) = (u, v): ray distance per unit of z-depth."""
    K = np.asarray(K, dtype=np.float64)
    pix = np.asarray(pix, dtype=np.float64)
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    y = (pix[..., 1] - cy) / fy
    x = (pix[..., 0] - cx - s * y) / fx
    return np.sqrt(x * x + y * y + 1.0)


def z_to_ray_distance(z, K, pix=None):
    """Convert z-depth into distance along the unit ray from the camera centre through each pixel.

    z: (H, W) or (N,) z-depth, a numpy array or a torch tensor (0 stays 0); K: (3, 3) intrinsics at the
    same resolution; pix: (N, 2) or (H, W, 2) continuous pixel coordinates (u, v) = (column, row), integer
    at pixel centres; when omitted z must be (H, W) and the full pixel grid is used.
    Returns z's shape and type: t = z * ||K^-1 [u, v, 1]|| (>= z; equal on the optical axis).
    The inverse on the rendering side is `handcli.render.volume.ray_distance_to_z`.
    """
    if pix is None:
        if z.ndim != 2:
            raise ValueError("pix is required unless z is an (H, W) map")
        H, W = z.shape
        v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
        pix = np.stack([u, v], axis=-1)
    elif hasattr(pix, "detach"):
        pix = pix.detach().cpu().numpy()
    scale = ray_length_scale(K, pix).reshape(tuple(z.shape))
    if isinstance(z, np.ndarray):
        return z * scale.astype(np.result_type(z.dtype, np.float32))
    import torch

    return z * torch.as_tensor(scale, dtype=z.dtype, device=z.device)


def frame_meshes(cache: Cache, frame: int, faces: dict[str, np.ndarray] | None = None
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The posed hand meshes of one cache frame, right hand first: list of (verts (V, 3) world m, faces (F, 3)).

    faces: the hand models' faces by side, when already read (else read from the cache).
    """
    rec = cache.frame(frame)
    meshes = []
    for side in SIDES:
        h = rec.hands.get(side)
        if h is None or h.vertices is None:
            continue
        f = faces.get(side) if faces is not None else None
        if f is None:
            model = cache.hand_model(side)
            if model is None:
                raise InputError(f"frame {frame} has a {side} hand but the cache has no hand model for it",
                                 path=cache.path, field=f"hand_model/{side}/faces")
            f = model["faces"]
        meshes.append((h.vertices, f))
    return meshes


def compute_depth(cache_path: str | Path, out: str | Path, *, force: bool = False, command: str = "") -> dict:
    """Render the z-depth map of every view of a cache into ``out`` (atomic write). Returns stats."""
    import time

    from handcli.progress import progress

    t0 = time.perf_counter()
    with open_cache(cache_path) as cache, atomic_path(out, force=force, inputs=[cache_path]) as tmp:
        vt = cache.view_table()
        cams = cache.cameras()
        M = cache.num_views
        total = int((vt["height"].astype(np.int64) * vt["width"]).sum())
        with h5py.File(tmp, "w") as f:
            a = f.attrs
            a["schema"] = SCHEMA
            a["handcli_version"] = __version__
            a["depth_kind"] = "z"
            a["depth_note"] = ("z-depth: camera-frame z (distance along the optical axis), metres, 0 = no hand; "
                               "ray distance = z * ||K^-1 [u, v, 1]||")
            a["units"] = "m"
            a["cache"] = str(Path(cache_path).resolve())
            a["cache_num_views"] = M
            a["num_views"] = M
            a["command"] = command
            a["config"] = json.dumps({"source": "posed hand meshes (frames/{side}/vertices)"})
            a["inputs"] = json.dumps({"cache": str(cache_path)})
            g = f.create_group("views")
            g.create_dataset("offset", data=vt["offset"].astype(np.int64), **CHECKSUM)
            g.create_dataset("height", data=vt["height"].astype(np.int32), **CHECKSUM)
            g.create_dataset("width", data=vt["width"].astype(np.int32), **CHECKSUM)
            ds = f.create_dataset("depth", (total,), dtype="f4", chunks=(min(_CHUNK, max(total, 1)),),
                                  compression="gzip", compression_opts=1, shuffle=True, **CHECKSUM)
            fg = 0
            faces = {s: m["faces"] for s in SIDES if (m := cache.hand_model(s)) is not None}
            with progress() as bar:
                task = bar.add_task("targets depth", total=M)
                for i in range(cache.num_frames):
                    views = np.flatnonzero(vt["frame"] == i)
                    if len(views) == 0:
                        continue
                    meshes = frame_meshes(cache, i, faces)
                    for j in views:
                        cam = cams[int(vt["camera"][j])]
                        H, W = int(vt["height"][j]), int(vt["width"][j])
                        d = mesh_depth(meshes, cam["world_to_cam"], cam["K"], H, W)
                        off = int(vt["offset"][j])
                        ds[off:off + H * W] = d.reshape(-1)
                        fg += int((d > 0).sum())
                        bar.advance(task)
    seconds = time.perf_counter() - t0
    return {"views": M, "foreground_pixels": fg, "seconds": seconds, "seconds_per_view": seconds / max(M, 1)}
