// x86 SIMD support shared by the CPU kernels of both op libraries (renderer
// and deep3dface): run-time AVX2 detection and the AVX2 moves of 8
// consecutive 3-vectors (24 floats) in and out of per-component registers.
// Framework-free; the AVX2 parts exist only in x86-64 GCC/Clang host builds
// (RENDERER_CPU_AVX2_DISPATCH), where functions with target("avx2") are
// chosen at run time by CpuHasAvx2().
#ifndef RENDERER_KERNELS_SIMD_X86_H_
#define RENDERER_KERNELS_SIMD_X86_H_

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define RENDERER_CPU_AVX2_DISPATCH 1
#include <immintrin.h>
#endif

namespace renderer {

// Whether the CPU runs AVX2 (checked once); false off x86-64.
inline bool CpuHasAvx2() {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
#else
  return false;
#endif
}

#if defined(RENDERER_CPU_AVX2_DISPATCH)
// Blend masks (bit i: lane i from the second operand) and lane orders that
// convert 8 consecutive 3-vectors (three registers a, b, c) into x, y, z
// registers and back: vector 0 sits in lanes 0, 3, 6 of a, 1, 4, 7 of b and
// 2, 5 of c.
constexpr int kLanes147 = 0x92, kLanes25 = 0x24, kLanes036 = 0x49;

__attribute__((target("avx2"))) inline void Load3x8(const float* p, __m256* x, __m256* y,
                                                    __m256* z) {
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8), c = _mm256_loadu_ps(p + 16);
  *x = _mm256_permutevar8x32_ps(
      _mm256_blend_ps(_mm256_blend_ps(a, b, kLanes147), c, kLanes25),
      _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5));
  *y = _mm256_permutevar8x32_ps(
      _mm256_blend_ps(_mm256_blend_ps(a, b, kLanes25), c, kLanes036),
      _mm256_setr_epi32(1, 4, 7, 2, 5, 0, 3, 6));
  *z = _mm256_permutevar8x32_ps(
      _mm256_blend_ps(_mm256_blend_ps(a, b, kLanes036), c, kLanes147),
      _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7));
}

// The three registers of 8 consecutive 3-vectors from their x, y, z.
__attribute__((target("avx2"))) inline void Interleave3x8(__m256 x, __m256 y, __m256 z,
                                                          __m256 out[3]) {
  const __m256 tx = _mm256_permutevar8x32_ps(x, _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5));
  const __m256 ty = _mm256_permutevar8x32_ps(y, _mm256_setr_epi32(5, 0, 3, 6, 1, 4, 7, 2));
  const __m256 tz = _mm256_permutevar8x32_ps(z, _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7));
  out[0] = _mm256_blend_ps(_mm256_blend_ps(tx, ty, kLanes147), tz, kLanes25);
  out[1] = _mm256_blend_ps(_mm256_blend_ps(tx, ty, kLanes25), tz, kLanes036);
  out[2] = _mm256_blend_ps(_mm256_blend_ps(tx, ty, kLanes036), tz, kLanes147);
}

__attribute__((target("avx2"))) inline void Store3x8(float* p, __m256 x, __m256 y, __m256 z) {
  __m256 out[3];
  Interleave3x8(x, y, z, out);
  for (int i = 0; i < 3; ++i) _mm256_storeu_ps(p + 8 * i, out[i]);
}
#endif  // RENDERER_CPU_AVX2_DISPATCH

}  // namespace renderer

#endif  // RENDERER_KERNELS_SIMD_X86_H_
