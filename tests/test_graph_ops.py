"""gcn_face.graph_ops: the sparse product and the ChebConv op vs float64 numpy, both forms,
on each instruction set (AVX-512 where the CPU has it, AVX2 + FMA, portable C++); the ChebConv layer on the op vs its standard-op formulation; bad input."""

import numpy as np
import pytest
import scipy.sparse
import tensorflow as tf

from gcn_face import graph, graph_ops, layers


def _laplacian(m, seed=0, density=0.01):
  """A rescaled Laplacian L - I = -D^-1/2 A D^-1/2 of a random graph (spectrum in [-1, 1])."""
  a = scipy.sparse.random(m, m, density=density, random_state=seed, dtype=np.float64)
  a = abs(a + a.T) + scipy.sparse.diags(np.full(m - 1, 0.5), 1, shape=(m, m))  # connected
  a = a + a.T
  d = np.asarray(a.sum(1)).ravel()
  return (-(scipy.sparse.diags(d ** -0.5) @ a @ scipy.sparse.diags(d ** -0.5))).tocsr()


def _reference(lap, x, kernel, order, dy):
  """y, dx, dkernel of y = sum_k T_k(L) x W_k in float64 (W_k = kernel rows fin * K + k)."""
  m, n, fin = x.shape
  fout = kernel.shape[1]
  lap = lap.toarray()
  polys = [np.eye(m)]
  for k in range(1, order):
    polys.append(lap if k == 1 else 2 * lap @ polys[-1] - polys[-2])
  w = kernel.astype(np.float64).reshape(fin, order, fout)
  x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
  terms = [np.einsum("ij,jnf->inf", p, x64) for p in polys]
  y = sum(np.einsum("inf,fo->ino", t, w[:, k]) for k, t in enumerate(terms))
  dx = sum(np.einsum("ji,jno->ino", p, np.einsum("jno,fo->jnf", dy64, w[:, k]))
           for k, p in enumerate(polys))
  dkernel = np.stack([np.einsum("inf,ino->fo", t, dy64) for t in terms], 1).reshape(-1, fout)
  return y, dx, dkernel


def _close(got, expected, rtol=2e-5):
  scale = max(np.abs(expected).max(), 1e-30)
  assert np.abs(np.asarray(got, np.float64) - expected).max() <= rtol * scale


# Instruction sets as op attributes (on a CPU without AVX-512, "best" is AVX2 again).
ISAS = {"best": {}, "avx2": {"avx512": False}, "portable": {"simd": False}}

CASES = [  # m, n, fin, fout, order: both forms (fin <= fout: recursion; >: Clenshaw)
    (700, 4, 7, 16, 6), (700, 4, 32, 16, 6), (531, 3, 16, 3, 6), (300, 2, 40, 70, 6),
    (520, 3, 64, 32, 4), (130, 5, 20, 130, 3),
    (257, 1, 37, 3, 5), (256, 2, 3, 9, 3), (90, 4, 5, 5, 2), (90, 2, 6, 4, 1), (40, 0, 4, 6, 6)]


@pytest.mark.parametrize("m,n,fin,fout,order", CASES)
@pytest.mark.parametrize("isa", sorted(ISAS))
def test_cheb_conv_matches_float64(m, n, fin, fout, order, isa):
  rng = np.random.default_rng(m + fin)
  lap = _laplacian(m, seed=fout)
  csr, csr_t = graph_ops.Csr(lap), graph_ops.Csr(lap.T)
  x = rng.normal(size=(m, n, fin)).astype(np.float32)
  kernel = rng.normal(size=(fin * order, fout)).astype(np.float32)
  dy = rng.normal(size=(m, n, fout)).astype(np.float32)
  y = graph_ops.ops().gcn_cheb_conv(*csr.arrays, x, kernel, order=order, **ISAS[isa])
  dx, dkernel = graph_ops.ops().gcn_cheb_conv_grad(*csr_t.arrays, x, kernel, dy, order=order,
                                                   **ISAS[isa])
  expected = _reference(lap, x, kernel, order, dy)
  assert y.shape == (m, n, fout) and dx.shape == x.shape and dkernel.shape == kernel.shape
  for got, want in zip((y, dx, dkernel), expected):
    if want.size:
      _close(got, want)
    else:
      assert not np.any(got)


def test_cheb_conv_gradient_through_the_tape_and_the_transpose():
  """cheb_conv's registered gradient is the Grad op on S^T (a non-symmetric S here)."""
  rng = np.random.default_rng(3)
  lap = (_laplacian(300) + scipy.sparse.random(300, 300, density=0.005, random_state=4)).tocsr()
  x = tf.constant(rng.normal(size=(300, 2, 5)).astype(np.float32))
  kernel = tf.constant(rng.normal(size=(5 * 4, 8)).astype(np.float32))
  dy = rng.normal(size=(300, 2, 8)).astype(np.float32)
  with tf.GradientTape() as tape:
    tape.watch([x, kernel])
    y = graph_ops.cheb_conv(graph_ops.Csr(lap), graph_ops.Csr(lap.T), x, kernel, 4)
    loss = tf.reduce_sum(y * dy)
  dx, dkernel = tape.gradient(loss, [x, kernel])
  expected = _reference(lap, x.numpy(), kernel.numpy(), 4, dy)
  for got, want in zip((y, dx, dkernel), expected):
    _close(got, want)


