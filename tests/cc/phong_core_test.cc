// Checks of phong_core.h / phong_avx2.h that the TensorFlow-level tests cannot
// reach: the AVX2 row drivers of the shading (forward and gradient) against
// the baseline drivers, bit for bit (NaN compared as NaN), for 9, 12 and 13
// channels, 0 to 3 lights, row widths that are and are not multiples of 8,
// empty pixels, uncovered pixels (negative diffuse colours), zero normals,
// clamped dot products, zero gradients and a NaN vertex; and that the AVX2
// gather reads no float past the vertex arrays (they end at a page the
// process may not read).
// Exit status 0 on success; failures are printed one per line.
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "renderer/kernels/phong_cpu.h"

namespace {

int failures = 0;

// n floats ending exactly at a page that may not be read.
class GuardedArray {
 public:
  explicit GuardedArray(size_t n) : n_(n) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t bytes = (n * sizeof(float) + page - 1) / page * page;
    base_ = static_cast<char*>(
        mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    mprotect(base_ + bytes, page, PROT_NONE);
    size_ = bytes + page;
    data_ = reinterpret_cast<float*>(base_ + bytes) - n;
  }
  ~GuardedArray() { munmap(base_, size_); }
  GuardedArray(const GuardedArray&) = delete;
  GuardedArray& operator=(const GuardedArray&) = delete;
  float* data() { return data_; }
  size_t size() const { return n_; }

 private:
  size_t n_, size_;
  char* base_;
  float* data_;
};

bool SameBits(const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
  }
  return true;
}

void Report(bool same, const char* what, int channels, int lights, int width) {
  if (!same && ++failures <= 20) {
    std::printf("FAIL AVX2 %s != baseline: %d channels, %d lights, width %d\n", what, channels,
                lights, width);
  }
}

