"""Camera-calibrated PSNR: the colour response of an evaluation camera fitted on its *other* views.

A held-out camera's gain and white balance are not in the training images, so no renderer can know them;
on real captures (and ``synth --profile realistic``) they cost PSNR that says nothing about the model.
NeRF-W (Martin-Brualla et al., CVPR 2021) scores its test images after fitting their appearance code on
the left half of each image; here a camera's colour response is a per-channel gain ``k`` (C,) (exposure
and white balance, von Kries), fitted by least squares on all *other* evaluated views of the same camera
(other frames) and applied to the view being scored (leave one view out), so no scored pixel takes part in
its own fit. A camera with a single evaluated view gets no calibrated score.

Everything works on per-view sufficient statistics (sums over pixels per channel), so the eval stage keeps
no images:  S_pg = sum p*g, S_pp = sum p^2, S_gg = sum g^2, n = pixels.  The gain that minimises
sum (k p - g)^2 over views V is k = sum_V S_pg / sum_V S_pp, and the error of view v under k is
k^2 S_pp - 2 k S_pg + S_gg (exact; the calibrated render is not clipped to [0, 1]).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def view_stats(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Sufficient statistics of one view: pred, gt (H, W, C) in [0, 1] -> (4, C) float64 rows
    S_pg, S_pp, S_gg (sums over pixels) and the pixel count."""
    p = np.asarray(pred, np.float64).reshape(-1, pred.shape[-1])
    g = np.asarray(gt, np.float64).reshape(-1, gt.shape[-1])
    n = np.full(p.shape[1], float(p.shape[0]))
    return np.stack([(p * g).sum(0), (p * p).sum(0), (g * g).sum(0), n])


def fit_gain(stats: np.ndarray) -> np.ndarray:
    """(V, 4, C) statistics of the views a gain is fitted on -> (C,) least-squares gain (1 where the renders
    are black in a channel: nothing to scale)."""
    s_pg, s_pp = stats[:, 0].sum(0), stats[:, 1].sum(0)
    return np.where(s_pp > 0, s_pg / np.where(s_pp > 0, s_pp, 1.0), 1.0)


def gained_psnr(stats: np.ndarray, gain: np.ndarray) -> float:
    """PSNR of one view (4, C) statistics after scaling the render's channels by ``gain`` (C,)."""
    s_pg, s_pp, s_gg, n = stats
    mse = float(max(0.0, (gain ** 2 * s_pp - 2 * gain * s_pg + s_gg).sum()) / n.sum())
    return math.inf if mse == 0.0 else -10.0 * math.log10(mse)


def camera_calibrated_psnr(stats: list[np.ndarray], cameras: list) -> list[float | None]:
    """Leave-one-view-out camera-calibrated PSNR of each view.

    stats: per view (4, C) from ``view_stats``; cameras: per view the camera it was taken with (any hashable).
    Returns per view the PSNR after the gain fitted on the other views of its camera, or None when its camera
    has no other view.
    """
    if len(stats) != len(cameras):
        raise ValueError(f"{len(stats)} views but {len(cameras)} cameras")
    by_cam: dict = defaultdict(list)
    for i, c in enumerate(cameras):
        by_cam[c].append(i)
    out: list[float | None] = [None] * len(stats)
    for idx in by_cam.values():
        if len(idx) < 2:
            continue
        S = np.stack([stats[i] for i in idx])
        for k, i in enumerate(idx):
            out[i] = gained_psnr(S[k], fit_gain(np.delete(S, k, axis=0)))
    return out
