"""dlib landmarks: accuracy against the MTCNN points shipped with Deep3D's photos, face selection,
no-face and bad-file outcomes."""

import os

import numpy as np
import PIL.Image
import pytest

pytest.importorskip("dlib", reason="dlib-bin is not installed (requirements.txt)")

from deep3dface import align, landmarks  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope="module")
def detector():
  return landmarks.LandmarkDetector()


def test_five_points_match_reference_landmarks(detector, deep3d_photos):
  errors = []
  for path in deep3d_photos:
    five = detector.five_points(align.load_image(path), path)
    reference = align.load_landmarks_txt(os.path.splitext(path)[0] + ".txt")
    inter_ocular = np.linalg.norm(reference[0] - reference[1])
    errors.append(np.linalg.norm(five - reference, axis=1).mean() / inter_ocular)
  assert len(errors) == 25
  # dlib 20.0.1 here: mean 0.052, max 0.079 of the inter-ocular distance.
  assert np.mean(errors) <= 0.08
  assert np.max(errors) <= 0.12


def test_detected_face_fields(detector, deep3d_photos):
  path = deep3d_photos[0]
  image = align.load_image(path)
  (face,) = detector.detect(image)
  left, top, right, bottom = face.box
  assert face.landmarks.shape == (68, 2) and face.five.shape == (5, 2)
  # Landmarks of a frontal face mostly lie in its box; eyes above the mouth.
  inside = ((face.landmarks[:, 0] >= left - 10) & (face.landmarks[:, 0] <= right + 10) &
            (face.landmarks[:, 1] >= top - 10) & (face.landmarks[:, 1] <= bottom + 10))
  assert inside.mean() > 0.9
  assert face.five[0, 1] < face.five[3, 1] and face.five[0, 0] < face.five[1, 0]
  np.testing.assert_allclose(face.five[2], face.landmarks[30])


def _two_faces(photos):
  """The first photo at full size next to the second at half size."""
  big = align.load_image(photos[0])
  small = np.asarray(PIL.Image.fromarray(align.load_image(photos[1])).resize(
      (big.shape[1] // 2, big.shape[0] // 2)))
  canvas = np.zeros((big.shape[0], big.shape[1] + small.shape[1], 3), np.uint8)
  canvas[:, :big.shape[1]] = big
  canvas[:small.shape[0], big.shape[1]:] = small
  return canvas, big.shape[1]


@pytest.mark.parametrize("select,count", [("largest", 1), ("all", 2)])
def test_face_selection(deep3d_photos, select, count):
  canvas, split = _two_faces(deep3d_photos)
  faces = landmarks.LandmarkDetector(select=select).detect(canvas)
  assert len(faces) == count
  assert faces[0].box[2] <= split  # the larger face comes first
  if count == 2:
    assert faces[1].box[0] >= split
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas[0] > areas[1]


def test_no_face_is_a_result_not_a_crash(detector):
  rng = np.random.default_rng(0)
  image = (rng.random((120, 160, 3)) * 40 + 100).astype(np.uint8)
  assert detector.detect(image) == []
  with pytest.raises(landmarks.NoFaceError, match="^blank.png: no face found"):
    detector.five_points(image, "blank.png")


def test_bad_image_array(detector):
  with pytest.raises(ValueError, match="uint8"):
    detector.detect(np.zeros((50, 50, 3), np.float32))
  with pytest.raises(ValueError, match="uint8"):
    detector.detect(np.zeros((50, 50), np.uint8))


def test_bad_predictor_file(tmp_path):
  path = tmp_path / "shape_predictor.dat"
  with open(landmarks.default_predictor_path(), "rb") as f:
    path.write_bytes(f.read(1000))
  with pytest.raises(align.InputError, match="shape_predictor.dat: not a valid dlib"):
    landmarks.LandmarkDetector(predictor_path=str(path))
  with pytest.raises(FileNotFoundError, match="missing.dat"):
    landmarks.LandmarkDetector(predictor_path=str(tmp_path / "missing.dat"))


@pytest.mark.parametrize("kwargs", [{"select": "first"}, {"upsample": -1}, {"upsample": 0.5}])
def test_bad_options(kwargs):
  with pytest.raises(ValueError):
    landmarks.LandmarkDetector(**kwargs)
