"""Attribute interpolation: reference values, perspective correctness, gradients."""

import numpy as np
import pytest
import tensorflow as tf

import renderer
from tests import reference
from tests.test_rasterize import random_scene


def camera(batch=1, eye=(0.3, -0.2, 4.0)):
  view = renderer.camera_utils.look_at(np.tile(eye, (batch, 1)), np.zeros((batch, 3)),
                                       np.tile([0.0, 1.0, 0.0], (batch, 1)))
  proj = renderer.camera_utils.perspective(1.0, [45.0] * batch, [0.5] * batch, [20.0] * batch)
  return tf.matmul(proj, view).numpy()


CHANNEL_COUNTS = [1, 2, 3, 4, 9, 12, 13]  # the kernels specialise 1, 3, 4, 9 and 12


@pytest.mark.parametrize("channels", CHANNEL_COUNTS)
def test_matches_reference_gather(channels):
  clip, triangles = random_scene(11)
  raster = renderer.rasterize(clip[None], triangles, 30, 20)
  attributes = np.random.default_rng(0).normal(size=(1, len(clip), channels)).astype(np.float32)
  background = np.arange(channels, dtype=np.float32) - 5
  out = renderer.interpolate(attributes, triangles, raster.triangle_ids, raster.barycentrics,
                             background).numpy()[0]
  expected = reference.interpolate(attributes[0], triangles, raster.triangle_ids.numpy()[0],
                                   raster.barycentrics.numpy()[0].astype(np.float64), background)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels", CHANNEL_COUNTS)
