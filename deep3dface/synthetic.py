"""A synthetic morphable model in the BFM_model_front.mat schema.

The licensed BFM09 is not available to everyone, so the project generates a
face-like stand-in: a procedural face surface (dome, eye sockets, brow ridge,
nose, lips) in decimetres facing +z, 68 keypoints in the iBUG/dlib layout
whose five alignment points sit at Deep3D's standard 3-D landmarks, smooth
identity/expression/albedo bases with decaying scales (coefficients ~ N(0, 1)
give plausible faces, as with the EV-scaled BFM bases), and the masks.

Three topologies:
  * "face": the embedded default at the paper's resolution, generated here: the
    face oval tiled by concentric rings of near-equilateral triangles, exactly
    35,709 vertices (BFM09's count, so CoMA's factors give the paper's level
    sizes 35,709 -> 8,928 -> 2,232 -> 558 -> 140), a manifold disk;
  * "grid": a triangulated grid clipped to the oval (~3,300 vertices), small
    and fast for unit tests;
  * "bfm": the real 35,709-vertex / 70,789-triangle BFM09 front topology from
    Deep3D's facemodel_info.mat (with its real point_buf, keypoints and masks),
    laid out on the same surface.

The albedo basis's first component is skin tone, light to dark, as BFM09's first
texture component: a near-uniform brightness and saturation change of the whole
face; the others are smooth zero-mean fields.
"""

import numpy as np
import scipy.interpolate
import scipy.io

from deep3dface import bfm
from deep3dface import constants

FACE_HALF_WIDTH = 0.85  # dm, half-axes of the face oval
FACE_HALF_HEIGHT = 1.12
FACE_CENTER_Y = -0.08
FACE_VERTICES = 35709  # the "face" topology: BFM09 front's vertex count (SPEC 2.4)
MEAN_SKIN = (205.0, 160.0, 140.0)  # 0-255 RGB of the mean albedo's skin
# Skin tone (albedo component 0) per unit coefficient: darker and more saturated as it grows,
# so N(0, 1) spans very light (-1.5: ~[255, 215, 190]) to dark (+2.5: ~[105, 65, 55]).
SKIN_TONE = (-40.0, -38.0, -34.0)


def gaussian(x, y, cx, cy, sx, sy):
  return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def face_height(x, y):
  """Procedural face depth z(x, y) in dm (x right, y up; arrays of any shape)."""
  r2 = (x / FACE_HALF_WIDTH) ** 2 + ((y - FACE_CENTER_Y) / FACE_HALF_HEIGHT) ** 2
  z = 0.55 * np.sqrt(np.clip(1.0 - 0.8 * r2, 0.0, None)) - 0.29
  z -= 0.10 * (gaussian(x, y, -0.31, 0.29, 0.11, 0.07) + gaussian(x, y, 0.31, 0.29, 0.11, 0.07))
  z += 0.05 * (gaussian(x, y, -0.30, 0.45, 0.16, 0.04) + gaussian(x, y, 0.30, 0.45, 0.16, 0.04))
  z += 0.22 * gaussian(x, y, 0.0, 0.08, 0.07, 0.20) + 0.12 * gaussian(x, y, 0.0, -0.06, 0.09, 0.07)
  z += 0.03 * gaussian(x, y, 0.0, -0.38, 0.22, 0.06) - 0.02 * gaussian(x, y, 0.0, -0.52, 0.2, 0.04)
  return z


