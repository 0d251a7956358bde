// CPU drivers of the rasterizer as the op kernels call them: the AVX2 drivers
// (rasterizer_avx2.h) where the CPU has AVX2, else the baseline ones
// (rasterizer_core.h); both give the same bits.
#ifndef RENDERER_KERNELS_RASTERIZER_CPU_H_
#define RENDERER_KERNELS_RASTERIZER_CPU_H_

#include "renderer/kernels/rasterizer_avx2.h"
#include "renderer/kernels/rasterizer_core.h"

namespace renderer {

// bounds[v] = VertexPixelBounds(clip + 4 v) for v in [begin, end).
inline void ProjectVertexBounds(const float* clip, int64_t begin, int64_t end, int width,
                                int height, PixelBounds* bounds) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (CpuHasAvx2()) {
    const int64_t simd_end = begin + (end - begin) / 8 * 8;
    ProjectVertexBoundsAvx2(clip, begin, simd_end, width, height, bounds);
    begin = simd_end;
  }
#endif
  ProjectVertexBoundsBaseline(clip, begin, end, width, height, bounds);
}

// Rasterizes all triangles, in index order, into rows [row_begin, row_end) of
// one image: RasterizeRowsAvx2 where the CPU has AVX2, else the baseline.
inline void RasterizeRows(const float* clip, const PixelBounds* bounds,
                          const int32_t* triangles, int64_t triangle_count, int width,
                          int height, int row_begin, int row_end, int32_t* ids,
                          float* bary, float* depth) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (CpuHasAvx2()) {
    RasterizeRowsAvx2(clip, bounds, triangles, triangle_count, width, height, row_begin,
                      row_end, ids, bary, depth);
    return;
  }
#endif
  RasterizeRowsBaseline(clip, bounds, triangles, triangle_count, width, height, row_begin,
                        row_end, ids, bary, depth);
}

// Accumulates d f / d clip for one image into dclip [V, 4] (z stays 0), in
// pixel order, so the sum is deterministic: the AVX2 driver where the CPU has
// it, else the baseline.
inline void RasterizeBackwardImage(const float* clip, const int32_t* triangles,
                                   const int32_t* ids, const float* bary,
                                   const float* df_dbary, int width, int height,
                                   float* dclip) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (CpuHasAvx2()) {
    RasterizeBackwardImageAvx2(clip, triangles, ids, bary, df_dbary, width, height, dclip);
    return;
  }
#endif
  RasterizeBackwardImageBaseline(clip, triangles, ids, bary, df_dbary, width, height, dclip);
}

// InterpolatePixels*<kChannels> for pixels [begin, end) of one image, with
// the channel count dispatched to a compile-time constant where common; the
// AVX2 driver from 8 channels on (the baseline is as fast below that).
inline void InterpolatePixels(const float* attr, int channels, const int32_t* triangles,
                              const int32_t* ids, const float* bary, const float* background,
                              int64_t begin, int64_t end, float* out) {
  DispatchChannels(channels, [&](auto k) {
    constexpr int kChannels = decltype(k)::value;
#if defined(RENDERER_CPU_AVX2_DISPATCH)
    if (channels >= 8 && CpuHasAvx2()) {
      InterpolatePixelsAvx2<kChannels>(attr, channels, triangles, ids, bary, background, begin,
                                       end, out);
      return;
    }
#endif
    InterpolatePixelsBaseline<kChannels>(attr, channels, triangles, ids, bary, background,
                                         begin, end, out);
  });
}

// InterpolateBackward*<kChannels> for one image (see InterpolateBackwardBaseline).
inline void InterpolateBackward(const float* attr, int channels, const int32_t* triangles,
                                const int32_t* ids, const float* bary, const float* df_dout,
                                int64_t pixel_count, float* df_dbary, float* df_dattr,
                                float* df_dbackground) {
  DispatchChannels(channels, [&](auto k) {
    constexpr int kChannels = decltype(k)::value;
#if defined(RENDERER_CPU_AVX2_DISPATCH)
    if (channels >= 8 && CpuHasAvx2()) {
      InterpolateBackwardAvx2<kChannels>(attr, channels, triangles, ids, bary, df_dout,
                                         pixel_count, df_dbary, df_dattr, df_dbackground);
      return;
    }
#endif
    InterpolateBackwardBaseline<kChannels>(attr, channels, triangles, ids, bary, df_dout,
                                           pixel_count, df_dbary, df_dattr, df_dbackground);
  });
}

}  // namespace renderer

#endif  // RENDERER_KERNELS_RASTERIZER_CPU_H_