def test_gradient_op_matches_numpy_chain_rule(channels):
  # d out[p, c] / d attr[tri_i, c] = b_i; d / d b_i = attr[tri_i, c]; empty
  # pixels feed the background. Summed over a batch of two images in float64.
  clip, triangles = random_scene(9)
  clip2 = clip * np.float32(1.1)
  raster = renderer.rasterize(np.stack([clip, clip2]), triangles, 17, 13)
  rng = np.random.default_rng(channels)
  attributes = rng.normal(size=(2, len(clip), channels)).astype(np.float32)
  grad = rng.normal(size=(2, 13, 17, channels)).astype(np.float32)
  ids, bary = raster.triangle_ids.numpy(), raster.barycentrics.numpy()
  d_attr, d_bary, d_background = renderer._op_library.ops().renderer_interpolate_grad(
      attributes, triangles, ids, bary, grad)
  want_attr = np.zeros(attributes.shape)
  want_bary = np.zeros(bary.shape)
  want_background = np.zeros(channels)
  for b in range(2):
    for (y, x), t in np.ndenumerate(ids[b]):
      g = grad[b, y, x].astype(np.float64)
      if t < 0:
        want_background += g
        continue
      for i, v in enumerate(np.asarray(triangles)[t]):
        want_attr[b, v] += bary[b, y, x, i] * g
        want_bary[b, y, x, i] = attributes[b, v].astype(np.float64) @ g
  assert (ids >= 0).sum() > 50 and (ids < 0).sum() > 50
  np.testing.assert_allclose(d_attr.numpy(), want_attr, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(d_bary.numpy(), want_bary, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(d_background.numpy(), want_background, rtol=1e-5, atol=1e-4)


def test_interpolation_is_perspective_correct():
  # A slanted world-space triangle; the interpolated world position of every
  # pixel must be where the ray through the pixel centre meets its plane.
  world = np.array([[-1.5, -1.2, -1.0], [1.4, -1.0, 0.8], [0.1, 1.5, -2.5]], np.float32)
  matrix = camera()[0]
  clip = renderer.camera_utils.transform_homogeneous(matrix[None], world[None])
  raster = renderer.rasterize(clip, [[0, 1, 2]], 48, 40)
  positions = renderer.interpolate(world[None], [[0, 1, 2]], raster.triangle_ids,
                                   raster.barycentrics).numpy()[0]
  covered = raster.triangle_ids.numpy()[0] >= 0
  assert covered.sum() > 200
  px, py = reference.pixel_centers(48, 40)
  inverse = np.linalg.inv(matrix.astype(np.float64))
  near = np.stack([px, py, -np.ones_like(px), np.ones_like(px)], -1) @ inverse.T
  far = np.stack([px, py, np.ones_like(px), np.ones_like(px)], -1) @ inverse.T
  near, far = near[..., :3] / near[..., 3:], far[..., :3] / far[..., 3:]
  normal = np.cross(world[1] - world[0], world[2] - world[0]).astype(np.float64)
  t = ((world[0] - near) @ normal) / ((far - near) @ normal)
  hit = near + t[..., None] * (far - near)
  np.testing.assert_allclose(positions[covered], hit[covered], atol=2e-4)
  # Affine (screen-space) interpolation would be visibly different here.
  assert np.abs(positions[covered] - hit[covered]).max() < 1e-3


def test_background_fills_empty_pixels_and_gets_gradient():
  clip, triangles = random_scene(5)
  raster = renderer.rasterize(clip[None], triangles, 16, 16)
  attributes = tf.constant(np.ones((1, len(clip), 2), np.float32))
  background = tf.constant([-1.0, 2.0])
  with tf.GradientTape() as tape:
    tape.watch(background)
    out = renderer.interpolate(attributes, triangles, raster.triangle_ids, raster.barycentrics,
                               background)
    loss = tf.reduce_sum(out * [1.0, 3.0])
  empty = (raster.triangle_ids.numpy()[0] < 0)
  np.testing.assert_array_equal(out.numpy()[0][empty], np.tile([-1.0, 2.0], (empty.sum(), 1)))
  np.testing.assert_allclose(tape.gradient(loss, background).numpy(),
                             [empty.sum(), 3 * empty.sum()])


def test_gradients_wrt_attributes_and_vertices_match_finite_differences():
  world = np.array([[[-1.5, -1.2, -1.0], [1.4, -1.0, 0.8], [0.1, 1.5, -2.5], [1.6, 1.4, -1.0]]],
                   np.float32)
  triangles = [[0, 1, 2], [1, 3, 2]]
  matrix = camera()
  colors = np.random.default_rng(1).uniform(size=(1, 4, 3)).astype(np.float32)
  raster = renderer.rasterize(renderer.camera_utils.transform_homogeneous(matrix, world),
                              triangles, 24, 24)
  bary = raster.barycentrics.numpy()
  inside = (raster.triangle_ids.numpy() >= 0) & (bary.min(-1) > 0.08)
  weights = np.random.default_rng(2).normal(size=(1, 24, 24, 3)).astype(np.float32)
  weights *= inside[..., None]

  def f(vertices, colors):
    clip = renderer.camera_utils.transform_homogeneous(matrix, vertices)
    r = renderer.rasterize(clip, triangles, 24, 24)
    return tf.reduce_sum(
        renderer.interpolate(colors, triangles, r.triangle_ids, r.barycentrics) * weights)

  theoretical, numerical = tf.test.compute_gradient(f, [tf.constant(world), tf.constant(colors)],
                                                    delta=1e-3)
  for t, n in zip(theoretical, numerical):
    np.testing.assert_allclose(t, n, atol=2e-2 * np.abs(n).max())
  assert np.abs(theoretical[0]).max() > 0 and np.abs(theoretical[1]).max() > 0


def test_out_of_range_ids_and_shape_mismatches_are_rejected():
  ops = renderer._op_library.ops()
  attributes = tf.zeros([1, 3, 2])
  bary = tf.zeros([1, 2, 2, 3])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"triangle_ids value 1 .* out of range \[-1, 1\)"):
    ops.renderer_interpolate(attributes, [[0, 1, 2]], [[[0, 1], [-1, -1]]], bary, [0.0, 0.0])
  for bad in (-2, -2**31, 2**31 - 1):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"triangle_ids value {bad} at flat index 3 is out of range"):
      ops.renderer_interpolate(attributes, [[0, 1, 2]], [[[0, -1], [0, bad]]], bary, [0.0, 0.0])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"background must have shape \[C\] = \[2\]"):
    ops.renderer_interpolate(attributes, [[0, 1, 2]], tf.fill([1, 2, 2], -1), bary, [0.0])
  with pytest.raises(tf.errors.InvalidArgumentError, match="batch size"):
    ops.renderer_interpolate(attributes, [[0, 1, 2]], tf.fill([2, 2, 2], -1),
                             tf.zeros([2, 2, 2, 3]), [0.0, 0.0])
  with pytest.raises(ValueError, match=r"attributes must have shape \[B, V, C\]"):
    renderer.interpolate(tf.zeros([3, 2]), [[0, 1, 2]], tf.fill([1, 2, 2], -1), bary)