def keypoints_2d():
  """68 keypoint (x, y) positions in the iBUG/dlib order, dm.

  Eye corners (0-based 36/39 and 42/45) average to the standard eye targets,
  30 is the nose tip and 48/54 the mouth corners, as in SPEC 2.1.
  """
  pts = []
  theta = np.linspace(0.0, np.pi, 17)  # 0-16 jaw, image-left to image-right
  pts += list(zip(-0.74 * np.cos(theta), 0.30 - 1.08 * np.sin(theta)))
  for side in (-1.0, 1.0):  # 17-21 and 22-26 brows (image-left first)
    xs = np.linspace(0.52, 0.10, 5) if side < 0 else np.linspace(0.10, 0.52, 5)
    pts += [(side * x, 0.46 + 0.06 * np.sin(np.pi * (x - 0.10) / 0.42)) for x in xs]
  pts += [(0.0, y) for y in np.linspace(0.28, 0.0, 4)]  # 27-30 bridge to tip
  pts[30] = constants.STANDARD_FIVE_POINTS[2][:2]
  pts += [(x, -0.13 + 0.03 * abs(x) / 0.13) for x in np.linspace(-0.13, 0.13, 5)]  # 31-35
  eye_xs = [constants.STANDARD_FIVE_POINTS[i][0] for i in (0, 1)]
  for cx in eye_xs:  # 36-41, 42-47: corner, upper lid x2, corner, lower x2
    cy = 0.29
    lid = [(cx - 0.14, cy), (cx - 0.05, cy + 0.045), (cx + 0.05, cy + 0.045), (cx + 0.14, cy),
           (cx + 0.05, cy - 0.04), (cx - 0.05, cy - 0.04)]
    pts += lid
  mx, my = 0.0, -0.38
  outer = [(-0.25, my), (-0.15, my + 0.07), (-0.05, my + 0.09), (0.0, my + 0.08),
           (0.05, my + 0.09), (0.15, my + 0.07), (0.25, my), (0.15, my - 0.08),
           (0.05, my - 0.11), (0.0, my - 0.11), (-0.05, my - 0.11), (-0.15, my - 0.08)]
  inner = [(-0.21, my), (-0.07, my + 0.03), (0.0, my + 0.03), (0.07, my + 0.03), (0.21, my),
           (0.07, my - 0.03), (0.0, my - 0.03), (-0.07, my - 0.03)]
  pts += [(mx + x, y) for x, y in outer + inner]
  out = np.array(pts, np.float64)
  assert out.shape == (constants.NUM_KEYPOINTS, 2)
  return out


def _grid_topology(step):
  """Grid vertices (x, y) inside the face oval and CCW triangles (+z normals)."""
  xs = np.arange(-FACE_HALF_WIDTH, FACE_HALF_WIDTH + 1e-9, step)
  ys = np.arange(FACE_CENTER_Y - FACE_HALF_HEIGHT, FACE_CENTER_Y + FACE_HALF_HEIGHT + 1e-9, step)
  gx, gy = np.meshgrid(xs, ys)  # row = y index
  inside = (gx / FACE_HALF_WIDTH) ** 2 + ((gy - FACE_CENTER_Y) / FACE_HALF_HEIGHT) ** 2 <= 1.0
  rows, cols = gx.shape
  idx = np.arange(rows * cols).reshape(rows, cols)
  a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
  c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
  keep = inside.ravel()[a] & inside.ravel()[b] & inside.ravel()[c] & inside.ravel()[d]
  a, b, c, d = a[keep], b[keep], c[keep], d[keep]
  # (a, b, d) and (a, d, c) are counter-clockwise with y up.
  tri = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
  used = np.unique(tri)
  remap = np.full(rows * cols, -1, np.int64)
  remap[used] = np.arange(len(used))
  xy = np.stack([gx.ravel()[used], gy.ravel()[used]], 1)
  return xy, remap[tri].astype(np.int32)


def _twice_signed_areas(xy, tri):
  """`[T]` twice the signed area of each triangle in the (x, y) plane (> 0: CCW)."""
  e1, e2 = xy[tri[:, 1]] - xy[tri[:, 0]], xy[tri[:, 2]] - xy[tri[:, 0]]
  return e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]


def _ring_counts(num_vertices, rings):
  """Vertices per ring 1..rings (about 6 k on ring k, as a hexagonal tiling) summing with
  the centre vertex to exactly `num_vertices`; even where the total allows, so that every
  vertex has an exact mirror image."""
  k = np.arange(1, rings + 1)
  counts = 2 * np.round(k * (num_vertices - 1) / k.sum() / 2).astype(np.int64)
  counts[-1] += num_vertices - 1 - counts.sum()
  return counts


