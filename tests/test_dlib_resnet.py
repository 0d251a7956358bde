"""dlib's face-recognition ResNet: the file reader and the TensorFlow port against dlib itself."""

import numpy as np
import pytest
import tensorflow as tf

dlib = pytest.importorskip("dlib", reason="dlib-bin is not installed (requirements.txt)")

from deep3dface import align  # pylint: disable=g-import-not-at-top
from gcn_face.identity import dlib_format, dlib_resnet  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope="module")
def model_path():
  return dlib_resnet.default_model_path()


@pytest.fixture(scope="module")
def model_bytes(model_path):
  with open(model_path, "rb") as f:
    return f.read()


@pytest.fixture(scope="module")
def port(model_path):
  return dlib_resnet.load(model_path)


@pytest.fixture(scope="module")
def chips_and_descriptors(model_path, deep3d_photos):
  """dlib's own chips and descriptors for the 25 real photos."""
  import face_recognition_models  # pylint: disable=g-import-not-at-top
  detector = dlib.get_frontal_face_detector()
  predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
  recognizer = dlib.face_recognition_model_v1(model_path)
  chips, descriptors = [], []
  for path in deep3d_photos:
    image = align.load_image(path)
    box = max(detector(image, 1), key=lambda r: r.area())
    chip = dlib.get_face_chip(image, predictor(image, box), dlib_resnet.CHIP_SIZE,
                              dlib_resnet.CHIP_PADDING)
    chips.append(chip)
    descriptors.append(np.array(recognizer.compute_face_descriptor(chip)))
  return np.stack(chips), np.stack(descriptors)


def test_reader_parses_every_record(model_path):
  network = dlib_format.read_network(model_path)
  assert network.input_size == (150, 150)
  np.testing.assert_allclose(network.channel_means, (122.782, 117.001, 104.298), atol=1e-4)
  assert network.distance_threshold == pytest.approx(0.6)
  assert network.margin == pytest.approx(0.04)
  assert len(network.layers) == 108 and len(network.wrapper_versions) == 130
  kinds = [layer.kind for layer in network.layers]
  assert kinds.count("con_4") == 29 and kinds.count("add_prev_") == 14
  total = sum(v.size for layer in network.layers if layer.params for v in layer.params.values())
  assert total == 5_614_592


def test_port_matches_dlib_descriptors(port, chips_and_descriptors):
  chips, expected = chips_and_descriptors
  assert len(chips) == 25
  actual = port(chips.astype(np.float32)).numpy()
  cosine = np.sum(actual * expected, 1) / np.linalg.norm(actual, axis=1) / np.linalg.norm(
      expected, axis=1)
  assert cosine.min() >= 0.9999
  assert np.abs(actual - expected).max() <= 1e-3
  # Distinct people are far apart in both (a sanity check that chips differ).
  assert np.linalg.norm(expected[0] - expected[1]) > 0.3


def test_port_is_differentiable(port, chips_and_descriptors):
  chips = tf.constant(chips_and_descriptors[0][:2], tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(chips)
    loss = tf.reduce_sum(port(chips) ** 2)
  grad = tape.gradient(loss, chips).numpy()
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_keras_round_trip(port, chips_and_descriptors, tmp_path):
  path = str(tmp_path / "dlib_resnet.keras")
  port.save(path)
  loaded = tf.keras.models.load_model(path)
  chips = chips_and_descriptors[0][:2].astype(np.float32)
  np.testing.assert_array_equal(loaded(chips).numpy(), port(chips).numpy())


@pytest.mark.parametrize("shape_a,shape_b", [
    ((1, 4, 4, 8), (1, 4, 4, 8)),
    ((2, 3, 3, 16), (2, 4, 4, 8)),   # dlib's 128 -> 256 downsampling block
    ((1, 1, 1, 4), (1, 2, 2, 4)),    # the final block: 1x1 main path, 2x2 shortcut
])
def test_zero_pad_add(shape_a, shape_b):
  rng = np.random.default_rng(0)
  a = rng.standard_normal(shape_a).astype(np.float32)
  b = rng.standard_normal(shape_b).astype(np.float32)
  expected = np.zeros(np.maximum(shape_a, shape_b), np.float32)
  expected[tuple(slice(0, s) for s in shape_a)] += a
  expected[tuple(slice(0, s) for s in shape_b)] += b
  np.testing.assert_array_equal(dlib_resnet.ZeroPadAdd()([a, b]).numpy(), expected)


def _write(tmp_path, data):
  path = str(tmp_path / "model.dat")
  with open(path, "wb") as f:
    f.write(data)
  return path


@pytest.mark.parametrize("keep", [0, 10, 300, 12_000_000, -1])
def test_truncated_file(model_bytes, tmp_path, keep):
  path = _write(tmp_path, model_bytes[:keep] if keep >= 0 else model_bytes[:-1])
  with pytest.raises(dlib_format.DlibFormatError, match="model.dat: truncated while reading"):
    dlib_format.read_network(path)


def test_altered_files(model_bytes, tmp_path):
  cases = [
      (model_bytes + b"\x00", "1 unexpected bytes after the last layer"),
      (model_bytes.replace(b"\x05relu_", b"\x05relx_", 1), "unknown layer kind 'relx_'"),
      (model_bytes.replace(b"loss_metric_2", b"loss_metric_3", 1), "not a dlib metric-learning"),
  ]
  # The stem's filter count (32 -> 33) no longer matches its weight shape.
  stem = model_bytes.index(b"\x05con_4")
  config = model_bytes.index(b"\x01 \x01\x07\x01\x07", stem)
  cases.append((model_bytes[:config] + b"\x01!" + model_bytes[config + 2:], "disagrees with"))
  # A NaN in the stem's weights.
  weights = stem + len(b"\x05con_4") + 2 + 3 + 6 + 8
  nan = np.array([np.nan], "<f4").tobytes()
  cases.append((model_bytes[:weights] + nan + model_bytes[weights + 4:], "NaN or infinite"))
  for data, message in cases:
    with pytest.raises(dlib_format.DlibFormatError, match=message):
      dlib_format.read_network(_write(tmp_path, data))


def test_missing_file(tmp_path):
  with pytest.raises(dlib_format.DlibFormatError, match="no such file"):
    dlib_format.read_network(str(tmp_path / "none.dat"))
