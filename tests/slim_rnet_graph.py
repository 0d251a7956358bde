"""Writes a frozen graph laid out like Deep3D's FaceReconModel.pb, with random weights.

Built from plain TensorFlow ops in a TF1 graph, following TF-slim's resnet_v1_50
(conv2d_same padding, FusedBatchNorm in inference mode, max-pool shortcuts) and
Deep3D's heads, independently of deep3dface.rnet's Keras layers. Constants carry
the names freeze_graph gives slim variables (`<scope>/weights`, `<scope>/read`).
"""

import numpy as np
import tensorflow as tf

BLOCKS = (("block1", 64, 3, 2), ("block2", 128, 4, 2), ("block3", 256, 6, 2),
          ("block4", 512, 3, 1))
HEADS = (("fc-id", 80), ("fc-ex", 64), ("fc-tex", 80), ("fc-angles", 3), ("fc-gamma", 27),
         ("fc-XY", 2), ("fc-Z", 1))


class _Weights:
  """Creates named constants with random values (He-scaled kernels, mild BN stats)."""

  def __init__(self, seed):
    self.rng = np.random.default_rng(seed)

  def const(self, name, value):
    c = tf.constant(value.astype(np.float32), name=name)
    return tf.identity(c, name=name + "/read")

  def kernel(self, name, shape, scale=1.0):
    fan_in = shape[0] * shape[1] * shape[2]
    return self.const(name, self.rng.standard_normal(shape) * scale * np.sqrt(2.0 / fan_in))

  def batch_norm(self, x, scope):
    n = x.shape[-1]
    gamma = self.const(scope + "/gamma", self.rng.uniform(0.5, 1.0, n))
    beta = self.const(scope + "/beta", self.rng.normal(0.0, 0.1, n))
    mean = self.const(scope + "/moving_mean", self.rng.normal(0.0, 0.1, n))
    var = self.const(scope + "/moving_variance", self.rng.uniform(0.5, 1.5, n))
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, mean, var, epsilon=1e-5,
                                               is_training=False, name=scope + "/FusedBatchNorm")
    return y


def _conv(w, x, depth, k, stride, scope, relu):
  kernel = w.kernel(scope + "/weights", (k, k, x.shape[-1], depth))
  if stride == 1:
    y = tf.nn.conv2d(x, kernel, 1, "SAME", name=scope + "/Conv2D")
  else:  # slim conv2d_same: explicit symmetric padding, then VALID
    pad = k - 1
    x = tf.pad(x, [[0, 0], [pad // 2, pad - pad // 2], [pad // 2, pad - pad // 2], [0, 0]])
    y = tf.nn.conv2d(x, kernel, stride, "VALID", name=scope + "/Conv2D")
  y = w.batch_norm(y, scope + "/BatchNorm")
  return tf.nn.relu(y, name=scope + "/Relu") if relu else y


def build_graph_def(seed=0, prefix="", stride_in_first_unit=False):
  """The frozen GraphDef.

  Args:
    seed: weights.
    prefix: imitates an import scope such as 'resnet/'.
    stride_in_first_unit: the pre-2017 slim layout (block stride on unit 1):
      the same variables with different computation.
  """
  w = _Weights(seed)
  graph = tf.Graph()
  with graph.as_default():
    p = prefix
    images = tf.compat.v1.placeholder(tf.float32, [None, 224, 224, 3], name=p + "input_imgs")
    x = _conv(w, images, 64, 7, 2, p + "resnet_v1_50/conv1", True)
    x = tf.nn.max_pool2d(x, 3, 2, "SAME", name=p + "resnet_v1_50/pool1/MaxPool")
    depth_in = 64
    for block, bottleneck, units, block_stride in BLOCKS:
      for unit in range(1, units + 1):
        stride_unit = 1 if stride_in_first_unit else units
        stride = block_stride if unit == stride_unit else 1
        scope = f"{p}resnet_v1_50/{block}/unit_{unit}/bottleneck_v1"
        depth = 4 * bottleneck
        if depth == depth_in:
          shortcut = tf.nn.max_pool2d(x, 1, stride, "SAME") if stride > 1 else x
        else:
          shortcut = _conv(w, x, depth, 1, stride, scope + "/shortcut", False)
        r = _conv(w, x, bottleneck, 1, 1, scope + "/conv1", True)
        r = _conv(w, r, bottleneck, 3, stride, scope + "/conv2", True)
        r = _conv(w, r, depth, 1, 1, scope + "/conv3", False)
        x = tf.nn.relu(shortcut + r, name=scope + "/Relu")
        depth_in = depth
    pool5 = tf.reduce_mean(x, [1, 2], keepdims=True, name=p + "resnet_v1_50/pool5")
    outputs = []
    for scope, n in HEADS:
      kernel = w.kernel(p + scope + "/weights", (1, 1, 2048, n), scale=0.05)
      bias = w.const(p + scope + "/biases", w.rng.normal(0.0, 0.1, n))
      y = tf.nn.bias_add(tf.nn.conv2d(pool5, kernel, 1, "SAME"), bias)
      outputs.append(tf.squeeze(y, [1, 2], name=p + scope + "/squeezed"))
    tf.concat(outputs, axis=1, name=p + "coeff")
  return graph.as_graph_def()


def write(path, **kwargs):
  with open(path, "wb") as f:
    f.write(build_graph_def(**kwargs).SerializeToString())
  return path
