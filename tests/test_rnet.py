"""R-Net: the Keras conversion and the graph runner against frozen graphs laid out like
FaceReconModel.pb (tests/slim_rnet_graph.py, random weights), export, and bad files."""

import os

import numpy as np
import pytest
import tensorflow as tf

from deep3dface import rnet
from tests import slim_rnet_graph
from tests.graph_edits import edited_graph, node


@pytest.fixture(scope="module")
def graph_path(tmp_path_factory):
  return slim_rnet_graph.write(str(tmp_path_factory.mktemp("rnet") / "FaceReconModel.pb"))


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(5)
  return rng.uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def converted(graph_path):
  """The Keras conversion; verify=True must accept the slim layout."""
  return rnet.from_frozen_graph(graph_path, verify=True)


@pytest.fixture(scope="module")
def graph_outputs(graph_path, images):
  return [t.numpy() for t in rnet.FrozenGraphRNet(graph_path)(images)]


def _assert_close(actual, expected):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape
  scale = np.abs(expected).max()
  assert scale > 1e-3  # random weights give non-trivial outputs
  np.testing.assert_allclose(actual, expected, atol=2e-5 * scale, rtol=0)


def test_graph_runner_output_shapes(graph_outputs):
  coeff, pool5 = graph_outputs
  assert coeff.shape == (2, 257) and pool5.shape == (2, 2048)
  assert np.all(pool5 >= 0)  # ReLU features, averaged
  assert not np.allclose(coeff[0], coeff[1])


def test_converted_keras_model_equals_graph(converted, images, graph_outputs):
  coeff, pool5 = converted(images, training=False)
  _assert_close(coeff, graph_outputs[0])
  _assert_close(pool5, graph_outputs[1])


def test_every_graph_weight_is_used(graph_path):
  graph_def = rnet.read_graph_def(graph_path)
  weights = {n.name for n in graph_def.node if n.op == "Const" and n.name.split("/")[-1] in
             ("weights", "biases", "gamma", "beta", "moving_mean", "moving_variance")}
  names = rnet.slim_weight_names(rnet.build_rnet())
  assert set(names) == weights
  assert len([n for n in names if n.endswith("/weights")]) == 53 + 7  # ResNet-50 convs + heads


def test_import_prefix_is_found(tmp_path, images):
  path = slim_rnet_graph.write(str(tmp_path / "prefixed.pb"), seed=3, prefix="resnet/")
  expected = rnet.FrozenGraphRNet(path)(images[:1])
  actual = rnet.from_frozen_graph(path, verify=False)(images[:1], training=False)
  for a, b in zip(actual, expected):
    _assert_close(a, b)


def test_verify_rejects_a_different_layout(tmp_path):
  """Same constants, block stride on the first unit (old slim): conversion must notice."""
  path = slim_rnet_graph.write(str(tmp_path / "old_layout.pb"), stride_in_first_unit=True)
  rnet.from_frozen_graph(path, verify=False)  # names and shapes all match
  with pytest.raises(rnet.GraphFormatError, match="old_layout.pb: converted model disagrees"):
    rnet.from_frozen_graph(path, verify=True)


def test_saved_model_round_trip(converted, images, graph_outputs, tmp_path):
  rnet.export_saved_model(converted, str(tmp_path / "saved"))
  loaded = tf.saved_model.load(str(tmp_path / "saved"))
  out = loaded.signatures["serving_default"](input_imgs=tf.constant(images))
  _assert_close(out["coeff"], graph_outputs[0])
  _assert_close(out["pool5"], graph_outputs[1])


def test_keras_file_round_trip(converted, images, tmp_path):
  model = converted
  path = str(tmp_path / "rnet.keras")
  model.save(path)
  loaded = tf.keras.models.load_model(path)
  np.testing.assert_array_equal(loaded(images, training=False)[0], model(images, training=False)[0])


def test_to_rnet_input_is_bgr_float():
  rgb = np.zeros((1, 224, 224, 3), np.uint8)
  rgb[..., 0] = 200
  bgr = rnet.to_rnet_input(rgb).numpy()
  assert bgr.dtype == np.float32 and bgr[0, 0, 0].tolist() == [0.0, 0.0, 200.0]
  with pytest.raises(ValueError, match="RGB"):
    rnet.to_rnet_input(np.zeros((224, 224, 3)))


def test_random_model_shapes_and_zero_heads():
  """build_rnet's heads start at zero, as Deep3D's training initialised them."""
  coeff, pool5 = rnet.build_rnet()(np.zeros((1, 224, 224, 3), np.float32))
  assert coeff.shape == (1, 257) and pool5.shape == (1, 2048)
  np.testing.assert_array_equal(coeff, 0.0)


def test_missing_constant(graph_path, tmp_path):
  def drop(graph_def):
    node(graph_def, "fc-gamma/biases").name = "fc-gamma/renamed"
  path = edited_graph(graph_path, tmp_path, drop)
  with pytest.raises(rnet.GraphFormatError, match="edited.pb: tensor 'fc-gamma/biases' not found"):
    rnet.from_frozen_graph(path, verify=False)


def test_wrong_shape_and_nan_constants(graph_path, tmp_path):
  def reshape(graph_def):
    node(graph_def, "fc-Z/biases").attr["value"].tensor.CopyFrom(
        tf.make_tensor_proto(np.zeros(2, np.float32)))
  path = edited_graph(graph_path, tmp_path, reshape)
  with pytest.raises(rnet.GraphFormatError, match=r"'fc-Z/biases' has shape \[2\], expected \[1\]"):
    rnet.from_frozen_graph(path, verify=False)

  def poison(graph_def):
    node(graph_def, "fc-Z/biases").attr["value"].tensor.CopyFrom(
        tf.make_tensor_proto(np.full(1, np.nan, np.float32)))
  path = edited_graph(graph_path, tmp_path, poison)
  with pytest.raises(rnet.GraphFormatError, match="'fc-Z/biases' contains NaN"):
    rnet.from_frozen_graph(path, verify=False)


def test_missing_output_tensor(graph_path, tmp_path):
  def rename(graph_def):
    node(graph_def, "coeff").name = "output"
  path = edited_graph(graph_path, tmp_path, rename)
  with pytest.raises(rnet.GraphFormatError, match="edited.pb: tensor 'coeff:0' not found"):
    rnet.FrozenGraphRNet(path)


@pytest.mark.parametrize("content", ["truncated", "garbage", "empty"])
def test_unreadable_graph_files(graph_path, tmp_path, content):
  path = str(tmp_path / "bad.pb")
  with open(graph_path, "rb") as f:
    data = f.read()
  data = {"truncated": data[:len(data) // 2 + 3], "garbage": b"\xff\xfe not a protobuf " * 10,
          "empty": b""}[content]
  with open(path, "wb") as f:
    f.write(data)
  with pytest.raises(rnet.GraphFormatError, match="^" + path):
    rnet.from_frozen_graph(path)
  with pytest.raises(rnet.GraphFormatError, match="^" + path):
    rnet.FrozenGraphRNet(path)


def test_missing_file(tmp_path):
  path = os.path.join(tmp_path, "FaceReconModel.pb")
  with pytest.raises(rnet.GraphFormatError, match="FaceReconModel.pb: no such file"):
    rnet.from_frozen_graph(path)
