"""Training views in memory and foreground-focused ray batches (HandNeRF's pixel sampling).

A fraction of each batch's rays comes from foreground pixels (the hand masks), the rest uniformly
from the projected 3D box of the hands (``box2d``), as in HandNeRF (Guo): the image area outside the
box is black and never sampled. Ground truth colours have the background set to black.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from handcli.data.cache import Cache
from handcli.errors import InputError
from handcli.render.rays import camera_rays, pixel_radii


@dataclass
class ViewSet:
    """Views of a cache kept in memory (cache resolution)."""

    view_ids: np.ndarray  # (M,) cache view indices
    frames: np.ndarray  # (M,) cache frame indices
    rgb: list[Tensor]  # (H, W, 3) uint8 per view
    label: list[Tensor]  # (H, W) uint8
    K: Tensor  # (M, 3, 3)
    w2c: Tensor  # (M, 4, 4)
    box2d: Tensor  # (M, 4)
    depth: list[Tensor] | None  # (H, W) float32 z-depth per view, or None
    fg_index: Tensor  # (P,) flat foreground pixel indices of all views, concatenated
    fg_offset: Tensor  # (M,)
    fg_count: Tensor  # (M,)
    width: Tensor  # (M,)

    def positions_of_frame(self, frame: int) -> np.ndarray:
        """(k,) positions in this set of the views of cache frame ``frame``, in the set's order."""
        return np.nonzero(self.frames == frame)[0]


def select_views(cache: Cache, cameras: list[str] | None = None, frames: list[int] | None = None) -> np.ndarray:
    """Cache view indices whose camera name is in ``cameras`` and frame index in ``frames`` (None: all)."""
    vt = cache.view_table()
    names = np.array([c["name"] for c in cache.cameras()])
    keep = np.ones(len(vt["frame"]), bool)
    if cameras is not None:
        unknown = sorted(set(cameras) - set(names.tolist()))
        if unknown:
            raise InputError(f"cameras not in the cache: {unknown}", path=cache.path, field="cameras/name")
        keep &= np.isin(names[vt["camera"]], cameras)
    if frames is not None:
        keep &= np.isin(vt["frame"], frames)
    return np.nonzero(keep)[0]


def pick_eval_view(cache: Cache, frame: int, train_cameras: list[str] | None,
                   eval_cameras: list[str] | None) -> int | None:
    """A view of ``frame`` for evaluation snapshots: an eval camera, else one not used for training."""
    names = [c["name"] for c in cache.cameras()]
    vt = cache.view_table()
    in_frame = np.nonzero(vt["frame"] == frame)[0]
    cands = [j for j in in_frame
             if (eval_cameras and names[vt["camera"][j]] in eval_cameras)
             or (not eval_cameras and train_cameras and names[vt["camera"][j]] not in train_cameras)]
    if not cands:
        cands = list(in_frame)
    return int(cands[0]) if cands else None


