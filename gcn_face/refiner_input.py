"""The GCN Refiner's per-vertex input (SPEC 3.1).

Release ("code"): 7 channels per vertex, [T_pca (3), P * vis (3), vis (1)]:
the coarse albedo, the image colour under the projected vertex times its
visibility, and the visibility itself. Paper: the coarse albedo alone.
This project's "delit" (the start-from-coarse generator's input): the release's 7
channels and the de-lit residual vis' * (P / S - T_pca) (3): the photo colour
(bilinear, at the exact projection) divided by the SH shading S of the
coefficients' light, minus the coarse albedo,
where the vertex is visible and lit (S >= MIN_SHADING), i.e. what the photo says
the albedo lacks.
"""

import tensorflow as tf

from deep3dface import constants

MODES = ("code", "paper", "delit")
CHANNELS = {"code": 7, "paper": 3, "delit": 10}
MIN_SHADING = 0.2  # below, a photo colour says too little about the albedo (deep shadow)


def vertex_pixels(vertices):
  """Integer pixel (row, col) `[B, N, 2]` under posed vertices `[B, N, 3]` (dm, Deep3D camera).

  The release's helper: NDC (x, -y) / (tan(fov/2) (10 - z)), y downward, then
  round(112 * ndc + 112) (half to even, as tf.round) clamped to [0, 223].
  """
  x, y, z = tf.unstack(vertices, axis=-1)
  scale = constants.FOCAL / (constants.PRINCIPAL_POINT * (constants.CAMERA_DISTANCE - z))
  half = constants.IMAGE_SIZE / 2.0
  col = tf.round(half * (x * scale) + half)
  row = tf.round(half * (-y * scale) + half)
  pixels = tf.stack([row, col], axis=-1)
  return tf.cast(tf.clip_by_value(pixels, 0.0, constants.IMAGE_SIZE - 1.0), tf.int32)


def _exact_position(vertices):
  """(row, col) `[B, N]` each, in pixels, where posed vertices `[B, N, 3]` project at the
  rasterizer's pixel centres (SPEC 2.9: column 111.5 + f X / (10 - Z), row
  111.5 - f Y / (10 - Z))."""
  x, y, z = tf.unstack(vertices, axis=-1)
  scale = constants.FOCAL / (constants.CAMERA_DISTANCE - z)
  centre = constants.PRINCIPAL_POINT - 0.5
  return centre - y * scale, centre + x * scale


def sample_bilinear(image, vertices):
  """The image `[B, H, W, C]` bilinearly sampled where posed vertices `[B, N, 3]` project
  (`_exact_position`), clamped to the image: `[B, N, C]`."""
  row, col = _exact_position(vertices)
  last = tf.cast(tf.shape(image)[1:3] - 1, tf.float32)
  row = tf.clip_by_value(row, 0.0, last[0])
  col = tf.clip_by_value(col, 0.0, last[1])
  row0 = tf.minimum(tf.floor(row), last[0] - 1.0)
  col0 = tf.minimum(tf.floor(col), last[1] - 1.0)
  fr, fc = (row - row0)[..., None], (col - col0)[..., None]
  r0, c0 = tf.cast(row0, tf.int32), tf.cast(col0, tf.int32)

  def at(dr, dc):
    return tf.gather_nd(image, tf.stack([r0 + dr, c0 + dc], -1), batch_dims=1)

  return ((at(0, 0) * (1.0 - fc) + at(0, 1) * fc) * (1.0 - fr) +
          (at(1, 0) * (1.0 - fc) + at(1, 1) * fc) * fr)


def delit_residual(coarse_albedo, colors, shading, visibility):
  """vis' (P / S - T_pca) `[B, N, 3]` on the [-1, 1] scale: the de-lit photo colour P / S
  (clipped to [0, 255]; P `[B, N, 3]` on [-1, 1], sampled by `sample_bilinear`) minus the
  coarse albedo, at visible vertices whose shading S (`[B, N, 3]`, the SH factor, ~1 for
  ambient light) is at least MIN_SHADING in every channel; 0 elsewhere."""
  lit = tf.cast(tf.reduce_all(shading >= MIN_SHADING, axis=-1), tf.float32) * visibility
  delit = tf.clip_by_value((colors + 1.0) * 127.5 / tf.maximum(shading, MIN_SHADING), 0.0, 255.0)
  return (delit / 127.5 - 1.0 - coarse_albedo) * lit[..., None]


