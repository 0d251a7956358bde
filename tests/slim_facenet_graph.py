"""Writes a FaceNet-like TF1 model with random weights: a checkpoint and a frozen graph.

Follows davidsandberg/facenet's Inception-ResNet-v1 as TF-slim builds it
(variable scopes, `Repeat`/`Repeat_1`/`Repeat_2` block names, batch norm without
gamma switched by the `phase_train` placeholder, dropout, the batch-normalised
bottleneck and the L2-normalised `embeddings`), from plain TF1 ops and
independently of gcn_face.identity.facenet's Keras layers.
"""

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1
POOL_OP = "InceptionResnetV1/Logits/AvgPool_1a_8x8/AvgPool"
EPSILON = 1e-3


class _Builder:

  def __init__(self, phase_train, seed):
    self.phase_train = phase_train
    self.rng = np.random.default_rng(seed)

  def _variable(self, name, value):
    return v1.get_variable(name, initializer=value.astype(np.float32))

  def batch_norm(self, x):
    n = x.shape[-1]
    with v1.variable_scope("BatchNorm"):
      beta = self._variable("beta", self.rng.normal(0.0, 0.1, n))
      mean = self._variable("moving_mean", self.rng.normal(0.0, 0.1, n))
      var = self._variable("moving_variance", self.rng.uniform(0.5, 1.5, n))
      axes = list(range(x.shape.rank - 1))

      def train():
        m, v = tf.nn.moments(x, axes)
        return tf.nn.batch_normalization(x, m, v, beta, None, EPSILON)

      def infer():
        return tf.nn.batch_normalization(x, mean, var, beta, None, EPSILON)

      return v1.cond(self.phase_train, train, infer)

  def conv(self, x, filters, kernel, scope, stride=1, padding="SAME", bn=True, relu=True):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    with v1.variable_scope(scope):
      fan_in = kh * kw * x.shape[-1]
      w = self._variable("weights", self.rng.standard_normal((kh, kw, x.shape[-1], filters))
                         * np.sqrt(1.0 / fan_in))
      y = tf.nn.conv2d(x, w, [1, stride, stride, 1], padding)
      if bn:
        y = self.batch_norm(y)
      else:
        y = y + self._variable("biases", self.rng.normal(0.0, 0.1, filters))
      return tf.nn.relu(y) if relu else y

  def max_pool(self, x, scope):
    return tf.nn.max_pool2d(x, 3, 2, "VALID", name=scope)

  def block(self, x, scope, branch_specs, scale, relu=True):
    with v1.variable_scope(scope):
      outputs = []
      for b, specs in enumerate(branch_specs):
        with v1.variable_scope(f"Branch_{b}"):
          y = x
          for filters, kernel, name in specs:
            y = self.conv(y, filters, kernel, name)
        outputs.append(y)
      up = self.conv(tf.concat(outputs, 3), x.shape[-1], 1, "Conv2d_1x1", bn=False, relu=False)
      x = x + scale * up
      return tf.nn.relu(x) if relu else x


BLOCK35 = [[(32, 1, "Conv2d_1x1")], [(32, 1, "Conv2d_0a_1x1"), (32, 3, "Conv2d_0b_3x3")],
           [(32, 1, "Conv2d_0a_1x1"), (32, 3, "Conv2d_0b_3x3"), (32, 3, "Conv2d_0c_3x3")]]
BLOCK17 = [[(128, 1, "Conv2d_1x1")], [(128, 1, "Conv2d_0a_1x1"), (128, (1, 7), "Conv2d_0b_1x7"),
                                      (128, (7, 1), "Conv2d_0c_7x1")]]
BLOCK8 = [[(192, 1, "Conv2d_1x1")], [(192, 1, "Conv2d_0a_1x1"), (192, (1, 3), "Conv2d_0b_1x3"),
                                     (192, (3, 1), "Conv2d_0c_3x1")]]


