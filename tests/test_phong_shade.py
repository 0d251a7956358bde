"""The C++ Phong shading op (mesh_renderer's interpolation + shading) against TensorFlow.

The reference is the unfused pipeline: the interpolation op on the
concatenated vertex attributes, then mesh_renderer's TensorFlow shader
(`_shade_pixels`, the code that implemented the stage before the op, still used
for legacy_specular), differentiated by TensorFlow.
"""

import importlib

import numpy as np
import pytest
import tensorflow as tf

from renderer import interpolate
from renderer.rasterize import RasterOutput
from renderer._op_library import ops

# The module (the package's `renderer.mesh_renderer` name is the function).
MR = importlib.import_module("renderer.mesh_renderer")

def _scene(batch, height, width, channels, lights, seed):
  """Random vertex attributes and a random rasterizer output over them."""
  rng = np.random.default_rng(seed)
  vertex_count, triangle_count = 12, 9
  attrs = rng.normal(size=(batch, vertex_count, channels)).astype(np.float32)
  attrs[..., 3:6] *= 0.3  # positions near the origin, lights and camera further out
  attrs[..., 6:9] = rng.uniform(0.05, 1.0, size=(batch, vertex_count, 3))
  if channels >= 12:
    attrs[..., 9:12] = rng.uniform(0.0, 1.0, size=(batch, vertex_count, 3))
  if channels == 13:
    attrs[..., 12] = rng.uniform(1.0, 8.0, size=(batch, vertex_count))
  attrs[:, 0:3, 6:9] = -0.5  # triangle 0: negative diffuse colour, not covered
  attrs[:, 3:6, 0:3] = 0.0  # triangle 1: a zero normal (l2_normalize's epsilon branch)
  triangles = np.concatenate([[[0, 1, 2], [3, 4, 5]],
                              rng.integers(0, vertex_count, size=(triangle_count - 2, 3))])
  ids = rng.integers(-1, triangle_count, size=(batch, height, width))
  ids[:, 0, :3] = [0, 1, 2]
  bary = rng.uniform(0.05, 1.0, size=(batch, height, width, 3))
  bary /= bary.sum(axis=-1, keepdims=True)
  bary[ids < 0] = 0.0
  f32 = lambda x: tf.constant(np.asarray(x, np.float32))
  return dict(
      normals=f32(attrs[..., 0:3]), positions=f32(attrs[..., 3:6]),
      diffuse=f32(attrs[..., 6:9]),
      specular=f32(attrs[..., 9:12]) if channels >= 12 else None,
      shininess=f32(attrs[..., 12] if channels == 13 else rng.uniform(1.0, 8.0, size=batch)),
      triangles=tf.constant(triangles, tf.int32),
      triangle_ids=tf.constant(ids, tf.int32), barycentrics=f32(bary),
      light_positions=f32(rng.normal(size=(batch, lights, 3)) * 2 + [0, 0, 3]),
      light_intensities=f32(rng.uniform(0.2, 1.5, size=(batch, lights, 3))),
      camera=f32(rng.normal(size=(batch, 3)) + [0, 0, 4]),
      ambient=f32(rng.uniform(0.0, 0.5, size=(batch, 3))))


def _vertex_arrays(s):
  return [x for x in (s["normals"], s["positions"], s["diffuse"], s["specular"]) if x is not None]


def _reference(s, channels):
  specular = channels >= 12
  per_vertex = channels == 13
  attributes = _vertex_arrays(s) + ([s["shininess"][..., None]] if per_vertex else [])
  # The background attribute -1, but shininess 1 on the background: TensorFlow's
  # pow(0, -1) = inf times a zero gradient is NaN (the op skips the background).
  background = [-1.0] * 12 + [1.0] * (channels - 12)
  pixels = interpolate(tf.concat(attributes, axis=2), s["triangles"], s["triangle_ids"],
                       s["barycentrics"], background[:channels])
  return MR._shade_pixels(pixels, s["light_positions"], s["light_intensities"],
                          s["camera"] if specular else None,
                          s["shininess"] if specular and not per_vertex else None, s["ambient"],
                          False)


