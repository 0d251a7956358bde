"""deep3dface.face_ops: the basis, vertex-normals and pose-light ops vs numpy and TF autodiff."""

import math

import numpy as np
import pytest
import tensorflow as tf

from deep3dface import bfm, face_ops, posing
from renderer import scenes


def _basis_case(rows, cols, batch, seed=0):
  rng = np.random.default_rng(seed)
  f32 = lambda x: x.astype(np.float32)
  return (f32(rng.normal(size=rows)), f32(rng.normal(size=(rows, cols))),
          f32(rng.normal(size=(batch, cols))))


@pytest.mark.parametrize("rows,cols,batch", [(1003, 144, 4), (517, 80, 1), (64, 24, 3),
                                             (31, 13, 5), (9, 8, 9), (5, 3, 0)])
def test_linear_basis_matches_numpy_and_is_the_same_with_and_without_simd(rows, cols, batch):
  mean, basis, coeff = _basis_case(rows, cols, batch)
  expected = mean[None].astype(np.float64) + coeff.astype(np.float64) @ basis.T.astype(np.float64)
  simd = face_ops.ops().deep3d_linear_basis(mean, basis, coeff, simd=True).numpy()
  plain = face_ops.ops().deep3d_linear_basis(mean, basis, coeff, simd=False).numpy()
  assert simd.shape == (batch, rows)
  np.testing.assert_allclose(simd, expected, rtol=1e-5, atol=1e-4)
  assert simd.tobytes() == plain.tobytes()


@pytest.mark.parametrize("rows,cols,batch", [(5000, 144, 4), (37, 13, 2)])
def test_linear_basis_gradients(rows, cols, batch):
  mean, basis, coeff = _basis_case(rows, cols, batch, seed=1)
  weights = np.random.default_rng(2).normal(size=(batch, rows)).astype(np.float32)
  mean_t, coeff_t = tf.constant(mean), tf.constant(coeff)
  with tf.GradientTape() as tape:
    tape.watch([mean_t, coeff_t])
    loss = tf.reduce_sum(face_ops.linear_basis(mean_t, tf.constant(basis), coeff_t) * weights)
  d_mean, d_coeff = tape.gradient(loss, [mean_t, coeff_t])
  np.testing.assert_allclose(d_coeff, weights.astype(np.float64) @ basis, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(d_mean, weights.sum(0), rtol=1e-5, atol=1e-5)
  plain = face_ops.ops().deep3d_linear_basis_grad(basis, weights, simd=False)
  assert plain.numpy().tobytes() == d_coeff.numpy().tobytes()


def test_linear_basis_variable_basis_gets_gradients_through_matmul():
  mean, basis, coeff = _basis_case(20, 6, 2)
  var = tf.Variable(basis)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(face_ops.linear_basis(tf.constant(mean), var, tf.constant(coeff)))
  np.testing.assert_allclose(tape.gradient(loss, var), np.tile(coeff.sum(0), (20, 1)), rtol=1e-5)


@pytest.mark.parametrize("args,message", [
    ((np.zeros(4), np.zeros((5, 3)), np.zeros((1, 3))), "mean must have shape"),
    ((np.zeros(5), np.zeros((5, 3)), np.zeros((1, 4))), "coefficients must have shape"),
])
def test_linear_basis_bad_shapes(args, message):
  with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
    face_ops.ops().deep3d_linear_basis(*[a.astype(np.float32) for a in args])


def _mesh(seed=0):
  vertices, triangles = scenes.grid_mesh(9, 7, 1.0, 0.8)
  rng = np.random.default_rng(seed)
  shape = np.stack([vertices + rng.normal(scale=0.05, size=vertices.shape) for _ in range(2)])
  return shape.astype(np.float32), triangles, bfm.point_buffer(triangles, len(vertices))


def _numpy_normals(shape, triangles, point_buf, normalize_faces):
  s = shape.astype(np.float64)
  face = np.cross(s[triangles[:, 0]] - s[triangles[:, 1]], s[triangles[:, 1]] - s[triangles[:, 2]])
  if normalize_faces:
    face /= np.linalg.norm(face, axis=1, keepdims=True)
  summed = np.vstack([face, np.zeros((1, 3))])[point_buf].sum(1)
  return summed / np.linalg.norm(summed, axis=1, keepdims=True)


def _tf_normals(shape, triangles, point_buf, normalize_faces):
  """The same formula with TF ops (an independent path for autodiff)."""
  v = [tf.gather(shape, triangles[:, i], axis=1) for i in range(3)]
  face = tf.linalg.cross(v[0] - v[1], v[1] - v[2])
  if normalize_faces:
    face = tf.math.l2_normalize(face, axis=-1)
  face = tf.pad(face, [[0, 0], [0, 1], [0, 0]])
  return tf.math.l2_normalize(tf.reduce_sum(tf.gather(face, point_buf, axis=1), axis=2), -1)


@pytest.mark.parametrize("normalize_faces", [True, False])
def test_vertex_normals_match_numpy_and_autodiff(normalize_faces):
  shape, triangles, point_buf = _mesh()
  normals = face_ops.vertex_normals(shape, triangles, point_buf, normalize_faces)
  for b in range(len(shape)):
    np.testing.assert_allclose(normals[b], _numpy_normals(shape[b], triangles, point_buf,
                                                          normalize_faces), atol=2e-6)
  plain = face_ops.ops().deep3d_vertex_normals(shape, triangles, point_buf,
                                               normalize_faces=normalize_faces, simd=False)
  assert plain[0].numpy().tobytes() == normals.numpy().tobytes()
  weights = np.random.default_rng(3).normal(size=shape.shape).astype(np.float32)
  grads = []
  for fn in (face_ops.vertex_normals, _tf_normals):
    x = tf.constant(shape)
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(fn(x, triangles, point_buf, normalize_faces) * weights)
    grads.append(tape.gradient(loss, x).numpy())
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-4)
  assert np.abs(grads[0]).max() > 0.1


