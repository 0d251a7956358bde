"""Camera matrices against numpy implementations of the OpenGL formulas."""

import math

import numpy as np
import pytest
import tensorflow as tf

from renderer import camera_utils


def np_look_at(eye, center, up):
  f = center - eye
  f = f / np.linalg.norm(f)
  s = np.cross(f, up)
  s = s / np.linalg.norm(s)
  u = np.cross(s, f)
  m = np.eye(4)
  m[0, :3], m[1, :3], m[2, :3] = s, u, -f
  t = np.eye(4)
  t[:3, 3] = -eye
  return m @ t


@pytest.mark.parametrize("seed", range(3))
def test_look_at(seed):
  rng = np.random.default_rng(seed)
  eye, center, up = rng.normal(size=(3, 2, 3))
  got = camera_utils.look_at(eye, center, up).numpy()
  for i in range(2):
    np.testing.assert_allclose(got[i], np_look_at(eye[i], center[i], up[i]), atol=1e-5)
  # The eye maps to the origin and the gaze to -z.
  np.testing.assert_allclose(got[0] @ np.append(eye[0], 1), [0, 0, 0, 1], atol=1e-5)


def test_look_at_rejects_degenerate_cameras():
  with pytest.raises(tf.errors.InvalidArgumentError, match="eye and center are close"):
    camera_utils.look_at([[1.0, 2, 3]], [[1.0, 2, 3]], [[0.0, 1, 0]])
  with pytest.raises(tf.errors.InvalidArgumentError, match="up and gaze"):
    camera_utils.look_at([[0.0, 0, 5]], [[0.0, 0, 0]], [[0.0, 0, 1]])


def test_perspective():
  got = camera_utils.perspective(1.5, [40.0, 12.5936], [0.01, 1.0], [10.0, 50.0]).numpy()
  for i, (fov, n, f) in enumerate([(40.0, 0.01, 10.0), (12.5936, 1.0, 50.0)]):
    focal = 1 / math.tan(math.radians(fov) / 2)
    expected = np.array([[focal / 1.5, 0, 0, 0], [0, focal, 0, 0],
                         [0, 0, -(f + n) / (f - n), -2 * f * n / (f - n)], [0, 0, -1, 0]])
    np.testing.assert_allclose(got[i], expected, rtol=1e-5, atol=1e-6)
    # Near and far planes map to NDC z = -1 and +1.
    for depth, ndc in ((n, -1.0), (f, 1.0)):
      clip = expected @ [0, 0, -depth, 1]
      assert abs(clip[2] / clip[3] - ndc) < 1e-5


def test_deep3d_focal_length():
  # Deep3D: f = 1015 px on a 224 px image <=> fov_y = 2 atan(112 / 1015).
  fov = 2 * math.degrees(math.atan(112 / 1015))
  p = camera_utils.perspective(1.0, [fov], [0.01], [50.0]).numpy()[0]
  assert abs(p[1, 1] * 112 - 1015) < 1e-2


def test_euler_matrices_are_rz_ry_rx():
  angles = np.array([[0.3, -0.7, 1.1], [0.0, 0.0, 0.0]])
  got = camera_utils.euler_matrices(angles).numpy()
  for a, m in zip(angles, got):
    cx, cy, cz = np.cos(a)
    sx, sy, sz = np.sin(a)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    np.testing.assert_allclose(m[:3, :3], rz @ ry @ rx, atol=1e-6)
    np.testing.assert_allclose(m[3], [0, 0, 0, 1])


def test_transform_homogeneous():
  rng = np.random.default_rng(0)
  matrices, vertices = rng.normal(size=(2, 4, 4)), rng.normal(size=(2, 5, 3))
  got = camera_utils.transform_homogeneous(matrices, vertices).numpy()
  homogeneous = np.concatenate([vertices, np.ones((2, 5, 1))], -1)
  np.testing.assert_allclose(got, np.einsum("bij,bvj->bvi", matrices, homogeneous), atol=1e-5)
  with pytest.raises(ValueError, match=r"vertices must have shape \[B, V, 3\]"):
    camera_utils.transform_homogeneous(matrices, rng.normal(size=(2, 5, 4)))