def _zip_rings(inner, inner_angles, outer, outer_angles):
  """Triangles `[len(inner) + len(outer), 3]` closing the band between two rings of vertex
  ids sorted by angle (each step advances the ring whose next vertex comes first)."""
  tris, i, j = [], 0, 0
  n, m = len(inner), len(outer)
  while i < n or j < m:
    next_inner = inner_angles[(i + 1) % n] + 2 * np.pi * ((i + 1) // n)
    next_outer = outer_angles[(j + 1) % m] + 2 * np.pi * ((j + 1) // m)
    if j < m and (i >= n or next_outer <= next_inner):
      tris.append((inner[i % n], outer[j % m], outer[(j + 1) % m]))
      j += 1
    else:
      tris.append((inner[i % n], outer[j % m], inner[(i + 1) % n]))
      i += 1
  return tris


def _face_topology(num_vertices=FACE_VERTICES, rings=109):
  """(x, y) `[num_vertices, 2]` and CCW triangles of the face oval tiled by concentric rings.

  Ring k of `rings` lies at elliptical radius k / rings with about 6 k vertices; adjacent
  rings are zipped by angle, so every triangle is near-equilateral and the mesh is a
  manifold disk (one boundary loop) whatever the counts.
  """
  counts = _ring_counts(num_vertices, rings)
  xy, tris = [np.array([[0.0, FACE_CENTER_Y]])], []
  previous, previous_angles = np.array([0]), np.array([0.0])
  start = 1
  for k, count in enumerate(counts, 1):
    angles = 2 * np.pi * (np.arange(count) + 0.5 * (k % 2)) / count
    rho = k / rings
    xy.append(np.stack([FACE_HALF_WIDTH * rho * np.cos(angles),
                        FACE_CENTER_Y + FACE_HALF_HEIGHT * rho * np.sin(angles)], 1))
    ids = np.arange(start, start + count)
    if k == 1:
      tris += [(0, ids[i], ids[(i + 1) % count]) for i in range(count)]
    else:
      tris += _zip_rings(previous, previous_angles, ids, angles)
    previous, previous_angles, start = ids, angles, start + count
  xy, tri = np.concatenate(xy), np.array(tris, np.int64)
  flip = _twice_signed_areas(xy, tri) < 0
  tri[flip] = tri[flip][:, [0, 2, 1]]
  return xy, tri.astype(np.int32)


def _bfm_layout(info, target_xy):
  """(x, y) of the real topology: Tutte layout warped so keypoints hit target_xy."""
  from renderer import scenes  # numpy-only helpers shared with the renderer tests
  tri = (info["tri"] - 1).astype(np.int64)
  n = int(info["point_buf"].shape[0])
  uv = scenes.tutte_embedding(tri, n)
  kp = (info["keypoints"].ravel() - 1).astype(np.int64)
  # Affine fit first, then a smoothed thin-plate correction of the residual.
  design = np.concatenate([uv[kp], np.ones((len(kp), 1))], 1)
  affine, *_ = np.linalg.lstsq(design, target_xy, rcond=None)
  xy = np.concatenate([uv, np.ones((n, 1))], 1) @ affine
  warp = scipy.interpolate.RBFInterpolator(xy[kp], target_xy - xy[kp],
                                           kernel="thin_plate_spline", smoothing=1e-3)
  xy = xy + warp(xy)
  # Keep the topology's triangles counter-clockwise seen from +z.
  if np.sum(_twice_signed_areas(xy, tri)) < 0:
    tri = tri[:, [0, 2, 1]]
  return xy, tri.astype(np.int32)


ALBEDO_FIELD_ORDER = 13  # cosines per axis of the albedo fields: 90 mirror-symmetric ones


def _cosine_features(x, y, pairs):
  """`[N, len(pairs)]` cos(pi i (u+1)/2) cos(pi j (v+1)/2) over the face oval's box
  (u, v in [-1, 1]) for each (i, j) of `pairs`, at points x `[N]`, y `[N]` (dm)."""
  u = x / FACE_HALF_WIDTH
  v = (y - FACE_CENTER_Y) / FACE_HALF_HEIGHT
  return np.stack([np.cos(0.5 * np.pi * i * (u + 1)) * np.cos(0.5 * np.pi * j * (v + 1))
                   for i, j in pairs], 1)


def _symmetric_features(xy, order=ALBEDO_FIELD_ORDER):
  """Orthonormal (over the vertices), mirror-symmetric smooth fields `[N, F]` in order of
  rising spatial frequency, without the constant: `_cosine_features` for even i,
  Gram-Schmidt'ed in that order (as a PCA's components, smooth ones first)."""
  pairs = sorted(((i, j) for i in range(0, order, 2) for j in range(order)),
                 key=lambda p: (p[0] + p[1], p))
  q, r = np.linalg.qr(_cosine_features(xy[:, 0], xy[:, 1], pairs))
  q *= np.sign(np.diag(r))
  return q[:, 1:] * np.sqrt(len(xy))  # unit RMS, the constant (0, 0) left out


def _smooth_fields(xy, count, rng, order=7, mirror=0):
  """`count` random smooth scalar fields on the vertices, each with unit RMS.

  mirror: +1 makes each field symmetric under x -> -x (f(-x, y) = f(x, y)), -1
  antisymmetric (the x displacement of a symmetric shape change), 0 neither.
  """
  pairs = [(i, j) for i in range(order) for j in range(order) if 0 < i + j]
  freq = np.array([i + j for i, j in pairs], np.float64)
  weights = rng.normal(size=(len(freq), count)) / freq[:, None] ** 1.5

  def fields_at(x):
    return _cosine_features(x, xy[:, 1], pairs) @ weights

  fields = fields_at(xy[:, 0])
  if mirror:
    fields = 0.5 * (fields + mirror * fields_at(-xy[:, 0]))
  fields -= fields.mean(0)
  return fields / np.sqrt((fields ** 2).mean(0))


def _interleave(fx, fy, fz):
  """[N, K] per-axis fields -> [3N, K] rows interleaving x, y, z (BFM layout)."""
  n, k = fx.shape
  out = np.empty((3 * n, k), np.float64)
  out[0::3], out[1::3], out[2::3] = fx, fy, fz
  return out


def _bases(xy, rng):
  """Identity, expression and albedo bases with decaying per-component scales."""
  x, y = xy[:, 0], xy[:, 1]
  k_id = np.arange(constants.ID_DIM)
  scale_id = 0.05 / (1.0 + k_id) ** 0.6  # dm
  # Faces are nearly mirror-symmetric (as BFM09's bases): symmetric depth and height
  # changes, an antisymmetric width change.
  fz = _smooth_fields(xy, constants.ID_DIM, rng, mirror=1)
  fx = 0.4 * _smooth_fields(xy, constants.ID_DIM, rng, mirror=-1)
  fy = 0.4 * _smooth_fields(xy, constants.ID_DIM, rng, mirror=1)
  id_base = _interleave(fx, fy, fz) * scale_id

  k_ex = np.arange(constants.EXP_DIM)
  scale_ex = 0.03 / (1.0 + k_ex) ** 0.5
  local = np.maximum.reduce([gaussian(x, y, 0.0, -0.40, 0.28, 0.18),
                             0.6 * gaussian(x, y, -0.31, 0.35, 0.18, 0.12),
                             0.6 * gaussian(x, y, 0.31, 0.35, 0.18, 0.12)])[:, None]
  ex_base = _interleave(0.5 * local * _smooth_fields(xy, constants.EXP_DIM, rng),
                        local * _smooth_fields(xy, constants.EXP_DIM, rng),
                        local * _smooth_fields(xy, constants.EXP_DIM, rng)) * scale_ex

  skin = np.array(MEAN_SKIN)
  lips = gaussian(x, y, 0.0, -0.38, 0.2, 0.07)[:, None]
  brows = (gaussian(x, y, -0.30, 0.48, 0.17, 0.035) + gaussian(x, y, 0.30, 0.48, 0.17, 0.035))
  eyes = (gaussian(x, y, -0.31, 0.29, 0.07, 0.03) + gaussian(x, y, 0.31, 0.29, 0.07, 0.03))
  mean_tex = (skin + lips * np.array([-30.0, -65.0, -45.0]) +
              np.clip(brows, 0, 1)[:, None] * np.array([-110.0, -95.0, -85.0]) +
              np.clip(eyes, 0, 1)[:, None] * np.array([-60.0, -50.0, -40.0]))
  return id_base, ex_base, np.clip(mean_tex, 0.0, 255.0), _albedo_basis(xy)


def _albedo_basis(xy):
  """`[3N, 80]` orthogonal albedo components, as a PCA's: 0 is skin tone (SKIN_TONE, uniform
  over the face), then smooth mirror-symmetric fields of rising frequency and falling scale, two
  of brightness (all channels) for each one of tint (red against blue)."""
  feats = _symmetric_features(xy)
  tone = np.ones((len(xy), 1))
  columns = [_interleave(*(tone * c for c in SKIN_TONE))[:, 0]]
  gray = tint = 0
  for k in range(1, constants.TEX_DIM):
    scale = 14.0 / (1.0 + k) ** 0.6  # 0-255 units
    if k % 3:
      f = feats[:, gray]
      columns.append(_interleave(f[:, None], f[:, None], f[:, None])[:, 0] * scale)
      gray += 1
    else:
      f = 0.5 * feats[:, tint]
      columns.append(_interleave(f[:, None], 0 * f[:, None], -f[:, None])[:, 0] * scale)
      tint += 1
  return np.stack(columns, 1)  # orthogonal: the features are, and so are gray and tint


def _masks(xy, triangles):
  x, y = xy[:, 0], xy[:, 1]
  front = (x / 0.72) ** 2 + ((y - FACE_CENTER_Y) / 0.98) ** 2 <= 1.0
  front_idx = np.flatnonzero(front).astype(np.int32)
  remap = np.full(len(xy), -1, np.int64)
  remap[front_idx] = np.arange(len(front_idx))
  tri_front = triangles[np.all(front[triangles], axis=1)]
  features = np.maximum.reduce([gaussian(x, y, -0.31, 0.29, 0.12, 0.07),
                                gaussian(x, y, 0.31, 0.29, 0.12, 0.07),
                                gaussian(x, y, -0.30, 0.47, 0.2, 0.05),
                                gaussian(x, y, 0.30, 0.47, 0.2, 0.05),
                                gaussian(x, y, 0.0, -0.38, 0.3, 0.1),
                                gaussian(x, y, 0.0, -0.05, 0.12, 0.25)])
  skin = front & (features < 0.3)
  return front_idx, remap[tri_front].astype(np.int32), skin


def synthetic_model(topology="face", facemodel_info=None, seed=0, grid_step=0.03,
                    standard_landmarks=None):
  """Builds a synthetic MorphableModel.

  Args:
    topology: "face" (the embedded default, 35,709 vertices), "grid" (small; both
      self-contained) or "bfm" (needs `facemodel_info`).
    facemodel_info: path of Deep3D's facemodel_info.mat (real BFM09 front
      topology: tri, point_buf, keypoints, frontmask2_idx, tri_mask2, skinmask).
    seed: random seed of the bases.
    grid_step: grid spacing in dm for the "grid" topology.
    standard_landmarks: optional float `[68, 3]` (similarity_Lm3D_all.mat's
      `lm`): keypoint (x, y) targets for the "bfm" layout instead of the
      procedural ones.

  Returns:
    MorphableModel (bases float32, indices 0-based).
  """
  rng = np.random.default_rng(seed)
  if topology in ("grid", "face"):
    xy, triangles = _grid_topology(grid_step) if topology == "grid" else _face_topology()
    kp_xy = keypoints_2d()
    keypoints = np.argmin(((xy[None] - kp_xy[:, None]) ** 2).sum(-1), axis=1).astype(np.int32)
    front_idx, tri_mask2, skin = _masks(xy, triangles)
    point_buf = bfm.point_buffer(triangles, len(xy))
  elif topology == "bfm":
    if facemodel_info is None:
      raise ValueError("topology='bfm' needs facemodel_info (Deep3D's facemodel_info.mat)")
    info = scipy.io.loadmat(facemodel_info)
    target = (keypoints_2d() if standard_landmarks is None else
              np.asarray(standard_landmarks, np.float64)[:, :2])
    xy, triangles = _bfm_layout(info, target)
    keypoints = (info["keypoints"].ravel() - 1).astype(np.int32)
    front_idx = (info["frontmask2_idx"].ravel() - 1).astype(np.int32)
    tri_mask2 = (info["tri_mask2"] - 1).astype(np.int32)
    skin = info["skinmask"].ravel() > 0.5
    point_buf = (info["point_buf"] - 1).astype(np.int32)
  else:
    raise ValueError(f"topology must be 'face', 'grid' or 'bfm', got {topology!r}")
  z = face_height(xy[:, 0], xy[:, 1])
  mean_shape = np.concatenate([xy, z[:, None]], 1)
  id_base, ex_base, mean_tex, tex_base = _bases(xy, rng)
  return bfm.MorphableModel(
      mean_shape=mean_shape.astype(np.float32),
      id_base=id_base.astype(np.float32),
      ex_base=ex_base.astype(np.float32),
      mean_tex=mean_tex.astype(np.float32),
      tex_base=tex_base.astype(np.float32),
      triangles=np.asarray(triangles, np.int32),
      point_buf=point_buf,
      keypoints=keypoints,
      front_mask_idx=front_idx,
      tri_mask2=tri_mask2,
      skin_mask=skin,
  )
