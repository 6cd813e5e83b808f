"""Image metrics against scikit-image, pytorch-msssim and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ssim as msssim_ssim
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from handcli.errors import InputError
from handcli.eval.image_metrics import (
    METRIC_CONVENTIONS,
    _ssim_valid,
    box_mask,
    depth_error_mm,
    depth_shown,
    gaussian_kernel,
    mask_bbox_slices,
    psnr_full,
    psnr_masked,
    semantic_iou,
    ssim_gaussian,
    ssim_skimage_default,
)


def _pair(h: int, w: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A structured GT image (smooth patterns + a step edge) and a noisy, clipped prediction."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    gt = np.stack([np.sin(9 * xx + 3 * yy) * 0.5 + 0.5, (xx > 0.4) * 0.8 + 0.1, (xx * yy) % 1.0], axis=-1)
    pred = np.clip(gt + noise * rng.standard_normal(gt.shape), 0.0, 1.0)
    return pred, gt


def _msssim(pred: np.ndarray, gt: np.ndarray, dtype: torch.dtype) -> float:
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].to(dtype)  # noqa: E731
    return float(msssim_ssim(t(pred), t(gt), data_range=1, size_average=True, win_size=11, win_sigma=1.5))


def test_psnr_full_matches_skimage_and_hand_value():
    pred, gt = _pair(40, 30, 0.1)
    assert psnr_full(pred, gt) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=1), abs=1e-10)
    gt = np.zeros((4, 5, 3))
    assert psnr_full(gt + 0.1, gt) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01
    assert psnr_full(gt, gt) == math.inf


def test_psnr_masked_uses_only_masked_pixels():
    gt = np.full((6, 8, 3), 0.5)
    pred = gt + 0.4  # wrong everywhere ...
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:6] = True
    pred[mask] = gt[mask] + 0.1  # ... but only off by 0.1 inside the mask
    assert psnr_masked(pred, gt, mask) == pytest.approx(20.0, abs=1e-9)
    assert psnr_masked(pred, gt, mask) == pytest.approx(
        peak_signal_noise_ratio(gt[mask], pred[mask], data_range=1), abs=1e-10)
    assert psnr_masked(pred, gt, np.zeros((6, 8), bool)) is None
    with pytest.raises(InputError, match="mask shape"):
        psnr_masked(pred, gt, np.ones((8, 6), bool))


def test_full_psnr_is_inflated_by_black_background_by_the_box_fraction():
    """Black outside the box in both images: MSE_full = MSE_box * frac, so PSNR_full = PSNR_box - 10 log10 frac."""
    rng = np.random.default_rng(1)
    gt = np.zeros((20, 30, 3))
    pred = np.zeros((20, 30, 3))
    mask = box_mask(20, 30, (5, 4, 14, 13))  # 10 x 10 pixels
    gt[mask] = rng.random((100, 3))
    pred[mask] = np.clip(gt[mask] + 0.05 * rng.standard_normal((100, 3)), 0, 1)
    frac = 100 / 600
    box, full = psnr_masked(pred, gt, mask), psnr_full(pred, gt)
    assert full == pytest.approx(box - 10 * math.log10(frac), abs=1e-9)
    assert full > box + 7.7


def test_box_mask_pixel_centres_and_clipping():
    m = box_mask(4, 5, (1.2, 0.5, 3.0, 2.4))  # columns 2..3 (centres 2, 3), rows 1..2
    expected = np.zeros((4, 5), bool)
    expected[1:3, 2:4] = True
    np.testing.assert_array_equal(m, expected)
    assert box_mask(4, 5, (-10, -10, 100, 100)).all()
    assert not box_mask(4, 5, (3, 3, 1, 1)).any()
    assert box_mask(4, 5, (0, 0, 0, 0)).sum() == 1


def test_mask_bbox_slices():
    mask = np.zeros((7, 9), bool)
    mask[2, 3] = mask[5, 6] = True
    assert mask_bbox_slices(mask) == (slice(2, 6), slice(3, 7))
    assert mask_bbox_slices(np.zeros((3, 3), bool)) is None


@pytest.mark.parametrize("shape,noise", [((32, 32), 0.05), ((45, 23), 0.2), ((11, 11), 0.1), ((64, 40), 0.0)])
def test_ssim_gaussian_matches_pytorch_msssim_and_skimage(shape, noise):
    pred, gt = _pair(*shape, noise)
    ours = ssim_gaussian(pred, gt)
    # pytorch-msssim builds its Gaussian taps in float32: up to ~4e-6 apart even on float64 images (more
    # where SSIM is low); with the same float32-rounded taps the two agree to rounding (next test)
    assert ours == pytest.approx(_msssim(pred, gt, torch.float64), abs=1e-5)
    assert ours == pytest.approx(_msssim(pred, gt, torch.float32), abs=2e-5)
    ref = structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=1, channel_axis=-1)
    # skimage filters with reflection then crops (11-1)/2 = 5 border pixels: exactly the valid region
    assert ours == pytest.approx(ref, abs=1e-10)
    if noise == 0.0:
        assert ours == pytest.approx(1.0, abs=1e-12)


def test_ssim_gaussian_equals_pytorch_msssim_with_its_float32_taps():
    pred, gt = _pair(45, 23, 0.2)
    taps = torch.exp(-((torch.arange(11, dtype=torch.float) - 5) ** 2) / (2 * 1.5**2))
    taps = (taps / taps.sum()).double().numpy()
    ours = _ssim_valid(pred, gt, taps, data_range=1.0, cov_norm=1.0)
    assert ours == pytest.approx(_msssim(pred, gt, torch.float64), abs=1e-12)
    np.testing.assert_allclose(taps, gaussian_kernel(11, 1.5), rtol=1e-6)


def test_ssim_on_minus_one_one_is_a_different_convention():
    pred, gt = _pair(40, 40, 0.1)
    pred, gt = 0.1 * pred, 0.1 * gt  # a dark image, where the luminance term matters most
    t = lambda a: torch.from_numpy(2 * a - 1).permute(2, 0, 1)[None]  # noqa: E731
    ref = float(msssim_ssim(t(pred), t(gt), data_range=2, size_average=True, win_size=11, win_sigma=1.5))
    pm1 = ssim_gaussian(2 * pred - 1, 2 * gt - 1, data_range=2)
    assert pm1 == pytest.approx(ref, abs=1e-5)
    assert abs(pm1 - ssim_gaussian(pred, gt)) > 1e-3


def test_ssim_gaussian_data_range_scales():
    pred, gt = _pair(30, 30, 0.1)
    assert ssim_gaussian(255 * pred, 255 * gt, data_range=255) == pytest.approx(ssim_gaussian(pred, gt), abs=1e-12)


@pytest.mark.parametrize("shape,noise", [((32, 32), 0.05), ((45, 23), 0.2), ((7, 7), 0.1), ((9, 50), 0.3)])
def test_ssim_skimage_default_matches_skimage(shape, noise):
    pred, gt = _pair(*shape, noise, seed=3)
    ref = structural_similarity(gt, pred, channel_axis=-1, data_range=1)
    assert ssim_skimage_default(pred, gt) == pytest.approx(ref, abs=1e-6)
    # and it is a different convention from the Gaussian one
    if min(shape) >= 11 and noise > 0:
        assert abs(ssim_skimage_default(pred, gt) - ssim_gaussian(pred, gt)) > 1e-3


def test_ssim_ranks_noise_levels():
    gt = _pair(48, 48, 0.0)[1]
    scores = [ssim_gaussian(_pair(48, 48, n, seed=5)[0], gt) for n in (0.02, 0.1, 0.3)]
    assert scores[0] > scores[1] > scores[2]


def test_image_input_errors():
    pred, gt = _pair(20, 20, 0.1)
    with pytest.raises(InputError, match="smaller than the 11x11"):
        ssim_gaussian(pred[:10], gt[:10])
    with pytest.raises(InputError, match="differs"):
        ssim_skimage_default(pred, gt[:19])
    bad = pred.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        psnr_full(bad, gt)
    with pytest.raises(InputError, match=r"\(H, W, C\)"):
        psnr_full(pred[..., 0], gt[..., 0])


def test_depth_error_mm_hand_values():
    gt = np.full((4, 4), 0.5)
    pred = gt + 0.002
    pred[0, 0] = 0.9  # outside the mask: ignored
    mask = np.ones((4, 4), bool)
    mask[0, 0] = False
    gt[1, 1] = 0.0  # no pseudo-depth: ignored
    gt[1, 2] = np.nan  # invalid pseudo-depth: ignored
    pred[2, 2] = np.nan  # non-finite prediction: ignored
    pred[3, 3] = 0.5 - 0.012  # 12 mm off
    # valid pixels: 16 - 4 = 12, eleven at 2 mm and one at 12 mm
    assert depth_error_mm(pred, gt, mask) == pytest.approx((11 * 2 + 12) / 12, abs=1e-9)
    assert depth_error_mm(pred, gt, np.zeros((4, 4), bool)) is None
    assert depth_error_mm(pred, np.zeros((4, 4)), mask) is None
    with pytest.raises(InputError):
        depth_error_mm(pred, gt, mask[:3])


def test_depth_shown_splits_de_into_shown_pixels_and_their_share():
    gt = np.full((4, 4), 0.5)
    pred = gt + 0.002  # 2 mm off where shown
    pred[0, :2] = 0.0  # two pixels of the mask left empty: DE counts them at 500 mm
    pred[3, 3] = 0.5 + 0.006
    mask = np.ones((4, 4), bool)
    mask[3, 0] = False
    gt[2, 2] = np.nan  # not one of DE's pixels
    # DE's pixels: 16 - 2 = 14; shown: 12 (eleven at 2 mm, one at 6 mm)
    assert depth_error_mm(pred, gt, mask) == pytest.approx((2 * 500 + 11 * 2 + 6) / 14, abs=1e-9)
    de, shown = depth_shown(pred, gt, mask)
    assert de == pytest.approx((11 * 2 + 6) / 12, abs=1e-9) and shown == pytest.approx(12 / 14)
    assert depth_shown(np.zeros((4, 4)), gt, mask) == (None, 0.0)
    assert depth_shown(pred, gt, np.zeros((4, 4), bool)) == (None, None)
    with pytest.raises(InputError):
        depth_shown(pred, gt, mask[:3])


def test_semantic_iou_hand_value():
    gt = np.array([[0, 0, 2], [2, 2, 0]])
    pred = np.array([[0, 2, 2], [2, 0, 0]])
    # class 0: inter {(0,0),(1,2)} union {(0,0),(0,1),(1,1),(1,2)} -> 1/2; class 1 absent -> 1; class 2 -> 2/4
    assert semantic_iou(pred, gt) == pytest.approx(100 * (0.5 + 1 + 0.5) / 3, abs=1e-9)
    assert semantic_iou(gt, gt) == pytest.approx(100.0)
    assert semantic_iou(np.zeros((2, 3), int), np.full((2, 3), 1)) == pytest.approx(100 / 3)
    with pytest.raises(InputError, match="lie in"):
        semantic_iou(pred + 1, gt)
    with pytest.raises(InputError, match="integers"):
        semantic_iou(pred.astype(float), gt)


def test_metric_conventions_named():
    for key in ("psnr_full", "psnr_box", "psnr_class", "ssim_gaussian", "ssim_gaussian_pm1", "ssim_skimage_default",
                "lpips_alex",
                "depth_error_mm", "depth_error_shown_mm", "depth_shown", "semantic_iou"):
        assert isinstance(METRIC_CONVENTIONS[key], str) and len(METRIC_CONVENTIONS[key]) > 20
