"""Where the squared error of a render folder lies: inside the hand, at its silhouette, or on the background.

    python bench/error_regions.py RENDERS [RENDERS ...] [--band 2] [--gain] [--true-colour DATASET]

RENDERS is a `handcli render` output folder (its renders.json names the cache). The ground truth is `handcli eval`'s
(the cache image with the pixels outside the cache's labels black). Regions of each view, from the ground truth's
labels: "edge" = within ``--band`` pixels of the silhouette on either side, "interior" = the labelled pixels inside
that, "background" = the rest. ``--gain`` first fits a per-view, per-channel gain of the render on the interior
(least squares), which removes the held-out camera's colour response. ``--true-colour DATASET`` (the synthetic set the
cache was made from; a diagnostic with the sidecar's truth, which no real dataset has) first moves each view's ground
truth into the training cameras' mean colour response (x mean training response / the view camera's response): what
the score would be if the held-out cameras responded as the training cameras do on average. Prints, per folder, the PSNR of the MSE pooled
over all views (`handcli eval`'s PSNR-full is the mean of the views' PSNRs, a little higher) and each region's share
of that MSE (per channel, over the whole image, in 1e-4): the regions add up to it. docs/benchmarks.md (HandOcc on realistic data, sixth round) has a table made with it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from handcli.data.shards import open_cache  # noqa: E402
from handcli.eval.renders_eval import gt_image  # noqa: E402
from handcli.synth.realism import sidecar_responses  # noqa: E402

REGIONS = ("interior", "edge", "background")


def region_masks(fg: np.ndarray, band: int) -> dict[str, np.ndarray]:
    """fg (H, W) bool hand pixels -> the three disjoint regions (H, W) bool that cover the image."""
    edge = fg & ~ndimage.binary_erosion(fg, iterations=band) if band else np.zeros_like(fg)
    if band:
        edge |= ndimage.binary_dilation(fg, iterations=band) & ~fg
    return {"interior": fg & ~edge, "edge": edge, "background": ~fg & ~edge}


def view_region_errors(pred: np.ndarray, gt: np.ndarray, fg: np.ndarray, band: int, gain: bool) -> dict[str, float]:
    """Summed squared error (over pixels and channels) per region of one view; pred, gt (H, W, 3) in [0, 1]."""
    masks = region_masks(fg, band)
    if gain and masks["interior"].any():
        p, g = pred[masks["interior"]], gt[masks["interior"]]
        pred = np.clip(pred * ((p * g).sum(0) / np.maximum((p * p).sum(0), 1e-12)), 0.0, 1.0)
    se = ((pred - gt) ** 2).sum(-1)
    return {k: float(se[m].sum()) for k, m in masks.items()}


def true_colour_scales(dataset: Path, train_cameras: list[str]) -> dict[str, np.ndarray]:
    """{camera name: (3,) multiplier} that moves an image of that camera into the mean colour response of
    ``train_cameras`` (sidecar truth; empty for a set without responses)."""
    resp = sidecar_responses(dataset)
    if not resp:
        return {}
    mean = np.mean([resp[c] for c in train_cameras], axis=0)
    return {c: mean / r for c, r in resp.items()}


def folder_errors(renders: Path, band: int, gain: bool,
                  dataset: Path | None = None) -> tuple[float, dict[str, float]]:
    """PSNR of the MSE pooled over all views of a render folder, and each region's share of that MSE; with
    ``dataset``, against the ground truth in the training cameras' mean colour response (``true_colour_scales``)."""
    meta = json.loads((renders / "renders.json").read_text())
    scales = {}
    if dataset is not None:
        train = json.loads((Path(meta["run"]) / "config.json").read_text())["data"]["cameras"]
        scales = true_colour_scales(dataset, train)
    sums, values = dict.fromkeys(REGIONS, 0.0), 0
    with open_cache(meta["cache"]) as cache:
        for v in meta["views"]:
            cv = cache.view(v["cache_view"])
            gt = gt_image(cv["rgb"], cv["label"])
            if scales:
                gt = gt * scales[cache.cameras()[cv["camera"]]["name"]]
            pred = cv2.imread(str(renders / "rgb" / f"{v['index']:04d}.png"))[:, :, ::-1] / 255.0
            for k, e in view_region_errors(pred, gt, np.asarray(cv["label"]) > 0, band, gain).items():
                sums[k] += e
            values += gt.size
    mse = {k: e / values for k, e in sums.items()}
    return -10.0 * math.log10(max(sum(mse.values()), 1e-12)), mse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("renders", nargs="+", type=Path)
    ap.add_argument("--band", type=int, default=2, help="silhouette band half-width in pixels")
    ap.add_argument("--gain", action="store_true", help="fit a per-view colour gain on the interior first")
    ap.add_argument("--true-colour", type=Path, default=None, metavar="DATASET",
                    help="the synthetic set of the cache: ground truth in the training cameras' mean response")
    args = ap.parse_args()
    print(f"| renders | PSNR (pooled MSE) | {' | '.join(f'{k} (1e-4)' for k in REGIONS)} |")
    print("|---|---|" + "---|" * len(REGIONS))
    for r in args.renders:
        psnr, mse = folder_errors(r, args.band, args.gain, args.true_colour)
        print(f"| {r.name} | {psnr:.2f} | {' | '.join(f'{mse[k] * 1e4:.2f}' for k in REGIONS)} |")


if __name__ == "__main__":
    main()
