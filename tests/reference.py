"""Independent float64 numpy reference of the rasterizer semantics (SPEC §5.4).

Written from the specification, vectorised over pixels and looping over
triangles, so it shares no code with the C++ kernels. Also reports which
pixels are numerically ambiguous (a pixel centre within `tol` of an edge, or
a near depth tie), where float32 and float64 may legitimately disagree.
"""

import numpy as np


def pixel_centers(width, height):
  px = (2.0 * np.arange(width) + 1.0 - width) / width
  py = (2.0 * np.arange(height) + 1.0 - height) / height
  return np.meshgrid(px, py)  # [H, W] each; row 0 at NDC y = -1


def rasterize(clip, triangles, width, height, tol=1e-5):
  """clip [V, 4], triangles [T, 3] -> ids [H, W], bary [H, W, 3], depth [H, W], ambiguous."""
  clip = np.asarray(clip, np.float64)
  px, py = pixel_centers(width, height)
  ids = np.full((height, width), -1, np.int64)
  bary = np.zeros((height, width, 3))
  depth = np.ones((height, width))
  ambiguous = np.zeros((height, width), bool)
  for t, tri in enumerate(np.asarray(triangles)):
    v = clip[tri]  # [3, 4]
    if not np.all(np.isfinite(v)) or np.all(v[:, 3] < 0):
      continue
    h = v[:, [0, 1, 3]]  # homogeneous 2-D points (x, y, w)
    rows = np.stack([np.cross(h[(i + 1) % 3], h[(i + 2) % 3]) for i in range(3)])
    if np.linalg.det(h) < 0:
      rows = -rows
    e = rows[:, 0, None, None] * px + rows[:, 1, None, None] * py + rows[:, 2, None, None]
    scale = np.abs(rows).sum(1)[:, None, None] + 1e-30
    inside = np.all(e >= 0, axis=0) & np.any(e > 0, axis=0)
    near_edge = np.any(np.abs(e) <= tol * scale, axis=0)
    s = e.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
      b = e / s
      z = np.einsum("ihw,i->hw", b, v[:, 2]) / np.einsum("ihw,i->hw", b, v[:, 3])
    in_range = (z >= -1) & (z <= 1)
    ambiguous |= near_edge & (np.abs(z) <= 1 + tol)
    ambiguous |= inside & (np.abs(np.abs(z) - 1) <= tol)
    ambiguous |= inside & in_range & (np.abs(z - depth) <= tol)
    keep = inside & in_range & (z <= depth)
    ids[keep] = t
    depth[keep] = z[keep]
    bary[keep] = np.moveaxis(b, 0, -1)[keep]
  return ids, bary, depth, ambiguous


def interpolate(attributes, triangles, ids, bary, background):
  """attributes [V, C], ids [H, W], bary [H, W, 3] -> [H, W, C]."""
  attributes = np.asarray(attributes, np.float64)
  out = np.broadcast_to(np.asarray(background, np.float64),
                        ids.shape + (attributes.shape[1],)).copy()
  covered = ids >= 0
  corners = attributes[np.asarray(triangles)[ids[covered]]]  # [P, 3, C]
  out[covered] = np.einsum("pi,pic->pc", bary[covered], corners)
  return out
