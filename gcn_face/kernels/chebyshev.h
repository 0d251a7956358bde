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
// The recursion's steps are sparse passes over the rows; the dense work is one
// product per block of kBlockRows vertices over all K terms at once (y or dx
// written once, x read once), so the products are wide enough for the SIMD tiles.
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
constexpr int64_t kVectorFloats = 16;  // floats per AVX-512 vector

// Instruction sets the kernels may use (ops' `simd` and `avx512` attributes, for tests):
// the portable C++ only, up to AVX2 + FMA, or the best the CPU has (AVX-512F).
constexpr int kSimdPortable = 0, kSimdAvx2 = 1, kSimdBest = 2;

// S [rows, cols] in CSR form: row r holds entries row_ptr[r] .. row_ptr[r + 1].
struct Csr {
  int64_t rows = 0;
  int64_t cols = 0;
  const int32_t* row_ptr = nullptr;
  const int32_t* col = nullptr;
  const float* val = nullptr;
  int simd = kSimdBest;  // the widest instruction set allowed (and the CPU has)
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

// What a row sum becomes before it is stored: (plus + scale * sum) - minus, plus and
// minus optional (the matching rows of other operands; plus may be the output itself).
struct Epilogue {
  const float* plus = nullptr;
  float scale = 1.0f;
  const float* minus = nullptr;

  float Apply(float sum, int64_t j) const {
    float v = scale == 1.0f ? sum : scale * sum;
    if (plus) v = plus[j] + v;
    return minus ? v - minus[j] : v;
  }
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
// AVX-512: 64 columns at a time in four accumulators, then 16 (the last masked); the
// epilogue applied in registers (the same operations as Epilogue::Apply).
__attribute__((target("avx512f"))) inline __m512 ApplyAvx512(const Epilogue& e, __m512 sum,
                                                             int64_t j, __mmask16 mask) {
  if (e.scale != 1.0f) sum = _mm512_mul_ps(_mm512_set1_ps(e.scale), sum);
  if (e.plus) sum = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, e.plus + j), sum);
  if (e.minus) sum = _mm512_sub_ps(sum, _mm512_maskz_loadu_ps(mask, e.minus + j));
  return sum;
}

__attribute__((target("avx512f"))) inline void CombineAvx512(const Terms& t, int64_t width,
                                                             float* out,
                                                             const Epilogue& e = Epilogue()) {
  int64_t c = 0;
  const __mmask16 all = 0xffff;
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
    _mm512_storeu_ps(out + c, ApplyAvx512(e, a0, c, all));
    _mm512_storeu_ps(out + c + 16, ApplyAvx512(e, a1, c + 16, all));
    _mm512_storeu_ps(out + c + 32, ApplyAvx512(e, a2, c + 32, all));
    _mm512_storeu_ps(out + c + 48, ApplyAvx512(e, a3, c + 48, all));
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
    _mm512_mask_storeu_ps(out + c, mask, ApplyAvx512(e, a0, c, mask));
  }
}

#endif

// Whether the AVX-512 instances run (`simd` and the CPU has AVX-512F, checked once).
inline bool UseAvx512(int simd) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  static const bool has = __builtin_cpu_supports("avx512f");
  return simd >= kSimdBest && has;
#else
  return false;
#endif
}

// Whether the AVX2 + FMA instances run: `simd` (an op attribute, for tests) and the CPU
// has both (checked once).
inline bool UseAvx2(int simd) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  static const bool has = ::renderer::CpuHasAvx2() && __builtin_cpu_supports("fma");
  return simd >= kSimdAvx2 && has;
#else
  return false;
#endif
}

inline void Combine(const Terms& t, int64_t width, float* out, int simd) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (UseAvx512(simd)) return CombineAvx512(t, width, out);
  if (UseAvx2(simd)) return CombineAvx2(t, width, out);
#endif
  CombineBase(t, width, out);
}

