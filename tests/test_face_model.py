"""Face formation against a float64 numpy reference written from SPEC 2.3-2.9."""

import math

import numpy as np
import pytest
import tensorflow as tf

import renderer
from deep3dface import face_model, posing


def reference(model, coeff, area_weighted=False):
  """Independent float64 implementation of SPEC 2.3-2.9 for one coefficient vector."""
  c = coeff.astype(np.float64)
  alpha, beta, delta = c[0:80], c[80:144], c[144:224]
  angles, gamma, t = c[224:227], c[227:254], c[254:257]
  n = model.num_vertices
  mean = model.mean_shape.astype(np.float64)
  shape = (mean.reshape(-1) + model.id_base.astype(np.float64) @ alpha +
           model.ex_base.astype(np.float64) @ beta).reshape(n, 3) - mean.mean(0)
  albedo = (model.mean_tex.astype(np.float64).reshape(-1) +
            model.tex_base.astype(np.float64) @ delta).reshape(n, 3)
  x, y, z = angles
  rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
  ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
  rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
  r = rz @ ry @ rx
  tri = model.triangles
  face = np.cross(shape[tri[:, 0]] - shape[tri[:, 1]], shape[tri[:, 1]] - shape[tri[:, 2]])
  if not area_weighted:
    face /= np.linalg.norm(face, axis=1, keepdims=True)
  face = np.vstack([face, np.zeros((1, 3))])
  normals = face[model.point_buf].sum(1)
  normals /= np.linalg.norm(normals, axis=1, keepdims=True)
  normals = normals @ r.T
  vertices = shape @ r.T + t
  a0, a1, a2 = math.pi, 2 * math.pi / math.sqrt(3), 2 * math.pi / math.sqrt(8)
  c0, c1, c2 = 1 / math.sqrt(4 * math.pi), math.sqrt(3) / math.sqrt(4 * math.pi), \
      3 * math.sqrt(5) / math.sqrt(12 * math.pi)
  nx, ny, nz = normals.T
  basis = np.stack([np.full(n, a0 * c0), -a1 * c1 * ny, a1 * c1 * nz, -a1 * c1 * nx,
                    a2 * c2 * nx * ny, -a2 * c2 * ny * nz,
                    a2 * c2 * 0.5 / math.sqrt(3) * (3 * nz ** 2 - 1), -a2 * c2 * nx * nz,
                    a2 * c2 * 0.5 * (nx ** 2 - ny ** 2)], 1)
  g = gamma.reshape(3, 9).copy()
  g[:, 0] += 0.8
  colors = albedo * (basis @ g.T)
  depth = 10.0 - vertices[:, 2]
  uv = np.stack([112 + 1015 * vertices[:, 0] / depth, 112 + 1015 * vertices[:, 1] / depth], 1)
  return dict(shape=shape, vertices=vertices, normals=normals, albedo=albedo, colors=colors,
              landmarks=uv[model.keypoints])


def random_coefficients(batch, seed):
  rng = np.random.default_rng(seed)
  coeff = rng.normal(size=(batch, 257)) * 0.8
  coeff[:, 224:227] = rng.uniform(-0.4, 0.4, size=(batch, 3))
  coeff[:, 227:254] = rng.normal(size=(batch, 27)) * 0.15
  coeff[:, 254:257] = rng.normal(size=(batch, 3)) * [0.1, 0.1, 0.3]
  return coeff.astype(np.float32)


@pytest.mark.parametrize("normals", ["deep3d", "area_weighted"])
@pytest.mark.parametrize("basis_kernel", ["op", "matmul"])
def test_matches_numpy_reference(synthetic_model, normals, basis_kernel):
  model = face_model.FaceModel(synthetic_model, normals=normals, basis_kernel=basis_kernel)
  coeff = random_coefficients(3, seed=len(normals))
  out = model(coeff)
  for b in range(3):
    ref = reference(synthetic_model, coeff[b], area_weighted=normals == "area_weighted")
    for key, tol in [("shape", 1e-5), ("vertices", 1e-5), ("normals", 1e-4), ("albedo", 1e-3),
                     ("colors", 1e-2), ("landmarks", 1e-3)]:
      np.testing.assert_allclose(getattr(out, key)[b].numpy(), ref[key], atol=tol, err_msg=key)


