// TensorFlow bindings (op definitions and CPU kernels) for chebyshev.h.
//
// Ops (S given as CSR: row_ptr int32 [R + 1], col int32 [nnz], val float32 [nnz]):
//   GcnSparseMatMul     x [C, W]        -> S x [R, W]
//   GcnChebConv         x [M, N, Fin], kernel [Fin * K, Fout] -> y [M, N, Fout],
//                       y = sum_k T_k(S) x W_k   (S: M x M; W_k = kernel rows fin * K + k)
//   GcnChebConvGrad     S^T, x, kernel, dy -> dx, dkernel
// The sparse product's gradient (gcn_face/graph_ops.py) is the same op on S^T.
//
// The CSR arrays are checked on every call (row pointers from 0 to nnz, not
// decreasing; columns in range): one pass over them, small beside the product.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "gcn_face/kernels/chebyshev.h"
#include "renderer/kernels/index_range.h"
#include "renderer/kernels/tf_kernel_support.h"

namespace gcn_face {
namespace {

using namespace ::renderer::tf_kernels;  // NOLINT: TensorFlow names and ParallelFor

constexpr int64_t kMaxInt32 = INT32_MAX;

Status ShapeCsr(InferenceContext* c, DimensionHandle* rows) {
  ShapeHandle row_ptr, col, val;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 1, &row_ptr));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &col));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &val));
  DimensionHandle nnz;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(col, 0), c->Dim(val, 0), &nnz));
  return c->Subtract(c->Dim(row_ptr, 0), 1, rows);
}

// The instruction sets the attributes allow: `simd` (false: portable C++ only) and
// `avx512` (false: at most AVX2 + FMA).
Status ReadSimd(OpKernelConstruction* ctx, int* simd) {
  bool any = true, avx512 = true;
  TF_RETURN_IF_ERROR(ctx->GetAttr("simd", &any));
  TF_RETURN_IF_ERROR(ctx->GetAttr("avx512", &avx512));
  *simd = !any ? kSimdPortable : avx512 ? kSimdBest : kSimdAvx2;
  return Status();
}

// Validates the CSR inputs 0-2 for a matrix with `cols` columns (`simd`: from ReadSimd).
Status ReadCsr(OpKernelContext* ctx, int64_t cols, int simd, Csr* s) {
  s->simd = simd;
  const Tensor &row_ptr = ctx->input(0), &col = ctx->input(1), &val = ctx->input(2);
  TF_RETURN_IF_ERROR(CheckRank(row_ptr, 1, "row_ptr", "[R + 1]"));
  TF_RETURN_IF_ERROR(CheckRank(col, 1, "col", "[nnz]"));
  TF_RETURN_IF_ERROR(CheckRank(val, 1, "val", "[nnz]"));
  const int64_t nnz = col.dim_size(0);
  if (val.dim_size(0) != nnz) {
    return errors::InvalidArgument("col has ", nnz, " entries, val ", val.dim_size(0));
  }
  if (row_ptr.dim_size(0) < 1) return errors::InvalidArgument("row_ptr is empty");
  if (nnz > kMaxInt32 || cols > kMaxInt32) {
    return errors::InvalidArgument("sparse matrix too large for int32 indices");
  }
  s->rows = row_ptr.dim_size(0) - 1;
  s->cols = cols;
  s->row_ptr = row_ptr.flat<int32_t>().data();
  s->col = col.flat<int32_t>().data();
  s->val = val.flat<float>().data();
  if (s->row_ptr[0] != 0 || s->row_ptr[s->rows] != nnz) {
    return errors::InvalidArgument("row_ptr must run from 0 to nnz = ", nnz, ", got ",
                                   s->row_ptr[0], " .. ", s->row_ptr[s->rows]);
  }
  for (int64_t r = 0; r < s->rows; ++r) {
    if (s->row_ptr[r + 1] < s->row_ptr[r]) {
      return errors::InvalidArgument("row_ptr decreases at row ", r);
    }
  }
  if (::renderer::AnyOutside(s->col, nnz, 0, cols)) {
    const int32_t* bad =
        std::find_if(s->col, s->col + nnz, [cols](int32_t c) { return c < 0 || c >= cols; });
    return errors::InvalidArgument("column index ", *bad, " at entry ", bad - s->col,
                                   " outside [0, ", cols, ")");
  }
  return Status();
}

