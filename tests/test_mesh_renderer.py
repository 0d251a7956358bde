"""mesh_renderer: hand-derived Phong values, row order, broadcasting, cameras, gradients."""

import importlib
import math

import numpy as np
import pytest
import tensorflow as tf

import renderer
from renderer import scenes
from tests import reference

EYE = np.array([0.0, 0.0, 5.0])
FOV = 40.0
SIZE = (40, 32)  # width, height
QUAD = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
QUAD_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
LIGHT = np.array([0.5, 1.0, 2.0])
INTENSITY = np.array([0.9, 0.8, 0.7])
AMBIENT = np.array([0.1, 0.2, 0.3])
DIFFUSE = np.array([0.6, 0.4, 0.2])
SPECULAR = np.array([0.3, 0.3, 0.5])
SHININESS = 4.0


def render_quad(**kwargs):
  args = dict(vertices=QUAD[None], triangles=QUAD_TRIANGLES,
              normals=np.tile([0.0, 0.0, 1.0], (1, 4, 1)),
              diffuse_colors=np.tile(DIFFUSE, (1, 4, 1)), camera_position=EYE,
              camera_lookat=[0.0, 0.0, 0.0], camera_up=[0.0, 1.0, 0.0],
              light_positions=LIGHT[None, None], light_intensities=INTENSITY[None, None],
              image_width=SIZE[0], image_height=SIZE[1], ambient_color=AMBIENT[None],
              fov_y=FOV)
  args.update(kwargs)
  return renderer.mesh_renderer(**args).numpy()[0]


def quad_points():
  """World point on z = 0 under each pixel centre, rows top-down (as rendered)."""
  px, py = reference.pixel_centers(*SIZE)
  py = py[::-1]  # mesh_renderer's row 0 is the top (NDC y = +1)
  tan = math.tan(math.radians(FOV) / 2)
  direction = np.stack([px * tan * SIZE[0] / SIZE[1], py * tan, -np.ones_like(px)], -1)
  t = -EYE[2] / direction[..., 2]
  return EYE + t[..., None] * direction


def test_diffuse_and_ambient_phong_by_hand():
  image = render_quad()
  points = quad_points()
  inside = (np.abs(points[..., 0]) < 0.98) & (np.abs(points[..., 1]) < 0.98)
  to_light = LIGHT - points
  to_light /= np.linalg.norm(to_light, axis=-1, keepdims=True)
  n_dot_l = np.clip(to_light[..., 2], 0, 1)
  expected = AMBIENT * DIFFUSE + DIFFUSE * INTENSITY * n_dot_l[..., None]
  np.testing.assert_allclose(image[inside, :3], expected[inside], atol=1e-4)
  np.testing.assert_array_equal(image[inside, 3], 1.0)
  outside = (np.abs(points[..., 0]) > 1.02) | (np.abs(points[..., 1]) > 1.02)
  assert np.all(image[outside] == 0)


def test_specular_phong_by_hand():
  image = render_quad(specular_colors=np.tile(SPECULAR, (1, 4, 1)),
                      shininess_coefficients=SHININESS)
  points = quad_points()
  inside = (np.abs(points[..., 0]) < 0.98) & (np.abs(points[..., 1]) < 0.98)
  normal = np.array([0.0, 0.0, 1.0])
  to_light = LIGHT - points
  to_light /= np.linalg.norm(to_light, axis=-1, keepdims=True)
  n_dot_l = np.clip(to_light @ normal, 0, 1)
  reflected = 2 * n_dot_l[..., None] * normal - to_light
  reflected /= np.linalg.norm(reflected, axis=-1, keepdims=True)
  to_eye = EYE - points
  to_eye /= np.linalg.norm(to_eye, axis=-1, keepdims=True)
  r_dot_v = np.where(n_dot_l > 0, np.clip(np.sum(reflected * to_eye, -1), 0, 1), 0)
  expected = (AMBIENT * DIFFUSE + DIFFUSE * INTENSITY * n_dot_l[..., None] +
              SPECULAR * INTENSITY * (r_dot_v ** SHININESS)[..., None])
  np.testing.assert_allclose(image[inside, :3], expected[inside], atol=1e-4)
  # Per-vertex shininess gives the same image when it is constant.
  per_vertex = render_quad(specular_colors=np.tile(SPECULAR, (1, 4, 1)),
                           shininess_coefficients=np.full((1, 4), SHININESS, np.float32))
  np.testing.assert_allclose(per_vertex, image, atol=1e-5)


