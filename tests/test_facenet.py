"""FaceNet (Inception-ResNet-v1): the Keras model loaded from a frozen graph and from a
checkpoint that tests/slim_facenet_graph.py writes with facenet's names and random weights;
preprocessing against numpy; bad files."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from deep3dface import frozen_graph
from gcn_face.identity import facenet
from tests.graph_edits import edited_graph, node


@pytest.fixture(scope="module")
def from_graph(facenet_files):
  return facenet.load(facenet_files[2], verify=True)


def _assert_outputs(model_or_fn, facenet_files):
  _, _, _, images, pool, embeddings = facenet_files
  actual_pool, actual_embeddings = model_or_fn(images)
  assert actual_pool.shape == (2, facenet.POOL_DIM) and actual_embeddings.shape == (2, 512)
  assert np.abs(pool).max() > 1e-2 and not np.allclose(pool[0], pool[1])
  np.testing.assert_allclose(actual_pool, pool, atol=1e-5 * np.abs(pool).max(), rtol=0)
  np.testing.assert_allclose(actual_embeddings, embeddings, atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.linalg.norm(actual_embeddings, axis=1), 1.0, atol=1e-5)


def test_keras_model_from_frozen_graph(from_graph, facenet_files):
  _assert_outputs(lambda x: from_graph(x, training=False), facenet_files)


@pytest.mark.parametrize("which", ["prefix", "folder"])
def test_keras_model_from_checkpoint(facenet_files, tmp_path, which):
  folder, prefix = facenet_files[:2]
  if which == "folder":  # a folder holding only the checkpoint
    for name in os.listdir(folder):
      if ".ckpt" in name:
        shutil.copy(os.path.join(folder, name), tmp_path)
    path = str(tmp_path)
  else:
    path = prefix
  _assert_outputs(lambda x: facenet.load(path)(x, training=False), facenet_files)


def test_graph_runner(facenet_files):
  _assert_outputs(facenet.FrozenGraphFaceNet(facenet_files[2]), facenet_files)


def test_every_weight_is_read(from_graph):
  names = frozen_graph.slim_weight_names(from_graph)
  assert len(names) == sum(len(layer.weights) for layer in from_graph.layers)
  assert "InceptionResnetV1/Repeat_1/block17_10/Branch_1/Conv2d_0c_7x1/weights" in names
  assert "InceptionResnetV1/Block8/Conv2d_1x1/biases" in names
  assert "InceptionResnetV1/Bottleneck/BatchNorm/moving_variance" in names
  assert from_graph.count_params() == 23_497_424


def test_default_path(facenet_files, tmp_path):
  assert facenet.default_path(str(tmp_path)) is None
  os.makedirs(tmp_path / "facenet")
  shutil.copy(facenet_files[2], tmp_path / "facenet")
  assert facenet.default_path(str(tmp_path)) == str(tmp_path / "facenet" / "20180402-114759.pb")


def _legacy_bilinear(image, size):
  """TF1 resize_bilinear (align_corners=False, no half-pixel centres) in numpy."""
  h, w = image.shape[:2]
  out = np.zeros((size, size, image.shape[2]))
  for i in range(size):
    y = i * h / size
    y0 = int(np.floor(y))
    y1, fy = min(y0 + 1, h - 1), y - y0
    for j in range(size):
      x = j * w / size
      x0 = int(np.floor(x))
      x1, fx = min(x0 + 1, w - 1), x - x0
      top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
      bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
      out[i, j] = top * (1 - fy) + bottom * fy
  return out


def test_preprocess_matches_numpy():
  image = np.random.default_rng(3).uniform(0, 255, (1, 224, 224, 3))
  expected = (_legacy_bilinear(image[0], 160) - 127.5) / 128.0
  actual = facenet.preprocess(image).numpy()[0]
  np.testing.assert_allclose(actual, expected, atol=2e-4)
  same_size = facenet.preprocess(image[:, :160, :160]).numpy()
  np.testing.assert_allclose(same_size, (image[:, :160, :160] - 127.5) / 128.0, atol=1e-5)
  with pytest.raises(ValueError, match="RGB"):
    facenet.preprocess(np.zeros((224, 224, 3)))


def test_wrong_tensor_names(facenet_files, tmp_path):
  def rename_output(graph_def):
    node(graph_def, "embeddings").name = "features"
  path = edited_graph(facenet_files[2], tmp_path, rename_output)
  with pytest.raises(facenet.frozen_graph.GraphFormatError,
                     match="edited.pb: tensor 'embeddings:0' not found"):
    facenet.FrozenGraphFaceNet(path)

  def rename_weight(graph_def):
    node(graph_def, "InceptionResnetV1/Block8/Conv2d_1x1/biases").name = "renamed"
  path = edited_graph(facenet_files[2], tmp_path, rename_weight)
  with pytest.raises(frozen_graph.GraphFormatError,
                     match="tensor 'InceptionResnetV1/Block8/Conv2d_1x1/biases' not found"):
    facenet.load(path, verify=False)


def test_not_facenet(tmp_path):
  from tests import slim_rnet_graph
  path = slim_rnet_graph.write(str(tmp_path / "FaceReconModel.pb"))
  with pytest.raises(frozen_graph.GraphFormatError, match="not a FaceNet Inception-ResNet-v1"):
    facenet.load(path)


def test_nan_and_wrong_shape_weights(facenet_files, tmp_path):
  name = "InceptionResnetV1/Conv2d_1a_3x3/BatchNorm/beta"

  def poison(graph_def):
    node(graph_def, name).attr["value"].tensor.CopyFrom(
        tf.make_tensor_proto(np.full(32, np.nan, np.float32)))
  with pytest.raises(frozen_graph.GraphFormatError, match=f"'{name}' contains NaN"):
    facenet.load(edited_graph(facenet_files[2], tmp_path, poison), verify=False)

  def reshape(graph_def):
    node(graph_def, name).attr["value"].tensor.CopyFrom(
        tf.make_tensor_proto(np.zeros(31, np.float32)))
  with pytest.raises(frozen_graph.GraphFormatError, match=r"has shape \[31\], expected \[32\]"):
    facenet.load(edited_graph(facenet_files[2], tmp_path, reshape), verify=False)


@pytest.mark.parametrize("content", ["truncated", "garbage", "empty"])
def test_unreadable_graph(facenet_files, tmp_path, content):
  with open(facenet_files[2], "rb") as f:
    data = f.read()
  data = {"truncated": data[:len(data) // 3], "garbage": b"\x00\xff nothing " * 9,
          "empty": b""}[content]
  path = str(tmp_path / "20180402-114759.pb")
  with open(path, "wb") as f:
    f.write(data)
  with pytest.raises(frozen_graph.GraphFormatError, match="^" + path + ": "):
    facenet.load(path)


def test_bad_checkpoints(facenet_files, tmp_path):
  prefix = facenet_files[1]
  with pytest.raises(frozen_graph.GraphFormatError, match="no such checkpoint"):
    facenet.load(str(tmp_path / "model.ckpt-1"))
  with pytest.raises(frozen_graph.GraphFormatError, match="no checkpoint"):
    facenet.load(str(tmp_path))
  # A truncated data file: the index is fine, the values are not.
  for suffix in (".index", ".data-00000-of-00001"):
    shutil.copy(prefix + suffix, str(tmp_path / ("model.ckpt-275" + suffix)))
  data = str(tmp_path / "model.ckpt-275.data-00000-of-00001")
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 2)
  with pytest.raises(frozen_graph.GraphFormatError, match="^" + str(tmp_path / "model.ckpt-275")):
    facenet.load(str(tmp_path / "model.ckpt-275"))


def test_keras_round_trip(from_graph, facenet_files, tmp_path):
  path = str(tmp_path / "facenet.keras")
  from_graph.save(path)
  loaded = tf.keras.models.load_model(path)
  images = facenet_files[3]
  np.testing.assert_array_equal(loaded(images)[0], from_graph(images)[0])