@pytest.mark.parametrize("isa", sorted(ISAS))
@pytest.mark.parametrize("rows,cols,width", [(120, 500, 12), (700, 300, 64), (33, 33, 3),
                                             (5, 40, 0)])
def test_sparse_matmul_matches_scipy(rows, cols, width, isa):
  rng = np.random.default_rng(rows)
  s = scipy.sparse.random(rows, cols, density=0.03, random_state=1, dtype=np.float32).tocsr()
  x = rng.normal(size=(cols, width)).astype(np.float32)
  got = graph_ops.ops().gcn_sparse_mat_mul(*graph_ops.Csr(s).arrays, x, **ISAS[isa])
  expected = s.astype(np.float64) @ x.astype(np.float64)
  assert got.shape == (rows, width)
  if width:
    _close(got, expected, 1e-5)


def test_sparse_operator_gradient_is_the_transpose():
  rng = np.random.default_rng(5)
  s = scipy.sparse.random(120, 500, density=0.02, random_state=2, dtype=np.float32)
  op = graph.SparseOperator(s, "down")
  x = tf.constant(rng.normal(size=(500, 4, 3)).astype(np.float32))
  upstream = rng.normal(size=(120, 4, 3)).astype(np.float32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    loss = tf.reduce_sum(op(x) * upstream)
  expected = (s.T.astype(np.float64) @ upstream.reshape(120, -1)).reshape(500, 4, 3)
  _close(tape.gradient(loss, x), expected, 1e-5)


@pytest.mark.parametrize("fin,fout,order", [(7, 16, 6), (32, 16, 6), (16, 3, 6), (6, 3, 3),
                                            (4, 4, 2)])
def test_cheb_conv_layer_op_and_standard_ops_agree(fin, fout, order):
  """The layer on the op vs its standard TensorFlow formulation (SparseMatrixMatMul and K
  matmuls, as in SavedModel exports): output and gradients for x and the kernel."""
  rng = np.random.default_rng(fin * fout)
  conv = layers.ChebConv(graph.SparseOperator(_laplacian(600), "lap"), fout, order)
  x = tf.constant(rng.normal(size=(600, 3, fin)).astype(np.float32))
  conv(x)
  weights = rng.normal(size=(600, 3, fout)).astype(np.float32)

  def run():
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = conv(x)
      loss = tf.reduce_sum(tf.sin(y) * weights)
    return [y] + tape.gradient(loss, [x, conv.kernel])

  assert graph_ops.enabled()
  with_op = run()
  with graph_ops.standard_ops():
    assert not graph_ops.enabled()
    standard = run()
  for a, b in zip(with_op, standard):
    _close(a, b.numpy().astype(np.float64), 1e-5)


def test_cheb_conv_propagates_nan():
  lap = _laplacian(300)
  x = np.ones((300, 1, 4), np.float32)
  x[17, 0, 2] = np.nan
  y = graph_ops.ops().gcn_cheb_conv(*graph_ops.Csr(lap).arrays, x, np.ones((8, 4), np.float32),
                                    order=2).numpy()
  assert np.isnan(y[17]).all() and np.isnan(y).any(axis=(1, 2)).sum() > 1
  assert np.isfinite(y[np.asarray(lap[17].todense()).ravel() == 0][1:]).any()


def _bad(edit):
  lap = _laplacian(50)
  csr = graph_ops.Csr(lap)
  args = {"row_ptr": csr.row_ptr.numpy(), "col": csr.col.numpy(), "val": csr.val.numpy(),
          "x": np.ones((50, 2, 3), np.float32), "kernel": np.ones((6, 4), np.float32)}
  edit(args)
  return args


@pytest.mark.parametrize("edit,message", [
    (lambda a: a["col"].__setitem__(3, 50), "column index 50 at entry 3 outside"),
    (lambda a: a["col"].__setitem__(0, -1), "column index -1"),
    (lambda a: a["row_ptr"].__setitem__(5, a["row_ptr"][7]), "row_ptr decreases at row 5"),
    (lambda a: a["row_ptr"].__setitem__(-1, a["row_ptr"][-1] - 1), "row_ptr must run from 0 to nnz"),
    (lambda a: a.__setitem__("row_ptr", a["row_ptr"][:-1]), "the sparse matrix has 49 rows, the input 50"),
    (lambda a: a.__setitem__("val", a["val"][:-1]), "col has"),
    (lambda a: a.__setitem__("kernel", np.ones((7, 4), np.float32)), "kernel has 7 rows"),
    (lambda a: a.__setitem__("x", np.ones((49, 2, 3), np.float32)), "rows"),
])
def test_cheb_conv_bad_input_is_one_clear_error(edit, message):
  args = _bad(edit)
  with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
    graph_ops.ops().gcn_cheb_conv(args["row_ptr"], args["col"], args["val"], args["x"],
                                  args["kernel"], order=2)


def test_cheb_conv_grad_checks_dy():
  lap = _laplacian(50)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"dy must have shape \[50, 2, 4\]"):
    graph_ops.ops().gcn_cheb_conv_grad(*graph_ops.Csr(lap).arrays, np.ones((50, 2, 3), np.float32),
                                       np.ones((6, 4), np.float32),
                                       np.ones((50, 2, 5), np.float32), order=2)


def test_chebyshev_conv_needs_a_square_operator():
  op = graph.SparseOperator(scipy.sparse.random(10, 20, density=0.2, random_state=0), "down")
  with pytest.raises(ValueError, match="square"):
    op.chebyshev_conv(tf.zeros([20, 1, 2]), tf.zeros([4, 3]), 2)
