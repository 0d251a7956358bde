"""Rasterizer op vs the float64 numpy reference, edge cases, gradients, bad input."""

import numpy as np
import pytest
import tensorflow as tf

import renderer
from tests import reference


def random_scene(seed, vertex_count=30, triangle_count=20, behind=False):
  rng = np.random.default_rng(seed)
  w = rng.uniform(0.5, 2.0, vertex_count)
  if behind:  # some vertices behind the eye: triangles crossing w = 0
    w[rng.random(vertex_count) < 0.3] *= -1
  xy = rng.uniform(-1.3, 1.3, (vertex_count, 2)) * np.abs(w)[:, None]
  z = rng.uniform(-1.1, 1.1, vertex_count) * np.abs(w)
  clip = np.concatenate([xy, z[:, None], w[:, None]], 1).astype(np.float32)
  triangles = rng.integers(0, vertex_count, (triangle_count, 3)).astype(np.int32)
  return clip, triangles


def run(clip, triangles, width, height):
  out = renderer.rasterize(np.asarray(clip)[None], triangles, width, height)
  return [t.numpy()[0] for t in out]


def assert_matches_reference(clip, triangles, width, height):
  ids, bary, depth = run(clip, triangles, width, height)
  ref_ids, ref_bary, ref_depth, ambiguous = reference.rasterize(clip, triangles, width, height)
  sure = ~ambiguous
  assert ambiguous.mean() < 0.05
  np.testing.assert_array_equal(ids[sure], ref_ids[sure])
  same = sure & (ids == ref_ids)
  np.testing.assert_allclose(bary[same], ref_bary[same], atol=2e-5)
  np.testing.assert_allclose(depth[same], ref_depth[same], atol=2e-5)
  empty = ids == renderer.EMPTY_TRIANGLE_ID
  assert np.all(bary[empty] == 0) and np.all(depth[empty] == 1)
  return ids


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", [(32, 24), (17, 40)])
def test_random_triangles_match_reference(seed, size):
  clip, triangles = random_scene(seed)
  ids = assert_matches_reference(clip, triangles, *size)
  assert (ids >= 0).any()


@pytest.mark.parametrize("seed", range(4))
def test_triangles_crossing_w_zero_match_reference(seed):
  clip, triangles = random_scene(100 + seed, behind=True)
  assert_matches_reference(clip, triangles, 40, 30)


def test_pixel_centres_and_row_order():
  # A triangle covering only the lower-left quadrant of NDC space: row 0 is y = -1.
  clip = np.array([[-1, -1, 0, 1], [0, -1, 0, 1], [-1, 0, 0, 1]], np.float32)
  ids, bary, _ = run(clip, [[0, 1, 2]], 8, 8)
  covered = ids >= 0
  assert covered[:4, :4].any() and not covered[4:, :].any() and not covered[:, 4:].any()
  # Pixel (0, 0) has its centre at NDC (-7/8, -7/8) = v0 + (1/8)(v1 - v0) + (1/8)(v2 - v0).
  np.testing.assert_allclose(bary[0, 0], [0.75, 0.125, 0.125], atol=1e-6)
  # Pixel (3, 0) centre x = -1/8 + (-7/8) -> x + y = -1 exactly: on the edge, inside.
  assert ids[0, 3] == 0


def test_both_windings_are_drawn():
  clip, triangles = random_scene(7)
  flipped = triangles[:, [0, 2, 1]]
  ids_a, bary_a, depth_a = run(clip, triangles, 32, 32)
  ids_b, bary_b, depth_b = run(clip, flipped, 32, 32)
  np.testing.assert_array_equal(ids_a, ids_b)
  np.testing.assert_allclose(bary_a[..., 0], bary_b[..., 0], atol=1e-6)
  np.testing.assert_allclose(bary_a[..., 1], bary_b[..., 2], atol=1e-6)
  np.testing.assert_allclose(depth_a, depth_b, atol=1e-6)


def quad_scene():
  """Two overlapping screen-filling triangles: 0 at z = 0.5, 1 at z = -0.5 (nearer)."""
  clip = np.array([[-3, -3, 0.5, 1], [3, -3, 0.5, 1], [0, 3, 0.5, 1],
                   [-3, -3, -0.5, 1], [3, -3, -0.5, 1], [0, 3, -0.5, 1]], np.float32)
  return clip


