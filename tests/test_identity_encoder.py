"""The identity-encoder interface: dlib (port) on aligned crops against dlib itself, FaceNet
on test-built weights, the default and its log line, SavedModel export, bad input."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from gcn_face.identity import dlib_resnet, encoder, facenet


@pytest.fixture(scope="module")
def dlib_encoder():
  return encoder.DlibEncoder()


@pytest.fixture(scope="module")
def aligned_faces(deep3d_photos):
  """Three aligned 224 crops with dlib's 68 landmarks mapped into them (rounded to pixels),
  and dlib's own descriptor of each crop's chip."""
  dlib = pytest.importorskip("dlib", reason="dlib-bin is not installed (requirements.txt)")
  import face_recognition_models  # pylint: disable=g-import-not-at-top
  from deep3dface import align  # pylint: disable=g-import-not-at-top
  detector = dlib.get_frontal_face_detector()
  predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
  recognizer = dlib.face_recognition_model_v1(dlib_resnet.default_model_path())
  crops, points, descriptors = [], [], []
  for path in deep3d_photos[:3]:
    image = align.load_image(path)
    shape = predictor(image, max(detector(image, 1), key=lambda r: r.area()))
    lm68 = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
    aligned = align.align_image(image, align.five_from_68(lm68))
    in_crop = np.round(aligned.transform.to_crop(lm68))
    crop_shape = dlib.full_object_detection(
        dlib.rectangle(0, 0, 223, 223), [dlib.point(int(x), int(y)) for x, y in in_crop])
    chip = dlib.get_face_chip(aligned.image, crop_shape, 150, 0.25)
    crops.append(aligned.image)
    points.append(in_crop)
    descriptors.append(np.array(recognizer.compute_face_descriptor(chip)))
  return np.stack(crops).astype(np.float32), np.stack(points), np.stack(descriptors)


def _cosine(a, b):
  return np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_dlib_encoder_equals_dlib_on_aligned_crops(dlib_encoder, aligned_faces):
  crops, points, expected = aligned_faces
  features = dlib_encoder.embed(crops, points).numpy()
  assert features.shape == (3, 128)
  assert _cosine(features, expected).min() >= 0.999
  assert np.linalg.norm(features - expected, axis=1).max() < 0.05  # dlib's same-person: < 0.6


def test_dlib_encoder_without_landmarks(dlib_encoder, aligned_faces):
  """The standard crop points stand in for landmarks: still the same person."""
  crops, _, expected = aligned_faces
  features = dlib_encoder.embed(crops).numpy()
  assert np.linalg.norm(features - expected, axis=1).max() < dlib_resnet.SAME_PERSON_DISTANCE
  distances = np.linalg.norm(features[:, None] - expected[None], axis=2)
  assert np.all(np.argmin(distances, axis=1) == np.arange(3))


def test_dlib_encoder_is_differentiable_in_a_tf_function(dlib_encoder, aligned_faces):
  crops, points, _ = aligned_faces

  @tf.function
  def loss_and_grad(images):
    with tf.GradientTape() as tape:
      tape.watch(images)
      features = dlib_encoder.embed(images, points[:2])
      loss = 1.0 - tf.reduce_mean(tf.keras.losses.cosine_similarity(features[:1], features[1:]))
    return loss, tape.gradient(loss, images)

  loss, grad = loss_and_grad(tf.constant(crops[:2]))
  assert np.isfinite(float(loss)) and np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_facenet_encoder(facenet_files):
  model = facenet.load(facenet_files[2], verify=False)
  enc = encoder.FaceNetEncoder(model)
  crops = np.random.default_rng(4).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
  expected = model(facenet.preprocess(crops))[0]
  np.testing.assert_allclose(enc.embed(crops), expected, rtol=1e-6, atol=1e-6)
  assert enc.feature_dim == 1792
  assert encoder.FaceNetEncoder(model, "embeddings").embed(crops).shape == (2, 512)


def test_load_encoder_defaults_to_dlib_and_says_so(tmp_path, caplog):
  with caplog.at_level(logging.INFO, logger="absl"):
    enc = encoder.load_encoder("auto", checkpoint_dir=str(tmp_path))
  assert isinstance(enc, encoder.DlibEncoder) and enc.feature_dim == 128
  assert any("FaceNet weights not found" in r.getMessage() and "dlib" in r.getMessage()
             for r in caplog.records)


def test_load_encoder_facenet(facenet_files, tmp_path):
  with pytest.raises(encoder.EncoderUnavailable, match="FaceNet weights not found: put "):
    encoder.load_encoder("facenet", checkpoint_dir=str(tmp_path))
  with pytest.raises(encoder.EncoderUnavailable, match="missing.pb: no such FaceNet file"):
    encoder.load_encoder("auto", facenet_path=str(tmp_path / "missing.pb"))
  with pytest.raises(ValueError, match="must be one of"):
    encoder.load_encoder("vggface")
  enc = encoder.load_encoder("auto", facenet_path=facenet_files[1])
  assert isinstance(enc, encoder.FaceNetEncoder)


@pytest.mark.parametrize("images,message", [
    (np.zeros((1, 224, 224)), "must be \\[B, H, W, 3\\]"),
    (np.zeros((1, 224, 200, 3)), "square aligned crops"),
    (np.zeros((1, 16, 16, 3)), "at least 32 px"),
    (np.full((1, 64, 64, 3), -0.5), "in \\[0, 255\\], got values in \\[-0.5"),
    (np.full((1, 64, 64, 3), 300.0), "in \\[0, 255\\]"),
    (np.full((1, 64, 64, 3), np.nan), "NaN"),
])
def test_bad_images(dlib_encoder, images, message):
  with pytest.raises(ValueError, match=message):
    dlib_encoder.embed(images)


def test_bad_landmarks(dlib_encoder):
  with pytest.raises(ValueError, match="landmarks must be"):
    dlib_encoder.embed(np.zeros((1, 64, 64, 3)), np.zeros((1, 7, 2)))


def test_range_checked_inside_tf_function(dlib_encoder):
  embed = tf.function(dlib_encoder.embed)
  with pytest.raises(tf.errors.InvalidArgumentError, match="in \\[0, 255\\]"):
    embed(tf.fill([1, 64, 64, 3], -1.0))


def test_saved_model_export(dlib_encoder, aligned_faces, tmp_path):
  crops, points, _ = aligned_faces
  path = str(tmp_path / "dlib_encoder")
  encoder.export_saved_model(dlib_encoder, path, landmark_count=68)
  loaded = tf.saved_model.load(path)
  np.testing.assert_allclose(loaded.signatures["serving_default"](images=crops[:1])["features"],
                             dlib_encoder.embed(crops[:1]), atol=1e-5)
  with_points = loaded.signatures["with_landmarks"](images=crops[:1],
                                                    landmarks=points[:1].astype(np.float32))
  np.testing.assert_allclose(with_points["features"], dlib_encoder.embed(crops[:1], points[:1]),
                             atol=1e-5)
  assert os.path.isfile(os.path.join(path, "saved_model.pb"))
