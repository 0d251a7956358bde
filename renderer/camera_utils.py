"""Camera matrices for the rasterizer (tf_mesh_renderer's camera_utils).

Conventions (OpenGL): right-handed world space; the camera looks down its -z
axis; clip = P @ V @ [x, y, z, 1]^T; NDC = clip.xyz / clip.w in [-1, 1]^3.
"""

import math

import tensorflow as tf

from renderer import _checks

# Eye and gaze closer than this, or an up vector parallel to the gaze, make
# look_at degenerate (tf_mesh_renderer's cutoff).
_DEGENERACY_CUTOFF = 1e-6


def look_at(eye, center, world_up):
  """World-to-eye matrices of cameras at `eye` looking at `center` (gluLookAt).

  Args:
    eye: float32 `[B, 3]` camera positions (world units).
    center: float32 `[B, 3]` points the cameras look at.
    world_up: float32 `[B, 3]` up directions (need not be unit or orthogonal).

  Returns:
    float32 `[B, 4, 4]` matrices with rows [side; up'; -forward; 0 0 0 1]
    applied after translating by -eye.

  Raises:
    tf.errors.InvalidArgumentError: eye == center or up parallel to the gaze.
  """
  eye = _checks.float_tensor(eye, "eye", 2, 3, "[B, 3]")
  center = _checks.float_tensor(center, "center", 2, 3, "[B, 3]")
  world_up = _checks.float_tensor(world_up, "world_up", 2, 3, "[B, 3]")
  forward = _normalized(center - eye, "eye and center are close")
  side = _normalized(tf.linalg.cross(forward, world_up),
                     "up and gaze are close or up is degenerate")
  up = tf.linalg.cross(side, forward)
  rotation = tf.stack([side, up, -forward], axis=1)  # [B, 3, 3]
  translation = -tf.linalg.matvec(rotation, eye)  # [B, 3]
  top = tf.concat([rotation, translation[:, :, None]], axis=2)  # [B, 3, 4]
  bottom = tf.broadcast_to(tf.constant([[[0.0, 0.0, 0.0, 1.0]]]), [tf.shape(eye)[0], 1, 4])
  return tf.concat([top, bottom], axis=1)


def _normalized(vectors, degenerate_reason):
  """Unit vectors of [B, 3]; InvalidArgumentError if any is shorter than the cutoff."""
  norm = tf.norm(vectors, axis=1, keepdims=True)
  tf.debugging.assert_greater(
      norm, _DEGENERACY_CUTOFF,
      message=f"Camera matrix is degenerate because {degenerate_reason}.")
  return vectors / norm


def perspective(aspect_ratio, fov_y, near_clip, far_clip):
  """Perspective projection matrices (gluPerspective).

  Args:
    aspect_ratio: float or float32 `[B]`, width / height.
    fov_y: float32 `[B]`, vertical field of view in degrees, in (0, 180).
    near_clip: float32 `[B]`, near plane distance (> 0, world units).
    far_clip: float32 `[B]`, far plane distance (> near_clip).

  Returns:
    float32 `[B, 4, 4]`: diag(f / aspect, f) with f = 1 / tan(fov_y / 2),
    row 3 = (0, 0, -(far + near) / (far - near), -2 far near / (far - near)),
    row 4 = (0, 0, -1, 0).
  """
  fov_y = _checks.float_tensor(fov_y, "fov_y", 1, None, "[B]")
  near_clip = _checks.float_tensor(near_clip, "near_clip", 1, None, "[B]")
  far_clip = _checks.float_tensor(far_clip, "far_clip", 1, None, "[B]")
  aspect_ratio = tf.broadcast_to(_checks.float_tensor(aspect_ratio, "aspect_ratio"),
                                 tf.shape(fov_y))
  focal = 1.0 / tf.tan(fov_y * (math.pi / 360.0))
  depth_range = far_clip - near_clip
  p22 = -(far_clip + near_clip) / depth_range
  p23 = -2.0 * (far_clip * near_clip / depth_range)
  zeros = tf.zeros_like(focal)
  rows = [
      [focal / aspect_ratio, zeros, zeros, zeros],
      [zeros, focal, zeros, zeros],
      [zeros, zeros, p22, p23],
      [zeros, zeros, -tf.ones_like(focal), zeros],
  ]
  return tf.stack([tf.stack(r, axis=1) for r in rows], axis=1)


def euler_matrices(angles):
  """Homogeneous rotations R = Rz @ Ry @ Rx (rotate about x, then y, then z).

  Args:
    angles: float32 `[B, 3]` angles about the x, y and z axes, radians.

  Returns:
    float32 `[B, 4, 4]` with the rotation in the upper-left 3x3 block.
  """
  angles = _checks.float_tensor(angles, "angles", 2, 3, "[B, 3]")
  s, c = tf.sin(angles), tf.cos(angles)
  sx, sy, sz = tf.unstack(s, axis=1)
  cx, cy, cz = tf.unstack(c, axis=1)
  zeros, ones = tf.zeros_like(sx), tf.ones_like(sx)
  rows = [
      [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx, zeros],
      [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx, zeros],
      [-sy, cy * sx, cy * cx, zeros],
      [zeros, zeros, zeros, ones],
  ]
  return tf.stack([tf.stack(r, axis=1) for r in rows], axis=1)


def transform_homogeneous(matrices, vertices):
  """Applies 4x4 transforms to 3-D points: [x, y, z, 1] @ M^T.

  Args:
    matrices: float32 `[B, 4, 4]`.
    vertices: float32 `[B, V, 3]`.

  Returns:
    float32 `[B, V, 4]` homogeneous (e.g. clip-space) coordinates.
  """
  matrices = _checks.float_tensor(matrices, "matrices", 3, 4, "[B, 4, 4]")
  vertices = _checks.float_tensor(vertices, "vertices", 3, 3, "[B, V, 3]")
  # [x y z 1] M^T = x M[:, 0] + y M[:, 1] + z M[:, 2] + M[:, 3]: broadcast
  # multiply-adds, which XLA fuses with their neighbours (a [B, V, 3] x [3, 4]
  # batched matmul is a slow generic dot on CPU).
  m = matrices[:, None, :, :]  # [B, 1, 4, 4]
  return (vertices[..., 0:1] * m[..., 0] + vertices[..., 1:2] * m[..., 1] +
          vertices[..., 2:3] * m[..., 2] + m[..., 3])
