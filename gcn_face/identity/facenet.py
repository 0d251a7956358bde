"""FaceNet (davidsandberg/facenet, Inception-ResNet-v1) as a Keras model.

    model = facenet.load("checkpoints/facenet/20180402-114759")     # .pb, checkpoint or folder
    pool, embeddings = model(facenet.preprocess(rgb_0_255))          # [B, 1792], [B, 512]

The release's 20180402-114759 model (VGGFace2) as a frozen graph
(`input:0`, `phase_train:0` -> `embeddings:0`, and the 1792-d pooled feature
`InceptionResnetV1/Logits/AvgPool_1a_8x8/AvgPool:0` that the GCN release feeds to
its decoder and identity loss, SPEC 3.2) or as a TF checkpoint. The layers are
named after slim's scopes (`deep3dface.frozen_graph`), so the file's weights map
one to one; `FrozenGraphFaceNet` runs the graph itself for comparison.
"""

import os

import tensorflow as tf

from deep3dface import frozen_graph

INPUT_SIZE = 160  # facenet's image_size for the 2018 models
INPUT_TENSOR = "input:0"
PHASE_TRAIN_TENSOR = "phase_train:0"
EMBEDDINGS_TENSOR = "embeddings:0"
POOL_TENSOR = "InceptionResnetV1/Logits/AvgPool_1a_8x8/AvgPool:0"
SCOPE = "InceptionResnetV1"
POOL_DIM = 1792
BOTTLENECK_DIM = 512  # the 2018 models' embedding size
MAX_BOTTLENECK = 4096  # larger is no FaceNet (and would be a huge Dense layer)
PIXEL_MEAN = 127.5  # facenet's fixed_image_standardization: (x - 127.5) / 128
PIXEL_SCALE = 128.0
BN_EPSILON = 1e-3  # facenet batch_norm_params
BN_MOMENTUM = 0.995
L2_EPSILON = 1e-10  # tf.nn.l2_normalize(prelogits, 1, 1e-10, name="embeddings")
# (block, repeats, residual scale) of the three Inception-ResNet stages.
BLOCK35 = ("block35", 5, 0.17)
BLOCK17 = ("block17", 10, 0.10)
BLOCK8 = ("block8", 5, 0.20)
CHECKPOINT_NAMES = ("20180402-114759.pb", "model-20180402-114759.ckpt-275")


def preprocess(images):
  """RGB `[B, H, W, 3]` in [0, 255] -> FaceNet input `[B, 160, 160, 3]` (SPEC 3.2).

  TF1's bilinear resize (no half-pixel centres) of the whole image, then
  (x - 127.5) / 128. Differentiable.
  """
  images = tf.convert_to_tensor(images, tf.float32)
  if images.shape.rank != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [B, H, W, 3] RGB, got shape {images.shape}")
  if images.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
    images = tf.raw_ops.ResizeBilinear(images=images, size=[INPUT_SIZE, INPUT_SIZE],
                                       align_corners=False, half_pixel_centers=False)
  return (images - PIXEL_MEAN) / PIXEL_SCALE


@tf.keras.utils.register_keras_serializable(package="gcn_face")
class ScaledResidual(tf.keras.layers.Layer):
  """net + scale * up, then ReLU unless `relu` is False (Inception-ResNet's residual add)."""

  def __init__(self, scale, relu=True, **kwargs):
    super().__init__(**kwargs)
    self.scale, self.relu = float(scale), bool(relu)

  def call(self, inputs):
    net, up = inputs
    net = net + self.scale * up
    return tf.nn.relu(net) if self.relu else net

  def get_config(self):
    return {**super().get_config(), "scale": self.scale, "relu": self.relu}


def _name(*parts):
  return ".".join(parts)


def _conv(x, filters, kernel, scope, stride=1, padding="same"):
  """slim conv2d in facenet's arg scope: no bias, batch norm without scale, ReLU."""
  x = tf.keras.layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False,
                             name=scope)(x)
  x = tf.keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, scale=False,
                                         name=scope + ".BatchNorm")(x)
  return tf.keras.layers.ReLU(name=scope + ".Relu")(x)


def _max_pool(x, scope):
  return tf.keras.layers.MaxPooling2D(3, 2, padding="valid", name=scope)(x)


def _branches(x, scope, branches):
  """Concatenation of branches, each a list of (filters, kernel, name[, stride, padding])."""
  outputs = []
  for b, layers in enumerate(branches):
    y = x
    for layer in layers:
      branch = _name(scope, f"Branch_{b}", layer[2])
      y = (_max_pool(y, branch) if layer[0] == "max_pool" else
           _conv(y, layer[0], layer[1], branch, *layer[3:]))
    outputs.append(y)
  return tf.keras.layers.Concatenate(name=scope + ".concat")(outputs)


