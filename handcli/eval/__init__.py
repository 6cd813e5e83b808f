"""Evaluation: image metrics (PSNR, SSIM, LPIPS, depth error, semantic IoU), geometry and grasp metrics."""
