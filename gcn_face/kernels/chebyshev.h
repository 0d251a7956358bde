// Framework-free CPU core of the graph ops (gcn_face/kernels/graph_ops.cc):
// a CSR sparse matrix S times row-major dense rows, and a whole Chebyshev
// graph convolution (ChebConv, SPEC 3.3) with its gradient.
//
//   y = sum_k T_k(S) x W_k,  T_0 = I, T_1 = S, T_k = 2 S T_{k-1} - T_{k-2}
//
// x [M, N, Fin] (vertices, batch, channels), W_k = kernel rows fin * K + k
// (the release's layout [Fin * K, Fout]), y [M, N, Fout]. Forward:
//   Fin <= Fout: the recursion on x (Fin channels), y[r] += (T_k x)[r] W_k;
//   Fin >  Fout: Clenshaw on Fout channels, b_k = x W_k + 2 S b_{k+1} - b_{k+2},
//                y = x W_0 + S b_1 - b_2.
// Backward, with u_k = T_k(S^T) dy by the recursion on Fout channels:
//   dx[r] = sum_k u_k[r] W_k^T,  dW_k = sum_r x[r]^T u_k[r].
// No [M, N, K, F] tensor is formed: each step keeps three [M, N, F] buffers
// and does the small dense products row by row while the row is in cache.
//
// Every sum has a fixed order (CSR order, channel order, step order; dW over
// fixed blocks of kBlockRows rows, then over blocks in order), so results do
// not depend on the thread count. Steps are passes over blocks [b0, b1) that
// the caller shards; steps of one operator run in order.
#ifndef GCN_FACE_KERNELS_CHEBYSHEV_H_
#define GCN_FACE_KERNELS_CHEBYSHEV_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "renderer/kernels/simd_x86.h"

namespace gcn_face {

constexpr int64_t kBlockRows = 256;  // rows per shard unit and per dW partial sum

// S [rows, cols] in CSR form: row r holds entries row_ptr[r] .. row_ptr[r + 1].
struct Csr {
  int64_t rows = 0;
  int64_t cols = 0;
  const int32_t* row_ptr = nullptr;
  const int32_t* col = nullptr;
  const float* val = nullptr;
  bool simd = true;  // AVX2 + FMA where the CPU has them
};

// A weighted sum of rows: out[j] = sum_{p < count} coeff[p * coeff_stride] *
// base[row(p) * row_stride + j] for j < width, row(p) = index[p] (or p when
// index is null), summed from 0 in p order: a product, then one addition per
// term (the build has -ffp-contract=off); the AVX2 instance fuses each product and
// addition (FMA), so the two instances agree to float rounding, not bit for bit.
struct Terms {
  const float* coeff;
  int64_t coeff_stride;
  const int32_t* index;
  int64_t count;
  const float* base;
  int64_t row_stride;
};

inline void CombineBase(const Terms& t, int64_t width, float* __restrict out) {
  for (int64_t j = 0; j < width; ++j) out[j] = 0.0f;
  for (int64_t p = 0; p < t.count; ++p) {
    const float v = t.coeff[p * t.coeff_stride];
    const float* __restrict src = t.base + (t.index ? t.index[p] : p) * t.row_stride;
    for (int64_t j = 0; j < width; ++j) out[j] += v * src[j];
  }
}

#if defined(RENDERER_CPU_AVX2_DISPATCH)
// The same sums with the accumulators in registers: 32, then 8 columns at a
// time, then the last < 8 with masked loads.
__attribute__((target("avx2,fma"))) inline void CombineAvx2(const Terms& t, int64_t width,
                                                        float* out) {
  int64_t c = 0;
  for (; c + 32 <= width; c += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t p = 0; p < t.count; ++p) {
      const __m256 v = _mm256_set1_ps(t.coeff[p * t.coeff_stride]);
      const float* src = t.base + (t.index ? t.index[p] : p) * t.row_stride + c;
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(v, _mm256_loadu_ps(src)));
      a1 = _mm256_add_ps(a1, _mm256_mul_ps(v, _mm256_loadu_ps(src + 8)));
      a2 = _mm256_add_ps(a2, _mm256_mul_ps(v, _mm256_loadu_ps(src + 16)));
      a3 = _mm256_add_ps(a3, _mm256_mul_ps(v, _mm256_loadu_ps(src + 24)));
    }
    _mm256_storeu_ps(out + c, a0);
    _mm256_storeu_ps(out + c + 8, a1);
    _mm256_storeu_ps(out + c + 16, a2);
    _mm256_storeu_ps(out + c + 24, a3);
  }
  for (; c + 16 <= width; c += 16) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t p = 0; p < t.count; ++p) {
      const __m256 v = _mm256_set1_ps(t.coeff[p * t.coeff_stride]);
      const float* src = t.base + (t.index ? t.index[p] : p) * t.row_stride + c;
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(v, _mm256_loadu_ps(src)));
      a1 = _mm256_add_ps(a1, _mm256_mul_ps(v, _mm256_loadu_ps(src + 8)));
    }
    _mm256_storeu_ps(out + c, a0);
    _mm256_storeu_ps(out + c + 8, a1);
  }
  for (; c < width; c += 8) {
    const __m256i mask = _mm256_cmpgt_epi32(
        _mm256_set1_epi32(static_cast<int>(std::min<int64_t>(width - c, 8))),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t p = 0; p < t.count; ++p) {
      const float* src = t.base + (t.index ? t.index[p] : p) * t.row_stride + c;
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_set1_ps(t.coeff[p * t.coeff_stride]),
                                           _mm256_maskload_ps(src, mask)));
    }
    _mm256_maskstore_ps(out + c, mask, a0);
  }
}
#endif