def _op(s, channels):
  raster = RasterOutput(s["triangle_ids"], s["barycentrics"], None)
  specular = channels >= 12
  return MR._phong_shade(s["normals"], s["positions"], s["diffuse"], s["triangles"], raster,
                         s["light_positions"], s["light_intensities"], s["ambient"],
                         s["specular"], s["camera"] if specular else None,
                         s["shininess"] if specular else None)


def _differentiable(s):
  return [s[k] for k in ("normals", "positions", "diffuse", "specular", "barycentrics",
                         "light_positions", "light_intensities", "camera", "shininess",
                         "ambient")]


@pytest.mark.parametrize("channels, lights, with_ambient", [
    (9, 0, True), (9, 1, False), (9, 3, True), (12, 1, True), (12, 3, False), (13, 0, False),
    (13, 1, True), (13, 3, True), (12, 70, False)])
def test_matches_tensorflow_values_and_gradients(channels, lights, with_ambient):
  s = _scene(2, 6, 7, channels, lights, seed=channels * 10 + lights)
  if not with_ambient:
    s["ambient"] = None
  weights = tf.random.stateless_uniform([2, 6, 7, 4], [channels, lights], -1.0, 1.0)
  watched = [x for x in _differentiable(s) if x is not None]
  results = []
  for shade in (_reference, _op):
    with tf.GradientTape() as tape:
      tape.watch(watched)
      rgba = shade(s, channels)
      loss = tf.reduce_sum(rgba * weights)
    results.append((rgba.numpy(), tape.gradient(loss, watched)))
  (want, want_grads), (got, got_grads) = results
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  alpha = got[..., 3][:, ::-1]  # in the rasterizer's row order
  assert np.all(alpha[s["triangle_ids"].numpy() < 0] == 0)
  assert np.all(alpha[:, 0, 0] == 0) and np.all(alpha[:, 0, 1] == 1)  # triangles 0 and 1
  assert np.any(alpha == 1)
  names = ["normals", "positions", "diffuse", "specular", "barycentrics", "light_positions",
           "light_intensities", "camera", "shininess", "ambient"]
  names = [n for n, x in zip(names, _differentiable(s)) if x is not None]
  for name, w, g in zip(names, want_grads, got_grads):
    assert g is None or np.all(np.isfinite(g.numpy())), name
    if name == "barycentrics":  # zero where not covered; compared where covered
      g = g.numpy()
      assert np.all(g[alpha == 0] == 0)
      w, g = tf.constant(w.numpy()[alpha == 1]), tf.constant(g[alpha == 1])
    if w is None:  # not used by this configuration (camera/shininess without specular)
      assert g is None or not np.any(g.numpy()), name
      continue
    scale = max([1.0] + list(np.abs(w.numpy()).ravel()))
    np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_gradient_matches_finite_differences():
  s = _scene(1, 2, 3, 13, 2, seed=5)
  ids = s["triangle_ids"].numpy()
  ids[ids < 2] = 3  # covered pixels away from the zero normal (not differentiable there)

  def shade(normals, positions, diffuse, specular, shininess, bary, lp, li, cam, amb):
    raster = RasterOutput(tf.constant(ids), bary, None)
    return MR._phong_shade(normals, positions, diffuse, s["triangles"], raster, lp, li, amb,
                           specular, cam, shininess)

  theoretical, numerical = tf.test.compute_gradient(
      shade, [s[k] for k in ("normals", "positions", "diffuse", "specular", "shininess",
                             "barycentrics", "light_positions", "light_intensities", "camera",
                             "ambient")], delta=1e-3)
  for t, n in zip(theoretical, numerical):
    np.testing.assert_allclose(t, n, atol=2e-2, rtol=2e-2)


def _raw_gradients(s, d_rgba, skip=()):
  specular = s["specular"] if s["specular"] is not None else tf.zeros([2, 0, 3])
  return ops().renderer_phong_shade_grad(
      s["normals"], s["positions"], s["diffuse"], specular, s["triangles"], s["triangle_ids"],
      s["barycentrics"], s["light_positions"], s["light_intensities"], s["ambient"],
      s["camera"], s["shininess"], d_rgba, skip_vertex_arrays=list(skip))


