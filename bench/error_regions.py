"""Where the squared error of a render folder lies: inside the hand, at its silhouette, or on the background.

    python bench/error_regions.py RENDERS [RENDERS ...] [--band 2] [--gain]

RENDERS is a `handcli render` output folder (its renders.json names the cache). The ground truth is `handcli eval`'s
(the cache image with the pixels outside the cache's labels black). Regions of each view, from the ground truth's
labels: "edge" = within ``--band`` pixels of the silhouette on either side, "interior" = the labelled pixels inside
that, "background" = the rest. ``--gain`` first fits a per-view, per-channel gain of the render on the interior
(least squares), which removes the held-out camera's colour response. Prints, per folder, the PSNR of the MSE pooled
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


def folder_errors(renders: Path, band: int, gain: bool) -> tuple[float, dict[str, float]]:
    """PSNR of the MSE pooled over all views of a render folder, and each region's share of that MSE."""
    meta = json.loads((renders / "renders.json").read_text())
    sums, values = dict.fromkeys(REGIONS, 0.0), 0
    with open_cache(meta["cache"]) as cache:
        for v in meta["views"]:
            cv = cache.view(v["cache_view"])
            gt = gt_image(cv["rgb"], cv["label"])
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
    args = ap.parse_args()
    print(f"| renders | PSNR (pooled MSE) | {' | '.join(f'{k} (1e-4)' for k in REGIONS)} |")
    print("|---|---|" + "---|" * len(REGIONS))
    for r in args.renders:
        psnr, mse = folder_errors(r, args.band, args.gain)
        print(f"| {r.name} | {psnr:.2f} | {' | '.join(f'{mse[k] * 1e4:.2f}' for k in REGIONS)} |")


if __name__ == "__main__":
    main()