def _inference(b, images, bottleneck):
  with v1.variable_scope("InceptionResnetV1"):
    x = b.conv(images, 32, 3, "Conv2d_1a_3x3", 2, "VALID")
    x = b.conv(x, 32, 3, "Conv2d_2a_3x3", 1, "VALID")
    x = b.conv(x, 64, 3, "Conv2d_2b_3x3")
    x = b.max_pool(x, "MaxPool_3a_3x3")
    x = b.conv(x, 80, 1, "Conv2d_3b_1x1", 1, "VALID")
    x = b.conv(x, 192, 3, "Conv2d_4a_3x3", 1, "VALID")
    x = b.conv(x, 256, 3, "Conv2d_4b_3x3", 2, "VALID")
    with v1.variable_scope("Repeat"):
      for i in range(1, 6):
        x = b.block(x, f"block35_{i}", BLOCK35, 0.17)
    with v1.variable_scope("Mixed_6a"):
      with v1.variable_scope("Branch_0"):
        t0 = b.conv(x, 384, 3, "Conv2d_1a_3x3", 2, "VALID")
      with v1.variable_scope("Branch_1"):
        t1 = b.conv(x, 192, 1, "Conv2d_0a_1x1")
        t1 = b.conv(t1, 192, 3, "Conv2d_0b_3x3")
        t1 = b.conv(t1, 256, 3, "Conv2d_1a_3x3", 2, "VALID")
      with v1.variable_scope("Branch_2"):
        t2 = b.max_pool(x, "MaxPool_1a_3x3")
      x = tf.concat([t0, t1, t2], 3)
    with v1.variable_scope("Repeat_1"):
      for i in range(1, 11):
        x = b.block(x, f"block17_{i}", BLOCK17, 0.10)
    with v1.variable_scope("Mixed_7a"):
      outs = []
      for br, specs in enumerate([[(256, 1, "Conv2d_0a_1x1"), (384, 3, "Conv2d_1a_3x3")],
                                  [(256, 1, "Conv2d_0a_1x1"), (256, 3, "Conv2d_1a_3x3")],
                                  [(256, 1, "Conv2d_0a_1x1"), (256, 3, "Conv2d_0b_3x3"),
                                   (256, 3, "Conv2d_1a_3x3")]]):
        with v1.variable_scope(f"Branch_{br}"):
          y = x
          for filters, kernel, name in specs:
            strided = name.startswith("Conv2d_1a")
            y = b.conv(y, filters, kernel, name, 2 if strided else 1, "VALID" if strided else "SAME")
        outs.append(y)
      with v1.variable_scope("Branch_3"):
        outs.append(b.max_pool(x, "MaxPool_1a_3x3"))
      x = tf.concat(outs, 3)
    with v1.variable_scope("Repeat_2"):
      for i in range(1, 6):
        x = b.block(x, f"block8_{i}", BLOCK8, 0.20)
    x = b.block(x, "Block8", BLOCK8, 1.0, relu=False)
    size = x.shape[1]
    pool = tf.nn.avg_pool2d(x, size, 1, "VALID", name="Logits/AvgPool_1a_8x8/AvgPool")
    flat = tf.reshape(pool, [-1, pool.shape[-1]])
    flat = v1.cond(b.phase_train, lambda: tf.nn.dropout(flat, rate=0.2), lambda: flat)
    with v1.variable_scope("Bottleneck"):
      w = b._variable("weights", b.rng.standard_normal((flat.shape[-1], bottleneck))
                      / np.sqrt(flat.shape[-1]))
      prelogits = b.batch_norm(tf.matmul(flat, w))
  return pool, tf.nn.l2_normalize(prelogits, 1, 1e-10, name="embeddings")


def write(directory, images, seed=0, bottleneck=512, name="20180402-114759"):
  """Writes `model-<name>.ckpt-275.*` and `<name>.pb` into `directory`.

  Returns:
    (checkpoint prefix, .pb path, pool [B, 1792] and embeddings [B, bottleneck]
    of `images` (preprocessed, [B, 160, 160, 3]) computed by this graph with
    phase_train False).
  """
  graph = tf.Graph()
  with graph.as_default():
    inputs = v1.placeholder(tf.float32, [None, 160, 160, 3], name="input")
    phase_train = v1.placeholder(tf.bool, name="phase_train")
    pool, embeddings = _inference(_Builder(phase_train, seed), inputs, bottleneck)
    with v1.Session(graph=graph) as sess:
      sess.run(v1.global_variables_initializer())
      feed = {inputs: images, phase_train: False}
      expected = sess.run([pool, embeddings], feed)
      prefix = f"{directory}/model-{name}.ckpt-275"
      v1.train.Saver().save(sess, f"{directory}/model-{name}.ckpt", global_step=275,
                            write_meta_graph=False)
      frozen = v1.graph_util.convert_variables_to_constants(
          sess, graph.as_graph_def(), ["embeddings", POOL_OP])
  pb_path = f"{directory}/{name}.pb"
  with open(pb_path, "wb") as f:
    f.write(frozen.SerializeToString())
  return prefix, pb_path, expected[0].reshape(len(images), -1), expected[1]