// Shard cost of one output row: its entries times the floats each moves.
int64_t RowCost(const Csr& s, int64_t row_floats) {
  const int64_t per_row = s.rows > 0 ? s.row_ptr[s.rows] / s.rows + 1 : 1;
  return std::max<int64_t>(1, per_row * row_floats * 2);
}

REGISTER_OP("GcnSparseMatMul")
    .Input("row_ptr: int32")
    .Input("col: int32")
    .Input("val: float32")
    .Input("x: float32")
    .Attr("simd: bool = true")
    .Attr("avx512: bool = true")
    .Output("y: float32")
    .SetShapeFn([](InferenceContext* c) {
      DimensionHandle rows;
      TF_RETURN_IF_ERROR(ShapeCsr(c, &rows));
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &x));
      c->set_output(0, c->Matrix(rows, c->Dim(x, 1)));
      return Status();
    })
    .Doc("y = S x for S [R, C] in CSR form, x [C, W].");

class SparseMatMulOp : public OpKernel {
 public:
  explicit SparseMatMulOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadSimd(ctx, &simd_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(3);
    OP_REQUIRES_OK(ctx, CheckRank(x, 2, "x", "[C, W]"));
    Csr s;
    OP_REQUIRES_OK(ctx, ReadCsr(ctx, x.dim_size(0), simd_, &s));
    const int64_t width = x.dim_size(1);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({s.rows, width}), &y));
    const float* xp = x.flat<float>().data();
    float* yp = y->flat<float>().data();
    ParallelFor(ctx, s.rows, RowCost(s, width), [&](int64_t r0, int64_t r1) {
      SparseMatMulRows(s, xp, width, yp, r0, r1);
    });
  }

 private:
  int simd_ = kSimdBest;
};

REGISTER_KERNEL_BUILDER(Name("GcnSparseMatMul").Device(DEVICE_CPU), SparseMatMulOp);

// Square S on inputs 0-2 whose size matches `rows` (the dense operand's first axis).
Status ReadSquareCsr(OpKernelContext* ctx, int64_t rows, int simd, Csr* s) {
  const Tensor& row_ptr = ctx->input(0);
  if (row_ptr.dims() == 1 && row_ptr.dim_size(0) != rows + 1) {
    return errors::InvalidArgument("the sparse matrix has ", row_ptr.dim_size(0) - 1,
                                   " rows, the input ", rows);
  }
  return ReadCsr(ctx, rows, simd, s);
}

// x [M, N, Fin] (input 3) and kernel [Fin * K, Fout] (input 4) of a ChebConv of `order`.
Status ReadChebConv(OpKernelContext* ctx, int64_t order, ChebConvShape* c) {
  const Tensor &x = ctx->input(3), &kernel = ctx->input(4);
  TF_RETURN_IF_ERROR(CheckRank(x, 3, "x", "[M, N, Fin]"));
  TF_RETURN_IF_ERROR(CheckRank(kernel, 2, "kernel", "[Fin * K, Fout]"));
  *c = ChebConvShape{x.dim_size(0), x.dim_size(1), x.dim_size(2), kernel.dim_size(1), order};
  if (kernel.dim_size(0) != c->fin * order) {
    return errors::InvalidArgument("kernel has ", kernel.dim_size(0), " rows, expected Fin * K = ",
                                   c->fin, " * ", order);
  }
  if (c->fin > kMaxInt32 || c->fout > kMaxInt32 || c->n * c->m > kMaxInt32 * kBlockRows) {
    return errors::InvalidArgument("ChebConv operands too large: x ", x.shape().DebugString(),
                                   ", kernel ", kernel.shape().DebugString());
  }
  return Status();
}

// Shard cost of one block of rows: its sparse entries times the channels plus the dense
// products.
int64_t BlockCost(const Csr& s, const ChebConvShape& c, int64_t channels) {
  return std::max<int64_t>(1, kBlockRows * (RowCost(s, c.n * channels) + 2 * c.n * c.fin * c.fout));
}

// `count` [M, N, channels] buffers for the steps' terms.
Status AllocateTerms(OpKernelContext* ctx, const ChebConvShape& c, int64_t channels,
                     int64_t count, Tensor* storage, std::vector<float*>* bufs) {
  const int64_t size = c.m * c.n * channels;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({count, size}), storage));
  bufs->resize(count);
  for (int64_t i = 0; i < count; ++i) (*bufs)[i] = storage->flat<float>().data() + i * size;
  return Status();
}