def test_row_zero_is_the_top():
  top_half = QUAD * [1, 0.5, 1] + [0, 0.5, 0]  # y in [0, 1]
  alpha = render_quad(vertices=top_half[None])[..., 3]
  assert alpha[: SIZE[1] // 2].sum() > 0 and alpha[SIZE[1] // 2 + 1:].sum() == 0


def test_lit_cube_silhouette_and_faces():
  vertices, triangles, normals = scenes.cube()
  image = renderer.mesh_renderer(
      vertices[None], triangles, normals[None], np.full((1, 8, 3), 0.5, np.float32),
      [2.0, 3.0, 6.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [[[2.0, 3.0, 6.0]]],
      [[[1.0, 1.0, 1.0]]], 64, 64).numpy()[0]
  # Silhouette = projected cube under the same camera, via the numpy reference.
  view = renderer.camera_utils.look_at([[2.0, 3.0, 6.0]], [[0.0, 0, 0]], [[0.0, 1, 0]])
  proj = renderer.camera_utils.perspective(1.0, [40.0], [0.01], [10.0])
  clip = renderer.camera_utils.transform_homogeneous(tf.matmul(proj, view), vertices[None])
  ids, _, _, ambiguous = reference.rasterize(clip.numpy()[0], triangles, 64, 64)
  coverage = (ids >= 0)[::-1]
  sure = ~ambiguous[::-1]
  np.testing.assert_array_equal(image[..., 3][sure], coverage[sure].astype(np.float32))
  # Background is black; corner-averaged normals leave a few covered pixels unlit.
  assert np.all(image[..., :3][~coverage] == 0)
  assert (image[..., 0][coverage] > 0).mean() > 0.8


def test_broadcasting_and_per_image_cameras():
  vertices, triangles, normals = scenes.cube()
  eyes = np.array([[2.0, 3.0, 6.0], [-3.0, 1.0, 5.0]], np.float32)
  batch = lambda x: np.tile(x[None], (2, 1, 1))
  common = dict(triangles=triangles, diffuse_colors=np.full((2, 8, 3), 0.5, np.float32),
                camera_lookat=[0.0, 0.0, 0.0], light_positions=np.tile([[[1.0, 4.0, 6.0]]], (2, 1, 1)),
                light_intensities=np.ones((2, 1, 3), np.float32), image_width=32,
                image_height=24)
  both = renderer.mesh_renderer(batch(vertices), normals=batch(normals), camera_position=eyes,
                                camera_up=[0.0, 1.0, 0.0], fov_y=np.float32(40.0), **common)
  for i in range(2):
    single = dict(common, diffuse_colors=common["diffuse_colors"][:1],
                  light_positions=common["light_positions"][:1],
                  light_intensities=common["light_intensities"][:1])
    one = renderer.mesh_renderer(vertices[None], normals=normals[None],
                                 camera_position=eyes[i], camera_up=[[0.0, 1.0, 0.0]],
                                 fov_y=[40.0], **single)
    np.testing.assert_allclose(both.numpy()[i], one.numpy()[0], atol=1e-6)
  assert not np.allclose(both.numpy()[0], both.numpy()[1])


def test_gradients_reach_vertices_colors_and_lights():
  vertices, triangles, normals = scenes.cube()
  v = tf.constant(vertices[None])
  colors = tf.constant(np.full((1, 8, 3), 0.5, np.float32))
  light = tf.constant([[[2.0, 3.0, 6.0]]])
  with tf.GradientTape() as tape:
    tape.watch([v, colors, light])
    image = renderer.mesh_renderer(v, triangles, normals[None], colors, [2.0, 3.0, 6.0],
                                   [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], light,
                                   [[[1.0, 1.0, 1.0]]], 32, 32)
    loss = tf.reduce_sum(image[..., :3] * tf.random.stateless_uniform(image[..., :3].shape, [3, 4]))
  for g in tape.gradient(loss, [v, colors, light]):
    assert np.all(np.isfinite(g.numpy())) and np.abs(g.numpy()).max() > 0


@pytest.mark.parametrize("batch, vertex_count", [(1, 1), (3, 7), (2, 300)])
def test_clip_space_gradient_is_the_transforms(batch, vertex_count):
  """mesh_renderer's vertex stage (XLA, explicit gradient) against TensorFlow's
  automatic differentiation of camera_utils.transform_homogeneous."""
  mesh_renderer_module = importlib.import_module("renderer.mesh_renderer")
  rng = np.random.default_rng(vertex_count)
  matrices = tf.constant(rng.normal(size=(batch, 4, 4)), tf.float32)
  vertices = tf.constant(rng.normal(size=(batch, vertex_count, 3)), tf.float32)
  weights = tf.constant(rng.normal(size=(batch, vertex_count, 4)), tf.float32)
  results = []
  for transform in (mesh_renderer_module._clip_space, renderer.camera_utils.transform_homogeneous):
    with tf.GradientTape() as tape:
      tape.watch([matrices, vertices])
      clip = transform(matrices, vertices)
      loss = tf.reduce_sum(clip * weights)
    results.append([clip] + tape.gradient(loss, [matrices, vertices]))
  for got, want in zip(*results):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("specular", [False, True])
def test_empty_mesh_renders_background_with_zero_gradients(specular):
  vertices = tf.zeros([2, 0, 3])
  kwargs = {}
  if specular:
    kwargs = dict(specular_colors=vertices, shininess_coefficients=tf.zeros([2, 0]))
  light = tf.constant([[[0.5, 1.0, 2.0]]] * 2)
  with tf.GradientTape() as tape:
    tape.watch([vertices, light])
    image = renderer.mesh_renderer(vertices, tf.zeros([0, 3], tf.int32), vertices, vertices, EYE,
                                   [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], light, tf.ones([2, 1, 3]),
                                   5, 3, **kwargs)
    loss = tf.reduce_sum(image)
  assert image.shape == (2, 3, 5, 4) and not np.any(image.numpy())
  d_vertices, d_light = tape.gradient(loss, [vertices, light])
  assert d_vertices.shape == (2, 0, 3) and not np.any(d_light.numpy())


@pytest.mark.parametrize("kwargs, message", [
    (dict(vertices=QUAD), r"vertices must have shape \[B, V, 3\]"),
    (dict(camera_position=[[0.0, 0, 5]] * 3), r"camera_position must have shape \[B, 3\]"),
    (dict(fov_y=[40.0, 40.0]), r"fov_y must have shape \[B\]"),
    (dict(specular_colors=np.ones((1, 4, 3))), "must be given together"),
    (dict(image_height=0), "image_height must be a positive integer"),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    render_quad(**kwargs)


def test_split_channels_matches_slicing_values_and_gradients():
  images = tf.random.stateless_uniform([2, 5, 6, 7], [3, 4])
  weights = tf.random.stateless_uniform([2, 5, 6, 7], [5, 6])

  def loss(parts):
    return sum(tf.reduce_sum(tf.square(p) * weights[..., :p.shape[-1]]) for p in parts)

  for sizes, bounds in (([3, 1, 3], [0, 3, 4, 7]), ([-1, 1], [0, 6, 7]), ([7], [0, 7])):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(images)
      got = renderer.split_channels(images, sizes)
      want = [images[..., b:e] for b, e in zip(bounds[:-1], bounds[1:])]
      got_loss, want_loss = loss(got), loss(want)
    assert [g.shape[-1] for g in got] == [w.shape[-1] for w in want]
    for g, w in zip(got, want):
      np.testing.assert_array_equal(g.numpy(), w.numpy())
    np.testing.assert_allclose(tape.gradient(got_loss, images).numpy(),
                               tape.gradient(want_loss, images).numpy(), rtol=1e-6)


def test_split_channels_graph_gradients_zero_for_unused_groups_any_float_dtype():
  images = tf.random.stateless_uniform([2, 3, 4, 5], [7, 8], dtype=tf.float64)

  @tf.function
  def gradient(images):
    _, rest = renderer.split_channels(images, [2, -1])
    return tf.gradients(tf.reduce_sum(tf.square(rest)), images)[0]

  got = gradient(images).numpy()
  assert got.dtype == np.float64
  np.testing.assert_array_equal(got[..., :2], 0.0)
  np.testing.assert_allclose(got[..., 2:], 2.0 * images.numpy()[..., 2:], rtol=1e-12)


@pytest.mark.parametrize("sizes, message", [
    ([2, 2], r"sizes \[2, 2\] do not add up to the 5 channels"),
    ([6, -1], r"sizes \[6, -1\] do not add up"),
    ([-1, -1], "at most one -1"),
    ([-2, 7], "must be >= 0"),
])
def test_split_channels_bad_sizes(sizes, message):
  with pytest.raises(ValueError, match=message):
    renderer.split_channels(tf.zeros([2, 5]), sizes)


def test_split_channels_channel_count_known_at_run_time_only():
  split = tf.function(lambda x: renderer.split_channels(x, [1, -1]),
                      input_signature=[tf.TensorSpec([None, None])])
  first, rest = split(tf.reshape(tf.range(6.0), [2, 3]))
  np.testing.assert_array_equal(first.numpy(), [[0.0], [3.0]])
  np.testing.assert_array_equal(rest.numpy(), [[1.0, 2.0], [4.0, 5.0]])
