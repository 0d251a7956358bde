"""Deep3D's R-Net: TF-slim ResNet-50 v1 + seven 1x1 coefficient heads (SPEC 2.2).

Two ways to run Deep3D's frozen `FaceReconModel.pb`:

    model = rnet.from_frozen_graph("checkpoints/FaceReconModel.pb")   # Keras, converted
    coeff, pool5 = model(rnet.to_rnet_input(rgb_uint8))

    graph = rnet.FrozenGraphRNet("checkpoints/FaceReconModel.pb")      # the graph itself
    coeff, pool5 = graph(rnet.to_rnet_input(rgb_uint8))

Input: float32 `[B, 224, 224, 3]` **BGR** in [0, 255], no mean subtraction
(`to_rnet_input` converts RGB uint8). Outputs: coefficients `[B, 257]`
(layout in `constants`) and the pooled ResNet feature `[B, 2048]` that the GCN
release feeds to its decoder.

Keras layers are named after the slim scopes (`frozen_graph`):
`resnet_v1_50.block1.unit_1.bottleneck_v1.conv1` holds
`resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/weights`.
"""

import tensorflow as tf

from deep3dface import constants, frozen_graph

INPUT_TENSOR = "input_imgs:0"
COEFF_TENSOR = "coeff:0"
POOL5_TENSOR = "resnet_v1_50/pool5:0"
RESNET_SCOPE = "resnet_v1_50"
FEATURE_DIM = 2048  # ResNet-50 pool5 channels
# Deep3D networks.py: (scope, outputs), concatenated in this order. fc-XY and
# fc-Z are the translation's x, y and z.
HEADS = (("fc-id", constants.ID_DIM), ("fc-ex", constants.EXP_DIM), ("fc-tex", constants.TEX_DIM),
         ("fc-angles", constants.ANGLE_DIM), ("fc-gamma", constants.GAMMA_DIM), ("fc-XY", 2),
         ("fc-Z", 1))
# slim resnet_v1_50: (block, bottleneck depth, units); output depth 4x; the
# last unit of blocks 1-3 has stride 2.
BLOCKS = (("block1", 64, 3, 2), ("block2", 128, 4, 2), ("block3", 256, 6, 2), ("block4", 512, 3, 1))
BN_EPSILON = 1e-5  # slim resnet_arg_scope
BN_MOMENTUM = 0.997  # slim resnet_arg_scope (only matters when fine-tuning)


GraphFormatError = frozen_graph.GraphFormatError
read_graph_def = frozen_graph.read_graph_def
slim_weight_names = frozen_graph.slim_weight_names


def to_rnet_input(images):
  """RGB images `[B, 224, 224, 3]` (uint8 or float in [0, 255]) -> the R-Net's BGR float32."""
  images = tf.convert_to_tensor(images)
  if images.shape.rank != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [B, H, W, 3] RGB, got shape {images.shape}")
  return tf.reverse(tf.cast(images, tf.float32), axis=[-1])


def _scope(*parts):
  return ".".join(parts)


def _conv_bn(x, filters, kernel, stride, scope, relu, trainable_bn):
  """slim conv2d (no bias) + batch norm (+ ReLU); stride > 1 pads like conv2d_same."""
  if stride > 1 and kernel > 1:
    total = kernel - 1
    x = tf.keras.layers.ZeroPadding2D(((total // 2, total - total // 2),) * 2,
                                      name=scope + ".pad")(x)
    padding = "valid"
  else:
    padding = "same"
  x = tf.keras.layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False,
                             kernel_initializer="he_normal", name=scope)(x)
  x = tf.keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                         trainable=trainable_bn, name=scope + ".BatchNorm")(x)
  return tf.keras.layers.ReLU(name=scope + ".relu")(x) if relu else x


def _bottleneck(x, depth_in, depth_bottleneck, stride, scope, trainable_bn):
  depth = 4 * depth_bottleneck
  if depth == depth_in:
    shortcut = (tf.keras.layers.MaxPooling2D(1, stride, padding="same", name=scope + ".shortcut")(x)
                if stride > 1 else x)
  else:
    shortcut = _conv_bn(x, depth, 1, stride, _scope(scope, "shortcut"), False, trainable_bn)
  residual = _conv_bn(x, depth_bottleneck, 1, 1, _scope(scope, "conv1"), True, trainable_bn)
  residual = _conv_bn(residual, depth_bottleneck, 3, stride, _scope(scope, "conv2"), True,
                      trainable_bn)
  residual = _conv_bn(residual, depth, 1, 1, _scope(scope, "conv3"), False, trainable_bn)
  x = tf.keras.layers.Add(name=scope + ".add")([shortcut, residual])
  return tf.keras.layers.ReLU(name=scope + ".out")(x)