// A small dense product C = A B (or C += A B): C[r, j] for r < rows, j < cols.
// A[r, p] = a[r * a_row + p * a_depth] (either layout), B[p, j] = b[p * ldb + j],
// C[r, j] = c[r * ldc + j]. The depth may come in `parts` pieces (a sum of products
// A_s B_s, e.g. the K terms of a Chebyshev sum): piece s reads A from a_parts[s] (same
// strides) and B from b + s * b_part. Each C[r, j] is summed from 0 over the pieces in
// order and p < depth in p order, then added to C; FMA in the SIMD instances (the
// AVX2 one adds piece by piece into C).
struct Gemm {
  const float* a;
  int64_t a_row, a_depth;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  int64_t rows, cols, depth;
  bool accumulate;
  int64_t parts = 1;
  const float* const* a_parts = nullptr;  // parts > 1: the pieces' A
  int64_t b_part = 0;
  // Or (parts == 1) columns in pieces of col_width w: B[p, j] = b_cols[j / w][p * ldb + j % w]
  // and/or C[r, j] = c_cols[j / w][r * ldc + j % w]; the SIMD instances need w % kVectorFloats == 0.
  const float* const* b_cols = nullptr;
  float* const* c_cols = nullptr;
  int64_t col_width = 0;

  const float* PartA(int64_t s) const { return parts == 1 ? a : a_parts[s]; }
  // Piece s alone, added to C when `add`.
  Gemm Part(int64_t s, bool add) const {
    return Gemm{PartA(s), a_row, a_depth, b + s * b_part, ldb, c, ldc, rows, cols, depth, add};
  }
  const float* ColumnB(int64_t s, int64_t j) const {
    return b_cols ? b_cols[j / col_width] + j % col_width : b + s * b_part + j;
  }
  float* AtC(int64_t r, int64_t j) const {
    return c_cols ? c_cols[j / col_width] + r * ldc + j % col_width : c + r * ldc + j;
  }
};

