"""Sparse mesh operators for the GCN layers, in the vertex-major layout `[M, ...]`.

A `SparseOperator` applies a fixed sparse matrix S `[R, C]` to a tensor whose
first axis indexes vertices: `[C, ...] -> [R, ...]`, and for square S forms a
ChebConv's Chebyshev basis and Clenshaw sums, with the project's C++ ops on CPU
(`gcn_face.graph_ops`) and TensorFlow's CSR sparse-matrix kernel otherwise
(on a GPU, and in exported SavedModels); docs/gcn_face.md and docs/speed.md have
the measurements.

`MeshGraph` bundles, per level of a `mesh_sampling.Sampling`, the rescaled
Chebyshev Laplacian L~ = L - I (lambda_max = 2, SPEC 3.3) and the pooling (D)
and unpooling (U) operators.
"""

import numpy as np
import scipy.sparse
import tensorflow as tf

from gcn_face import graph_ops


class SparseOperator:
  """A fixed sparse matrix S `[R, C]` applied along the first axis, differentiable.

  Only gradients with respect to the dense operand are formed (S is a constant).
  The C++ ops (`graph_ops.enabled()`) and the standard-op fallback (TensorFlow's
  multithreaded CSR kernel, `SparseMatrixMatMul`) agree to float rounding.
  """

  def __init__(self, matrix, name="sparse_operator"):
    matrix = scipy.sparse.csr_matrix(matrix, dtype=np.float32)
    if not np.all(np.isfinite(matrix.data)):
      raise ValueError(f"{name}: matrix has NaN or Inf entries")
    matrix.eliminate_zeros()
    self.name = name
    self.shape = matrix.shape
    self._matrix = matrix
    self._scaled = {}
    self._forward = _coo_constants(matrix)
    self._backward = _coo_constants(matrix.T.tocsr())
    self._csr = graph_ops.Csr(matrix)
    self._csr_t = graph_ops.Csr(matrix.T)

  def scaled(self, factor):
    """The operator of factor * S (built once per factor): `scaled(2.0)(x)` is the
    Chebyshev recursion's 2 L~ x in one sparse product instead of a product and a pass over
    its result; bit-identical to `2.0 * self(x)` (scaling by a power of two is exact)."""
    factor = float(factor)
    if factor not in self._scaled:
      with tf.init_scope():  # constants outside any tf.function that first asks
        self._scaled[factor] = SparseOperator(factor * self._matrix, f"{self.name}_x{factor:g}")
    return self._scaled[factor]

  def __call__(self, x):
    """x float32 `[C, ...]` -> S x `[R, ...]`."""
    tail = tf.shape(x)[1:]
    flat = tf.reshape(x, [self.shape[1], -1])
    if graph_ops.enabled():
      y = graph_ops.sparse_matmul(self._csr, self._csr_t, flat)
    else:
      y = self._standard(flat)
    return tf.reshape(y, tf.concat([[self.shape[0]], tail], 0))

  def _standard(self, flat):
    forward, backward = self._forward, self._backward

    @tf.custom_gradient
    def apply(flat):
      def grad(upstream):
        return _csr_matmul(backward, upstream)
      return _csr_matmul(forward, flat), grad

    return apply(flat)

  def chebyshev_conv(self, x, kernel, order):
    """sum_k T_k(S) x W_k for square S with the C++ op (`graph_ops.cheb_conv`): x float32
    `[M, B, Fin]`, kernel `[Fin * order, Fout]` (W_k = rows fin * order + k) -> `[M, B, Fout]`."""
    if self.shape[0] != self.shape[1]:
      raise ValueError(f"{self.name}: a Chebyshev convolution needs a square matrix, got "
                       f"{self.shape}")
    if x.shape.rank != 3 or (x.shape[0] is not None and x.shape[0] != self.shape[0]):
      raise ValueError(f"{self.name}: expected [{self.shape[0]}, B, F], got {x.shape}")
    return graph_ops.cheb_conv(self._csr, self._csr_t, x, kernel, int(order))


def _coo_constants(matrix):
  coo = matrix.tocoo()
  order = np.lexsort((coo.col, coo.row))
  indices = np.stack([coo.row[order], coo.col[order]], 1).astype(np.int64)
  return (tf.constant(indices), tf.constant(coo.data[order]),
          tf.constant(matrix.shape, tf.int64))


def _csr_matmul(constants, x):
  """S x for S given as sorted COO constants (the CSR conversion is deduplicated by grappler)."""
  indices, values, shape = constants
  csr = tf.raw_ops.SparseTensorToCSRSparseMatrix(indices=indices, values=values, dense_shape=shape)
  return tf.raw_ops.SparseMatrixMatMul(a=csr, b=x)


class MeshGraph:
  """Per-level graph operators of a mesh hierarchy.

  Attributes:
    sizes: vertex counts M_0..M_n.
    laplacians: n+1 `SparseOperator`s, L~_l = L_l - I `[M_l, M_l]`.
    down: n `SparseOperator`s, D_l `[M_{l+1}, M_l]`.
    up: n `SparseOperator`s, U_l `[M_l, M_{l+1}]`.
  """

  def __init__(self, sampling):
    self.sizes = list(sampling.sizes)
    self.laplacians = []
    for level, lap in enumerate(sampling.laplacians):
      rescaled = scipy.sparse.csr_matrix(lap, dtype=np.float32) - scipy.sparse.identity(
          lap.shape[0], dtype=np.float32, format="csr")
      self.laplacians.append(SparseOperator(rescaled, f"laplacian{level}"))
    self.down = [SparseOperator(d, f"down{level}") for level, d in enumerate(sampling.down)]
    self.up = [SparseOperator(u, f"up{level}") for level, u in enumerate(sampling.up)]
    for level, (d, u) in enumerate(zip(self.down, self.up)):
      expected = (self.sizes[level + 1], self.sizes[level])
      if d.shape != expected or u.shape != expected[::-1]:
        raise ValueError(f"sampling level {level}: D {d.shape} / U {u.shape} do not match "
                         f"level sizes {self.sizes}")

  @property
  def num_levels(self):
    return len(self.sizes)
