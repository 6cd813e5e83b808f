"""How well a HandOcc method renders some views of its cache: the squared colour error against their images with
the background black (``eval``'s ground truth, what training fits), per frame.

Used where the method chooses from views it has, never from the evaluation cameras: ``adapt``'s check on held-back
training cameras (``adapt.keep_checked``) and, when training ends, whether renders apply the density calibration
(``HandOccMethod.finish_training``, ``cal_render`` "auto").
"""

from __future__ import annotations

import numpy as np
import torch

from handcli.eval.image_metrics import psnr_from_mse
from handcli.eval.renders_eval import gt_image


def frame_errors(m, views) -> dict[int, tuple[float, int]]:
    """{frame: (sum of squared colour errors, number of values)} of the cache views ``views`` (indices) rendered
    whole by the HandOcc method ``m`` as it is now (rgb in [0, 1] against ``gt_image``)."""
    frame_of = m.cache.view_table()["frame"]
    out: dict[int, tuple[float, int]] = {}
    with torch.no_grad():
        for j in views:
            rgb = m.render_view(int(j), frozenset({"rgb"}))["rgb"]
            v = m.cache.view(int(j))
            gt = gt_image(v["rgb"], v["label"])
            sq, n = out.get(int(frame_of[j]), (0.0, 0))
            out[int(frame_of[j])] = (sq + float(np.square(rgb - gt).sum()), n + gt.size)
    return out


def pooled_psnr(errors: dict[int, tuple[float, int]]) -> float:
    """PSNR (dB) of the pooled squared errors of ``frame_errors`` (finite: the MSE floored at 1e-12)."""
    sq = sum(e[0] for e in errors.values())
    n = sum(e[1] for e in errors.values())
    return psnr_from_mse(max(sq / max(n, 1), 1e-12))
