// Framework-free core of the morphable model's linear bases:
//   out[b, r] = mean[r] + sum_k basis[r, k] * coeff[b, k]        (forward)
//   dcoeff[b, k] = sum_r grad[b, r] * basis[r, k]                (gradient)
// with basis [R, K] row-major (BFM09: R = 3 x 35,709 rows, K = 80 + 64 or 80).
//
// Why a custom kernel: for a batch of a few faces the product is memory-bound
// (the bases are ~96 MB of float32 per face formation), and a GEMM packs
// blocks of the basis before multiplying, reading it more than once. These
// loops read every basis row exactly once per call.
//
// Every sum has a fixed order that does not depend on the instruction set or
// the thread count: dot products use kLanes partial sums (lane l takes
// k = l mod kLanes) added pairwise at the end, and the gradient adds fixed
// blocks of rows in block order. The bodies are compiled twice (AVX2 and
// baseline, chosen at run time) from the same source and, with
// -ffp-contract=off, give bit-identical results.
#ifndef DEEP3DFACE_KERNELS_LINEAR_BASIS_H_
#define DEEP3DFACE_KERNELS_LINEAR_BASIS_H_

#include <cstdint>

#include "deep3dface/kernels/simd_dispatch.h"

namespace deep3dface {

constexpr int kLanes = 8;               // partial sums per dot product (one AVX register)
constexpr int64_t kGradBlockRows = 2048;  // rows per gradient block (fixed: determinism)
// How far ahead of the row being read the basis is prefetched (4 KB, ~7 BFM
// rows): measured 12.5 -> 16 GB/s on one core, 20 -> 25 GB/s on two.
constexpr int64_t kPrefetchFloats = 1024;

// Prefetches the basis row kPrefetchFloats after `row` (k_count floats) if it
// lies inside basis[0, end). Prefetching changes no result.
DEEP3D_ALWAYS_INLINE void PrefetchAhead(const float* row, int k_count, const float* end) {
  if (end - row < kPrefetchFloats + k_count) return;
  for (int k = 0; k < k_count; k += 16) __builtin_prefetch(row + kPrefetchFloats + k);
}

// sum_k a[k] * c[k] over kLanes interleaved partial sums, combined pairwise.
DEEP3D_ALWAYS_INLINE float LaneDot(const float* a, const float* c, int k_count) {
  float acc[kLanes] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  int k = 0;
  for (; k + kLanes <= k_count; k += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += a[k + l] * c[k + l];
  }
  for (int l = 0; k < k_count; ++k, ++l) acc[l] += a[k] * c[k];
  const float s01 = acc[0] + acc[1], s23 = acc[2] + acc[3];
  const float s45 = acc[4] + acc[5], s67 = acc[6] + acc[7];
  return (s01 + s23) + (s45 + s67);
}

// out[b * rows + r] for r in [r_begin, r_end), every b.
DEEP3D_ALWAYS_INLINE void CombineRowsBody(const float* mean, const float* basis,
                                          const float* coeff, int64_t batch, int64_t rows,
                                          int k_count, int64_t r_begin, int64_t r_end,
                                          float* out) {
  for (int64_t r = r_begin; r < r_end; ++r) {
    const float* a = basis + r * k_count;
    for (int64_t b = 0; b < batch; ++b) {
      out[b * rows + r] = mean[r] + LaneDot(a, coeff + b * k_count, k_count);
    }
  }
}

// partial[b * K + k] = sum over r in [r_begin, r_end) of grad[b, r] * basis[r, k],
// rows added in increasing order.
DEEP3D_ALWAYS_INLINE void CoefficientGradBody(const float* basis, const float* grad,
                                              int64_t batch, int64_t rows, int k_count,
                                              int64_t r_begin, int64_t r_end,
                                              float* partial) {
  for (int64_t i = 0; i < batch * k_count; ++i) partial[i] = 0.0f;
  for (int64_t r = r_begin; r < r_end; ++r) {
    const float* a = basis + r * k_count;
    PrefetchAhead(a, k_count, basis + r_end * k_count);
    for (int64_t b = 0; b < batch; ++b) {
      const float g = grad[b * rows + r];
      float* p = partial + b * k_count;
      for (int k = 0; k < k_count; ++k) p[k] += g * a[k];
    }
  }
}

#if defined(RENDERER_CPU_AVX2_DISPATCH)

// Lane sums of four accumulators, as LaneDot combines them: element i is
// ((v_i[0] + v_i[1]) + (v_i[2] + v_i[3])) + ((v_i[4] + v_i[5]) + (v_i[6] + v_i[7])).
__attribute__((target("avx2"))) inline __m128 ReduceFour(__m256 v0, __m256 v1, __m256 v2,
                                                         __m256 v3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// One row for up to four images: each basis vector is loaded once and used
// for every image. Needs k_count % kLanes == 0. Same products and sums as
// LaneDot, so the same bits.
template <int kImages>
__attribute__((target("avx2"))) inline void CombineRowAvx2(const float* a, const float* coeff,
                                                           float mean, int64_t rows, int k_count,
                                                           float* out) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  for (int k = 0; k < k_count; k += kLanes) {
    const __m256 x = _mm256_loadu_ps(a + k);
    for (int b = 0; b < kImages; ++b) {
      acc[b] = _mm256_add_ps(acc[b], _mm256_mul_ps(x, _mm256_loadu_ps(coeff + b * k_count + k)));
    }
  }
  float sums[4];
  _mm_storeu_ps(sums, _mm_add_ps(_mm_set1_ps(mean), ReduceFour(acc[0], acc[1], acc[2], acc[3])));
  for (int b = 0; b < kImages; ++b) out[b * rows] = sums[b];
}

__attribute__((target("avx2"))) inline void CombineRowsAvx2(
    const float* mean, const float* basis, const float* coeff, int64_t batch, int64_t rows,
    int k_count, int64_t r_begin, int64_t r_end, float* out) {
  for (int64_t r = r_begin; r < r_end; ++r) {
    const float* a = basis + r * k_count;
    PrefetchAhead(a, k_count, basis + r_end * k_count);
    int64_t b = 0;
    for (; b + 4 <= batch; b += 4) {
      CombineRowAvx2<4>(a, coeff + b * k_count, mean[r], rows, k_count, out + b * rows + r);
    }
    const float* c = coeff + b * k_count;
    float* o = out + b * rows + r;
    switch (batch - b) {
      case 3: CombineRowAvx2<3>(a, c, mean[r], rows, k_count, o); break;
      case 2: CombineRowAvx2<2>(a, c, mean[r], rows, k_count, o); break;
      case 1: CombineRowAvx2<1>(a, c, mean[r], rows, k_count, o); break;
      default: break;
    }
  }
}
__attribute__((target("avx2"))) inline void CoefficientGradAvx2(
    const float* basis, const float* grad, int64_t batch, int64_t rows, int k_count,
    int64_t r_begin, int64_t r_end, float* partial) {
  CoefficientGradBody(basis, grad, batch, rows, k_count, r_begin, r_end, partial);
}
#endif

inline void CombineRows(const float* mean, const float* basis, const float* coeff,
                        int64_t batch, int64_t rows, int k_count, int64_t r_begin,
                        int64_t r_end, float* out, bool allow_simd = true) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (allow_simd && k_count % kLanes == 0 && CpuHasAvx2()) {
    return CombineRowsAvx2(mean, basis, coeff, batch, rows, k_count, r_begin, r_end, out);
  }
#endif
  CombineRowsBody(mean, basis, coeff, batch, rows, k_count, r_begin, r_end, out);
}

inline void CoefficientGrad(const float* basis, const float* grad, int64_t batch,
                            int64_t rows, int k_count, int64_t r_begin, int64_t r_end,
                            float* partial, bool allow_simd = true) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (allow_simd && CpuHasAvx2()) {
    return CoefficientGradAvx2(basis, grad, batch, rows, k_count, r_begin, r_end, partial);
  }
#endif
  CoefficientGradBody(basis, grad, batch, rows, k_count, r_begin, r_end, partial);
}

}  // namespace deep3dface

#endif  // DEEP3DFACE_KERNELS_LINEAR_BASIS_H_