def read_view(cache: Cache, j: int, depth=None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One view's rgb (H, W, 3) uint8, label (H, W) uint8, flat foreground indices (F,) and depth (H, W) or None."""
    v = cache.view(int(j))
    rgb = torch.from_numpy(np.ascontiguousarray(v["rgb"]))
    lab = torch.from_numpy(np.ascontiguousarray(v["label"]))
    fg = torch.nonzero(lab.reshape(-1) > 0)[:, 0]
    d = torch.from_numpy(np.asarray(depth.view(int(j)), dtype=np.float32)) if depth is not None else None
    return rgb, lab, fg, d


def assemble_views(cache: Cache, view_ids: np.ndarray, parts: list, with_depth: bool) -> ViewSet:
    """A ViewSet of ``view_ids`` (M,) from their ``read_view`` results (same order)."""
    cams = cache.cameras()
    vt = cache.view_table()
    view_ids = np.asarray(view_ids, dtype=np.int64)
    rgb = [p[0] for p in parts]
    fg = [p[2] for p in parts]
    counts = torch.tensor([len(f) for f in fg], dtype=torch.long)
    offsets = torch.cumsum(counts, 0) - counts
    ci = vt["camera"][view_ids]
    return ViewSet(
        view_ids=view_ids, frames=vt["frame"][view_ids], rgb=rgb, label=[p[1] for p in parts],
        K=torch.tensor(np.stack([cams[c]["K"] for c in ci]).reshape(-1, 3, 3), dtype=torch.float32),
        w2c=torch.tensor(np.stack([cams[c]["world_to_cam"] for c in ci]).reshape(-1, 4, 4), dtype=torch.float32),
        box2d=torch.tensor(vt["box2d"][view_ids], dtype=torch.float32),
        depth=[p[3] for p in parts] if with_depth else None,
        fg_index=torch.cat(fg) if fg else torch.zeros(0, dtype=torch.long), fg_offset=offsets, fg_count=counts,
        width=torch.tensor([r.shape[1] for r in rgb], dtype=torch.long),
    )


def load_views(cache: Cache, view_ids: np.ndarray, depth=None) -> ViewSet:
    """Load the given views' pixels, labels, cameras (and pseudo-depth maps) into memory."""
    return assemble_views(cache, view_ids, [read_view(cache, j, depth) for j in view_ids], depth is not None)


def sample_pixels(vs: ViewSet, local_views: Tensor, n: int, fg_fraction: float, gen: torch.Generator) -> Tensor:
    """(n, 2) float pixel coordinates (u, v) on the given local view indices (n,) of ``vs``."""
    n_fg = int(round(n * fg_fraction))
    u = torch.rand(n, generator=gen)
    pix = torch.zeros(n, 2)
    if n_fg:
        lv = local_views[:n_fg]
        cnt = vs.fg_count[lv]
        pick = (u[:n_fg] * cnt).long().clamp_max((cnt - 1).clamp_min(0))
        flat = vs.fg_index[(vs.fg_offset[lv] + pick).clamp_max(max(len(vs.fg_index) - 1, 0))]
        W = vs.width[lv]
        pix[:n_fg, 0] = (flat % W).float()
        pix[:n_fg, 1] = (flat // W).float()
        empty = cnt == 0  # no foreground in that view: fall back to the box
        local_box = torch.nonzero(empty)[:, 0]
    else:
        local_box = torch.zeros(0, dtype=torch.long)
    box_rows = torch.cat([local_box, torch.arange(n_fg, n)])
    if len(box_rows):
        b = vs.box2d[local_views[box_rows]]
        r = torch.rand(len(box_rows), 2, generator=gen)
        pix[box_rows, 0] = torch.floor(b[:, 0] + r[:, 0] * (b[:, 2] - b[:, 0] + 1)).clamp(b[:, 0], b[:, 2])
        pix[box_rows, 1] = torch.floor(b[:, 1] + r[:, 1] * (b[:, 3] - b[:, 1] + 1)).clamp(b[:, 1], b[:, 3])
    return pix


def gather(vs: ViewSet, local_views: Tensor, pix: Tensor, features=None) -> dict[str, Tensor]:
    """Rays and ground truth for pixels ``pix`` (n, 2) of local views (n,)."""
    K, w2c = vs.K[local_views], vs.w2c[local_views]
    origins, dirs = camera_rays(K, w2c, pix[:, None, :])
    radii = pixel_radii(K, w2c, pix[:, None, :])
    ui, vi = pix[:, 0].long(), pix[:, 1].long()
    rgb = torch.zeros(len(pix), 3)
    label = torch.zeros(len(pix), dtype=torch.long)
    z = torch.zeros(len(pix))
    for lv in torch.unique(local_views).tolist():  # a loop over views (few), not over rays
        sel = local_views == lv
        rgb[sel] = vs.rgb[lv][vi[sel], ui[sel]].float() / 255.0
        label[sel] = vs.label[lv][vi[sel], ui[sel]].long()
        if vs.depth is not None:
            z[sel] = vs.depth[lv][vi[sel], ui[sel]]
    rgb = rgb * (label > 0)[:, None]  # background to black (HandNeRF's mask_bkgd)
    out = {"origins": origins[:, 0], "dirs": dirs[:, 0], "radii": radii[:, 0], "rgb": rgb, "label": label,
           "pix": pix, "view": torch.as_tensor(vs.view_ids)[local_views], "w2c": w2c}
    if vs.depth is not None:
        out["z"] = z
    if features is not None:
        out["feat"] = torch.as_tensor(features.sample(out["view"].numpy(), pix.numpy()), dtype=torch.float32)
    return out


def sample_batch(vs: ViewSet, frame: int, n: int, fg_fraction: float, gen: torch.Generator, features=None
                 ) -> dict[str, Tensor]:
    """A batch of ``n`` rays from all loaded views of cache frame ``frame``."""
    local = torch.as_tensor(vs.positions_of_frame(frame), dtype=torch.long)
    if len(local) == 0:
        raise ValueError(f"no loaded views for frame {frame}")
    pick = local[torch.randint(len(local), (n,), generator=gen)]
    pix = sample_pixels(vs, pick, n, fg_fraction, gen)
    return gather(vs, pick, pix, features)