#if defined(RENDERER_CPU_AVX2_DISPATCH)
template <int kChannels>
void CheckDrivers(int lights, int width, int height, std::mt19937& rng) {
  using renderer::Float8;
  const int vertex_count = 40, triangle_count = 30;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), pos(0.05f, 1.0f);
  GuardedArray normals(3 * vertex_count), positions(3 * vertex_count), diffuse(3 * vertex_count),
      specular(3 * vertex_count), shininess(vertex_count);
  for (int v = 0; v < vertex_count; ++v) {
    for (int c = 0; c < 3; ++c) {
      normals.data()[3 * v + c] = u(rng);
      positions.data()[3 * v + c] = 0.3f * u(rng);
      diffuse.data()[3 * v + c] = v % 7 == 1 ? -0.5f : pos(rng);  // some uncovered pixels
      specular.data()[3 * v + c] = pos(rng);
    }
    shininess.data()[v] = v % 5 == 0 ? 0.5f : 1.0f + 7.0f * pos(rng);
  }
  for (int c = 0; c < 3; ++c) normals.data()[3 * 2 + c] = 0.0f;  // zero normal
  positions.data()[3 * 3] = std::numeric_limits<float>::quiet_NaN();
  std::vector<int32_t> tri(3 * triangle_count);
  for (int t = 0; t < triangle_count; ++t) {
    for (int i = 0; i < 3; ++i) tri[3 * t + i] = static_cast<int32_t>(rng() % vertex_count);
  }
  tri[0] = vertex_count - 1;  // the last vertex row (against the guard page)
  tri[3 * 1] = tri[3 * 1 + 1] = tri[3 * 1 + 2] = 2;  // the zero normal
  const int64_t pixels = static_cast<int64_t>(width) * height;
  std::vector<int32_t> ids(pixels);
  std::vector<float> bary(3 * pixels), d_rgba(4 * pixels);
  for (int64_t p = 0; p < pixels; ++p) {
    ids[p] = rng() % 5 == 0 ? -1 : static_cast<int32_t>(rng() % triangle_count);
    float b[3] = {pos(rng), pos(rng), p % 11 == 0 ? 0.0f : pos(rng)};
    const float sum = b[0] + b[1] + b[2];
    for (int i = 0; i < 3; ++i) bary[3 * p + i] = ids[p] < 0 ? 0.0f : b[i] / sum;
    for (int c = 0; c < 4; ++c) d_rgba[4 * p + c] = p % 13 == 0 ? 0.0f : u(rng);
  }
  std::vector<float> light_positions(3 * lights), intensities(3 * lights);
  for (int l = 0; l < lights; ++l) {
    for (int c = 0; c < 3; ++c) {
      light_positions[3 * l + c] = 2.0f * u(rng) + (c == 2 ? 3.0f : 0.0f);
      intensities[3 * l + c] = pos(rng);
    }
  }
  const float ambient[3] = {0.2f, 0.1f, 0.3f}, camera[3] = {0.1f, -0.2f, 4.0f};
  const renderer::PhongImage image{light_positions.data(), intensities.data(), lights, ambient,
                                   camera, 2.5f};
  const renderer::ShadingVertices<const float> vertices{
      normals.data(), positions.data(), diffuse.data(), specular.data(), shininess.data(),
      vertex_count};
  const int64_t sums = renderer::ImageGradSize(lights);
  std::vector<renderer::LightTerms<float>> light_terms(lights);
  renderer::AlignedArray<renderer::LightTerms<Float8>> light_terms8;
  light_terms8.resize(lights);
  renderer::AlignedArray<Float8> lane_sums8;
  lane_sums8.resize(sums);
  std::vector<float> lane_sums(8 * sums);

  std::vector<float> rgba[2], d_bary[2], d_arrays[2], row_sums[2];
  for (int m = 0; m < 2; ++m) {
    rgba[m].assign(4 * pixels, -7.0f);
    d_bary[m].assign(3 * pixels, -7.0f);
    d_arrays[m].assign(13 * vertex_count, 0.0f);
    row_sums[m].assign(sums * height, -7.0f);
    float* d = d_arrays[m].data();
    const renderer::ShadingVertices<float> d_vertices{
        d, d + 3 * vertex_count, d + 6 * vertex_count, d + 9 * vertex_count,
        d + 12 * vertex_count, vertex_count};
    for (int row = 0; row < height; ++row) {
      const int64_t first = static_cast<int64_t>(row) * width;
      if (m == 0) {
        renderer::ShadeRowBaseline<kChannels>(vertices, tri.data(), ids.data() + first,
                                              bary.data() + 3 * first, width, image,
                                              light_terms.data(), rgba[m].data() + 4 * first);
        renderer::ShadeRowBackwardBaseline<kChannels>(
            vertices, tri.data(), ids.data() + first, bary.data() + 3 * first,
            d_rgba.data() + 4 * first, width, image, light_terms.data(), d_vertices,
            d_bary[m].data() + 3 * first, lane_sums.data(), row_sums[m].data() + sums * row);
      } else {
        renderer::ShadeRowAvx2<kChannels>(vertices, tri.data(), ids.data() + first,
                                          bary.data() + 3 * first, width, image,
                                          light_terms8.data(), rgba[m].data() + 4 * first);
        renderer::ShadeRowBackwardAvx2<kChannels>(
            vertices, tri.data(), ids.data() + first, bary.data() + 3 * first,
            d_rgba.data() + 4 * first, width, image, light_terms8.data(), d_vertices,
            d_bary[m].data() + 3 * first, lane_sums8.data(), row_sums[m].data() + sums * row);
      }
    }
  }
  Report(SameBits(rgba[0].data(), rgba[1].data(), rgba[0].size()), "rgba", kChannels, lights,
         width);
  Report(SameBits(d_bary[0].data(), d_bary[1].data(), d_bary[0].size()), "d barycentrics",
         kChannels, lights, width);
  Report(SameBits(d_arrays[0].data(), d_arrays[1].data(), d_arrays[0].size()), "d vertices",
         kChannels, lights, width);
  Report(SameBits(row_sums[0].data(), row_sums[1].data(), row_sums[0].size()), "row sums",
         kChannels, lights, width);
  int covered = 0, uncovered_with_triangle = 0;
  for (int64_t p = 0; p < pixels; ++p) {
    covered += rgba[0][4 * p + 3] == 1.0f;
    uncovered_with_triangle += ids[p] >= 0 && rgba[0][4 * p + 3] == 0.0f;
  }
  if ((covered == 0 || (pixels > 100 && uncovered_with_triangle == 0)) && ++failures <= 20) {
    std::printf("FAIL scene with %d covered, %d uncovered pixels proves little\n", covered,
                uncovered_with_triangle);
  }
}
#endif

}  // namespace

int main() {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (!renderer::CpuHasAvx2()) {
    std::printf("phong_core_test: skipped: no AVX2 on this CPU, nothing to compare\n");
    return 0;
  }
  std::mt19937 rng(5);
  for (int lights : {0, 1, 3}) {
    for (int width : {1, 7, 8, 13, 224}) {
      CheckDrivers<9>(lights, width, 9, rng);
      CheckDrivers<12>(lights, width, 9, rng);
      CheckDrivers<13>(lights, width, 9, rng);
    }
  }
#else
  std::printf("phong_core_test: skipped: not an x86-64 GCC/Clang build, nothing to compare\n");
  return 0;
#endif
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("phong_core_test: all checks passed\n");
  return 0;
}
