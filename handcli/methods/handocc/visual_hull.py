"""The training silhouettes' visual hull as a check of HandOcc's occupancy labels (``label_hull``).

A point inside the hand projects onto the hand in every camera that sees it. A labelled point that the
annotated mesh calls inside but that falls on background in some training view contradicts the images: on
real data the mesh fit is off there (docs/methods/handocc.md#visual-hull-check-of-the-labels-label_hull).
Only the training views of the frame are used, so nothing is learned from a held-out camera.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from handcli.camera import world_to_pixels


def dilated_silhouette(label: Tensor, radius: int) -> Tensor:
    """(H, W) bool: a hand label (any hand, label > 0) within ``radius`` pixels (square window) of each pixel.

    label: (H, W) uint8 hand labels of one view. ``radius`` absorbs the silhouette's rasterisation (a point on
    the surface may project just past the pixel centres labelled hand).
    """
    fg = (label > 0).float()[None, None]
    if radius > 0:
        fg = F.max_pool2d(fg, 2 * radius + 1, stride=1, padding=radius)
    return fg[0, 0] > 0


def _hand_at(sil: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """(N,) bool: pixel (u, v) of the silhouette (H, W) is hand; a pixel outside the image is background."""
    H, W = sil.shape
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    return inside & sil[v.clamp(0, H - 1), u.clamp(0, W - 1)]


def in_visual_hull(points: Tensor, K: Tensor, w2c: Tensor, silhouettes: list[Tensor]) -> Tensor:
    """(N,) bool: True where no view puts the point on background.

    points: (N, 3) world; K: (M, 3, 3); w2c: (M, 4, 4); silhouettes: M (H, W) bool images (``dilated_silhouette``).
    A point is on the silhouette when any of the four pixel centres around its projection is (integer
    coordinates are pixel centres, handcli.camera): a pixel labelled background only because its centre missed
    the hand's edge does not carve. A view says nothing about a point behind its camera or outside its image.
    """
    keep = torch.ones(len(points), dtype=torch.bool, device=points.device)
    for m, sil in enumerate(silhouettes):
        uv, z = world_to_pixels(points, K[m].to(points), w2c[m].to(points), min_depth=1e-6)
        H, W = sil.shape
        u0, v0 = uv[:, 0].floor().long(), uv[:, 1].floor().long()
        seen = (z > 0) & (u0 >= -1) & (u0 < W) & (v0 >= -1) & (v0 < H)
        if seen.any():
            s, u, v = sil.to(points.device), u0[seen], v0[seen]
            keep[seen] &= _hand_at(s, u, v) | _hand_at(s, u + 1, v) | _hand_at(s, u, v + 1) | _hand_at(s, u + 1, v + 1)
    return keep


MISS_RADIUS_PX = 1  # the mesh silhouette's dilation in mesh_misses (4-neighbour steps): masks refined against the
# image (preprocess --refine-masks) follow its anti-aliased edge, up to a pixel past the mesh's rasterisation (an
# unrefined mask is that rasterisation and misses nothing). Hand pixels missed by the labels' own mesh on the bench's
# refined caches: ideal 2.2-2.6 % without it, 0.00 % with it; a hand outside the model (thicker, exact annotations)
# 7.6-7.9 % / 1.2-1.5 % (a 3 x 3 square instead: 0.2-0.4 %; docs/methods/handocc.md, anneal)


def mesh_misses(meshes: list[tuple[np.ndarray, np.ndarray]], K: np.ndarray, w2c: np.ndarray, hand: Tensor,
                radius: int = MISS_RADIUS_PX) -> tuple[int, int]:
    """Hand pixels of one view that the meshes do not explain: (pixels of ``hand`` that the meshes' silhouette,
    grown by ``radius`` 4-neighbour steps, leaves uncovered, pixels of ``hand``).

    meshes: [(vertices (V, 3) world, faces (F, 3) int)], e.g. the posed hand models the occupancy labels are drawn
    around; K (3, 3); w2c (4, 4); hand (H, W) bool: the pixels labelled as those hands. Where the labels' mesh is
    thinner than the hand the images show (a hand outside the model's shape space, a fit off the hand), its
    silhouette misses a rim of the hand: the labels call that hand outside, which the visual-hull check cannot see.
    """
    from scipy import ndimage

    from handcli.render.raster import rasterize_meshes

    w2c = np.asarray(w2c, dtype=np.float64)
    cam = [(np.asarray(v, np.float64) @ w2c[:3, :3].T + w2c[:3, 3], np.asarray(f)) for v, f in meshes]
    H, W = hand.shape
    sil = np.asarray(rasterize_meshes(cam, np.asarray(K, np.float64), H, W).mask, dtype=bool)
    if radius > 0:  # scipy's default structure is the 4-neighbour cross (iterations < 1 would mean "until stable")
        sil = ndimage.binary_dilation(sil, iterations=radius)
    hand = hand.cpu().numpy()
    return int((hand & ~sil).sum()), int(hand.sum())


class FrameSilhouettes:
    """The dilated silhouettes of the resident training views on ``device``, built once per ViewSet."""

    def __init__(self, radius: int, device="cpu"):
        self.radius, self.device = radius, device
        self._of = None
        self._sil: dict[int, Tensor] = {}

    def of_frame(self, views, frame: int) -> tuple[Tensor, Tensor, list[Tensor]]:
        """K (M, 3, 3), w2c (M, 4, 4) and dilated silhouettes of ``frame``'s resident views."""
        if views is not self._of:
            self._of, self._sil = views, {}
        local = views.positions_of_frame(frame)
        for lv in local.tolist():
            if lv not in self._sil:
                self._sil[lv] = dilated_silhouette(views.label[lv], self.radius).to(self.device)
        idx = torch.as_tensor(local, dtype=torch.long)
        return (views.K[idx].to(self.device), views.w2c[idx].to(self.device),
                [self._sil[lv] for lv in local.tolist()])