#if defined(RENDERER_CPU_AVX2_DISPATCH)
// AVX-512: 64 columns at a time in four accumulators, then 16 (the last masked).
__attribute__((target("avx512f"))) inline void CombineAvx512(const Terms& t, int64_t width,
                                                             float* out) {
  int64_t c = 0;
  for (; c + 64 <= width; c += 64) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t p = 0; p < t.count; ++p) {
      const __m512 v = _mm512_set1_ps(t.coeff[p * t.coeff_stride]);
      const float* src = t.base + (t.index ? t.index[p] : p) * t.row_stride + c;
      a0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(src), a0);
      a1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(src + 16), a1);
      a2 = _mm512_fmadd_ps(v, _mm512_loadu_ps(src + 32), a2);
      a3 = _mm512_fmadd_ps(v, _mm512_loadu_ps(src + 48), a3);
    }
    _mm512_storeu_ps(out + c, a0);
    _mm512_storeu_ps(out + c + 16, a1);
    _mm512_storeu_ps(out + c + 32, a2);
    _mm512_storeu_ps(out + c + 48, a3);
  }
  for (; c < width; c += 16) {
    const __mmask16 mask =
        static_cast<__mmask16>((1u << std::min<int64_t>(width - c, 16)) - 1u);
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t p = 0; p < t.count; ++p) {
      const float* src = t.base + (t.index ? t.index[p] : p) * t.row_stride + c;
      a0 = _mm512_fmadd_ps(_mm512_set1_ps(t.coeff[p * t.coeff_stride]),
                           _mm512_maskz_loadu_ps(mask, src), a0);
    }
    _mm512_mask_storeu_ps(out + c, mask, a0);
  }
}

inline bool UseAvx512(bool simd) {
  static const bool has = __builtin_cpu_supports("avx512f");
  return simd && has;
}
#endif

// Whether the AVX2 + FMA instances run: `simd` (an op attribute, for tests) and the CPU
// has both (checked once).
inline bool UseAvx2(bool simd) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  static const bool has = ::renderer::CpuHasAvx2() && __builtin_cpu_supports("fma");
  return simd && has;
#else
  return false;
#endif
}

inline void Combine(const Terms& t, int64_t width, float* out, bool simd) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (UseAvx512(simd)) return CombineAvx512(t, width, out);
  if (UseAvx2(simd)) return CombineAvx2(t, width, out);
#endif
  CombineBase(t, width, out);
}

// A small dense product C = A B (or C += A B): C[r, j] for r < rows, j < cols, each
// summed from 0 over p < depth in p order (then added to C); FMA in the AVX2 instance. A[r, p] = a[r * a_row + p * a_depth] (either layout), B[p, j] = b[p * ldb + j],
// C[r, j] = c[r * ldc + j].
struct Gemm {
  const float* a;
  int64_t a_row, a_depth;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  int64_t rows, cols, depth;
  bool accumulate;
};

