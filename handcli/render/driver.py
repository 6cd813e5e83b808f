"""The one render driver: a whole camera image from a method's per-ray renderer.

Every method renders an image the same way (nerfacc / nerfstudio style): the pixel grid's camera rays are
tested against the frame's boxes, the rays that hit one are rendered in chunks by the method's
``render_rays`` and written in place into preallocated buffers, and the per-ray depth (a distance along the
unit ray, not normalised by opacity) becomes camera z-depth where the opacity reaches
:data:`OPACITY_THRESHOLD`. Pixels whose rays miss every box stay empty (black, depth and opacity 0).

``render_rays(origins (R, 3), dirs (R, 3), outputs: frozenset[str], **extra) -> dict`` returns, for each
name in ``outputs``, a tensor of R rows (rgb (R, 3), depth (R,), opacity (R,), semantic (R,) uint8 cache
labels, feature (R, D)...), plus plain numbers (evaluation counts) that the driver sums over chunks.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from handcli.render.bounds import ray_aabb
from handcli.render.rays import camera_rays, pixel_grid, pixel_radii
from handcli.render.volume import ray_distance_to_z

OPACITY_THRESHOLD = 0.5  # a pixel shows a surface (depth, semantic label, silhouette) where opacity >= this

# (trailing shape, dtype) of an output no ray produced (an image where every ray misses the boxes)
EMPTY_OUTPUTS = {"rgb": ((3,), torch.float32), "depth": ((), torch.float32), "opacity": ((), torch.float32),
                 "semantic": ((), torch.uint8)}


def render_image(render_rays: Callable[..., dict], boxes: list[tuple[Tensor, Tensor]], K, world_to_cam,
                 height: int, width: int, outputs: frozenset[str], *, device, chunk: int,
                 radii: bool = False, counts: tuple[str, ...] = ("evaluated",),
                 empty: dict | None = None) -> dict:
    """Render an (H, W) image through ``render_rays`` (see the module docstring).

    boxes: [(box_min (3,), box_max (3,))] world boxes of what the frame holds (rays missing all stay empty);
    K (3, 3), world_to_cam (4, 4): the camera (OpenCV convention); outputs: the images wanted; chunk: rays per
    ``render_rays`` call; radii: also pass ``radii=`` (R,) the pixels' cone radii (Mip-NeRF); counts: names of
    the numbers ``render_rays`` returns (0 when no ray hits); empty: {output: (trailing shape, dtype)} of
    outputs not in :data:`EMPTY_OUTPUTS`.

    Returns rgb (H, W, 3) in [0, 1], depth (H, W) camera z in metres (0 where opacity < OPACITY_THRESHOLD),
    opacity (H, W) in [0, 1], the other asked outputs (H, W, ...), numpy; ``rays`` (rays that hit a box)
    and the summed counts.
    """
    Kt = torch.as_tensor(np.asarray(K), dtype=torch.float32, device=device)
    Wt = torch.as_tensor(np.asarray(world_to_cam), dtype=torch.float32, device=device)
    pix = pixel_grid(height, width, device=device)
    o, d = camera_rays(Kt, Wt, pix)
    hit = torch.zeros(len(pix), dtype=torch.bool, device=device)
    for lo, hi in boxes:
        hit |= ray_aabb(o, d, lo, hi)[2]
    idx = torch.nonzero(hit)[:, 0]
    n = len(idx)
    ask = frozenset(outputs | {"opacity"}) if "depth" in outputs else frozenset(outputs)
    buffers: dict[str, Tensor] = {}
    totals = dict.fromkeys(counts, 0)
    for s in range(0, n, chunk):
        sl = idx[s:s + chunk]
        extra = {"radii": pixel_radii(Kt, Wt, pix[sl])} if radii else {}
        out = render_rays(o[sl], d[sl], ask, **extra)
        for k, v in out.items():
            if k in ask:
                if k not in buffers:  # allocated once, written in place chunk by chunk
                    buffers[k] = v.new_zeros((n,) + tuple(v.shape[1:]))
                buffers[k][s:s + len(sl)] = v
            else:
                totals[k] = totals.get(k, 0) + v
    missing = ask - set(buffers) if n else frozenset()
    if missing:
        raise RuntimeError(f"render_rays did not return {sorted(missing)}")
    if "depth" in buffers:
        op = buffers["opacity"]
        z = ray_distance_to_z(buffers["depth"] / op.clamp_min(1e-6), d[idx], Wt)
        buffers["depth"] = torch.where(op >= OPACITY_THRESHOLD, z, torch.zeros_like(z))
    specs = {**EMPTY_OUTPUTS, **(empty or {})}
    result = {}
    for k in outputs:
        if k in buffers:
            v = buffers[k]
            full = v.new_zeros((len(pix),) + tuple(v.shape[1:]))
        else:
            shape, dtype = specs[k]
            full = torch.zeros((len(pix),) + tuple(shape), dtype=dtype, device=device)
        if n and k in buffers:
            full[idx] = buffers[k]
        if k in ("rgb", "opacity"):
            full = full.clamp(0, 1)
        result[k] = full.reshape((height, width) + tuple(full.shape[1:])).cpu().numpy()
    return {**result, "rays": int(n), **totals}
