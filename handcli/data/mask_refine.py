"""Hand masks rendered from an annotated hand model, refined against the image near their edges (GrabCut).

InterHand2.6M has no segmentation: ``preprocess interhand`` renders the hand labels from the MANO fit, which
is a few millimetres off the imaged hand (docs/datasets.md#realistic-profile), so the masks miss the
silhouette at the edges by a few pixels. ``refine_labels`` lets the image decide inside a band of ``band``
pixels around the rendered silhouette: OpenCV's GrabCut (Rother et al., SIGGRAPH 2004; colour models of
the hand and the background, a graph cut along image edges) with the rendered mask eroded by ``band`` as sure
hand, everything farther than ``band`` outside it as sure background, and the band between as "probably" the
rendered label. Nothing outside the band changes, so a wrong segmentation cannot grow or shrink a hand by
more than ``band`` pixels. New hand pixels take the label of the nearest rendered hand pixel (right or left).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

ITERATIONS = 5  # GrabCut rounds (colour model and cut re-estimated each round)
RNG_SEED = 0  # GrabCut's GMM initialisation draws from OpenCV's RNG: seeded per call, so a view's result does
# not depend on which views a worker process refined before it


def refine_labels(rgb: np.ndarray, label: np.ndarray, band: int, iterations: int = ITERATIONS) -> np.ndarray:
    """(H, W, 3) uint8 RGB image, (H, W) uint8 labels (0 background, > 0 a hand) -> refined (H, W) uint8 labels.

    Only pixels within ``band`` pixels of the labelled silhouette may change. Returns the labels unchanged
    when there is nothing to refine (``band`` 0, no hand, or no sure hand / sure background pixel left).
    """
    rgb, label = np.asarray(rgb), np.asarray(label)
    if rgb.shape[:2] != label.shape or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image {rgb.shape} and labels {label.shape} do not match")
    fg = label > 0
    if band <= 0 or not fg.any():
        return label.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    sure_fg = cv2.erode(fg.astype(np.uint8), kernel).astype(bool)
    near = cv2.dilate(fg.astype(np.uint8), kernel).astype(bool)
    if not sure_fg.any() or near.all():
        return label.copy()
    gc = np.full(label.shape, cv2.GC_BGD, np.uint8)
    gc[near] = cv2.GC_PR_BGD
    gc[fg] = cv2.GC_PR_FGD
    gc[sure_fg] = cv2.GC_FGD
    cv2.setRNGSeed(RNG_SEED)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(rgb[..., ::-1]), gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    hand = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    # each hand pixel takes the label of the nearest originally labelled pixel (itself when it had one)
    idx = ndimage.distance_transform_edt(~fg, return_distances=False, return_indices=True)
    out = np.where(hand, label[idx[0], idx[1]], 0).astype(label.dtype)
    return out