inline void GemmBase(const Gemm& g) {
  for (int64_t r = 0; r < g.rows; ++r) {
    for (int64_t j = 0; j < g.cols; ++j) {
      float sum = 0.0f;
      for (int64_t p = 0; p < g.depth; ++p) sum += g.a[r * g.a_row + p * g.a_depth] * g.b[p * g.ldb + j];
      float& out = g.c[r * g.ldc + j];
      out = g.accumulate ? out + sum : sum;
    }
  }
}

#if defined(RENDERER_CPU_AVX2_DISPATCH)
__attribute__((target("avx2,fma"))) inline __m256i LaneMask(int64_t lanes) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(lanes, 8))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <bool kFull>
__attribute__((target("avx2,fma"))) inline __m256 LoadLanes(const float* p, __m256i mask) {
  return kFull ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}

template <bool kFull>
__attribute__((target("avx2,fma"))) inline void StoreLanes(float* p, __m256i mask, __m256 value,
                                                       bool accumulate) {
  if (accumulate) value = _mm256_add_ps(LoadLanes<kFull>(p, mask), value);
  if (kFull) {
    _mm256_storeu_ps(p, value);
  } else {
    _mm256_maskstore_ps(p, mask, value);
  }
}

// acc += a * b, one term of a sum (no contraction).
#define GCN_TERM(acc, a, b) acc = _mm256_fmadd_ps(a, b, acc)

// MR (4 or 1) rows x 16 columns from column j: the first 8 full, the second 8
// masked to `mask1` unless kFull1.
template <int MR, bool kFull1>
__attribute__((target("avx2,fma"))) inline void Tile16(const Gemm& g, int64_t r, int64_t j,
                                                   __m256i mask1) {
  static_assert(MR == 4 || MR == 1, "4 or 1 rows");
  const int64_t a_row = g.a_row, a_depth = g.a_depth, ldb = g.ldb, depth = g.depth;
  const float* a = g.a + r * a_row;
  const float* b = g.b + j;
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
         c30 = c00, c31 = c00;
  for (int64_t p = 0; p < depth; ++p, a += a_depth, b += ldb) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = LoadLanes<kFull1>(b + 8, mask1);
    __m256 v = _mm256_broadcast_ss(a);
    GCN_TERM(c00, v, b0);
    GCN_TERM(c01, v, b1);
    if (MR == 4) {
      v = _mm256_broadcast_ss(a + a_row);
      GCN_TERM(c10, v, b0);
      GCN_TERM(c11, v, b1);
      v = _mm256_broadcast_ss(a + 2 * a_row);
      GCN_TERM(c20, v, b0);
      GCN_TERM(c21, v, b1);
      v = _mm256_broadcast_ss(a + 3 * a_row);
      GCN_TERM(c30, v, b0);
      GCN_TERM(c31, v, b1);
    }
  }
  const __m256i all = _mm256_set1_epi32(-1);
  const __m256 lo[4] = {c00, c10, c20, c30}, hi[4] = {c01, c11, c21, c31};
  for (int i = 0; i < MR; ++i) {
    float* out = g.c + (r + i) * g.ldc + j;
    StoreLanes<true>(out, all, lo[i], g.accumulate);
    StoreLanes<kFull1>(out + 8, mask1, hi[i], g.accumulate);
  }
}