inline void GemmBase(const Gemm& g) {
  for (int64_t r = 0; r < g.rows; ++r) {
    for (int64_t j = 0; j < g.cols; ++j) {
      float sum = 0.0f;
      for (int64_t s = 0; s < g.parts; ++s) {
        const float* a = g.PartA(s) + r * g.a_row;
        const float* b = g.ColumnB(s, j);
        for (int64_t p = 0; p < g.depth; ++p) sum += a[p * g.a_depth] * b[p * g.ldb];
      }
      float& out = *g.AtC(r, j);
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
__attribute__((target("avx2,fma"))) inline void GemmAvx2Part(const Gemm& g) {
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

__attribute__((target("avx2,fma"))) inline void GemmAvx2(const Gemm& g) {
  for (int64_t s = 0; s < g.parts; ++s) GemmAvx2Part(g.Part(s, g.accumulate || s > 0));
}
#endif

#if defined(RENDERER_CPU_AVX2_DISPATCH)
// AVX-512: MR rows x NV vectors of 16 columns from column j (the last vector masked),
// MR * NV independent accumulators to hide the FMA latency.
template <int MR, int NV>
__attribute__((target("avx512f"))) inline void TileAvx512(const Gemm& g, int64_t r, int64_t j,
                                                          __mmask16 last) {
  const int64_t a_row = g.a_row, a_depth = g.a_depth, ldb = g.ldb, depth = g.depth;
  __m512 acc[MR][NV];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  }
  for (int64_t s = 0; s < g.parts; ++s) {
    const float* a = g.PartA(s) + r * a_row;
    const float* b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = g.ColumnB(s, j + 16 * v);
    for (int64_t p = 0; p < depth; ++p, a += a_depth) {
      __m512 bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        bv[v] = v + 1 < NV ? _mm512_loadu_ps(b[v]) : _mm512_maskz_loadu_ps(last, b[v]);
        b[v] += ldb;
      }
#pragma GCC unroll 12
      for (int i = 0; i < MR; ++i) {
        const __m512 av = _mm512_set1_ps(a[i * a_row]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
      }
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* out = g.AtC(r + i, j + 16 * v);
      const __mmask16 mask = v + 1 < NV ? static_cast<__mmask16>(0xffff) : last;
      __m512 value = acc[i][v];
      if (g.accumulate) value = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), value);
      _mm512_mask_storeu_ps(out, mask, value);
    }
  }
}

// Rows MR at a time, then 8 (after 12), 4 and 1, for one strip of NV vectors.
template <int MR, int NV>
__attribute__((target("avx512f"))) inline void StripAvx512(const Gemm& g, int64_t j,
                                                           __mmask16 last) {
  int64_t r = 0;
  for (; r + MR <= g.rows; r += MR) TileAvx512<MR, NV>(g, r, j, last);
  if (MR > 8 && r + 8 <= g.rows) TileAvx512<8, NV>(g, r, j, last), r += 8;
  for (; r + 4 <= g.rows; r += 4) TileAvx512<4, NV>(g, r, j, last);
  for (; r < g.rows; ++r) TileAvx512<1, NV>(g, r, j, last);
}

// Strips of up to 64 columns (24 accumulators for 2 to 4 vectors, 12 for one).
__attribute__((target("avx512f"))) inline void GemmAvx512(const Gemm& g) {
  for (int64_t j = 0; j < g.cols; j += 64) {
    const int64_t width = std::min<int64_t>(g.cols - j, 64), vectors = (width + 15) / 16;
    const __mmask16 last = static_cast<__mmask16>((1u << (width - 16 * (vectors - 1))) - 1u);
    switch (vectors) {
      case 1: StripAvx512<12, 1>(g, j, last); break;
      case 2: StripAvx512<12, 2>(g, j, last); break;
      case 3: StripAvx512<8, 3>(g, j, last); break;
      default: StripAvx512<6, 4>(g, j, last); break;
    }
  }
}

#endif

inline void RunGemm(const Gemm& g, int simd) {
  if ((g.b_cols || g.c_cols) && (g.col_width % kVectorFloats != 0 || !UseAvx512(simd))) {
    for (int64_t j = 0; j < g.cols; j += g.col_width) {  // column piece by piece
      RunGemm(Gemm{g.a, g.a_row, g.a_depth, g.ColumnB(0, j), g.ldb, g.AtC(0, j), g.ldc, g.rows,
                   std::min(g.col_width, g.cols - j), g.depth, g.accumulate},
              simd);
    }
    return;
  }
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

// out[r] = the epilogue of (S src)[r] (width floats per row; e's rows are row r's).
// `scratch` (width floats) holds the sum first where it is not kept in registers.
inline void SparseRowInto(const Csr& s, int64_t r, const float* src, int64_t width,
                          const Epilogue& e, float* out, float* scratch) {
  float* dst = out + r * width;
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (UseAvx512(s.simd)) return CombineAvx512(SparseRow(s, r, src, width), width, dst, e);
#endif
  Combine(SparseRow(s, r, src, width), width, scratch, s.simd);
  for (int64_t j = 0; j < width; ++j) dst[j] = e.Apply(scratch[j], j);
}

inline int64_t NumBlocks(int64_t rows) { return (rows + kBlockRows - 1) / kBlockRows; }

// Rows [r0, r1) of block b.
inline int64_t BlockBegin(int64_t b) { return b * kBlockRows; }
inline int64_t BlockEnd(const ChebConvShape& c, int64_t b) {
  return std::min(c.m, (b + 1) * kBlockRows);
}

// Step k >= 1 of the recursion on the rows of blocks [b0, b1), width floats per row:
// terms[k] = S terms[k - 1] (k == 1) or 2 S terms[k - 1] - terms[k - 2]; out == terms[k].
inline void RecursionStep(const Csr& s, int64_t k, const float* const* terms, float* out,
                          int64_t width, int64_t b0, int64_t b1) {
  std::vector<float> scratch(width);
  const int64_t r1 = std::min(s.rows, BlockBegin(b1));
  for (int64_t r = BlockBegin(b0); r < r1; ++r) {
    Epilogue e;
    if (k >= 2) e = Epilogue{nullptr, 2.0f, terms[k - 2] + r * width};
    SparseRowInto(s, r, terms[k - 1], width, e, out, scratch.data());
  }
}

// packed[q, k * width + j] = pieces[k][q * width + j] for q < rows, k < count, j < width.
inline void Pack(const float* const* pieces, int64_t rows, int64_t count, int64_t width,
                 float* packed) {
  for (int64_t q = 0; q < rows; ++q) {
    for (int64_t k = 0; k < count; ++k) {
      std::copy_n(pieces[k] + q * width, width, packed + (q * count + k) * width);
    }
  }
}

// The inverse: pieces[k][q * width + j] = packed[q, k * width + j].
inline void Unpack(const float* packed, int64_t rows, int64_t count, int64_t width,
                   float* const* pieces) {
  for (int64_t q = 0; q < rows; ++q) {
    for (int64_t k = 0; k < count; ++k) {
      std::copy_n(packed + (q * count + k) * width, width, pieces[k] + q * width);
    }
  }
}

// Forward, recursion form (Fin <= Fout), after the steps: y = sum_k t_k W_k for the rows of
// blocks [b0, b1), one product over the K terms per block (terms[k] = t_k, [M, N, Fin]).
inline void ForwardProducts(const ChebConvShape& c, const float* const* terms,
                            const float* kernel, float* y, int64_t b0, int64_t b1, int simd) {
  std::vector<const float*> parts(c.order);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t r0 = BlockBegin(b), r1 = BlockEnd(c, b);
    for (int64_t k = 0; k < c.order; ++k) parts[k] = terms[k] + r0 * c.n * c.fin;
    Gemm g{parts[0], c.fin, 1, kernel, c.order * c.fout, y + r0 * c.n * c.fout, c.fout,
           (r1 - r0) * c.n, c.fout, c.fin, false};
    g.parts = c.order;
    g.a_parts = parts.data();
    g.b_part = c.fout;
    RunGemm(g, simd);
  }
}

// Forward, Clenshaw form (Fin > Fout): b_{K-1} = x W_{K-1}, then for k = K-2 .. 0
//   b_k = (x W_k + 2 S b_{k+1}) - b_{k+2}   (k == 0: S, not 2 S; b_0 = y; b_K = 0 absent).
// First the products P_k = x W_k for all k, one per block, into outs[k] (outs[0] = y,
// outs[k] the buffer of b_k), rows of blocks [b0, b1).
inline void ClenshawProducts(const ChebConvShape& c, const float* x, const float* kernel,
                             float* const* outs, int64_t b0, int64_t b1, int simd) {
  std::vector<float*> pieces(c.order);
  // Fout not a multiple of a vector: one contiguous [rows, K * Fout] product, then copied out (a
  // few wide SIMD columns instead of K narrow ones).
  const bool packed = c.fout % kVectorFloats != 0 && c.order > 1;
  std::vector<float> scratch(packed ? kBlockRows * c.n * c.order * c.fout : 0);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t r0 = BlockBegin(b), r1 = BlockEnd(c, b), rows = (r1 - r0) * c.n;
    for (int64_t k = 0; k < c.order; ++k) pieces[k] = outs[k] + r0 * c.n * c.fout;
    Gemm g{x + r0 * c.n * c.fin, c.fin, 1, kernel, c.order * c.fout, scratch.data(),
           c.order * c.fout, rows, c.order * c.fout, c.fin, false};
    if (!packed) {
      g.c_cols = pieces.data();
      g.col_width = c.fout;
      g.ldc = c.fout;
    }
    RunGemm(g, simd);
    if (packed) Unpack(scratch.data(), rows, c.order, c.fout, pieces.data());
  }
}

