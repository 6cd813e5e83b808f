"""How well a HandOcc method renders some views of its cache: the squared colour error against their images with
the background black (``eval``'s ground truth, what training fits), per frame.

Used where the method chooses from views it has, never from the evaluation cameras: ``adapt``'s check on held-back
training cameras (``adapt.keep_checked``) and, when training ends, the density calibration that renders apply
(``render_calibration``, ``cal_render`` "auto").
"""

from __future__ import annotations

import numpy as np
import torch

from handcli.eval.image_metrics import psnr_from_mse
from handcli.eval.renders_eval import gt_image


def frame_errors(m, views, stride: int = 1) -> dict[int, tuple[float, int]]:
    """{frame: (sum of squared colour errors, number of values)} of the cache views ``views`` (indices) rendered
    by the HandOcc method ``m`` as it is now (rgb in [0, 1] against ``gt_image``): whole, or at every
    ``stride``-th pixel of every ``stride``-th row (pixel (r, c) of the render is (stride r, stride c) of the view:
    the camera's first two rows of K divided by ``stride``; pixel centres are integers, handcli.render.rays)."""
    vt = m.cache.view_table()
    cams = m.cache.cameras()
    out: dict[int, tuple[float, int]] = {}
    with torch.no_grad():
        for j in views:
            frame, cam = int(vt["frame"][j]), cams[int(vt["camera"][j])]
            K = np.array(cam["K"], dtype=np.float64)
            K[:2] /= stride
            h, w = -(-int(cam["height"]) // stride), -(-int(cam["width"]) // stride)
            rgb = m.render_camera(frame, K, cam["world_to_cam"], h, w, frozenset({"rgb"}))["rgb"]
            v = m.cache.view(int(j))
            gt = gt_image(v["rgb"], v["label"])[::stride, ::stride]
            sq, n = out.get(frame, (0.0, 0))
            out[frame] = (sq + float(np.square(rgb - gt).sum()), n + gt.size)
    return out


def pooled_psnr(errors: dict[int, tuple[float, int]]) -> float:
    """PSNR (dB) of the pooled squared errors of ``frame_errors`` (finite: the MSE floored at 1e-12)."""
    sq = sum(e[0] for e in errors.values())
    n = sum(e[1] for e in errors.values())
    return psnr_from_mse(max(sq / max(n, 1), 1e-12))