def test_normal_modes_differ_and_face_the_camera(synthetic_model):
  coeff = np.zeros((1, 257), np.float32)
  deep3d = face_model.FaceModel(synthetic_model, "deep3d")(coeff).normals.numpy()
  area = face_model.FaceModel(synthetic_model, "area_weighted")(coeff).normals.numpy()
  assert np.abs(deep3d - area).max() > 1e-3
  assert np.mean(deep3d[0, :, 2] > 0) > 0.95


@pytest.mark.parametrize("basis_kernel", ["op", "matmul"])
def test_clip_space_agrees_with_projection_and_renders(synthetic_model, basis_kernel):
  model = face_model.FaceModel(synthetic_model, basis_kernel=basis_kernel)
  coeff = random_coefficients(2, seed=5)
  out = model(coeff)
  clip = out.clip_vertices.numpy()
  ndc = clip[..., :2] / clip[..., 3:]
  uv = posing.project(out.vertices).numpy()
  # Rasterizer pixel centres: column c <-> NDC (c + 0.5) / 112 - 1 (SPEC 2.9).
  np.testing.assert_allclose((ndc + 1.0) * 112.0, uv, atol=2e-3)
  raster = renderer.rasterize(out.clip_vertices, model.triangles, 224, 224)
  coverage = (raster.triangle_ids.numpy() >= 0).mean()
  assert 0.2 < coverage < 0.9


def test_sh_lighting_with_only_ambient_is_uniform_scale(synthetic_model):
  model = face_model.FaceModel(synthetic_model)
  out = model(np.zeros((1, 257), np.float32))
  # gamma = 0 -> only the 0.8 ambient prior: colour = albedo * 0.8 * pi / sqrt(4 pi).
  np.testing.assert_allclose(out.colors.numpy(),
                             out.albedo.numpy() * 0.8 * math.pi / math.sqrt(4 * math.pi),
                             rtol=1e-5)


def test_gradients_reach_every_coefficient_group_and_agree_across_kernels(synthetic_model):
  grads = []
  for kernel in ("op", "matmul"):
    model = face_model.FaceModel(synthetic_model, basis_kernel=kernel)
    coeff = tf.Variable(random_coefficients(2, seed=1))
    with tf.GradientTape() as tape:
      out = model(coeff)
      loss = tf.reduce_sum(out.colors) * 1e-4 + tf.reduce_sum(out.landmarks) * 1e-2
    grads.append(tape.gradient(loss, coeff).numpy())
  grad = grads[0]
  for lo, hi in [(0, 80), (80, 144), (144, 224), (224, 227), (227, 254), (254, 257)]:
    assert np.abs(grad[:, lo:hi]).max() > 0, (lo, hi)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-3, atol=1e-3 * np.abs(grad).max())


def test_bad_coefficients(synthetic_model):
  model = face_model.FaceModel(synthetic_model)
  with pytest.raises(ValueError, match=r"coefficients must have shape \[B, 257\]"):
    model(np.zeros((2, 256), np.float32))
  bad = np.zeros((3, 257), np.float32)
  bad[1, 10] = np.nan
  bad[2, 200] = np.inf
  with pytest.raises(ValueError, match=r"^face coefficients contain NaN or infinity \(rows \[1, 2\]\)$"):
    model(bad)
  with pytest.raises(tf.errors.InvalidArgumentError, match="face coefficients contain NaN"):
    tf.function(model)(tf.constant(bad))  # traced: TensorFlow's own check
  from scripts.common import error_line  # pylint: disable=g-import-not-at-top
  try:
    tf.function(model)(tf.constant(bad))
  except tf.errors.InvalidArgumentError as e:
    assert error_line(e) == "face coefficients contain NaN or Inf : Tensor had Inf and NaN values"
  with pytest.raises(ValueError, match="normals must be one of"):
    face_model.FaceModel(synthetic_model, normals="flat")
  with pytest.raises(ValueError, match="basis_kernel must be one of"):
    face_model.FaceModel(synthetic_model, basis_kernel="gpu")
