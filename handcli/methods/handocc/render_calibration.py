"""The density calibration that HandOcc's renders apply, fitted to training views when training ends
(``cal_render`` "auto", ``HandOccMethod.finish_training``).

The calibration (``model.DensityCalibration``) maps the network's occupancy o to the rendered one,
sigmoid(a logit(o) + b). Training learns (a, b) for its own rays and sample spacing; renders sample twice as
densely, and a short run's surface is still soft there (novel views too fat at the silhouette), so renders apply
(a, b) fitted to training views instead (``DensityCalibration.fitted``, ``rendered``). When training
ends, a coordinate search over (log a, b) picks the render that best fits some training views' images, starting
from the better of the two renders the run already has: without the calibration (a, b) = (1, 0) and with the
trained one. Every score renders each view at every ``FIT_STRIDE``-th pixel (an unbiased subsample of its squared
errors, a quarter of the rays).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from handcli.methods.handocc import view_fit

FIT_STRIDE = 2  # the views are scored on every second pixel of every second row
SLOPE_STEP = math.log(1.5)  # search step of log a
OFFSET_STEP = 0.5  # search step of b
MAX_EVALS = 12  # renders of the views, the two start points included
# a move must fit the views better by more than this. Chosen on the bench's runs (not validated elsewhere): at
# 2,000 fast steps, gains of 0.05-0.16 dB on the 12 training views did not carry over to the held-out cameras (-0.21
# to -0.06 dB) and gains of 0.21 / 0.29 dB did (+0.12 / +0.11 dB); docs/benchmarks.md, seventeenth round
MIN_GAIN_DB = 0.2

Point = tuple[float, float]


def coordinate_search(score: Callable[[Point], float], starts: list[Point], steps: Point, max_evals: int,
                      min_gain: float) -> tuple[Point, dict[Point, float]]:
    """Maximise ``score`` over the plane: from the best of ``starts``, move to the best of the four points one
    step away along an axis (``steps`` (dx, dy)) while it beats the current one by more than ``min_gain``, and stop
    when none does or ``max_evals`` points have been scored (a point is scored once; points are rounded to 1e-9).

    Returns the best point and {point: score} of every point scored, in scoring order."""
    seen: dict[Point, float] = {}

    def at(p: Point) -> float:
        p = (round(p[0], 9), round(p[1], 9))
        if p not in seen:
            seen[p] = score(p)
        return seen[p]

    best = max(((round(p[0], 9), round(p[1], 9)) for p in starts), key=at)
    while len(seen) < max_evals:
        around = [(best[0] + s * steps[0], best[1]) for s in (1, -1)] + [(best[0], best[1] + s * steps[1])
                                                                          for s in (1, -1)]
        around = [(round(p[0], 9), round(p[1], 9)) for p in around]
        todo = [p for p in around if p not in seen][:max_evals - len(seen)]
        for p in todo:
            at(p)
        step = max((p for p in around if p in seen), key=seen.__getitem__)
        if seen[step] <= seen[best] + min_gain:
            break
        best = step
    return best, seen


def set_render_calibration(cal, point: Point) -> None:
    """Make renders apply sigmoid(a logit(o) + b) with (log a, b) = ``point`` (``cal.fitted``, ``in_render`` 2);
    (0, 0) renders without a calibration (``in_render`` 0, the network's occupancy exactly). The trained
    calibration ``cal.p`` is left as it is (training can go on from the run)."""
    if point == (0.0, 0.0):
        cal.in_render.fill_(0)
        cal.fitted.zero_()
        return
    cal.fitted.copy_(torch.tensor(point, dtype=cal.fitted.dtype))
    cal.in_render.fill_(2)


def fit_render_calibration(m, views: list[int]) -> dict:
    """Fit the calibration that the HandOcc method ``m``'s renders apply to the cache views ``views`` (training
    views) and store it in the model: ``density_cal.fitted`` holds the fitted (log a, b) and ``in_render`` is 2, or
    ``in_render`` 0 where the network's own occupancy fits best. Returns the summary for complete.json's
    ``finish``."""
    cal = m.model.density_cal
    a, b = cal.slope_offset()
    trained = (math.log(a), b)

    def score(point: Point) -> float:
        set_render_calibration(cal, point)
        return view_fit.pooled_psnr(view_fit.frame_errors(m, views, stride=FIT_STRIDE))

    best, seen = coordinate_search(score, [(0.0, 0.0), trained], (SLOPE_STEP, OFFSET_STEP), MAX_EVALS, MIN_GAIN_DB)
    set_render_calibration(cal, best)
    key = (round(trained[0], 9), round(trained[1], 9))
    return {"cal_render": best != (0.0, 0.0), "slope": math.exp(best[0]), "offset": best[1], "psnr": seen[best],
            "psnr_without": seen[(0.0, 0.0)], "psnr_trained": seen[key], "trained_slope": a, "trained_offset": b,
            "views": len(views), "stride": FIT_STRIDE, "renders": len(seen)}