def _block(x, kind, scope, scale, relu=True):
  if kind == "block35":
    branches = [[(32, 1, "Conv2d_1x1")],
                [(32, 1, "Conv2d_0a_1x1"), (32, 3, "Conv2d_0b_3x3")],
                [(32, 1, "Conv2d_0a_1x1"), (32, 3, "Conv2d_0b_3x3"), (32, 3, "Conv2d_0c_3x3")]]
  elif kind == "block17":
    branches = [[(128, 1, "Conv2d_1x1")],
                [(128, 1, "Conv2d_0a_1x1"), (128, (1, 7), "Conv2d_0b_1x7"),
                 (128, (7, 1), "Conv2d_0c_7x1")]]
  else:
    branches = [[(192, 1, "Conv2d_1x1")],
                [(192, 1, "Conv2d_0a_1x1"), (192, (1, 3), "Conv2d_0b_1x3"),
                 (192, (3, 1), "Conv2d_0c_3x1")]]
  mixed = _branches(x, scope, branches)
  up = tf.keras.layers.Conv2D(x.shape[-1], 1, name=_name(scope, "Conv2d_1x1"))(mixed)
  return ScaledResidual(scale, relu, name=scope + ".residual")([x, up])


def _repeat(x, repeat_scope, block):
  kind, count, scale = block
  for i in range(1, count + 1):
    x = _block(x, kind, _name(repeat_scope, f"{kind}_{i}"), scale)
  return x


def build_facenet(input_size=INPUT_SIZE, bottleneck_dim=BOTTLENECK_DIM, name="facenet"):
  """Inception-ResNet-v1 with facenet's bottleneck, random weights.

  Returns:
    keras.Model: preprocessed images float32 `[B, S, S, 3]` ((x - 127.5) / 128,
    S = `input_size`) -> (pool `[B, 1792]`, embeddings `[B, bottleneck_dim]`,
    unit length).
  """
  images = tf.keras.Input((input_size, input_size, 3), name="input")
  s = SCOPE
  x = _conv(images, 32, 3, _name(s, "Conv2d_1a_3x3"), 2, "valid")
  x = _conv(x, 32, 3, _name(s, "Conv2d_2a_3x3"), 1, "valid")
  x = _conv(x, 64, 3, _name(s, "Conv2d_2b_3x3"))
  x = _max_pool(x, _name(s, "MaxPool_3a_3x3"))
  x = _conv(x, 80, 1, _name(s, "Conv2d_3b_1x1"), 1, "valid")
  x = _conv(x, 192, 3, _name(s, "Conv2d_4a_3x3"), 1, "valid")
  x = _conv(x, 256, 3, _name(s, "Conv2d_4b_3x3"), 2, "valid")
  x = _repeat(x, _name(s, "Repeat"), BLOCK35)
  x = _branches(x, _name(s, "Mixed_6a"), [
      [(384, 3, "Conv2d_1a_3x3", 2, "valid")],
      [(192, 1, "Conv2d_0a_1x1"), (192, 3, "Conv2d_0b_3x3"), (256, 3, "Conv2d_1a_3x3", 2, "valid")],
      [("max_pool", None, "MaxPool_1a_3x3")]])
  x = _repeat(x, _name(s, "Repeat_1"), BLOCK17)
  x = _branches(x, _name(s, "Mixed_7a"), [
      [(256, 1, "Conv2d_0a_1x1"), (384, 3, "Conv2d_1a_3x3", 2, "valid")],
      [(256, 1, "Conv2d_0a_1x1"), (256, 3, "Conv2d_1a_3x3", 2, "valid")],
      [(256, 1, "Conv2d_0a_1x1"), (256, 3, "Conv2d_0b_3x3"), (256, 3, "Conv2d_1a_3x3", 2, "valid")],
      [("max_pool", None, "MaxPool_1a_3x3")]])
  x = _repeat(x, _name(s, "Repeat_2"), BLOCK8)
  x = _block(x, "block8", _name(s, "Block8"), 1.0, relu=False)
  pool = tf.keras.layers.GlobalAveragePooling2D(name=_name(s, "Logits", "AvgPool_1a_8x8"))(x)
  bottleneck = tf.keras.layers.Dense(bottleneck_dim, use_bias=False, name=_name(s, "Bottleneck"))(
      pool)
  bottleneck = tf.keras.layers.BatchNormalization(
      epsilon=BN_EPSILON, momentum=BN_MOMENTUM, scale=False,
      name=_name(s, "Bottleneck", "BatchNorm"))(bottleneck)
  embeddings = tf.keras.layers.UnitNormalization(name="embeddings")(bottleneck)
  return tf.keras.Model(images, [pool, embeddings], name=name)