// [first, bufs...]: the K terms of a recursion or Clenshaw sum (the first is an input or
// the output).
template <typename T>
std::vector<T*> WithFirst(T* first, const std::vector<float*>& bufs) {
  std::vector<T*> terms{first};
  terms.insert(terms.end(), bufs.begin(), bufs.end());
  return terms;
}

// Steps k = 1 .. K-1 of the recursion on `width`-float rows, terms[k] into bufs[k - 1].
void RunRecursion(OpKernelContext* ctx, const Csr& s, const ChebConvShape& c, int64_t channels,
                  const std::vector<const float*>& terms, const std::vector<float*>& bufs) {
  for (int64_t k = 1; k < c.order; ++k) {
    ParallelFor(ctx, NumBlocks(c.m), BlockCost(s, c, channels), [&](int64_t b0, int64_t b1) {
      RecursionStep(s, k, terms.data(), bufs[k - 1], c.n * channels, b0, b1);
    });
  }
}

Status ShapeChebConv(InferenceContext* c, ShapeHandle* x, ShapeHandle* kernel,
                     DimensionHandle* rows) {
  TF_RETURN_IF_ERROR(ShapeCsr(c, rows));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 3, x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 2, kernel));
  return c->Merge(*rows, c->Dim(*x, 0), rows);
}

REGISTER_OP("GcnChebConv")
    .Input("row_ptr: int32")
    .Input("col: int32")
    .Input("val: float32")
    .Input("x: float32")
    .Input("kernel: float32")
    .Attr("order: int >= 1")
    .Attr("simd: bool = true")
    .Attr("avx512: bool = true")
    .Output("y: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, kernel;
      DimensionHandle rows;
      TF_RETURN_IF_ERROR(ShapeChebConv(c, &x, &kernel, &rows));
      c->set_output(0, c->MakeShape({rows, c->Dim(x, 1), c->Dim(kernel, 1)}));
      return Status();
    })
    .Doc("y = sum_k T_k(S) x W_k, W_k = kernel rows fin * K + k; S [M, M], x [M, N, Fin].");

// Attributes and operands shared by the ChebConv op and its gradient.
class ChebConvKernelBase : public OpKernel {
 public:
  explicit ChebConvKernelBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("order", &order_));
    OP_REQUIRES_OK(ctx, ReadSimd(ctx, &simd_));
  }

 protected:
  Status ReadOperands(OpKernelContext* ctx, ChebConvShape* c, Csr* s) const {
    TF_RETURN_IF_ERROR(ReadChebConv(ctx, order_, c));
    return ReadSquareCsr(ctx, c->m, simd_, s);
  }

  int64_t order_ = 1;
  int simd_ = kSimdBest;
};

class ChebConvOp : public ChebConvKernelBase {
 public:
  using ChebConvKernelBase::ChebConvKernelBase;

  void Compute(OpKernelContext* ctx) override {
    ChebConvShape c;
    Csr s;
    OP_REQUIRES_OK(ctx, ReadOperands(ctx, &c, &s));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({c.m, c.n, c.fout}), &y));
    const float* x = ctx->input(3).flat<float>().data();
    const float* kernel = ctx->input(4).flat<float>().data();
    float* yp = y->flat<float>().data();
    Tensor storage;
    std::vector<float*> bufs;
    if (c.fin <= c.fout) {  // recursion on x, then one product per block
      OP_REQUIRES_OK(ctx, AllocateTerms(ctx, c, c.fin, c.order - 1, &storage, &bufs));
      const std::vector<const float*> terms = WithFirst(x, bufs);
      RunRecursion(ctx, s, c, c.fin, terms, bufs);
      ParallelFor(ctx, NumBlocks(c.m), BlockCost(s, c, c.fin), [&](int64_t b0, int64_t b1) {
        ForwardProducts(c, terms.data(), kernel, yp, b0, b1, s.simd);
      });
      return;
    }
    // Clenshaw on Fout channels: all products first, then the steps.
    OP_REQUIRES_OK(ctx, AllocateTerms(ctx, c, c.fout, c.order - 1, &storage, &bufs));
    const std::vector<float*> outs = WithFirst(yp, bufs);
    ParallelFor(ctx, NumBlocks(c.m), BlockCost(s, c, c.fout), [&](int64_t b0, int64_t b1) {
      ClenshawProducts(c, x, kernel, outs.data(), b0, b1, s.simd);
    });
    for (int64_t k = c.order - 2; k >= 0; --k) {
      ParallelFor(ctx, NumBlocks(c.m), BlockCost(s, c, c.fout), [&](int64_t b0, int64_t b1) {
        ClenshawStep(c, s, k, outs.data(), b0, b1);
      });
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("GcnChebConv").Device(DEVICE_CPU), ChebConvOp);

