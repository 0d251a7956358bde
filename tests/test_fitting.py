"""The fit's objective against a numpy transcription of Deep3D's losses.py (Photo_loss,
Landmark_loss, Regulation_loss, Reflectance_loss, Gamma_loss with the weights of its
options), term by term and in their balance, and its photometric mask (the rendered small
face region times the skin mask, reconstruction_model.py)."""

import numpy as np
import pytest
import tensorflow as tf

import renderer
from deep3dface import face_model, fitting
from gcn_face import refinement

WEIGHTS = {"photo": 1.92, "landmark": 1.6e-3, "reg": 3e-4, "reflectance": 5.0, "gamma": 10.0}


def deep3d_photo(inputs, renders, mask):
  loss = np.sqrt(np.sum(np.square(inputs - renders), axis=3)) * mask / 255
  return np.sum(loss) / max(np.sum(mask), 1.0)


def deep3d_landmark(predicted, label):
  weight = np.concatenate([np.ones(28), 20 * np.ones(3), np.ones(29), 20 * np.ones(8)])
  return np.sum(np.sum(np.square(predicted - label), 2) * weight) / (68.0 * len(predicted))


def deep3d_regulation(coeff):
  def l2_loss(x):
    return np.sum(np.square(x)) / 2
  reg = l2_loss(coeff[:, :80]) + 0.8 * l2_loss(coeff[:, 80:144]) + 1.7e-2 * l2_loss(
      coeff[:, 144:224])
  return 2 * reg / len(coeff)


def deep3d_reflectance(texture, skin):
  skin = skin.reshape(1, -1, 1)
  mean = np.sum(texture * skin, 1, keepdims=True) / np.sum(skin)
  return np.sum(np.square((texture - mean) * skin / 255.0)) / (len(texture) * np.sum(skin))


def deep3d_gamma(gamma):
  gamma = gamma.reshape(-1, 3, 9)
  return np.mean(np.square(gamma - gamma.mean(1, keepdims=True)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_photo_and_gamma_terms_match_deep3d(seed):
  rng = np.random.default_rng(seed)
  inputs = rng.uniform(0, 255, (1, 224, 224, 3))
  renders = np.clip(inputs + rng.normal(0, 20 * (seed + 1), inputs.shape), 0, 255)
  mask = (rng.uniform(size=(1, 224, 224)) < 0.3).astype(np.float64)
  got = fitting.photo_term(tf.constant(renders, tf.float32), tf.constant(inputs, tf.float32),
                           tf.constant(mask, tf.float32)).numpy()[0]
  assert got == pytest.approx(1.92 * deep3d_photo(inputs, renders, mask), rel=1e-4)
  gamma = rng.normal(0, 0.3, (1, 27))
  assert fitting.gamma_term(tf.constant(gamma, tf.float32)).numpy()[0] == pytest.approx(
      10.0 * deep3d_gamma(gamma), rel=1e-5)
  # An empty mask gives 0, as Deep3D's max(sum(mask), 1).
  assert fitting.photo_term(tf.constant(renders, tf.float32), tf.constant(inputs, tf.float32),
                            tf.zeros([1, 224, 224])).numpy()[0] == 0.0


@pytest.mark.parametrize("seed", [0, 3])
def test_terms_balance_as_deep3d(synthetic_model, seed):
  """Every term of Fitter.terms against Deep3D's, on one face (Deep3D's batch mean = ours for
  B = 1), so their ratios - the balance the fit minimises - are Deep3D's."""
  model = face_model.FaceModel(synthetic_model)
  fitter = fitting.Fitter(model, refinement.skin_indices(synthetic_model))
  rng = np.random.default_rng(seed)
  coeff = (rng.normal(0, 0.5, (1, 257)) * np.r_[np.ones(224), 0.1 * np.ones(33)]).astype(
      np.float32)
  coeff[0, 254:257] = 0.0
  image = rng.uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
  skin = (rng.uniform(size=(1, 224, 224)) < 0.7).astype(np.float32)
  targets = rng.uniform(60, 160, (1, 68, 2)).astype(np.float32)
  terms = {k: v.numpy()[0] for k, v in fitter.terms(coeff, image, skin, targets).items()}
  face = model(coeff)
  rendered, _ = fitting.render_colors(face.clip_vertices, model.triangles, face.colors)
  front = fitter.photo_mask(face, tf.ones_like(skin)).numpy()
  expected = {
      "photo": deep3d_photo(image, rendered.numpy(), front * skin),
      "landmark": deep3d_landmark(face.landmarks.numpy(), targets),
      "reg": deep3d_regulation(coeff),
      "reflectance": deep3d_reflectance(face.albedo.numpy(),
                                        np.asarray(synthetic_model.skin_mask, np.float64)),
      "gamma": deep3d_gamma(coeff[:, 227:254]),
  }
  for name, value in expected.items():
    assert terms[name] == pytest.approx(WEIGHTS[name] * value, rel=2e-4), name
  ratios = {k: terms[k] / terms["photo"] for k in expected}
  for name in expected:
    assert ratios[name] == pytest.approx(
        WEIGHTS[name] * expected[name] / (WEIGHTS["photo"] * expected["photo"]), rel=3e-4)


def test_photo_mask_is_the_small_face_region(synthetic_model):
  model = face_model.FaceModel(synthetic_model)
  fitter = fitting.Fitter(model)
  face = model(tf.zeros([1, 257]))
  front = fitter.photo_mask(face, tf.ones([1, 224, 224])).numpy()[0]
  _, coverage = fitting.render_colors(face.clip_vertices, model.triangles,
                                      tf.ones([1, model.num_vertices, 1]))
  coverage = (coverage.numpy()[0] > 0.5).astype(np.float32)
  # Independently: rasterize only the triangles whose 3 vertices are all in frontmask2_idx.
  inside = np.zeros(model.num_vertices, bool)
  inside[synthetic_model.front_mask_idx] = True
  triangles = np.asarray(synthetic_model.triangles)
  small = triangles[inside[triangles].all(1)]
  raster = renderer.rasterize(face.clip_vertices, tf.constant(small, tf.int32), 224, 224)
  reference = (raster.triangle_ids.numpy()[0, ::-1] >= 0).astype(np.float32)
  assert 0.3 * coverage.sum() < front.sum() < coverage.sum()
  assert np.all(front <= coverage)
  np.testing.assert_array_equal(front, reference)
  skin = np.zeros([1, 224, 224], np.float32)
  skin[:, :112] = 1.0
  half = fitter.photo_mask(face, skin).numpy()[0]
  np.testing.assert_array_equal(half, front * skin[0])
