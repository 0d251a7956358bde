"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1) in TensorFlow.

    model = dlib_resnet.load()                       # from face_recognition_models
    descriptors = model(chips)                       # [B, 150, 150, 3] RGB 0-255 -> [B, 128]

A differentiable Keras model with dlib's weights: the same layers, the input
normalisation ((pixel - channel mean) / 256) and dlib's residual add, which
zero-pads the smaller operand (top-left aligned, in channels and space).
Descriptors are not unit length; dlib calls two faces the same person below
Euclidean distance 0.6.
"""

import tensorflow as tf

from deep3dface import landmarks
from gcn_face.identity import dlib_format

CHIP_SIZE = 150  # dlib get_face_chip size for this network
CHIP_PADDING = 0.25  # dlib compute_face_descriptor's default chip padding
PIXEL_SCALE = 256.0  # input_rgb_image_sized divides by 256 after the mean
DESCRIPTOR_DIM = 128
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold on the Euclidean distance
STEM_FILTERS = 32
# Residual stages from input to output: (channels, blocks, first block downsamples).
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


def default_model_path():
  """dlib_face_recognition_resnet_model_v1.dat from the face_recognition_models package."""
  return landmarks.dlib_model_file("face_recognition_model_location")


@tf.keras.utils.register_keras_serializable(package="gcn_face")
class ChannelAffine(tf.keras.layers.Layer):
  """y = x * gamma + beta per channel (dlib's affine_: batch norm folded after training)."""

  def build(self, input_shape):
    channels = input_shape[-1]
    self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
    self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

  def call(self, x):
    return x * self.gamma + self.beta


@tf.keras.utils.register_keras_serializable(package="gcn_face")
class ZeroPadAdd(tf.keras.layers.Layer):
  """dlib's add_prev_: the sum of two [B, H, W, C] tensors after zero-padding the smaller
  one at the bottom/right/end to the larger size in each of H, W and C."""

  def call(self, inputs):
    a, b = inputs
    sa, sb = tf.shape(a), tf.shape(b)
    target = tf.maximum(sa, sb)

    def pad(x, s):
      return tf.pad(x, tf.stack([tf.zeros([4], tf.int32), target - s], axis=1))

    # The static shape tf.pad loses: a conv after an unknown channel count is XLA-compiled by
    # Keras (it assumes a grouped conv), which a portable SavedModel must not hold.
    return tf.ensure_shape(pad(a, sa) + pad(b, sb),
                           self.compute_output_shape((a.shape, b.shape)))

  def compute_output_shape(self, input_shapes):
    a, b = input_shapes
    return tuple(None if x is None or y is None else max(x, y) for x, y in zip(a, b))


class _Layers:
  """Walks the parsed dlib layers in order, checking each against the architecture."""

  def __init__(self, network, path):
    self.layers, self.index, self.path = network.layers, 0, path

  def take(self, kind, **expected):
    if self.index >= len(self.layers):
      raise dlib_format.DlibFormatError(f"{self.path}: network ends before the expected {kind}")
    layer = self.layers[self.index]
    mismatch = {k: layer.config.get(k) for k, v in expected.items() if layer.config.get(k) != v}
    if layer.kind != kind or mismatch:
      raise dlib_format.DlibFormatError(
          f"{self.path}: layer {self.index} is {layer.kind} {layer.config}, expected {kind} "
          f"{expected}; not dlib's face-recognition ResNet")
    self.index += 1
    return layer


def _conv(x, layers, name, filters, size, stride):
  padding = 0 if stride > 1 else size // 2  # dlib con_ default padding
  layer = layers.take(dlib_format.CON, filters=filters, rows=size, cols=size, stride_y=stride,
                      stride_x=stride, padding_y=padding, padding_x=padding)
  if padding:
    x = tf.keras.layers.ZeroPadding2D(padding, name=name + "_pad")(x)
  conv = tf.keras.layers.Conv2D(filters, size, stride, padding="valid", name=name)
  x = conv(x)
  conv.set_weights([layer.params["weights"].transpose(2, 3, 1, 0), layer.params["biases"]])
  affine_layer = layers.take(dlib_format.AFFINE, channels=filters)
  affine = ChannelAffine(name=name + "_affine")
  x = affine(x)
  affine.set_weights([affine_layer.params["gamma"], affine_layer.params["beta"]])
  return x


def _block(x, layers, name, filters, downsample):
  stride = 2 if downsample else 1
  y = _conv(x, layers, name + "_conv1", filters, 3, stride)
  layers.take(dlib_format.RELU)
  y = tf.keras.layers.ReLU(name=name + "_relu1")(y)
  y = _conv(y, layers, name + "_conv2", filters, 3, 1)
  shortcut = x
  if downsample:
    layers.take(dlib_format.AVG_POOL, rows=2, cols=2, stride_y=2, stride_x=2, padding_y=0,
                padding_x=0)
    shortcut = tf.keras.layers.AveragePooling2D(2, 2, name=name + "_shortcut")(x)
  layers.take(dlib_format.ADD_PREV)
  y = ZeroPadAdd(name=name + "_add")([y, shortcut])
  layers.take(dlib_format.RELU)
  return tf.keras.layers.ReLU(name=name + "_out")(y)


def build(network, path="network"):
  """A Keras model with the weights of a parsed dlib network (`dlib_format.read_network`).

  Returns:
    keras.Model: RGB face chips float32 `[B, 150, 150, 3]` in [0, 255] ->
    descriptors `[B, 128]`.

  Raises:
    DlibFormatError: the file's layers are not this architecture.
  """
  if tuple(network.input_size) != (CHIP_SIZE, CHIP_SIZE):
    raise dlib_format.DlibFormatError(f"{path}: input size {network.input_size}, expected "
                                      f"{CHIP_SIZE}x{CHIP_SIZE}")
  layers = _Layers(network, path)
  chips = tf.keras.Input((CHIP_SIZE, CHIP_SIZE, 3), name="chips")
  means = tf.constant(network.channel_means, tf.float32)
  x = tf.keras.layers.Rescaling(1.0 / PIXEL_SCALE, name="scale")(chips - means)
  x = _conv(x, layers, "stem", STEM_FILTERS, 7, 2)
  layers.take(dlib_format.RELU)
  x = tf.keras.layers.ReLU(name="stem_relu")(x)
  layers.take(dlib_format.MAX_POOL, rows=3, cols=3, stride_y=2, stride_x=2, padding_y=0,
              padding_x=0)
  x = tf.keras.layers.MaxPooling2D(3, 2, name="stem_pool")(x)
  for s, (filters, blocks, downsample) in enumerate(STAGES):
    for b in range(blocks):
      x = _block(x, layers, f"stage{s}_block{b}", filters, downsample and b == 0)
  layers.take(dlib_format.AVG_POOL, rows=0, cols=0)
  x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
  fc_layer = layers.take(dlib_format.FC, inputs=STAGES[-1][0], outputs=DESCRIPTOR_DIM)
  fc = tf.keras.layers.Dense(DESCRIPTOR_DIM, use_bias=False, name="fc")
  descriptors = fc(x)
  fc.set_weights([fc_layer.params["weights"]])
  if layers.index != len(network.layers):
    raise dlib_format.DlibFormatError(f"{path}: {len(network.layers) - layers.index} layers "
                                      "left over; not dlib's face-recognition ResNet")
  return tf.keras.Model(chips, descriptors, name="dlib_resnet")


def load(path=None):
  """Reads dlib_face_recognition_resnet_model_v1.dat (default: face_recognition_models')."""
  path = path or default_model_path()
  return build(dlib_format.read_network(path), path)