REGISTER_OP("GcnChebConvGrad")
    .Input("row_ptr_t: int32")
    .Input("col_t: int32")
    .Input("val_t: float32")
    .Input("x: float32")
    .Input("kernel: float32")
    .Input("dy: float32")
    .Attr("order: int >= 1")
    .Attr("simd: bool = true")
    .Attr("avx512: bool = true")
    .Output("dx: float32")
    .Output("dkernel: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, kernel, dy;
      DimensionHandle rows;
      TF_RETURN_IF_ERROR(ShapeChebConv(c, &x, &kernel, &rows));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(5), 3, &dy));
      c->set_output(0, x);
      c->set_output(1, kernel);
      return Status();
    })
    .Doc("Gradients of GcnChebConv given S^T (inputs 0-2): dx = sum_k T_k(S^T) dy W_k^T, "
         "dkernel rows fin * K + k = sum x^T T_k(S^T) dy.");

class ChebConvGradOp : public ChebConvKernelBase {
 public:
  using ChebConvKernelBase::ChebConvKernelBase;

  void Compute(OpKernelContext* ctx) override {
    ChebConvShape c;
    Csr s_t;
    OP_REQUIRES_OK(ctx, ReadOperands(ctx, &c, &s_t));
    const Tensor& dy = ctx->input(5);
    OP_REQUIRES(ctx, dy.dims() == 3 && dy.dim_size(0) == c.m && dy.dim_size(1) == c.n &&
                         dy.dim_size(2) == c.fout,
                errors::InvalidArgument("dy must have shape [", c.m, ", ", c.n, ", ", c.fout,
                                        "], got ", dy.shape().DebugString()));
    Tensor *dx = nullptr, *dkernel = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(3).shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(4).shape(), &dkernel));
    const int64_t blocks = NumBlocks(c.m), per_block = c.order * c.fin * c.fout;
    Tensor storage, partial, kernel_t;
    std::vector<float*> bufs;
    OP_REQUIRES_OK(ctx, AllocateTerms(ctx, c, c.fout, c.order - 1, &storage, &bufs));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT,
                                           TensorShape({std::max<int64_t>(blocks, 1), per_block}),
                                           &partial));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({per_block}),
                                           &kernel_t));
    const float* kernel = ctx->input(4).flat<float>().data();
    float* kt = kernel_t.flat<float>().data();
    for (int64_t i = 0; i < c.fin; ++i) {  // [Fin, K, Fout] -> [K, Fout, Fin]
      for (int64_t k = 0; k < c.order; ++k) {
        for (int64_t o = 0; o < c.fout; ++o) {
          kt[(k * c.fout + o) * c.fin + i] = kernel[(i * c.order + k) * c.fout + o];
        }
      }
    }
    const float* x = ctx->input(3).flat<float>().data();
    float* dxp = dx->flat<float>().data();
    float* pp = partial.flat<float>().data();
    const std::vector<const float*> terms = WithFirst(dy.flat<float>().data(), bufs);
    RunRecursion(ctx, s_t, c, c.fout, terms, bufs);
    ParallelFor(ctx, blocks, BlockCost(s_t, c, c.fout), [&](int64_t b0, int64_t b1) {
      BackwardProducts(c, terms.data(), x, kt, dxp, pp, b0, b1, s_t.simd);
    });
    float* dk = dkernel->flat<float>().data();
    if (blocks == 0) {
      std::fill_n(dk, per_block, 0.0f);
      return;
    }
    ParallelFor(ctx, per_block, blocks, [&](int64_t e0, int64_t e1) {
      ReduceKernelGradient(c, pp, blocks, dk, e0, e1);
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("GcnChebConvGrad").Device(DEVICE_CPU), ChebConvGradOp);

}  // namespace
}  // namespace gcn_face