def exact_pixels(vertices):
  """Integer pixel (row, col) `[B, N, 2]` nearest to where posed vertices project, at the
  rasterizer's pixel centres (the release's `vertex_pixels` is half a pixel off)."""
  pixels = tf.round(tf.stack(_exact_position(vertices), axis=-1))
  return tf.cast(tf.clip_by_value(pixels, 0.0, constants.IMAGE_SIZE - 1.0), tf.int32)


def vertex_colors(image, vertices, exact=False):
  """The photo colour under each posed vertex `[B, N, C]`: at the release's rounded pixel
  (`vertex_pixels`), or with `exact` bilinearly at the exact projection."""
  if exact:
    return sample_bilinear(image, vertices)
  return tf.gather_nd(image, vertex_pixels(vertices), batch_dims=1)


def refiner_input(coarse_albedo, image, mask, vertices, normals, mode="code", shading=None,
                  exact=False, colors=None):
  """Builds the refiner's per-vertex input.

  Args:
    coarse_albedo: float32 `[B, N, 3]`, the 3DMM albedo T_pca on the [-1, 1] scale.
    image: float32 `[B, 224, 224, 3]`, the aligned crop on the [-1, 1] scale.
    mask: float32 `[B, 224, 224]` in [0, 1], the eroded skin mask (SPEC 6.1).
    vertices: float32 `[B, N, 3]` posed vertices (decimetres, Deep3D camera).
    normals: float32 `[B, N, 3]` rotated vertex normals.
    mode: "code" (7 channels, the release), "paper" (3 channels) or "delit" (10).
    shading: float32 `[B, N, 3]`, the SH shading factor per vertex and channel
      (`posing.illuminate` of a unit albedo); needed by "delit" only.
    exact: sample the photo and the mask where the vertices project (bilinear colours,
      nearest mask pixel at the rasterizer's centres) instead of the release's rounding.
    colors: optional `[B, N, 3]`, `vertex_colors(image, vertices, exact)` when the caller
      has it already (sampled here otherwise).

  Returns:
    (per_vertex `[B, N, C]`, visibility `[B, N]`): visibility = [normal
    z > 0] x mask at the vertex's pixel (no z-buffer test, as the release).
  """
  if mode not in MODES:
    raise ValueError(f"refiner input mode must be one of {MODES}, got {mode!r}")
  size = constants.IMAGE_SIZE
  if image.shape[1:] != (size, size, 3) or mask.shape[1:] != (size, size):
    raise ValueError(f"image must be [B, {size}, {size}, 3] and mask [B, {size}, {size}], got "
                     f"{image.shape} and {mask.shape}")
  if coarse_albedo.shape[-1] != 3 or vertices.shape != coarse_albedo.shape or normals.shape != vertices.shape:
    raise ValueError(f"coarse_albedo, vertices and normals must all be [B, N, 3], got "
                     f"{coarse_albedo.shape}, {vertices.shape}, {normals.shape}")
  pixels = exact_pixels(vertices) if exact else vertex_pixels(vertices)
  if colors is None:
    colors = vertex_colors(image, vertices, exact)  # [B, N, 3]
  under = tf.gather_nd(mask, pixels, batch_dims=1)  # [B, N]
  visibility = tf.cast(normals[..., 2] > 0.0, tf.float32) * under
  if mode == "paper":
    return coarse_albedo, visibility
  channels = [coarse_albedo, colors * visibility[..., None], visibility[..., None]]
  if mode == "delit":
    if shading is None or shading.shape != coarse_albedo.shape:
      raise ValueError(f"refiner input 'delit' needs the shading [B, N, 3], got "
                       f"{None if shading is None else shading.shape}")
    # Always at the exact projection: the release's rounding, half a pixel off, blurs detail.
    precise = colors if exact else sample_bilinear(image, vertices)
    channels.append(delit_residual(coarse_albedo, precise, shading, visibility))
  return tf.concat(channels, -1), visibility