class FrozenGraphFaceNet(tf.Module):
  """Runs a FaceNet frozen graph as a TF2 function, `phase_train` fed False.

  Args:
    path: the frozen GraphDef (any import prefix is found).
    graph_def: the already parsed file, if the caller has it.
  """

  def __init__(self, path, graph_def=None):
    super().__init__(name="frozen_facenet")
    graph_def = graph_def if graph_def is not None else frozen_graph.read_graph_def(path)
    self._fn = frozen_graph.prune(graph_def, [INPUT_TENSOR, PHASE_TRAIN_TENSOR],
                                  [POOL_TENSOR, EMBEDDINGS_TENSOR], path)

  def __call__(self, images):
    """Preprocessed `[B, 160, 160, 3]` -> (pool `[B, 1792]`, embeddings `[B, 512]`)."""
    pool, embeddings = self._fn(tf.convert_to_tensor(images, tf.float32), tf.constant(False))
    return tf.reshape(pool, [-1, POOL_DIM]), embeddings


def _resolve(path):
  """A .pb file, a checkpoint prefix, or a folder holding either (the .pb preferred)."""
  if os.path.isdir(path):
    pbs = sorted(f for f in os.listdir(path) if f.endswith(".pb"))
    if pbs:
      return os.path.join(path, pbs[0]), "graph"
    return path, "checkpoint"
  if path.endswith(".pb") or (os.path.isfile(path) and not os.path.isfile(path + ".index")):
    return path, "graph"
  return path, "checkpoint"


def load(path, verify=True):
  """FaceNet weights from a frozen `.pb`, a checkpoint (`model-...ckpt-275` prefix) or a
  folder holding either, in a `build_facenet` Keras model.

  Args:
    path: the file or folder.
    verify: for a frozen graph, also run the graph on a random batch and
      require the Keras model to agree (guards against another architecture).

  Raises:
    GraphFormatError: unreadable file, missing/mis-shaped/non-finite weights
      (names the tensor), or outputs that disagree with the graph.
  """
  path, kind = _resolve(path)
  what = "a FaceNet Inception-ResNet-v1 model"
  anchor = f"{SCOPE}/Conv2d_1a_3x3/weights"
  if kind == "graph":
    graph_def = frozen_graph.read_graph_def(path)
    values = frozen_graph.graph_constants(graph_def)
  else:
    values = frozen_graph.checkpoint_values(path)
  prefix = frozen_graph.find_prefix(values, anchor, path, what)
  bottleneck = values.get(prefix + f"{SCOPE}/Bottleneck/weights")
  if bottleneck is None:
    raise frozen_graph.GraphFormatError(f"{path}: tensor '{prefix}{SCOPE}/Bottleneck/weights' "
                                        "not found")
  bottleneck_shape = bottleneck().shape
  if len(bottleneck_shape) != 2 or not 0 < bottleneck_shape[1] <= MAX_BOTTLENECK:
    raise frozen_graph.GraphFormatError(
        f"{path}: tensor '{prefix}{SCOPE}/Bottleneck/weights' has shape "
        f"{list(bottleneck_shape)}, expected [{POOL_DIM}, D] with 0 < D <= {MAX_BOTTLENECK}")
  model = build_facenet(bottleneck_dim=int(bottleneck_shape[1]))
  frozen_graph.assign_slim_weights(model, values, path, anchor, what)
  if kind == "graph" and verify:
    images = tf.random.stateless_uniform([2, INPUT_SIZE, INPUT_SIZE, 3], seed=[3, 4],
                                         minval=-1.0, maxval=1.0)
    expected = FrozenGraphFaceNet(path, graph_def)(images)
    actual = model(images, training=False)
    for name, a, b in zip(("pool", "embeddings"), actual, expected):
      error = frozen_graph.max_relative_error(a, b)
      if not error <= 1e-4:
        raise frozen_graph.GraphFormatError(
            f"{path}: the Keras model disagrees with the graph on {name} (max relative error "
            f"{error:.3g}); not facenet's Inception-ResNet-v1 - use FrozenGraphFaceNet")
  return model


def default_path(checkpoint_dir="checkpoints"):
  """checkpoints/facenet/ when it holds the 20180402-114759 .pb or checkpoint, else None."""
  folder = os.path.join(checkpoint_dir, "facenet")
  for name in CHECKPOINT_NAMES:
    candidate = os.path.join(folder, name)
    if os.path.isfile(candidate) or os.path.isfile(candidate + ".index"):
      return candidate
  return None
