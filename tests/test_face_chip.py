"""Differentiable face chips against dlib's own get_face_chip / get_face_chip_details on
the real photos, its pyramid against a numpy transcription, and the gradient."""

import numpy as np
import pytest
import tensorflow as tf

from gcn_face.identity import face_chip


def _numpy_pyramid_down(image):
  """dlib's pyramid_down<2> for uint8 RGB: integer sums, truncating division."""
  image = image.astype(np.int64)
  rows, cols = image.shape[:2]
  temp = np.zeros((rows, (cols - 3) // 2, 3), np.int64)
  for c in range(temp.shape[1]):
    oc = 2 * c
    temp[:, c] = (image[:, oc] + 4 * image[:, oc + 1] + 6 * image[:, oc + 2] +
                  4 * image[:, oc + 3] + image[:, oc + 4])
  down = np.zeros(((rows - 3) // 2, temp.shape[1], 3), np.int64)
  for dr, r in enumerate(range(2, rows - 2, 2)):
    down[dr] = (temp[r - 2] + 4 * temp[r - 1] + 6 * temp[r] + 4 * temp[r + 1] + temp[r + 2]) // 256
  return down


@pytest.mark.parametrize("shape", [(20, 20), (31, 18), (64, 47)])
def test_pyramid_down_matches_dlib_loop(shape):
  image = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,)).astype(np.uint8)
  expected = _numpy_pyramid_down(image)
  actual = face_chip.pyramid_down(tf.constant(image, tf.float32)).numpy()
  assert actual.shape == expected.shape
  np.testing.assert_array_equal(np.floor(actual + 1e-4), expected)


def test_similarity_is_least_squares():
  rng = np.random.default_rng(1)
  source = rng.uniform(0, 150, (7, 2))
  angle, scale, shift = 0.3, 1.7, np.array([40.0, -12.0])
  rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  target = source @ rot.T + shift + rng.normal(0, 2.0, (7, 2))
  a, b, t = face_chip.similarity(tf.constant(source[None]), tf.constant(target[None]))
  # Least squares over (a, b, tx, ty) with numpy.
  rows = []
  for (x, y) in source:
    rows += [[x, -y, 1, 0], [y, x, 0, 1]]
  solution, *_ = np.linalg.lstsq(np.array(rows), target.reshape(-1), rcond=None)
  np.testing.assert_allclose([a[0], b[0], *t[0]], solution, rtol=1e-9, atol=1e-9)


@pytest.fixture(scope="module")
def dlib_faces(deep3d_photos):
  """(image, landmarks [P, 2], dlib chip_details, dlib chip) for 5 and 68 points per photo."""
  dlib = pytest.importorskip("dlib", reason="dlib-bin is not installed (requirements.txt)")
  import face_recognition_models  # pylint: disable=g-import-not-at-top
  from deep3dface import align  # pylint: disable=g-import-not-at-top
  detector = dlib.get_frontal_face_detector()
  predictors = [dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location()),
                dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())]
  faces = []
  for path in deep3d_photos:
    image = align.load_image(path)
    box = max(detector(image, 1), key=lambda r: r.area())
    for predictor in predictors:
      shape = predictor(image, box)
      points = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
      faces.append((image, points, dlib.get_face_chip_details(shape, 150, 0.25),
                    dlib.get_face_chip(image, shape, 150, 0.25)))
  return faces


def test_chip_geometry_equals_dlib(dlib_faces):
  for _, points, details, _ in dlib_faces:
    rect, angle = face_chip.chip_details(points[None])
    expected = [details.rect.left(), details.rect.top(), details.rect.right(),
                details.rect.bottom()]
    np.testing.assert_allclose(rect.numpy()[0], expected, atol=1e-9)
    assert abs(angle.numpy()[0] - details.angle) < 1e-12


def test_chips_equal_dlib(dlib_faces):
  scales, mads, exact = [], [], []
  for image, points, _, chip in dlib_faces:
    floats = face_chip.extract_face_chips(image[None].astype(np.float32), points[None]).numpy()[0]
    rounded = face_chip.extract_face_chips(image[None].astype(np.float32), points[None],
                                           dlib_rounding=True).numpy()[0]
    mads.append(np.abs(floats - chip).mean())
    exact.append(np.mean(rounded == chip))
    scales.append(face_chip.chip_scale(points[None]).numpy()[0])
  assert len(mads) == 50
  assert max(scales) > 4.0 and min(scales) < 1.0  # pyramid levels 0-2 and upsampling covered
  assert max(mads) <= 2.0  # the bound: 2/255 mean absolute difference
  assert min(exact) >= 0.99  # with dlib's truncation, all but float-vs-double ties agree


