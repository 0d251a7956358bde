"""The C++ Phong shading op (mesh_renderer's shading stage) against TensorFlow's formulas.

The reference is mesh_renderer's TensorFlow shader (`_phong_shader`, the code
that implemented the stage before the op, still used for legacy_specular) and
TensorFlow's automatic differentiation of it.
"""

import importlib

import numpy as np
import pytest
import tensorflow as tf

from renderer._op_library import ops

# The module (the package's `renderer.mesh_renderer` name is the function).
MR = importlib.import_module("renderer.mesh_renderer")


def _scene(batch, height, width, channels, lights, seed):
  rng = np.random.default_rng(seed)
  pixels = rng.normal(size=(batch, height, width, channels)).astype(np.float32)
  pixels[..., 3:6] *= 0.3  # positions near the origin, lights and camera further out
  pixels[..., 6:9] = rng.uniform(0.05, 1.0, size=(batch, height, width, 3))
  if channels >= 12:
    pixels[..., 9:12] = rng.uniform(0.0, 1.0, size=(batch, height, width, 3))
  if channels == 13:
    pixels[..., 12] = rng.uniform(1.0, 8.0, size=(batch, height, width))
  empty = rng.uniform(size=(batch, height, width)) < 0.25
  empty[0, 0, 0] = False
  pixels[empty] = -1.0  # mesh_renderer's background attribute
  pixels[0, 0, 0, :3] = 0.0  # a zero normal: l2_normalize's epsilon branch
  light_positions = rng.normal(size=(batch, lights, 3)).astype(np.float32) * 2 + [0, 0, 3]
  light_intensities = rng.uniform(0.2, 1.5, size=(batch, lights, 3)).astype(np.float32)
  camera = rng.normal(size=(batch, 3)).astype(np.float32) + [0, 0, 4]
  ambient = rng.uniform(0.0, 0.5, size=(batch, 3)).astype(np.float32)
  shininess = rng.uniform(1.0, 8.0, size=batch).astype(np.float32)
  return [tf.constant(np.asarray(x, np.float32))
          for x in (pixels, light_positions, light_intensities, camera, shininess, ambient)]


def _reference(pixels, light_positions, light_intensities, camera, shininess, ambient,
               channels):
  specular = channels >= 12
  per_pixel = channels == 13
  return MR._shade_pixels(pixels, light_positions, light_intensities,
                          camera if specular else None,
                          shininess if specular and not per_pixel else None, ambient, False)


def _op(pixels, light_positions, light_intensities, camera, shininess, ambient, channels):
  specular = channels >= 12
  per_pixel = channels == 13
  return MR._shade_pixels_op(pixels, light_positions, light_intensities,
                             camera if specular else None,
                             shininess if specular and not per_pixel else None, ambient)


@pytest.mark.parametrize("channels, lights, with_ambient", [
    (9, 0, True), (9, 1, False), (9, 3, True), (12, 1, True), (12, 3, False), (13, 0, False),
    (13, 1, True), (13, 3, True), (12, 70, False)])
