"""The graph convolutions' C++ ops on CPU (kernels/graph_ops.cc): sparse products, Chebyshev.

TensorFlow's CSR kernel (`SparseMatrixMatMul`) spends ~4 ms on one product of
a 35,709-row mesh Laplacian (213k entries) with 12 columns, whatever the column
count; a ChebConv of order 6 makes 5 of them forward and 5 backward beside 6
small matmuls and their 12 gradients, and the generator has ~180 sparse
products per step. Here:

* `sparse_matmul(csr, csr_t, x)`: S x (the pooling and unpooling).
* `cheb_conv(csr, csr_t, x, kernel, order)`: a whole ChebConv forward in one op
  and its gradient in another; the recursion's terms never exist as graph
  tensors, and the products with W_0..W_{K-1} run as one product per vertex
  block over all K terms (kernels/chebyshev.h has the algorithm).

Every output element is summed in one fixed order, so results do not depend on
the thread count.
The graph layers use them on CPU (`enabled()`); on a GPU, inside
`standard_ops()` (SavedModel export), and with GCN_FACE_GRAPH_OPS=0 in the
environment (to compare), they use standard TensorFlow ops instead.
"""

import contextlib
import functools
import os
import threading

import numpy as np
import scipy.sparse
import tensorflow as tf

from renderer import _op_library

_LIBRARY_ENV = "GCN_FACE_OPS_LIBRARY"
_SWITCH_ENV = "GCN_FACE_GRAPH_OPS"  # "0": standard TensorFlow ops everywhere
_LIBRARY_GLOB = "_graph_ops*.so"
_ops = None
_state = threading.local()


def ops():
  """The module of generated op wrappers (gcn_sparse_mat_mul, ...), loaded once."""
  global _ops
  if _ops is None:
    _ops = _op_library.load_library(os.path.dirname(os.path.abspath(__file__)), _LIBRARY_GLOB,
                                    _LIBRARY_ENV, "//gcn_face:_graph_ops.so")
  return _ops


@functools.lru_cache(maxsize=None)
def _available():
  return (os.environ.get(_SWITCH_ENV, "1") != "0" and
          not tf.config.list_logical_devices("GPU"))


def enabled():
  """Whether the graph layers trace the C++ ops: on CPU-only TensorFlow, unless
  GCN_FACE_GRAPH_OPS=0, outside `standard_ops()`. Cached: devices are fixed once
  TensorFlow's runtime has started."""
  return _available() and not getattr(_state, "standard", False)


@contextlib.contextmanager
def standard_ops():
  """Within this context (this thread), graph layers trace standard TensorFlow ops only
  (for SavedModels that load without this project)."""
  previous = getattr(_state, "standard", False)
  _state.standard = True
  try:
    yield
  finally:
    _state.standard = previous


class Csr:
  """A constant float32 sparse matrix in CSR form for the ops: `row_ptr` int32 `[R + 1]`,
  `col` int32 `[nnz]` (ascending within a row), `val` float32 `[nnz]`; `shape` (R, C)."""

  def __init__(self, matrix):
    matrix = scipy.sparse.csr_matrix(matrix, dtype=np.float32)
    matrix.sort_indices()
    if matrix.nnz > np.iinfo(np.int32).max or max(matrix.shape) > np.iinfo(np.int32).max:
      raise ValueError(f"sparse matrix {matrix.shape} with {matrix.nnz} entries is too large "
                       "for int32 indices")
    self.shape = matrix.shape
    self.row_ptr = tf.constant(matrix.indptr.astype(np.int32))
    self.col = tf.constant(matrix.indices.astype(np.int32))
    self.val = tf.constant(matrix.data)

  @property
  def arrays(self):
    return self.row_ptr, self.col, self.val


def sparse_matmul(csr, csr_t, x):
  """S x for S `[R, C]` (`csr`; `csr_t` its transpose, for the gradient), x float32 `[C, W]`
  -> `[R, W]`."""

  @tf.custom_gradient
  def apply(flat):
    def grad(upstream):
      return ops().gcn_sparse_mat_mul(*csr_t.arrays, upstream)
    return ops().gcn_sparse_mat_mul(*csr.arrays, flat), grad

  return apply(x)


def cheb_conv(csr, csr_t, x, kernel, order):
  """sum_k T_k(S) x W_k, a ChebConv without bias (SPEC 3.3), in one op.

  Args:
    csr, csr_t: S `[M, M]` (the rescaled Laplacian) and its transpose (for the gradient).
    x: float32 `[M, N, Fin]` (vertices, batch, channels).
    kernel: float32 `[Fin * order, Fout]`, W_k = rows fin * order + k (the release's layout).
    order: K >= 1.

  Returns:
    float32 `[M, N, Fout]`; gradients with respect to x and kernel.
  """

  @tf.custom_gradient
  def apply(x, kernel):
    def grad(upstream):
      return ops().gcn_cheb_conv_grad(*csr_t.arrays, x, kernel, upstream, order=order)
    return ops().gcn_cheb_conv(*csr.arrays, x, kernel, order=order), grad

  # A tensor, not the variable: its gradient is an input's, returned to the caller's tape.
  return apply(x, tf.convert_to_tensor(kernel))