def test_chip_is_linear_in_the_image_and_differentiable():
  rng = np.random.default_rng(2)
  x, y = (tf.constant(rng.uniform(0, 255, (2, 120, 100, 3)), tf.float32) for _ in range(2))
  landmarks = np.array([[[70.0, 40.0], [58.0, 41.0], [25.0, 40.0], [38.0, 41.0], [48.0, 65.0]],
                        [[80.0, 50.0], [66.0, 48.0], [30.0, 42.0], [44.0, 44.0], [57.0, 70.0]]])
  chips = lambda images: face_chip.extract_face_chips(images, landmarks, size=64)
  np.testing.assert_allclose(chips(2.0 * x - 0.5 * y), 2.0 * chips(x) - 0.5 * chips(y), atol=1e-3)
  with tf.GradientTape() as tape:
    tape.watch(x)
    total = tf.reduce_sum(chips(x))
  grad = tape.gradient(total, x)
  # For a linear map f, <grad f, x> = f(x).
  np.testing.assert_allclose(tf.reduce_sum(grad * x), total, rtol=1e-4)
  assert float(tf.reduce_min(grad)) >= 0.0 and float(tf.reduce_max(grad)) > 0.0


def test_chip_outside_the_image_is_zero():
  image = np.full((1, 40, 40, 3), 100.0, np.float32)
  landmarks = np.array([[[30.0, 10.0], [25.0, 10.0], [10.0, 10.0], [15.0, 10.0], [20.0, 22.0]]])
  chip = face_chip.extract_face_chips(image, landmarks, size=50).numpy()[0]
  assert chip[0, 0].tolist() == [0.0, 0.0, 0.0]  # the padded chip reaches past the border
  np.testing.assert_allclose(chip[25, 25], 100.0)


@pytest.mark.parametrize("landmarks,message", [
    (np.zeros((1, 6, 2)), "5, 2] or \\[B, 68, 2]"),
    (np.zeros((1, 5)), "must be \\[B, P, 2]"),
    (np.zeros((2, 5, 2)), "1 images but 2 landmark sets"),
])
def test_bad_landmarks(landmarks, message):
  with pytest.raises(ValueError, match=message):
    face_chip.extract_face_chips(np.zeros((1, 40, 40, 3)), landmarks)


def test_layouts():
  with pytest.raises(ValueError, match="needs 68 landmarks"):
    face_chip.layout_for(5, "dlib68")
  with pytest.raises(ValueError, match="layout must be one of"):
    face_chip.template("mtcnn")
  indices, points = face_chip.template("dlib68")
  assert len(indices) == 33 and points.shape == (33, 2)  # no brows, no lower lip
  _, deep3d = face_chip.template("deep3d5")
  assert deep3d[0, 0] < deep3d[1, 0] and deep3d[3, 0] < deep3d[4, 0]  # image-left first


@pytest.mark.parametrize("dlib_rounding", [False, True])
def test_direct_sampling_equals_the_per_image_path(dlib_rounding):
  """Chips that need no pyramid level come from one batched gather over the images; they
  equal dlib's per-image path (crop, then sample), values and gradients, also where the chip
  leaves the image; a batch where one face needs a pyramid level takes the per-image path."""
  rng = np.random.default_rng(3)
  images = tf.constant(rng.uniform(0, 255, (3, 224, 224, 3)), tf.float32)
  base = np.array([[140.0, 95.0], [85.0, 95.0], [112.0, 125.0], [90.0, 160.0], [135.0, 160.0]])
  landmarks = np.stack([base, (base - 112.0) * 1.1 + [100.0, 118.0],
                        (base - 112.0) * 1.3 + [40.0, 30.0]])  # the last leaves the image
  rect, angle = face_chip.chip_details(landmarks)
  assert not np.any(face_chip._needs_pyramid(rect, 150).numpy())  # pylint: disable=protected-access
  weights = tf.constant(rng.normal(size=(150, 150, 3)), tf.float32)

  def chips_and_grad(extract):
    with tf.GradientTape() as tape:
      tape.watch(images)
      chips = extract()
      total = tf.reduce_sum(chips * weights)
    return chips.numpy(), tape.gradient(total, images).numpy()

  direct = chips_and_grad(lambda: face_chip.extract_face_chips(
      images, landmarks, dlib_rounding=dlib_rounding))
  one_by_one = chips_and_grad(lambda: tf.stack([  # pylint: disable=protected-access
      face_chip._extract_one(images[i], rect[i], angle[i], 150, dlib_rounding)
      for i in range(3)]))
  assert np.mean(direct[0][2] == 0.0) > 0.05  # zero outside the image
  np.testing.assert_allclose(direct[0], one_by_one[0], atol=2e-3 if not dlib_rounding else 1.0)
  if dlib_rounding:  # truncation may flip at a float tie, nowhere else
    assert np.mean(direct[0] == one_by_one[0]) > 0.999
  np.testing.assert_allclose(direct[1], one_by_one[1], atol=1e-4)
  # A face twice as large needs a pyramid level: the whole batch takes the per-image path.
  mixed = np.concatenate([landmarks[:1], (base[None] - 112.0) * 2.5 + 112.0])
  assert list(face_chip._needs_pyramid(face_chip.chip_details(mixed)[0], 150).numpy()) == [  # pylint: disable=protected-access
      False, True]
  np.testing.assert_allclose(
      face_chip.extract_face_chips(images[:2], mixed, dlib_rounding=dlib_rounding)[0],
      direct[0][0], atol=2e-3 if not dlib_rounding else 1.0)