def build_rnet(trainable_bn=False, name="rnet"):
  """The R-Net as a Keras model with random weights (He-normal convs, identity BN).

  Args:
    trainable_bn: whether batch-norm statistics train (False: frozen, as the
      released model is used).

  Returns:
    keras.Model: BGR float32 `[B, 224, 224, 3]` in [0, 255] ->
    (coeff `[B, 257]`, pool5 `[B, 2048]`).
  """
  size = constants.IMAGE_SIZE
  images = tf.keras.Input((size, size, 3), name="input_imgs")
  x = _conv_bn(images, 64, 7, 2, _scope(RESNET_SCOPE, "conv1"), True, trainable_bn)
  x = tf.keras.layers.MaxPooling2D(3, 2, padding="same", name=_scope(RESNET_SCOPE, "pool1"))(x)
  depth_in = 64
  for block, depth_bottleneck, units, block_stride in BLOCKS:
    for unit in range(1, units + 1):
      stride = block_stride if unit == units else 1
      scope = _scope(RESNET_SCOPE, block, f"unit_{unit}", "bottleneck_v1")
      x = _bottleneck(x, depth_in, depth_bottleneck, stride, scope, trainable_bn)
      depth_in = 4 * depth_bottleneck
  pool5 = tf.keras.layers.GlobalAveragePooling2D(keepdims=True,
                                                 name=_scope(RESNET_SCOPE, "pool5"))(x)
  heads = [tf.keras.layers.Conv2D(n, 1, kernel_initializer="zeros", name=scope)(pool5)
           for scope, n in HEADS]
  coeff = tf.keras.layers.Concatenate(name="coeff")(
      [tf.keras.layers.Flatten(name=scope + ".squeezed")(h) for (scope, _), h in zip(HEADS, heads)])
  features = tf.keras.layers.Flatten(name="pool5_squeezed")(pool5)
  return tf.keras.Model(images, [coeff, features], name=name)


def load_weights_from_graph_def(model, graph_def, path="graph"):
  """Copies the frozen graph's constants into a `build_rnet` model.

  Raises:
    GraphFormatError: a constant is missing or has the wrong shape, or
      values are not finite (names the constant).
  """
  return frozen_graph.assign_slim_weights(
      model, frozen_graph.graph_constants(graph_def), path, f"{RESNET_SCOPE}/conv1/weights",
      "a Deep3D R-Net frozen graph (use FrozenGraphRNet to run other graphs)")


class FrozenGraphRNet(tf.Module):
  """Runs a frozen R-Net graph as a TF2 function (no conversion).

  Args:
    path: a frozen GraphDef with `input_imgs:0`, `coeff:0` and
      `resnet_v1_50/pool5:0` (any import prefix, e.g. "resnet/", is found).
    graph_def: the already parsed file, if the caller has it (else read from `path`).
  """

  def __init__(self, path, graph_def=None):
    super().__init__(name="frozen_rnet")
    graph_def = graph_def if graph_def is not None else read_graph_def(path)
    self._fn = frozen_graph.prune(graph_def, [INPUT_TENSOR], [COEFF_TENSOR, POOL5_TENSOR], path)
    self.path = path

  def __call__(self, images):
    """BGR float32 `[B, 224, 224, 3]` -> (coeff `[B, 257]`, pool5 `[B, 2048]`)."""
    coeff, pool5 = self._fn(tf.convert_to_tensor(images, tf.float32))
    return coeff, tf.reshape(pool5, [-1, FEATURE_DIM])


def from_frozen_graph(path, verify=True):
  """Deep3D's FaceReconModel.pb converted into a `build_rnet` Keras model.

  Args:
    path: the frozen graph.
    verify: also run the graph itself on a random batch and require the
      converted model to agree (guards against a graph whose layout differs
      from slim's ResNet-50 v1).

  Raises:
    GraphFormatError: unreadable graph, missing/mis-shaped constants, or
      (verify) outputs that disagree.
  """
  graph_def = read_graph_def(path)
  model = load_weights_from_graph_def(build_rnet(), graph_def, path)
  if verify:
    images = tf.random.stateless_uniform([2, constants.IMAGE_SIZE, constants.IMAGE_SIZE, 3],
                                         seed=[1, 2], maxval=255.0)
    expected = FrozenGraphRNet(path, graph_def)(images)
    actual = model(images, training=False)
    for name, a, b in zip(("coeff", "pool5"), actual, expected):
      error = frozen_graph.max_relative_error(a, b)
      if not error <= 1e-4:
        raise GraphFormatError(f"{path}: converted model disagrees with the graph on {name} "
                               f"(max relative error {error:.3g}); the graph's layout is "
                               "not slim ResNet-50 v1 - use FrozenGraphRNet")
  return model


def serving_module(model):
  """A tf.Module whose `serve(input_imgs [None, 224, 224, 3] float32 BGR)` -> {coeff, pool5}."""
  size = constants.IMAGE_SIZE
  module = tf.Module()
  module.model = model

  @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, "input_imgs")])
  def serve(input_imgs):
    coeff, pool5 = model(input_imgs, training=False)
    return {"coeff": coeff, "pool5": pool5}

  module.serve = serve
  return module


def export_saved_model(model, path):
  """Writes a SavedModel with signature `serving_default(input_imgs)` -> {coeff, pool5}
  (`gcn_face.export.export_rnet` writes it atomically, with a manifest)."""
  module = serving_module(model)
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
