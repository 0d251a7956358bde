// Run-time instruction-set dispatch shared by the face kernels: bodies are
// written once as always-inline functions and instantiated in a baseline
// function and an AVX2 one (target attribute), chosen by HasAvx2().
#ifndef DEEP3DFACE_KERNELS_SIMD_DISPATCH_H_
#define DEEP3DFACE_KERNELS_SIMD_DISPATCH_H_

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DEEP3D_X86_DISPATCH 1
#endif

#define DEEP3D_ALWAYS_INLINE inline __attribute__((always_inline))

namespace deep3dface {

// Whether the CPU runs AVX2 (checked once); false off x86-64.
inline bool HasAvx2() {
#if defined(DEEP3D_X86_DISPATCH)
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
#else
  return false;
#endif
}

}  // namespace deep3dface

#endif  // DEEP3DFACE_KERNELS_SIMD_DISPATCH_H_
