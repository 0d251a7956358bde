// Float8: 8 float lanes (AVX2) with the operators and functions the shading
// code (phong_core.h) is written in, so that one source computes a pixel
// (F = float) or 8 pixels (F = Float8) with the same IEEE operations per lane:
// + - * / and sqrt are correctly rounded in both; Min2/Max2 keep the scalar
// versions' operand order (x86 min/max return the second operand when the
// comparison is false, as `a < b ? a : b` does); comparisons are ordered,
// except !=, which is true for NaN as in C++; Pow and Log call powf and logf
// lane by lane. Used from target("avx2") functions marked flatten, which
// inline the generic code and these operators into AVX2 code.
#ifndef RENDERER_KERNELS_FLOAT8_AVX2_H_
#define RENDERER_KERNELS_FLOAT8_AVX2_H_

#include <cmath>

#include "renderer/kernels/simd_x86.h"

#if defined(RENDERER_CPU_AVX2_DISPATCH)

#define RENDERER_AVX2 __attribute__((target("avx2"))) inline

namespace renderer {

struct Mask8 {
  __m256 m;
};

struct Float8 {
  __m256 v;
  Float8() = default;
  RENDERER_AVX2 Float8(__m256 x) : v(x) {}                 // NOLINT: implicit
  RENDERER_AVX2 Float8(float x) : v(_mm256_set1_ps(x)) {}  // NOLINT: literals broadcast
};

RENDERER_AVX2 Float8 Load8(const float* p) { return _mm256_loadu_ps(p); }
RENDERER_AVX2 void Store8(float* p, Float8 x) { _mm256_storeu_ps(p, x.v); }

RENDERER_AVX2 Float8 operator+(Float8 a, Float8 b) { return _mm256_add_ps(a.v, b.v); }
RENDERER_AVX2 Float8 operator-(Float8 a, Float8 b) { return _mm256_sub_ps(a.v, b.v); }
RENDERER_AVX2 Float8 operator*(Float8 a, Float8 b) { return _mm256_mul_ps(a.v, b.v); }
RENDERER_AVX2 Float8 operator/(Float8 a, Float8 b) { return _mm256_div_ps(a.v, b.v); }
RENDERER_AVX2 Float8& operator+=(Float8& a, Float8 b) { return a = a + b; }
RENDERER_AVX2 Float8& operator-=(Float8& a, Float8 b) { return a = a - b; }

RENDERER_AVX2 Mask8 operator>=(Float8 a, Float8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
RENDERER_AVX2 Mask8 operator>(Float8 a, Float8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
RENDERER_AVX2 Mask8 operator<=(Float8 a, Float8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
RENDERER_AVX2 Mask8 operator!=(Float8 a, Float8 b) {
  return {_mm256_cmp_ps(a.v, b.v, _CMP_NEQ_UQ)};
}
RENDERER_AVX2 Mask8 operator&(Mask8 a, Mask8 b) { return {_mm256_and_ps(a.m, b.m)}; }
RENDERER_AVX2 Mask8 operator|(Mask8 a, Mask8 b) { return {_mm256_or_ps(a.m, b.m)}; }
RENDERER_AVX2 int Bits(Mask8 a) { return _mm256_movemask_ps(a.m); }  // bit l: lane l
RENDERER_AVX2 bool Any(Mask8 a) { return Bits(a) != 0; }

// The mask of lanes l with bit l set.
RENDERER_AVX2 Mask8 LaneMask(int bits) {
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i set = _mm256_and_si256(_mm256_set1_epi32(bits), lane_bit);
  return {_mm256_castsi256_ps(_mm256_cmpeq_epi32(set, lane_bit))};
}

// c ? a : b lane by lane.
RENDERER_AVX2 Float8 Select(Mask8 c, Float8 a, Float8 b) {
  return _mm256_blendv_ps(b.v, a.v, c.m);
}
RENDERER_AVX2 Float8 Sqrt(Float8 a) { return _mm256_sqrt_ps(a.v); }
RENDERER_AVX2 Float8 Min2(Float8 a, Float8 b) { return _mm256_min_ps(a.v, b.v); }
RENDERER_AVX2 Float8 Max2(Float8 a, Float8 b) { return _mm256_max_ps(a.v, b.v); }
RENDERER_AVX2 Float8 Clamp(Float8 v, Float8 lo, Float8 hi) { return Min2(Max2(v, lo), hi); }

RENDERER_AVX2 Float8 Pow(Float8 x, Float8 y) {
  alignas(32) float a[8], b[8];
  _mm256_store_ps(a, x.v);
  _mm256_store_ps(b, y.v);
  for (int l = 0; l < 8; ++l) a[l] = powf(a[l], b[l]);
  return _mm256_load_ps(a);
}

RENDERER_AVX2 Float8 Log(Float8 x) {
  alignas(32) float a[8];
  _mm256_store_ps(a, x.v);
  for (int l = 0; l < 8; ++l) a[l] = logf(a[l]);
  return _mm256_load_ps(a);
}

}  // namespace renderer

#undef RENDERER_AVX2

#endif  // RENDERER_CPU_AVX2_DISPATCH

#endif  // RENDERER_KERNELS_FLOAT8_AVX2_H_