@pytest.mark.parametrize("channels, skip", [
    (9, [0]), (9, [0, 2]), (12, [0, 1, 2, 3]), (12, [3]), (13, [1, 3])])
def test_skipped_vertex_arrays_leave_the_other_gradients_bit_identical(channels, skip):
  s = _scene(2, 8, 9, channels, 2, seed=channels + len(skip))
  d_rgba = tf.random.stateless_uniform([2, 8, 9, 4], [channels, 1], -1.0, 1.0)
  full = _raw_gradients(s, d_rgba)
  part = _raw_gradients(s, d_rgba, skip)
  for i, (f, p) in enumerate(zip(full, part)):
    if i in skip:
      assert p.shape == [2, 0, 3], i
    else:
      np.testing.assert_array_equal(p.numpy(), f.numpy(), err_msg=str(i))


def test_gradient_tape_skips_only_unwatched_vertex_arrays():
  """A tape watching some arrays gets the same gradients as one watching all."""
  s = _scene(2, 6, 7, 12, 1, seed=3)
  skipped = []
  unneeded = MR._unneeded_vertex_arrays

  def spy(op):
    skipped.append(unneeded(op))
    return skipped[-1]

  weights = tf.random.stateless_uniform([2, 6, 7, 4], [4, 5], -1.0, 1.0)

  def grads(watched):
    with tf.GradientTape() as tape:
      tape.watch(watched)
      loss = tf.reduce_sum(_op(s, 12) * weights)
    return tape.gradient(loss, watched)

  all_arrays = [s["normals"], s["positions"], s["diffuse"], s["specular"]]
  want = grads(all_arrays)
  MR._unneeded_vertex_arrays = spy
  try:
    got = grads([s["positions"], s["diffuse"]])
    got_graph = tf.function(lambda: grads([s["specular"]]))()
  finally:
    MR._unneeded_vertex_arrays = unneeded
  assert skipped == [[0, 3], [0, 1, 2]]
  for w, g in zip(want[1:3] + want[3:], list(got) + list(got_graph)):
    np.testing.assert_array_equal(g.numpy(), w.numpy())


def test_nested_tapes_keep_the_gradients_either_tape_needs():
  """The skip list is taken when the op runs, over all active tapes: the outer tape's
  normals are not skipped when only the inner tape is asked first."""
  s = _scene(2, 6, 7, 9, 1, seed=8)
  weights = tf.random.stateless_uniform([2, 6, 7, 4], [8, 9], -1.0, 1.0)
  with tf.GradientTape() as both:
    both.watch([s["diffuse"], s["normals"]])
    want = tf.reduce_sum(_op(s, 9) * weights)
  want_diffuse, want_normals = both.gradient(want, [s["diffuse"], s["normals"]])
  with tf.GradientTape() as outer:
    outer.watch(s["normals"])
    with tf.GradientTape() as inner:
      inner.watch(s["diffuse"])
      loss = tf.reduce_sum(_op(s, 9) * weights)
    d_diffuse = inner.gradient(loss, s["diffuse"])
  d_normals = outer.gradient(loss, s["normals"])
  np.testing.assert_array_equal(d_diffuse.numpy(), want_diffuse.numpy())
  np.testing.assert_array_equal(d_normals.numpy(), want_normals.numpy())
  assert np.any(d_normals.numpy())


def test_bad_skip_vertex_arrays():
  with pytest.raises(tf.errors.InvalidArgumentError, match="skip_vertex_arrays entry 6 is not"):
    ops().renderer_phong_shade_grad(**_raw_inputs(), df_drgba=tf.zeros([2, 3, 4, 4]),
                                    skip_vertex_arrays=[6])


def test_rows_flipped_and_background_black():
  s = _scene(1, 4, 3, 9, 1, seed=3)
  rgba = _op(s, 9).numpy()[0]
  ids = s["triangle_ids"].numpy()[0]
  covered = (ids > 0)  # triangle 0 has a negative diffuse colour
  np.testing.assert_array_equal(rgba[..., 3], covered[::-1].astype(np.float32))
  assert np.all(rgba[~covered[::-1]] == 0)