def test_vertex_normals_gradient_matches_float64_finite_differences():
  shape, triangles, point_buf = _mesh(seed=4)
  weights = np.random.default_rng(5).normal(size=shape[0].shape)
  loss = lambda s: np.sum(weights * _numpy_normals(s, triangles, point_buf, True))
  x = tf.constant(shape[:1])
  with tf.GradientTape() as tape:
    tape.watch(x)
    value = tf.reduce_sum(face_ops.vertex_normals(x, triangles, point_buf)[0] * weights)
  analytic = tape.gradient(value, x).numpy()[0]
  numeric = np.zeros_like(analytic, np.float64)
  base = shape[0].astype(np.float64)
  for index in np.ndindex(*base.shape):
    step = np.zeros_like(base)
    step[index] = 1e-6
    numeric[index] = (loss(base + step) - loss(base - step)) / 2e-6
  np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=2e-3 * np.abs(numeric).max())


def test_vertex_normals_degenerate_triangles_stay_finite():
  shape, triangles, point_buf = _mesh()
  shape[0] = 0.0  # every triangle has zero area
  shape[1, ::2] = 0.0  # half of them
  x = tf.constant(shape)
  with tf.GradientTape() as tape:
    tape.watch(x)
    normals = face_ops.vertex_normals(x, triangles, point_buf)
  assert np.isfinite(normals).all() and np.isfinite(tape.gradient(normals, x)).all()
  plain = face_ops.ops().deep3d_vertex_normals(x, triangles, point_buf, simd=False)[0]
  assert plain.numpy().tobytes() == normals.numpy().tobytes()


def test_vertex_normals_without_triangles_are_zero():
  shape = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
  triangles = np.zeros((0, 3), np.int32)
  point_buf = np.zeros((4, 3), np.int32)  # every entry is the padding index T = 0
  for simd in (True, False):
    normals, summed = face_ops.ops().deep3d_vertex_normals(shape, triangles, point_buf,
                                                           simd=simd)
    assert not np.any(normals) and not np.any(summed)


@pytest.mark.parametrize("edit,message", [
    (lambda s, t, p: (s, t + 100, p), r"triangles\[0, 0\] = 100 is out of range"),
    (lambda s, t, p: (s, t, p + 500), r"point_buf\[0, 0\] = 500 is out of range"),
    (lambda s, t, p: (s, t, p[:-1]), "point_buf must have shape"),
    (lambda s, t, p: (s[..., :2], t, p), r"shape must have shape \[B, N, 3\]"),
])
def test_vertex_normals_bad_input(edit, message):
  shape, triangles, point_buf = edit(*_mesh())
  with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
    face_ops.vertex_normals(shape, triangles, point_buf)


def _pose_case(batch, count, seed=0):
  rng = np.random.default_rng(seed)
  f32 = lambda x: np.asarray(x, np.float32)
  normals = rng.normal(size=(batch, count, 3))
  normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
  return (f32(rng.normal(size=(batch, count, 3))), f32(normals),
          f32(rng.uniform(0, 255, (batch, count, 3))), f32(rng.uniform(-0.5, 0.5, (batch, 3))),
          f32(rng.normal(scale=0.2, size=(batch, 3))), f32(rng.normal(scale=0.2, size=(batch, 27))),
          posing.camera_matrix().numpy()[0], rng.integers(0, count, 5).astype(np.int32))


