// Run-time instruction-set dispatch shared by the face kernels: bodies are
// written once as always-inline functions and instantiated in a baseline
// function and an AVX2 one (target attribute), chosen by CpuHasAvx2(); the
// detection and the AVX2 moves of arrays of 3-vectors are the renderer's
// (renderer/kernels/simd_x86.h).
#ifndef DEEP3DFACE_KERNELS_SIMD_DISPATCH_H_
#define DEEP3DFACE_KERNELS_SIMD_DISPATCH_H_

#include "renderer/kernels/simd_x86.h"

#define DEEP3D_ALWAYS_INLINE inline __attribute__((always_inline))

namespace deep3dface {

using ::renderer::CpuHasAvx2;
#if defined(RENDERER_CPU_AVX2_DISPATCH)
using ::renderer::Interleave3x8;
using ::renderer::Load3x8;
using ::renderer::Store3x8;
#endif

}  // namespace deep3dface

#endif  // DEEP3DFACE_KERNELS_SIMD_DISPATCH_H_