def test_batch_invariance():
  s = _scene(3, 9, 8, 13, 2, seed=4)
  weights = tf.random.stateless_uniform([3, 9, 8, 4], [1, 2], -1.0, 1.0)

  def run(scene, w):
    with tf.GradientTape() as tape:
      tape.watch(_differentiable(scene))
      loss = tf.reduce_sum(_op(scene, 13) * w)
    return [_op(scene, 13)] + tape.gradient(loss, _differentiable(scene))

  full = run(s, weights)
  one = {k: v if k == "triangles" else v[1:2] for k, v in s.items()}
  single = run(one, weights[1:2])
  for a, b in zip(full, single):
    if a is not None and a.shape[0] == 3:  # per-image tensors (not the shared triangles)
      np.testing.assert_array_equal(a.numpy()[1:2], b.numpy())


def _raw_inputs(lights=1, batch=2):
  vertices = tf.zeros([batch, 5, 3])
  return dict(normals=vertices, positions=vertices, diffuse_colors=vertices,
              specular_colors=tf.zeros([batch, 0, 3]), triangles=tf.constant([[0, 1, 2]]),
              triangle_ids=tf.zeros([batch, 3, 4], tf.int32),
              barycentrics=tf.zeros([batch, 3, 4, 3]),
              light_positions=tf.zeros([batch, lights, 3]),
              light_intensities=tf.zeros([batch, lights, 3]), ambient=tf.zeros([batch, 3]),
              camera_position=tf.zeros([batch, 3]), shininess=tf.zeros([batch]))


@pytest.mark.parametrize("change, message", [
    (dict(normals=tf.zeros([2, 5])), r"normals must have shape \[B, V, 3\]"),
    (dict(positions=tf.zeros([2, 4, 3])), r"positions must have shape \[B, V, 3\] = \[2,5,3\]"),
    (dict(diffuse_colors=tf.zeros([2, 5, 4])), r"diffuse_colors must have shape \[B, V, 3\]"),
    (dict(specular_colors=tf.zeros([2, 4, 3])), r"or \[B, 0, 3\], got \[2,4,3\]"),
    (dict(shininess=tf.zeros([2, 5])), "per-vertex shininess .* needs specular colours"),
    (dict(specular_colors=tf.zeros([2, 5, 3]), shininess=tf.zeros([2, 4])),
     r"shininess must have shape \[B\] or \[B, V\]"),
    (dict(triangles=tf.constant([[0, 1, 5]])), r"triangles\[0, 2\] = 5 is out of range"),
    (dict(triangle_ids=tf.fill([2, 3, 4], 1)), "triangle_ids value 1 at flat index 0"),
    (dict(barycentrics=tf.zeros([2, 3, 4, 2])), r"barycentrics must have shape \[B, H, W, 3\]"),
    (dict(light_intensities=tf.zeros([2, 2, 3])), "light_intensities must have the shape"),
    (dict(light_positions=tf.zeros([3, 1, 3])), r"light_positions must have shape \[B, L, 3\]"),
    (dict(ambient=tf.zeros([3])), r"ambient must have shape \[B, 3\]"),
    (dict(camera_position=tf.zeros([2, 2])), r"camera_position must have shape \[B, 3\]"),
    (dict(shininess=tf.zeros([2, 1, 1])), r"shininess must have shape \[B\] or \[B, V\]"),
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
  s = _scene(1, 5, 5, 12, 1, seed=2)
  pixels = interpolate(tf.concat(_vertex_arrays(s), 2), s["triangles"], s["triangle_ids"],
                       s["barycentrics"], -1.0)
  legacy = MR._shade_pixels(pixels, s["light_positions"], s["light_intensities"], s["camera"],
                            s["shininess"], s["ambient"], True)
  assert np.all(np.isfinite(legacy.numpy()))
  assert np.abs(legacy.numpy() - _op(s, 12).numpy()).max() > 0.05
