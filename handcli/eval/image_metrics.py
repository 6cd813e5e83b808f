"""Image-quality metrics with their conventions named (docs/formulas.md#metric-conventions, docs/metrics.md).

Images are float arrays in [0, 1] of shape (H, W, C) (C = 3 for RGB). Several papers compute "PSNR" and
"SSIM" differently, so each convention is its own function, and `METRIC_CONVENTIONS` gives the one-line
definition that the eval stage writes next to every number. All functions are vectorised numpy.
"""

from __future__ import annotations

import math

import numpy as np

from handcli.errors import InputError

METRIC_CONVENTIONS: dict[str, str] = {
    "psnr_full": "PSNR = -10 log10(MSE), MSE over every pixel and channel of the full image, black background "
    "included (Guo HandNeRF code, eval_full_img); inflated by the easy background",
    "psnr_box": "PSNR = -10 log10(MSE), MSE only over pixels inside a mask: rays hitting the 3D box "
    "(Neural Body / Animatable NeRF mask_at_box; Choi HandNeRF) or the hand's projected 2D box",
    "psnr_full_camcal": "psnr_full after a per-camera, per-channel colour gain (least squares, no offset) fitted "
    "on the camera's other evaluated views (other frames; leave one view out, a NeRF-W-style test-time "
    "appearance fit), not clipped; null for a camera with one evaluated view (handcli.eval.camera_calibration)",
    "psnr_class": "PSNR with the MSE over the pixels of one ground-truth semantic class (hand or object; Choi)",
    "ssim_gaussian": "SSIM of Wang et al. 2004: Gaussian 11x11 window sigma 1.5, K1 0.01, K2 0.03, population "
    "covariance, L = data range, mean over the valid region (window inside the image) and channels; "
    "= pytorch-msssim / torchmetrics defaults",
    "ssim_gaussian_pm1": "ssim_gaussian on images mapped to [-1,1] with data range 2 (Choi HandNeRF via "
    "torchmetrics); not equal to ssim_gaussian on [0,1], the luminance term is not shift-invariant",
    "ssim_skimage_default": "SSIM as skimage.metrics.structural_similarity(channel_axis=-1, data_range=1) "
    "computes it: 7x7 uniform window, sample covariance (N/(N-1)), 3-pixel border cropped, mean over "
    "channels (Guo HandNeRF code, Neural Body)",
    "lpips_alex": "LPIPS v0.1 with an AlexNet backbone (net='alex'), inputs in [0,1] mapped to [-1,1] "
    "(normalize=True); null when the weights are not available",
    "depth_error_mm": "DE = mean |D_pred - D_gt| in millimetres over pixels inside the GT mask with valid "
    "(finite, > 0) GT depth and finite predicted depth; null when no such pixel exists",
    "depth_error_shown_mm": "DE over those of its pixels where the prediction shows a surface (depth > 0: opacity "
    ">= 0.5 for handcli renders); null when there is none",
    "depth_shown": "the fraction of DE's pixels where the prediction shows a surface (depth > 0); DE counts every "
    "other one at its whole GT depth",
    "semantic_iou": "per image: IoU = |P n G| / |P u G| per class (1 when the union is empty), mean over "
    "the classes background, object, hand (background included) x 100 (Choi HandNeRF)",
}


def _as_image_pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise InputError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}",
                         field="image")
    if pred.ndim != 3:
        raise InputError(f"expected images of shape (H, W, C), got {pred.shape}", field="image")
    for name, img in (("prediction", pred), ("ground truth", gt)):
        if not np.isfinite(img).all():
            raise InputError(f"{name} image contains NaN or Inf", field="image")
    return pred, gt


def psnr_from_mse(mse: float) -> float:
    """PSNR (dB) of a mean squared error of images in [0, 1]; +inf for 0."""
    return math.inf if mse == 0.0 else float(-10.0 * math.log10(mse))


def psnr_full(pred, gt) -> float:
    """PSNR with the MSE over the whole image ("full" convention, Guo HandNeRF code).

    pred, gt: (H, W, C) in [0, 1]. Returns +inf for identical images.
    """
    pred, gt = _as_image_pair(pred, gt)
    return psnr_from_mse(float(np.mean((pred - gt) ** 2)))