def _numpy_pose_light(shape, normals, albedo, angles, translation, gamma, world_to_clip,
                      keypoints):
  """SPEC 2.6, 2.8, 2.9 in float64 numpy, one image at a time."""
  out = {k: [] for k in ("vertices", "normals", "colors", "landmarks", "clip_vertices")}
  a0, a1, a2 = math.pi, 2 * math.pi / math.sqrt(3), 2 * math.pi / math.sqrt(8)
  c0, c1 = 1 / math.sqrt(4 * math.pi), math.sqrt(3) / math.sqrt(4 * math.pi)
  c2 = 3 * math.sqrt(5) / math.sqrt(12 * math.pi)
  for s, n, alb, (x, y, z), t, g in zip(*(np.asarray(a, np.float64) for a in (
      shape, normals, albedo, angles, translation, gamma))):
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    r = rz @ ry @ rx
    v, rn = s @ r.T + t, n @ r.T
    nx, ny, nz = rn.T
    basis = np.stack([np.full(len(s), a0 * c0), -a1 * c1 * ny, a1 * c1 * nz, -a1 * c1 * nx,
                      a2 * c2 * nx * ny, -a2 * c2 * ny * nz,
                      a2 * c2 * 0.5 / math.sqrt(3) * (3 * nz ** 2 - 1), -a2 * c2 * nx * nz,
                      a2 * c2 * 0.5 * (nx ** 2 - ny ** 2)], 1)
    g = g.reshape(3, 9) + np.eye(1, 9) * 0.8
    depth = 10.0 - v[keypoints, 2]
    out["vertices"].append(v)
    out["normals"].append(rn)
    out["colors"].append(alb * (basis @ g.T))
    out["landmarks"].append(np.stack([112 + 1015 * v[keypoints, 0] / depth,
                                      112 + 1015 * v[keypoints, 1] / depth], 1))
    out["clip_vertices"].append(np.hstack([v, np.ones((len(v), 1))]) @
                                np.asarray(world_to_clip, np.float64).T)
  return {k: np.stack(v) if v else None for k, v in out.items()}


@pytest.mark.parametrize("batch,count", [(3, 1001), (2, 8), (1, 7), (4, 17), (0, 9)])
def test_pose_light_matches_numpy_and_is_the_same_with_and_without_simd(batch, count):
  args = _pose_case(batch, count)
  posed = face_ops.pose_light(*args)
  plain = face_ops.ops().deep3d_pose_light(
      *args, sh_factors=posing.sh_factors(), ambient_prior=0.8, focal=1015.0,
      principal_point=112.0, camera_distance=10.0, simd=False)
  expected = _numpy_pose_light(*args)
  for key, got, other in zip(posing.PosedFace._fields, posed, plain):
    assert got.numpy().tobytes() == other.numpy().tobytes(), key
    if batch:
      np.testing.assert_allclose(got, expected[key], rtol=1e-5, atol=1e-4, err_msg=key)
    else:
      assert got.shape[0] == 0


def test_pose_light_gradients_match_float64_finite_differences():
  args = _pose_case(2, 11, seed=3)
  rng = np.random.default_rng(4)
  weights = {k: rng.normal(size=v.shape) for k, v in _numpy_pose_light(*args).items()}
  loss = lambda a: sum(np.sum(weights[k] * v) for k, v in _numpy_pose_light(*a).items())
  inputs = [tf.constant(a) for a in args[:6]]
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    posed = face_ops.pose_light(*inputs, *args[6:])
    value = sum(tf.reduce_sum(getattr(posed, k) * w) for k, w in weights.items())
  analytic = tape.gradient(value, inputs)
  base = [np.asarray(a, np.float64) for a in args[:7]] + [args[7]]
  for i, grad in enumerate(analytic):
    numeric = np.zeros(base[i].shape)
    for index in np.ndindex(*base[i].shape):
      plus, minus = list(base), list(base)
      plus[i], minus[i] = base[i].copy(), base[i].copy()
      plus[i][index] += 1e-6
      minus[i][index] -= 1e-6
      numeric[index] = (loss(plus) - loss(minus)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-3 * np.abs(numeric).max(),
                               err_msg=f"input {i}")


@pytest.mark.parametrize("index,value,message", [
    (7, np.array([0, 11], np.int32), r"keypoints\[1\] = 11 is out of range \[0, 10\]"),
    (5, np.zeros((2, 26), np.float32), r"gamma must have shape \[2,27\]"),
    (6, np.eye(3, dtype=np.float32), r"world_to_clip must have shape \[4, 4\]"),
    (1, np.zeros((2, 10, 3), np.float32), r"normals must have shape \[2,11,3\]"),
])
def test_pose_light_bad_input(index, value, message):
  args = list(_pose_case(2, 11))
  args[index] = value
  with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
    face_ops.pose_light(*args)