// Then step k (K-2 .. 0) on the rows of blocks [b0, b1): outs[k] (holding P_k) becomes b_k.
inline void ClenshawStep(const ChebConvShape& c, const Csr& s, int64_t k, float* const* outs,
                         int64_t b0, int64_t b1) {
  const int64_t width = c.n * c.fout;
  std::vector<float> scratch(width);
  const int64_t r1 = std::min(s.rows, BlockBegin(b1));
  for (int64_t r = BlockBegin(b0); r < r1; ++r) {
    const Epilogue e{outs[k] + r * width, k == 0 ? 1.0f : 2.0f,
                     k + 2 <= c.order - 1 ? outs[k + 2] + r * width : nullptr};
    SparseRowInto(s, r, outs[k + 1], width, e, outs[k], scratch.data());
  }
}

// Backward, after the steps (terms[k] = u_k = T_k(S^T) dy, [M, N, Fout]), for the rows of
// blocks [b0, b1): dx = sum_k u_k W_k^T (one product over the K terms), and block b's
// partial dW = x_b^T [u_0, .., u_{K-1}]_b at partial + b * K * Fin * Fout, laid out like
// the kernel ([Fin, K, Fout]). kernel_t [K, Fout, Fin] is the kernel transposed.
inline void BackwardProducts(const ChebConvShape& c, const float* const* terms,
                             const float* x, const float* kernel_t, float* dx, float* partial,
                             int64_t b0, int64_t b1, int simd) {
  std::vector<const float*> parts(c.order);
  const int64_t width = c.order * c.fout;
  // Fout not a multiple of a vector: the block's terms side by side, [rows, K * Fout], first.
  const bool packed = c.fout % kVectorFloats != 0 && c.order > 1;
  std::vector<float> scratch(packed ? kBlockRows * c.n * width : 0);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t r0 = BlockBegin(b), r1 = BlockEnd(c, b), rows = (r1 - r0) * c.n;
    for (int64_t k = 0; k < c.order; ++k) parts[k] = terms[k] + r0 * c.n * c.fout;
    Gemm to_dx{parts[0], c.fout, 1, kernel_t, c.fin, dx + r0 * c.n * c.fin, c.fin, rows, c.fin,
               c.fout, false};
    Gemm to_dw{x + r0 * c.n * c.fin, 1, c.fin, scratch.data(), width,
               partial + b * c.order * c.fin * c.fout, width, c.fin, width, rows, false};
    if (packed) {
      Pack(parts.data(), rows, c.order, c.fout, scratch.data());
      to_dx.a = scratch.data();
      to_dx.a_row = width;
      to_dx.depth = width;
    } else {
      to_dx.parts = c.order;
      to_dx.a_parts = parts.data();
      to_dx.b_part = c.fout * c.fin;
      to_dw.b_cols = parts.data();
      to_dw.col_width = c.fout;
      to_dw.ldb = c.fout;
    }
    RunGemm(to_dx, simd);
    RunGemm(to_dw, simd);
  }
}

// dkernel[e] = sum over blocks b in order of partial[b][e], for flat indices [e0, e1).
inline void ReduceKernelGradient(const ChebConvShape& c, const float* partial, int64_t blocks,
                                 float* dkernel, int64_t e0, int64_t e1) {
  const int64_t per_block = c.order * c.fin * c.fout;
  for (int64_t e = e0; e < e1; ++e) {
    float sum = 0.0f;
    for (int64_t b = 0; b < blocks; ++b) sum += partial[b * per_block + e];
    dkernel[e] = sum;
  }
}

}  // namespace gcn_face

#endif  // GCN_FACE_KERNELS_CHEBYSHEV_H_
