"""Image metrics of the paper's comparison within a face region (numpy/scipy): masked L1,
PSNR and SSIM between a photo and a render, identity cosine, per-vertex albedo error.

Images are float `[H, W, 3]` on [0, 255]; regions are `[H, W]` {0, 1}.
"""

import numpy as np
import scipy.ndimage

PEAK = 255.0
SSIM_SIGMA = 1.5  # Wang et al. 2004: 11 x 11 Gaussian window, sigma 1.5
SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5, an 11-pixel window
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _region(region, shape):
  region = np.asarray(region, np.float64)
  if region.shape != shape[:2]:
    raise ValueError(f"region must be {list(shape[:2])}, got {list(region.shape)}")
  return region


def masked_l1(a, b, region):
  """Mean |a - b| over the region's pixels and the 3 channels (0-255 levels); NaN if empty."""
  region = _region(region, a.shape)
  total = region.sum() * a.shape[-1]
  return float(np.sum(np.abs(a - b) * region[..., None]) / total) if total else float("nan")


def masked_psnr(a, b, region):
  """10 log10(255^2 / MSE) with the MSE over the region (dB); inf when equal, NaN if empty."""
  region = _region(region, a.shape)
  total = region.sum() * a.shape[-1]
  if not total:
    return float("nan")
  mse = np.sum(np.square(a - b) * region[..., None]) / total
  return float("inf") if mse == 0 else float(10.0 * np.log10(PEAK * PEAK / mse))


def ssim_map(a, b):
  """Per-pixel SSIM `[H, W]` (mean over channels) with a Gaussian window, population
  statistics and the standard constants, as scikit-image's gaussian_weights=True."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
  maps = []
  for ch in range(a.shape[-1]):
    x, y = a[..., ch], b[..., ch]

    def blur(v):
      return scipy.ndimage.gaussian_filter(v, SSIM_SIGMA, truncate=SSIM_TRUNCATE)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    maps.append(((2 * mx * my + c1) * (2 * cov + c2)) /
                ((mx * mx + my * my + c1) * (vx + vy + c2)))
  return np.mean(maps, axis=0)


def masked_ssim(a, b, region):
  """Mean SSIM map over the region (the window sees the pixels around it); NaN if empty."""
  region = _region(region, a.shape)
  return float(np.sum(ssim_map(a, b) * region) / region.sum()) if region.sum() else float("nan")


def cosine(u, v):
  """Row-wise cosine similarity of `[B, D]` features."""
  u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
  return np.sum(u * v, -1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1) + 1e-12)
