"""Graph-convolution building blocks (SPEC 3.3) as Keras 3 layers with TensorFlow ops.

Layout: graph tensors are vertex-major `[M, B, F]` (vertices, batch, features),
so every sparse operator acts on the first axis of a `[M, B*F]` view without
the transposes the original makes around each op (docs/gcn_face.md compares
the layouts). The networks convert from and to `[B, M, F]` at their boundary.
"""

import keras
import tensorflow as tf

from gcn_face import graph_ops

CHEB_ORDER = 6  # K of every ChebConv in the release (SPEC 3.3)
FC_WEIGHT_DECAY = 5e-4  # Reg = 5e-4 * sum(|w|^2 / 2) over FC weights and biases (SPEC 6.2)


def he_normal():
  """He-normal (truncated) initializer; fan-in is the kernel's first dimension."""
  return keras.initializers.HeNormal()


class ChebConv(keras.layers.Layer):
  """Chebyshev graph convolution of order K, no bias (SPEC 3.3).

  T_0 = X, T_1 = L~ X, T_k = 2 L~ T_{k-1} - T_{k-2};  Y = [T_0 .. T_{K-1}] W.
  The kernel has the release's layout `[Fin * K, Fout]`, row fin * K + k; He-normal
  initialised, or zeros with `zero_init` (a residual branch that starts at 0).

  Call: x float32 `[M, B, Fin]` -> `[M, B, Fout]`.
  """

  def __init__(self, laplacian, filters, order=CHEB_ORDER, zero_init=False, **kwargs):
    super().__init__(**kwargs)
    if order < 1:
      raise ValueError(f"{self.name}: Chebyshev order must be >= 1, got {order}")
    self.laplacian = laplacian
    self.laplacian_twice = laplacian.scaled(2.0) if order > 2 else None
    self.filters = int(filters)
    self.order = int(order)
    self.zero_init = bool(zero_init)

  def build(self, input_shape):
    if input_shape[0] is not None and input_shape[0] != self.laplacian.shape[0]:
      raise ValueError(f"{self.name}: input has {input_shape[0]} vertices, the Laplacian "
                       f"{self.laplacian.shape[0]}")
    self.in_features = int(input_shape[-1])
    self.kernel = self.add_weight(
        name="kernel", shape=(self.in_features * self.order, self.filters),
        initializer="zeros" if self.zero_init else he_normal())

  def call(self, x):
    m, fin, k, fout = tf.shape(x)[0], self.in_features, self.order, self.filters
    kernel = tf.reshape(self.kernel, [fin, k, fout])  # row fin * K + k of the release's layout
    flat = tf.reshape(x, [-1, fin])
    if k == 1:
      return tf.reshape(tf.matmul(flat, kernel[:, 0]), [m, -1, fout])
    if graph_ops.enabled():
      return self._call_ops(x)
    return self._call_standard(x, flat, kernel, m)

  def _call_ops(self, x):
    """The C++ op: the whole recursion and its K products with W_k in one pass per term."""
    return self.laplacian.chebyshev_conv(x, self.kernel, self.order)

  def _call_standard(self, x, flat, kernel, m):
    """Standard TensorFlow ops (GPU, SavedModel export): K sparse products and matmuls."""
    fin, k, fout = self.in_features, self.order, self.filters
    if fout < fin and k > 1:
      return tf.reshape(self._clenshaw(flat, kernel, m), [m, -1, fout])
    term_prev, term = None, tf.reshape(x, [m, -1])
    y = tf.matmul(flat, kernel[:, 0])
    for order in range(1, k):
      term_prev, term = term, (self.laplacian(term) if order == 1
                               else self.laplacian_twice(term) - term_prev)
      y += tf.matmul(tf.reshape(term, [-1, fin]), kernel[:, order])
    return tf.reshape(y, [m, -1, fout])

  def _clenshaw(self, flat, kernel, m):
    """sum_k T_k(L~) (X W_k) by Clenshaw's recurrence: the sparse products run on Fout < Fin
    channels. b_k = X W_k + 2 L~ b_{k+1} - b_{k+2};  Y = X W_0 + L~ b_1 - b_2."""
    k = self.order
    parts = [tf.reshape(tf.matmul(flat, kernel[:, order]), [m, -1]) for order in range(k)]
    b1, b2 = parts[k - 1], None
    for order in range(k - 2, 0, -1):
      b = parts[order] + self.laplacian_twice(b1)
      b1, b2 = (b if b2 is None else b - b2), b1
    y = parts[0] + self.laplacian(b1)
    return y if b2 is None else y - b2


class BiasAct(keras.layers.Layer):
  """Per-channel bias (zeros init) then ELU (the release's "b1relu"). `[..., F]` -> same."""

  def build(self, input_shape):
    self.bias = self.add_weight(name="bias", shape=(int(input_shape[-1]),), initializer="zeros")

  def call(self, x):
    return tf.nn.elu(x + self.bias)


class WeightDecay(keras.regularizers.Regularizer):
  """`decay * sum(w^2) / 2`, the release's weight decay (SPEC 6.2), w any float tensor.

  The same value as `keras.regularizers.L2(decay / 2)`, but one `L2Loss` op, whose gradient
  is one `decay * w` product: Keras' `sum(square(w))` materialises w^2 forward and, backward,
  tiles the scalar to w's shape and multiplies twice, six passes over the refiner's 9.2M-entry
  FC kernels where this takes two.
  """

  def __init__(self, decay):
    self.decay = float(decay)

  def __call__(self, x):
    return self.decay * tf.nn.l2_loss(x)

  def get_config(self):
    return {"decay": self.decay}


def dense(units, name):
  """The release's FC layer: He-normal weights, zero bias, ReLU, L2 on weights and bias."""
  reg = WeightDecay(FC_WEIGHT_DECAY)
  return keras.layers.Dense(units, activation="relu", kernel_initializer=he_normal(),
                            kernel_regularizer=reg, bias_regularizer=reg, name=name)


class ResBlock(keras.layers.Layer):
  """`--model resnet` block (SPEC 3.7): ChebConv, BiasAct, ChebConv, + shortcut, BiasAct.

  The shortcut is a ChebConv of order 1 when the channel count changes.
  Call: `[M, B, Fin]` -> `[M, B, Fout]`.
  """

  def __init__(self, laplacian, filters, order=CHEB_ORDER, **kwargs):
    super().__init__(**kwargs)
    self.conv1 = ChebConv(laplacian, filters, order, name="conv1")
    self.act1 = BiasAct(name="act1")
    self.conv2 = ChebConv(laplacian, filters, order, name="conv2")
    self.act_out = BiasAct(name="act_out")
    self.laplacian, self.filters = laplacian, filters
    self.shortcut = None

  def build(self, input_shape):
    if int(input_shape[-1]) != self.filters:
      self.shortcut = ChebConv(self.laplacian, self.filters, 1, name="shortcut")

  def call(self, x):
    y = self.conv2(self.act1(self.conv1(x)))
    return self.act_out(y + (self.shortcut(x) if self.shortcut is not None else x))
