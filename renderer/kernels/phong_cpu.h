// CPU drivers of the Phong shading as the op kernels call them: the AVX2
// drivers (phong_avx2.h) where the CPU has AVX2, else the baseline ones
// (phong_core.h); both give the same bits. Per-thread scratch comes from
// PhongScratch.
#ifndef RENDERER_KERNELS_PHONG_CPU_H_
#define RENDERER_KERNELS_PHONG_CPU_H_

#include <cstdint>
#include <vector>

#include "renderer/kernels/phong_avx2.h"
#include "renderer/kernels/phong_core.h"

namespace renderer {

// n default-initialised T (trivial types) at a 32-byte aligned address
// (std::vector does not align the AVX2 types in every build).
template <typename T>
class AlignedArray {
 public:
  void resize(size_t n) {
    storage_.assign(n * sizeof(T) + kAlign, 0);
    const uintptr_t address = reinterpret_cast<uintptr_t>(storage_.data());
    data_ = reinterpret_cast<T*>((address + kAlign - 1) / kAlign * kAlign);
  }
  T* data() { return data_; }

 private:
  static constexpr uintptr_t kAlign = 32;
  std::vector<unsigned char> storage_;
  T* data_ = nullptr;
};

// Per-thread scratch of the row drivers for L lights.
class PhongScratch {
 public:
  explicit PhongScratch(int light_count)
      : lights_(light_count),
        lane_sums_(8 * ImageGradSize(light_count)) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
    if (CpuHasAvx2()) {
      lights8_.resize(light_count);
      lane_sums8_.resize(ImageGradSize(light_count));
    }
#endif
  }

  // Shades one row (ShadeRowBaseline).
  template <int kChannels>
  void ShadeRow(const ShadingVertices<const float>& vertices, const int32_t* triangles,
                const int32_t* ids, const float* bary, int64_t width, const PhongImage& image,
                float* rgba) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
    if (CpuHasAvx2()) {
      ShadeRowAvx2<kChannels>(vertices, triangles, ids, bary, width, image, lights8_.data(),
                              rgba);
      return;
    }
#endif
    ShadeRowBaseline<kChannels>(vertices, triangles, ids, bary, width, image, lights_.data(),
                                rgba);
  }

  // Gradient of one row (ShadeRowBackwardBaseline); row_sums has
  // ImageGradSize(L) floats.
  template <int kChannels>
  void ShadeRowBackward(const ShadingVertices<const float>& vertices, const int32_t* triangles,
                        const int32_t* ids, const float* bary, const float* d_rgba,
                        int64_t width, const PhongImage& image,
                        const ShadingVertices<float>& d_vertices, float* d_bary,
                        float* row_sums) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
    if (CpuHasAvx2()) {
      ShadeRowBackwardAvx2<kChannels>(vertices, triangles, ids, bary, d_rgba, width, image,
                                      lights8_.data(), d_vertices, d_bary, lane_sums8_.data(),
                                      row_sums);
      return;
    }
#endif
    ShadeRowBackwardBaseline<kChannels>(vertices, triangles, ids, bary, d_rgba, width, image,
                                        lights_.data(), d_vertices, d_bary, lane_sums_.data(),
                                        row_sums);
  }

 private:
  std::vector<LightTerms<float>> lights_;
  std::vector<float> lane_sums_;
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  AlignedArray<LightTerms<Float8>> lights8_;
  AlignedArray<Float8> lane_sums8_;
#endif
};

}  // namespace renderer

#endif  // RENDERER_KERNELS_PHONG_CPU_H_