def test_occlusion_is_independent_of_order():
  clip = quad_scene()
  for triangles in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):
    ids, _, depth = run(clip, triangles, 16, 16)
    near = 0 if triangles[0][0] == 3 else 1
    assert np.all(ids[4:12, 6:10] == near)
    np.testing.assert_allclose(depth[4:12, 6:10], -0.5)


def test_depth_ties_go_to_the_later_triangle():
  clip = quad_scene()[:3]
  ids, _, _ = run(clip, [[0, 1, 2], [1, 2, 0]], 16, 16)
  assert np.all(ids[4:12, 6:10] == 1)


def test_near_and_far_clipping():
  clip = quad_scene()
  clip[:3, 2] = 1.5   # beyond the far plane
  clip[3:, 2] = -1.5  # in front of the near plane
  ids, _, _ = run(clip, [[0, 1, 2], [3, 4, 5]], 8, 8)
  assert np.all(ids == -1)


def test_all_behind_camera_is_skipped():
  clip = quad_scene()[:3] * np.array([1, 1, 1, -1], np.float32)
  ids, _, _ = run(clip, [[0, 1, 2]], 8, 8)
  assert np.all(ids == -1)


@pytest.mark.parametrize("triangles", [np.zeros((0, 3), np.int32), [[0, 1, 1]], [[0, 0, 0]],
                                       [[0, 1, 3]]])
def test_degenerate_and_empty_meshes_draw_nothing(triangles):
  clip = np.array([[-1, -1, 0, 1], [1, 1, 0, 1], [0, 0, 0, 1], [0.5, 0.5, 0, 1]], np.float32)
  ids, bary, depth = run(clip, triangles, 16, 16)
  assert np.all(ids == -1) and np.all(bary == 0) and np.all(depth == 1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vertices_never_give_nan(bad):
  clip, triangles = random_scene(3)
  clip[::4, 1] = bad
  clip_t = tf.constant(clip[None])
  with tf.GradientTape() as tape:
    tape.watch(clip_t)
    ids, bary, depth = renderer.rasterize(clip_t, triangles, 24, 24)
    loss = tf.reduce_sum(bary * tf.random.stateless_uniform(bary.shape, [1, 2]))
  grad = tape.gradient(loss, clip_t).numpy()
  assert np.all(np.isfinite(bary.numpy())) and np.all(np.isfinite(depth.numpy()))
  assert np.all(np.isfinite(grad))
  bad_vertices = np.flatnonzero(~np.isfinite(clip).all(1))
  drawn = np.unique(ids.numpy()[ids.numpy() >= 0])
  assert not np.isin(triangles[drawn], bad_vertices).any()


def test_batch_equals_single_images():
  scenes = [random_scene(s)[0] for s in range(3)]
  triangles = random_scene(0)[1]
  batch = renderer.rasterize(np.stack(scenes), triangles, 20, 20)
  for i, clip in enumerate(scenes):
    single = renderer.rasterize(clip[None], triangles, 20, 20)
    for a, b in zip(batch, single):
      np.testing.assert_array_equal(a.numpy()[i], b.numpy()[0])


def interior_weights(ids, bary, margin=0.05, seed=0):
  """Random weights on pixels well inside a triangle (finite differences stay smooth)."""
  rng = np.random.default_rng(seed)
  inside = (ids >= 0) & (bary.min(-1) > margin)
  return (rng.normal(size=bary.shape) * inside[..., None]).astype(np.float32)


def test_gradient_matches_float64_finite_differences():
  clip = np.array([[-0.9, -0.8, 0.1, 1.0], [0.8, -0.6, 0.3, 1.4], [0.1, 0.9, -0.2, 0.8],
                   [0.9, 0.9, 0.5, 1.1]], np.float32)
  triangles = np.array([[0, 1, 2], [1, 3, 2]], np.int32)
  ids, bary, _ = run(clip, triangles, 24, 20)
  weights = interior_weights(ids, bary)
  clip_t = tf.constant(clip[None])
  with tf.GradientTape() as tape:
    tape.watch(clip_t)
    loss = tf.reduce_sum(renderer.rasterize(clip_t, triangles, 24, 20).barycentrics * weights)
  analytic = tape.gradient(loss, clip_t).numpy()[0]

  def f(c):
    _, b, _, _ = reference.rasterize(c, triangles, 24, 20)
    return np.sum(b * weights)

  numeric = np.zeros_like(analytic, dtype=np.float64)
  for v in range(4):
    for k in (0, 1, 3):
      d = np.zeros((4, 4))
      d[v, k] = 1e-6
      numeric[v, k] = (f(clip + d) - f(clip - d)) / 2e-6
  assert np.all(analytic[:, 2] == 0)  # no gradient through depth
  np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=1e-3 * np.abs(numeric).max())