def psnr_masked(pred, gt, mask) -> float | None:
    """PSNR with the MSE over pixels inside `mask` ("box" convention, Neural Body / Choi).

    pred, gt: (H, W, C) in [0, 1]; mask: (H, W) bool. The MSE averages over masked pixels and all channels,
    as zju3dv's if_nerf evaluator does on the rays in mask_at_box. None when the mask is empty.
    """
    pred, gt = _as_image_pair(pred, gt)
    mask = np.asarray(mask)
    if mask.shape != pred.shape[:2]:
        raise InputError(f"mask shape {mask.shape} differs from image shape {pred.shape[:2]}", field="mask")
    mask = mask.astype(bool)
    if not mask.any():
        return None
    return psnr_from_mse(float(np.mean((pred[mask] - gt[mask]) ** 2)))


def box_mask(height: int, width: int, box_xyxy) -> np.ndarray:
    """(H, W) bool mask of the pixels whose centre lies in the 2D box (x0, y0, x1, y1), bounds included.

    Pixel coordinates follow OpenCV: pixel (u, v) has its centre at (u, v), so a box obtained by projecting
    3D points with K selects exactly the pixels whose centres it covers. Boxes reaching outside the image
    are clipped; an empty or inverted box gives an all-False mask.
    """
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    u = np.arange(width)
    v = np.arange(height)
    in_u = (u >= x0) & (u <= x1)
    in_v = (v >= y0) & (v <= y1)
    return in_v[:, None] & in_u[None, :]


