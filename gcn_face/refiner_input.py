"""The GCN Refiner's per-vertex input (SPEC 3.1).

Release ("code"): 7 channels per vertex, [T_pca (3), P * vis (3), vis (1)]:
the coarse albedo, the image colour under the projected vertex times its
visibility, and the visibility itself. Paper: the coarse albedo alone.
"""

import tensorflow as tf

from deep3dface import constants

MODES = ("code", "paper")
CHANNELS = {"code": 7, "paper": 3}


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


def refiner_input(coarse_albedo, image, mask, vertices, normals, mode="code"):
  """Builds the refiner's per-vertex input.

  Args:
    coarse_albedo: float32 `[B, N, 3]`, the 3DMM albedo T_pca on the [-1, 1] scale.
    image: float32 `[B, 224, 224, 3]`, the aligned crop on the [-1, 1] scale.
    mask: float32 `[B, 224, 224]` in [0, 1], the eroded skin mask (SPEC 6.1).
    vertices: float32 `[B, N, 3]` posed vertices (decimetres, Deep3D camera).
    normals: float32 `[B, N, 3]` rotated vertex normals.
    mode: "code" (7 channels, the release) or "paper" (3 channels).

  Returns:
    (per_vertex `[B, N, 7 or 3]`, visibility `[B, N]`): visibility = [normal
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
  pixels = vertex_pixels(vertices)
  colors = tf.gather_nd(image, pixels, batch_dims=1)  # [B, N, 3]
  under = tf.gather_nd(mask, pixels, batch_dims=1)  # [B, N]
  visibility = tf.cast(normals[..., 2] > 0.0, tf.float32) * under
  if mode == "paper":
    return coarse_albedo, visibility
  per_vertex = tf.concat([coarse_albedo, colors * visibility[..., None], visibility[..., None]], -1)
  return per_vertex, visibility