def test_matches_tensorflow_values_and_gradients(channels, lights, with_ambient):
  inputs = _scene(2, 6, 7, channels, lights, seed=channels * 10 + lights)
  if not with_ambient:
    inputs[5] = None
  weights = tf.random.stateless_uniform([2, 6, 7, 4], [channels, lights], -1.0, 1.0)
  # TensorFlow's formulas turn the background's shininess -1 into NaN
  # gradients (pow(0, -1) = inf times a zero gradient, summed into the light
  # intensities' gradient too); the op skips background pixels. The reference
  # gets shininess 1 there, which changes nothing else.
  pixels = inputs[0].numpy()
  if channels == 13:
    pixels[..., 12][pixels[..., 12] == -1.0] = 1.0
  reference_inputs = [tf.constant(pixels)] + inputs[1:]
  results = []
  for shade, args in ((_reference, reference_inputs), (_op, inputs)):
    watched = [x for x in args if x is not None]
    with tf.GradientTape() as tape:
      tape.watch(watched)
      rgba = shade(*args, channels)
      loss = tf.reduce_sum(rgba * weights)
    results.append((rgba.numpy(), tape.gradient(loss, watched)))
  (want, want_grads), (got, got_grads) = results
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  assert np.any(got[..., 3] == 0) and np.any(got[..., 3] == 1)
  names = ["pixels", "light_positions", "light_intensities", "camera", "shininess", "ambient"]
  names = [n for n, x in zip(names, inputs) if x is not None]
  covered = got[..., 3][:, ::-1] == 1  # in the pixels' row order
  for name, w, g in zip(names, want_grads, got_grads):
    assert g is None or np.all(np.isfinite(g.numpy())), name
    if name == "pixels":  # zero on the background; compared where covered
      assert np.all(g.numpy()[~covered] == 0)
      w, g = tf.constant(w.numpy()[covered]), tf.constant(g.numpy()[covered])
    if w is None:  # not used by this configuration (camera/shininess without specular)
      assert g is None or not np.any(g.numpy()), name
      continue
    scale = max([1.0] + list(np.abs(w.numpy()).ravel()))
    np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_gradient_matches_finite_differences():
  inputs = _scene(1, 2, 3, 13, 2, seed=5)
  pixels, light_positions, light_intensities, camera, _, ambient = inputs
  pixels = np.where(pixels.numpy() == -1.0, 0.3, pixels.numpy()).astype(np.float32)
  pixels[0, 0, 0, :3] = [0.2, -0.3, 0.9]  # not the zero normal (not differentiable there)
  pixels = tf.constant(pixels)

  def shade(p, lp, li, cam, amb):
    return MR._shade_pixels_op(p, lp, li, cam, None, amb)

  theoretical, numerical = tf.test.compute_gradient(
      shade, [pixels, light_positions, light_intensities, camera, ambient], delta=1e-3)
  for t, n in zip(theoretical, numerical):
    np.testing.assert_allclose(t, n, atol=2e-2, rtol=2e-2)


def test_rows_flipped_and_background_black():
  inputs = _scene(1, 4, 3, 9, 1, seed=3)
  rgba = _op(*inputs, 9).numpy()[0]
  covered = np.any(inputs[0].numpy()[0, ..., 6:9] >= 0, axis=-1)
  np.testing.assert_array_equal(rgba[..., 3], covered[::-1].astype(np.float32))
  assert np.all(rgba[~covered[::-1]] == 0)


def _raw_inputs(channels=9, lights=1, batch=2):
  return dict(pixels=tf.zeros([batch, 3, 4, channels]),
              light_positions=tf.zeros([batch, lights, 3]),
              light_intensities=tf.zeros([batch, lights, 3]), ambient=tf.zeros([batch, 3]),
              camera_position=tf.zeros([batch, 3]), shininess=tf.zeros([batch]))


@pytest.mark.parametrize("change, message", [
    (dict(pixels=tf.zeros([2, 3, 4, 10])), "pixels must have 9, 12 or 13 channels"),
    (dict(pixels=tf.zeros([2, 3, 9])), r"pixels must have shape \[B, H, W, C\]"),
    (dict(light_intensities=tf.zeros([2, 2, 3])), "light_intensities must have the shape"),
    (dict(light_positions=tf.zeros([3, 1, 3])), r"light_positions must have shape \[B, L, 3\]"),
    (dict(ambient=tf.zeros([3])), r"ambient must have shape \[B, 3\]"),
    (dict(shininess=tf.zeros([2, 1])), r"shininess must have shape \[B\]"),
])
def test_bad_input(change, message):
  args = dict(_raw_inputs(), **change)
  with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
    ops().renderer_phong_shade(**args)


def test_bad_gradient_input():
  args = _raw_inputs()
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"df_drgba must have shape"):
    ops().renderer_phong_shade_grad(**args, df_drgba=tf.zeros([2, 3, 4, 3]))


def test_legacy_specular_keeps_the_tensorflow_shader():
  inputs = _scene(1, 5, 5, 12, 1, seed=9)
  legacy = MR._shade_pixels(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5],
                            True)
  assert np.all(np.isfinite(legacy.numpy()))
  assert not np.allclose(legacy.numpy(), _op(*inputs, 12).numpy())