// MR (8 or 1) rows x up to 8 columns from column j (masked to `mask`).
template <int MR>
__attribute__((target("avx2,fma"))) inline void Tile8(const Gemm& g, int64_t r, int64_t j,
                                                  __m256i mask) {
  static_assert(MR == 8 || MR == 1, "8 or 1 rows");
  const int64_t a_row = g.a_row, a_depth = g.a_depth, ldb = g.ldb, depth = g.depth;
  const float* a = g.a + r * a_row;
  const float* b = g.b + j;
  __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
         c7 = c0;
  for (int64_t p = 0; p < depth; ++p, a += a_depth, b += ldb) {
    const __m256 bv = _mm256_maskload_ps(b, mask);
    GCN_TERM(c0, _mm256_broadcast_ss(a), bv);
    if (MR == 8) {
      GCN_TERM(c1, _mm256_broadcast_ss(a + a_row), bv);
      GCN_TERM(c2, _mm256_broadcast_ss(a + 2 * a_row), bv);
      GCN_TERM(c3, _mm256_broadcast_ss(a + 3 * a_row), bv);
      GCN_TERM(c4, _mm256_broadcast_ss(a + 4 * a_row), bv);
      GCN_TERM(c5, _mm256_broadcast_ss(a + 5 * a_row), bv);
      GCN_TERM(c6, _mm256_broadcast_ss(a + 6 * a_row), bv);
      GCN_TERM(c7, _mm256_broadcast_ss(a + 7 * a_row), bv);
    }
  }
  const __m256 acc[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
  for (int i = 0; i < MR; ++i) {
    StoreLanes<false>(g.c + (r + i) * g.ldc + j, mask, acc[i], g.accumulate);
  }
}
#undef GCN_TERM

template <bool kFull1>
__attribute__((target("avx2,fma"))) inline void Strip16(const Gemm& g, int64_t j, __m256i mask1) {
  int64_t r = 0;
  for (; r + 4 <= g.rows; r += 4) Tile16<4, kFull1>(g, r, j, mask1);
  for (; r < g.rows; ++r) Tile16<1, kFull1>(g, r, j, mask1);
}

// Column strips of 16 (4 rows at a time: 8 accumulators), then a last strip of <= 8
// (8 rows at a time).
__attribute__((target("avx2,fma"))) inline void GemmAvx2(const Gemm& g) {
  int64_t j = 0;
  for (; j + 16 <= g.cols; j += 16) Strip16<true>(g, j, _mm256_set1_epi32(-1));
  if (j + 8 < g.cols) {
    Strip16<false>(g, j, LaneMask(g.cols - j - 8));
  } else if (j < g.cols) {
    const __m256i mask = LaneMask(g.cols - j);
    int64_t r = 0;
    for (; r + 8 <= g.rows; r += 8) Tile8<8>(g, r, j, mask);
    for (; r < g.rows; ++r) Tile8<1>(g, r, j, mask);
  }
}
#endif

#if defined(RENDERER_CPU_AVX2_DISPATCH)
// AVX-512: strips of 16 columns (the last masked), 12 rows at a time (12 independent
// accumulators hide the FMA latency), then 8, 4 and single rows.
template <int MR>
__attribute__((target("avx512f"))) inline void Tile16x(const Gemm& g, int64_t r, int64_t j,
                                                       __mmask16 mask) {
  static_assert(MR == 12 || MR == 8 || MR == 4 || MR == 1, "12, 8, 4 or 1 rows");
  const int64_t a_row = g.a_row, a_depth = g.a_depth, ldb = g.ldb, depth = g.depth;
  const float* a = g.a + r * a_row;
  const float* b = g.b + j;
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
         c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
  for (int64_t p = 0; p < depth; ++p, a += a_depth, b += ldb) {
    const __m512 bv = _mm512_maskz_loadu_ps(mask, b);
    c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[0]), bv, c0);
    if (MR >= 4) {
      c1 = _mm512_fmadd_ps(_mm512_set1_ps(a[a_row]), bv, c1);
      c2 = _mm512_fmadd_ps(_mm512_set1_ps(a[2 * a_row]), bv, c2);
      c3 = _mm512_fmadd_ps(_mm512_set1_ps(a[3 * a_row]), bv, c3);
    }
    if (MR >= 8) {
      c4 = _mm512_fmadd_ps(_mm512_set1_ps(a[4 * a_row]), bv, c4);
      c5 = _mm512_fmadd_ps(_mm512_set1_ps(a[5 * a_row]), bv, c5);
      c6 = _mm512_fmadd_ps(_mm512_set1_ps(a[6 * a_row]), bv, c6);
      c7 = _mm512_fmadd_ps(_mm512_set1_ps(a[7 * a_row]), bv, c7);
    }
    if (MR == 12) {
      c8 = _mm512_fmadd_ps(_mm512_set1_ps(a[8 * a_row]), bv, c8);
      c9 = _mm512_fmadd_ps(_mm512_set1_ps(a[9 * a_row]), bv, c9);
      c10 = _mm512_fmadd_ps(_mm512_set1_ps(a[10 * a_row]), bv, c10);
      c11 = _mm512_fmadd_ps(_mm512_set1_ps(a[11 * a_row]), bv, c11);
    }
  }
  const __m512 acc[12] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};
  for (int i = 0; i < MR; ++i) {
    float* out = g.c + (r + i) * g.ldc + j;
    __m512 value = acc[i];
    if (g.accumulate) value = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), value);
    _mm512_mask_storeu_ps(out, mask, value);
  }
}

