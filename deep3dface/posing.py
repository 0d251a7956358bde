"""Pose, spherical-harmonics lighting and projection of a canonical face (SPEC 2.6, 2.8, 2.9).

The TensorFlow formulas of the face's second half: FaceModel runs them under
XLA (matmul kernel) and they define the gradient of the C++ op that computes
the same outputs on CPU (deep3dface.face_ops.pose_light).

Units: shapes in decimetres, angles in radians, colours in [0, 255], image
positions in pixels of the 224 x 224 aligned crop.
"""

import collections

import numpy as np
import tensorflow as tf

from deep3dface import constants
from renderer import camera_utils

PosedFace = collections.namedtuple("PosedFace", [
    "vertices",       # [B, N, 3] R s + t, dm
    "normals",        # [B, N, 3] R n
    "colors",         # [B, N, 3] SH-lit albedo, [0, 255] (not clipped)
    "landmarks",      # [B, L, 2] projected keypoints (u, v_up), pixels
    "clip_vertices",  # [B, N, 4] clip space
])


def rotation_matrices(angles):
  """R = Rz Ry Rx for Euler angles `[B, 3]` (x, y, z radians) -> `[B, 3, 3]` (SPEC 2.6)."""
  angles = tf.convert_to_tensor(angles, tf.float32)
  cos, sin = tf.cos(angles), tf.sin(angles)
  cx, cy, cz = tf.unstack(cos, axis=-1)
  sx, sy, sz = tf.unstack(sin, axis=-1)
  one, zero = tf.ones_like(cx), tf.zeros_like(cx)
  rx = tf.reshape(tf.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1), [-1, 3, 3])
  ry = tf.reshape(tf.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1), [-1, 3, 3])
  rz = tf.reshape(tf.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1), [-1, 3, 3])
  return rz @ ry @ rx


def rotate(points, rotation):
  """points `[B, N, 3]` @ rotation `[B, 3, 3]`^T as broadcast multiply-adds (XLA fuses them)."""
  return (points[..., 0:1] * rotation[:, None, :, 0] + points[..., 1:2] * rotation[:, None, :, 1] +
          points[..., 2:3] * rotation[:, None, :, 2])


def sh_factors():
  """The constant factor of each of the 9 SH basis functions (Deep3D's a_i c_i), floats."""
  a0, a1, a2 = constants.SH_A
  c0, c1, c2 = constants.SH_C
  return (a0 * c0, -a1 * c1, a1 * c1, -a1 * c1, a2 * c2, -a2 * c2,
          a2 * c2 * 0.5 / np.sqrt(3.0), -a2 * c2, a2 * c2 * 0.5)


def sh_basis(normals, axis=-1):
  """The 9 SH basis values (with Deep3D's constants) of unit normals `[..., 3]` -> `[..., 9]`
  (stacked on `axis` of the result: -2 gives `[..., 9, N]` for normals `[..., N, 3]`)."""
  f = sh_factors()
  nx, ny, nz = tf.unstack(normals, axis=-1)
  return tf.stack([
      tf.fill(tf.shape(nx), f[0]),
      f[1] * ny,
      f[2] * nz,
      f[3] * nx,
      f[4] * nx * ny,
      f[5] * ny * nz,
      f[6] * (3.0 * nz * nz - 1.0),
      f[7] * nx * nz,
      f[8] * (nx * nx - ny * ny),
  ], axis=axis)


def illuminate(albedo, normals, gamma):
  """Spherical-harmonics shading (SPEC 2.8).

  Args:
    albedo: float32 `[B, N, 3]`, RGB in [0, 255].
    normals: float32 `[B, N, 3]` unit normals in camera orientation (rotated).
    gamma: float32 `[B, 27]`: R, G, B blocks of 9 coefficients; the ambient
      prior 0.8 is added to each block's first coefficient here.

  Returns:
    float32 `[B, N, 3]`: albedo * (Y(n) . gamma_k) per channel k, [0, 255]
    scale, not clipped.
  """
  gamma = tf.reshape(gamma, [-1, 3, 9])
  gamma += tf.constant([constants.SH_AMBIENT_PRIOR] + [0.0] * 8, tf.float32)
  # One product with the basis as [B, 9, N] rows: without XLA, stacking the basis on the last
  # axis and nine broadcast multiply-adds took 16 ms for 4 x 35,709 vertices, this 2 ms.
  shading = tf.linalg.matrix_transpose(tf.matmul(gamma, sh_basis(normals, axis=-2)))
  return albedo * shading


def project(vertices):
  """Deep3D's pinhole projection (SPEC 2.9) of posed vertices `[B, N, 3]` -> `[B, N, 2]`.

  Returns (u, v_up) in pixels: u = 112 + f X / (10 - Z), v_up = 112 + f Y / (10 - Z);
  the image row of a point is 223 - v_up in Deep3D's landmark convention.
  """
  x, y, z = tf.unstack(vertices, axis=-1)
  depth = constants.CAMERA_DISTANCE - z
  return tf.stack([constants.PRINCIPAL_POINT + constants.FOCAL * x / depth,
                   constants.PRINCIPAL_POINT + constants.FOCAL * y / depth], axis=-1)


def camera_matrix(near_clip=constants.NEAR_CLIP, far_clip=constants.FAR_CLIP):
  """The 4x4 world-to-clip matrix of Deep3D's renderer camera `[1, 4, 4]`."""
  view = camera_utils.look_at([[0.0, 0.0, constants.CAMERA_DISTANCE]], [[0.0, 0.0, 0.0]],
                              [[0.0, 1.0, 0.0]])
  proj = camera_utils.perspective(1.0, [constants.FOV_Y_DEGREES], [near_clip], [far_clip])
  return tf.matmul(proj, view)


def pose_and_light(shape, normals, albedo, angles, translation, gamma, world_to_clip, keypoints):
  """Poses, lights and projects canonical faces.

  Args:
    shape: float32 `[B, N, 3]` canonical shapes, dm.
    normals: float32 `[B, N, 3]` their unit vertex normals.
    albedo: float32 `[B, N, 3]`, [0, 255].
    angles: float32 `[B, 3]` Euler angles (x, y, z), radians.
    translation: float32 `[B, 3]`, dm.
    gamma: float32 `[B, 27]` SH coefficients without the ambient prior.
    world_to_clip: float32 `[4, 4]` or `[1, 4, 4]` (camera_matrix()).
    keypoints: int32 `[L]` vertex indices of the landmarks.

  Returns:
    PosedFace.
  """
  rotation = rotation_matrices(angles)
  vertices = rotate(shape, rotation) + translation[:, None, :]
  rotated = rotate(normals, rotation)
  return PosedFace(
      vertices=vertices, normals=rotated, colors=illuminate(albedo, rotated, gamma),
      landmarks=project(tf.gather(vertices, keypoints, axis=1)),
      clip_vertices=camera_utils.transform_homogeneous(
          tf.reshape(world_to_clip, [1, 4, 4]), vertices))