def mask_bbox_slices(mask) -> tuple[slice, slice] | None:
    """Row and column slices of the bounding rectangle of a (H, W) bool mask; None when it is empty.

    Neural Body crops both images to the bounding rectangle of mask_at_box before SSIM and LPIPS:
    `ssim_skimage_default(pred[s], gt[s])` with `s = mask_bbox_slices(mask)`.
    """
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _filter_valid(stack: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable correlation over axes 1 and 2, 'valid' region only.

    stack: (S, H, W, ...); kernel: (K,) -> (S, H-K+1, W-K+1, ...). The loops run over the K taps
    (whole-array shifted adds), which is faster here than a strided-window matmul.
    """
    k = kernel.size
    h = stack.shape[1] - k + 1
    rows = kernel[0] * stack[:, :h]
    for i in range(1, k):
        rows += kernel[i] * stack[:, i : i + h]
    w = stack.shape[2] - k + 1
    out = kernel[0] * rows[:, :, :w]
    for i in range(1, k):
        out += kernel[i] * rows[:, :, i : i + w]
    return out


def _ssim_valid(pred: np.ndarray, gt: np.ndarray, kernel: np.ndarray, data_range: float, cov_norm: float,
                k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean SSIM over the valid region (every window inside the image) and all channels."""
    if min(pred.shape[:2]) < kernel.size:
        raise InputError(f"image of size {pred.shape[:2]} is smaller than the {kernel.size}x{kernel.size} "
                         "SSIM window", field="image")
    stack = np.stack([pred, gt, pred * pred, gt * gt, pred * gt])  # (5, H, W, C)
    ux, uy, uxx, uyy, uxy = _filter_valid(stack, kernel)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    # every channel has the same number of valid pixels, so the global mean is the mean of channel means
    return float(s.mean())


def gaussian_kernel(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian taps, (size,), centred on size // 2."""
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def ssim_gaussian(pred, gt, data_range: float = 1.0) -> float:
    """Reference SSIM (Wang et al. 2004): Gaussian 11x11 window, sigma 1.5, K1 0.01, K2 0.03.

    pred, gt: (H, W, C) with H, W >= 11. Population covariance; the mean is taken over the valid region
    (windows fully inside the image, (H-10) x (W-10) per channel) and over channels, as pytorch-msssim
    does with its valid convolution. Choi's convention (`ssim_gaussian_pm1`) is
    `ssim_gaussian(2 * pred - 1, 2 * gt - 1, data_range=2)`.
    """
    pred, gt = _as_image_pair(pred, gt)
    return _ssim_valid(pred, gt, gaussian_kernel(11, 1.5), float(data_range), cov_norm=1.0)


def ssim_skimage_default(pred, gt) -> float:
    """SSIM as `skimage.metrics.structural_similarity(channel_axis=-1, data_range=1)` computes it.

    pred, gt: (H, W, C) in [0, 1], H, W >= 7. 7x7 uniform window, sample covariance (x 49/48), the mean over
    the image with a 3-pixel border cropped (skimage filters with reflection, then crops the border, so
    only windows fully inside the image count), then over channels.
    """
    pred, gt = _as_image_pair(pred, gt)
    np_win = 7 * 7
    return _ssim_valid(pred, gt, np.full(7, 1.0 / 7.0), 1.0, cov_norm=np_win / (np_win - 1))


def _depth_pixels(pred_depth, gt_depth, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pred, gt, valid) as float64 / bool (H, W): valid where the mask is set, the GT depth is finite and > 0 and
    the prediction is finite."""
    pred = np.asarray(pred_depth, dtype=np.float64)
    gt = np.asarray(gt_depth, dtype=np.float64)
    mask = np.asarray(mask)
    if pred.shape != gt.shape or mask.shape != gt.shape or gt.ndim != 2:
        raise InputError(f"depth maps and mask must share one (H, W) shape, got {pred.shape}, {gt.shape}, "
                         f"{mask.shape}", field="depth")
    with np.errstate(invalid="ignore"):
        valid = mask.astype(bool) & np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    return pred, gt, valid


def depth_error_mm(pred_depth, gt_depth, mask) -> float | None:
    """Depth error DE: mean |pred - gt| in millimetres (docs/formulas.md#metric-conventions).

    pred_depth, gt_depth: (H, W) in metres; mask: (H, W) bool (GT hand/object mask). Pixels count when the
    mask is set, the GT depth is finite and > 0 (valid pseudo-depth) and the prediction is finite (a render's
    0, no surface shown, counts at the full GT depth). None when no pixel is valid.
    """
    pred, gt, valid = _depth_pixels(pred_depth, gt_depth, mask)
    if not valid.any():
        return None
    return float(np.mean(np.abs(pred[valid] - gt[valid])) * 1000.0)


def depth_shown(pred_depth, gt_depth, mask) -> tuple[float | None, float | None]:
    """DE's two parts: (the mean |pred - gt| in millimetres over DE's pixels where the prediction shows a surface
    (depth > 0), the fraction of DE's pixels where it does). Shapes as `depth_error_mm`; None where undefined.

    DE counts each pixel of the GT mask that a render leaves empty at its whole depth (~0.5-1 m), so a few
    per cent of such pixels outweigh the depth error of the others; these two tell them apart."""
    pred, gt, valid = _depth_pixels(pred_depth, gt_depth, mask)
    if not valid.any():
        return None, None
    shown = valid & (pred > 0)
    de = float(np.mean(np.abs(pred[shown] - gt[shown])) * 1000.0) if shown.any() else None
    return de, float(shown.sum() / valid.sum())


def semantic_iou(pred_labels, gt_labels, num_classes: int = 3) -> float:
    """Mean per-class IoU x 100 of two (H, W) integer label maps (Choi; docs/formulas.md#handnerf-choi).

    Classes are 0..num_classes-1 (background, object, hand). A class absent from both maps scores 1.
    """
    pred = np.asarray(pred_labels)
    gt = np.asarray(gt_labels)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise InputError(f"label maps must share one (H, W) shape, got {pred.shape} and {gt.shape}",
                         field="labels")
    for name, lab in (("prediction", pred), ("ground truth", gt)):
        if not np.issubdtype(lab.dtype, np.integer) and lab.dtype != bool:
            raise InputError(f"{name} labels must be integers, got {lab.dtype}", field="labels")
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise InputError(f"{name} labels must lie in [0, {num_classes}), got [{lab.min()}, {lab.max()}]",
                             field="labels")
    classes = np.arange(num_classes)
    p = pred[..., None] == classes
    g = gt[..., None] == classes
    inter = (p & g).sum(axis=(0, 1))
    union = (p | g).sum(axis=(0, 1))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(iou.mean() * 100.0)