__attribute__((target("avx512f"))) inline void GemmAvx512(const Gemm& g) {
  for (int64_t j = 0; j < g.cols; j += 16) {
    const int64_t lanes = std::min<int64_t>(g.cols - j, 16);
    const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1u);
    int64_t r = 0;
    for (; r + 12 <= g.rows; r += 12) Tile16x<12>(g, r, j, mask);
    if (r + 8 <= g.rows) Tile16x<8>(g, r, j, mask), r += 8;
    if (r + 4 <= g.rows) Tile16x<4>(g, r, j, mask), r += 4;
    for (; r < g.rows; ++r) Tile16x<1>(g, r, j, mask);
  }
}

#endif

inline void RunGemm(const Gemm& g, bool simd) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (UseAvx512(simd)) return GemmAvx512(g);
  if (UseAvx2(simd)) return GemmAvx2(g);
#endif
  GemmBase(g);
}

// Row r of S x: x rows of `width` floats at x + j * width.
inline Terms SparseRow(const Csr& s, int64_t r, const float* x, int64_t width) {
  const int32_t begin = s.row_ptr[r];
  return Terms{s.val + begin, 1, s.col + begin, s.row_ptr[r + 1] - begin, x, width};
}

// y[r, :] = S[r, :] x for rows [r0, r1); x [cols, width], y [rows, width].
inline void SparseMatMulRows(const Csr& s, const float* x, int64_t width, float* y, int64_t r0,
                             int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    Combine(SparseRow(s, r, x, width), width, y + r * width, s.simd);
  }
}

// Dense operands of one ChebConv. kernel [Fin * K, Fout]; W_k[i, o] =
// kernel[(i * K + k) * Fout + o], and kernel_t [K, Fout, Fin] its transpose.
struct ChebConvShape {
  int64_t m, n, fin, fout, order;
};

// One step of the Chebyshev recursion on row r (width floats per row):
//   k == 1: out[r] = S prev1;   k >= 2: out[r] = 2 S prev1 - prev2[r].
inline void RecursionRow(const Csr& s, int64_t r, int64_t k, const float* prev1,
                         const float* prev2, int64_t width, float* out) {
  float* dst = out + r * width;
  Combine(SparseRow(s, r, prev1, width), width, dst, s.simd);
  if (k >= 2) {
    const float* __restrict sub = prev2 + r * width;
    for (int64_t j = 0; j < width; ++j) dst[j] = 2.0f * dst[j] - sub[j];
  }
}

inline int64_t NumBlocks(int64_t rows) { return (rows + kBlockRows - 1) / kBlockRows; }

// Per-shard scratch of the step functions: one vertex's n x Fout sparse sum.
struct Scratch {
  std::vector<float> row;
  explicit Scratch(const ChebConvShape& c) : row(c.n * c.fout) {}
};

// Rows [r0, r1) of block b.
inline int64_t BlockBegin(int64_t b) { return b * kBlockRows; }
inline int64_t BlockEnd(const ChebConvShape& c, int64_t b) {
  return std::min(c.m, (b + 1) * kBlockRows);
}

// C (+)= A W_k for the (vertex, batch) rows [r0 * n, r1 * n) of a [M, N, Fin] operand.
inline Gemm TimesKernel(const ChebConvShape& c, const float* a, const float* kernel, int64_t k,
                        float* out, int64_t r0, int64_t r1, bool accumulate) {
  return Gemm{a + r0 * c.n * c.fin, c.fin, 1, kernel + k * c.fout, c.order * c.fout,
              out + r0 * c.n * c.fout, c.fout, (r1 - r0) * c.n, c.fout, c.fin, accumulate};
}

// Forward, recursion form (Fin <= Fout), step k on blocks [b0, b1): t_k rows into
// bufs[k % 3] (t_0 = x itself), then y (+)= t_k W_k for the block.
inline void ForwardRecursionStep(const ChebConvShape& c, const Csr& s, const float* x,
                                 const float* kernel, int64_t k, float* const bufs[3], float* y,
                                 int64_t b0, int64_t b1) {
  const int64_t width = c.n * c.fin;
  auto term = [&](int64_t j) -> const float* { return j == 0 ? x : bufs[j % 3]; };
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t r0 = BlockBegin(b), r1 = BlockEnd(c, b);
    if (k >= 1) {
      for (int64_t r = r0; r < r1; ++r) {
        RecursionRow(s, r, k, term(k - 1), k >= 2 ? term(k - 2) : nullptr, width, bufs[k % 3]);
      }
    }
    RunGemm(TimesKernel(c, term(k), kernel, k, y, r0, r1, k > 0), s.simd);
  }
}