def test_gradient_with_tf_compute_gradient():
  clip = np.array([[[-0.9, -0.8, 0.1, 1.0], [0.8, -0.6, 0.3, 1.4], [0.1, 0.9, -0.2, 0.8]]],
                  np.float32)
  ids, bary, _ = run(clip[0], [[0, 1, 2]], 16, 16)
  weights = interior_weights(ids, bary, margin=0.1)

  def f(c):
    return tf.reduce_sum(renderer.rasterize(c, [[0, 1, 2]], 16, 16).barycentrics * weights)

  (theoretical,), (numerical,) = tf.test.compute_gradient(f, [tf.constant(clip)], delta=1e-3)
  np.testing.assert_allclose(theoretical, numerical, atol=2e-2 * np.abs(numerical).max())


def test_out_of_range_triangle_index_names_the_value():
  clip, _ = random_scene(0, vertex_count=5)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"triangles\[1, 2\] = 5 is out of range"):
    renderer.rasterize(clip[None], [[0, 1, 2], [1, 2, 5]], 8, 8)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"= -1 is out of range"):
    renderer.rasterize(clip[None], [[0, -1, 2]], 8, 8)
  for bad in (-2**31, 2**31 - 1):
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"triangles\[0, 2\] = {bad} is"):
      renderer.rasterize(clip[None], [[0, 1, bad]], 8, 8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(clip_vertices=np.zeros((3, 4))), r"clip_vertices must have shape \[B, V, 4\]"),
    (dict(clip_vertices=np.zeros((1, 3, 3))), r"clip_vertices must have shape \[B, V, 4\]"),
    (dict(triangles=[0, 1, 2]), r"triangles must have shape \[T, 3\]"),
    (dict(triangles=np.array([[0.0, 1.0, 2.0]])), r"triangles must be an integer tensor"),
    (dict(clip_vertices=np.zeros((1, 3, 4), np.complex64)), r"clip_vertices must be a real"),
    (dict(image_width=0), r"image_width must be a positive integer"),
    (dict(image_height=-3), r"image_height must be a positive integer"),
    (dict(image_width=2.5), r"image_width must be a positive integer"),
    (dict(image_height=40000), r"image_height must be at most 32767"),
])
def test_bad_static_input_raises_value_error(kwargs, message):
  args = dict(clip_vertices=np.zeros((1, 3, 4), np.float32), triangles=[[0, 1, 2]],
              image_width=4, image_height=4)
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    renderer.rasterize(**args)


def test_bad_dynamic_shapes_raise_invalid_argument_from_the_op():
  ops = renderer._op_library.ops()
  with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="clip_vertices|rank|4"):
    ops.renderer_rasterize(tf.zeros([1, 3, 3]), [[0, 1, 2]], image_width=4, image_height=4)

  @tf.function(input_signature=[tf.TensorSpec(None, tf.float32), tf.TensorSpec(None, tf.int32)])
  def dynamic(clip, tris):
    return ops.renderer_rasterize(clip, tris, image_width=4, image_height=4)

  with pytest.raises(tf.errors.InvalidArgumentError, match=r"clip_vertices must have shape"):
    dynamic(tf.zeros([1, 3, 5]), [[0, 1, 2]])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"triangles must have shape"):
    dynamic(tf.zeros([1, 3, 4]), [[0, 1]])