// Forward, Clenshaw form (Fin > Fout), step k = K-1 .. 0 on blocks [b0, b1):
//   k == K-1: b_{K-1} = x W_{K-1};
//   k <  K-1: b_k[r] = (x[r] W_k + 2 S b_{k+1}) - b_{k+2}[r]  (k == 0: S, not 2 S; into y).
// b_k lives in bufs[k % 3]; b_{K} = 0 is absent.
inline void ForwardClenshawStep(const ChebConvShape& c, const Csr& s, const float* x,
                                const float* kernel, int64_t k, float* const bufs[3], float* y,
                                Scratch* scratch, int64_t b0, int64_t b1) {
  const int64_t width = c.n * c.fout;
  float* out = k == 0 ? y : bufs[k % 3];
  const float scale = k == 0 ? 1.0f : 2.0f;
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t r0 = BlockBegin(b), r1 = BlockEnd(c, b);
    RunGemm(TimesKernel(c, x, kernel, k, out, r0, r1, false), s.simd);
    if (k == c.order - 1) continue;
    for (int64_t r = r0; r < r1; ++r) {
      float* dst = out + r * width;
      float* acc = scratch->row.data();
      Combine(SparseRow(s, r, bufs[(k + 1) % 3], width), width, acc, s.simd);
      if (k + 2 <= c.order - 1) {
        const float* __restrict sub = bufs[(k + 2) % 3] + r * width;
        for (int64_t j = 0; j < width; ++j) dst[j] = (dst[j] + scale * acc[j]) - sub[j];
      } else {
        for (int64_t j = 0; j < width; ++j) dst[j] = dst[j] + scale * acc[j];
      }
    }
  }
}

// Backward step k on blocks [b0, b1) (s_t = S^T): u_k rows into bufs[k % 3] (u_0 = dy),
// dx (+)= u_k W_k^T, and the block's partial dW_k = x_b^T u_k,b at
//   partial[(b * K + k) * Fin * Fout + i * Fout + o].
// kernel_t [K, Fout, Fin] is the kernel transposed.
inline void BackwardStep(const ChebConvShape& c, const Csr& s_t, const float* x,
                         const float* kernel_t, const float* dy, int64_t k,
                         float* const bufs[3], float* dx, float* partial, int64_t b0,
                         int64_t b1) {
  const int64_t width = c.n * c.fout;
  auto term = [&](int64_t j) -> const float* { return j == 0 ? dy : bufs[j % 3]; };
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t r0 = BlockBegin(b), r1 = BlockEnd(c, b), rows = (r1 - r0) * c.n;
    if (k >= 1) {
      for (int64_t r = r0; r < r1; ++r) {
        RecursionRow(s_t, r, k, term(k - 1), k >= 2 ? term(k - 2) : nullptr, width, bufs[k % 3]);
      }
    }
    const float* u = term(k) + r0 * width;
    RunGemm(Gemm{u, c.fout, 1, kernel_t + k * c.fout * c.fin, c.fin, dx + r0 * c.n * c.fin,
                 c.fin, rows, c.fin, c.fout, k > 0},
            s_t.simd);
    RunGemm(Gemm{x + r0 * c.n * c.fin, 1, c.fin, u, c.fout,
                 partial + (b * c.order + k) * c.fin * c.fout, c.fout, c.fin, c.fout, rows,
                 false},
            s_t.simd);
  }
}

// dkernel[(i * K + k) * Fout + o] = sum over blocks b in order of the partials, for
// flat indices [e0, e1) of [Fin, K, Fout].
inline void ReduceKernelGradient(const ChebConvShape& c, const float* partial, int64_t blocks,
                                 float* dkernel, int64_t e0, int64_t e1) {
  const int64_t per_block = c.order * c.fin * c.fout;
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t o = e % c.fout, k = (e / c.fout) % c.order, i = e / (c.fout * c.order);
    const int64_t src = (k * c.fin + i) * c.fout + o;
    float sum = 0.0f;
    for (int64_t b = 0; b < blocks; ++b) sum += partial[b * per_block + src];
    dkernel[e] = sum;
  }
}

}  // namespace gcn_face

#endif  // GCN_FACE_KERNELS_CHEBYSHEV_H_
