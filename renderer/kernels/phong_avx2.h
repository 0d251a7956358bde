// AVX2 CPU drivers of the Phong shading (x86-64, chosen at run time by
// phong_cpu.h): phong_core.h's row drivers for 8 pixels per step, with the
// per-pixel code (interpolation, PhongPixel, PhongBackwardPixel, the
// barycentric gradient's DotInLanes8) instantiated for Float8 lanes, so their
// outputs are bit-identical to the baseline's (tests/cc/phong_core_test.cc
// compares them). The 8 pixels' corner vertex rows are loaded 4 floats at a
// time and transposed into lanes; the scatter into the vertex gradients stays
// scalar, pixel by pixel in the baseline's order.
#ifndef RENDERER_KERNELS_PHONG_AVX2_H_
#define RENDERER_KERNELS_PHONG_AVX2_H_

#include "renderer/kernels/float8_avx2.h"
#include "renderer/kernels/phong_core.h"
#include "renderer/kernels/rasterizer_avx2.h"

#if defined(RENDERER_CPU_AVX2_DISPATCH)

namespace renderer {

// The 3 channels of 8 pixels stored 3 per pixel (n of them) as 3 registers,
// and back.
__attribute__((target("avx2"))) inline void Load3Lanes(const float* p, int n, Float8 out[3]) {
  if (n == 8) {
    Load3x8(p, &out[0].v, &out[1].v, &out[2].v);
    return;
  }
  alignas(32) float lanes[3][8] = {};
  for (int l = 0; l < n; ++l) {
    for (int i = 0; i < 3; ++i) lanes[i][l] = p[3 * l + i];
  }
  for (int i = 0; i < 3; ++i) out[i] = Load8(lanes[i]);
}

__attribute__((target("avx2"))) inline void Store3Lanes(const Float8 in[3], int n, float* p) {
  if (n == 8) {
    Store3x8(p, in[0].v, in[1].v, in[2].v);
    return;
  }
  alignas(32) float lanes[3][8];
  for (int i = 0; i < 3; ++i) Store8(lanes[i], in[i]);
  for (int l = 0; l < n; ++l) {
    for (int i = 0; i < 3; ++i) p[3 * l + i] = lanes[i][l];
  }
}

// The triangle corners of up to 8 pixels of a row: corner[i][c] holds
// channel c of corner i for each pixel, b[i] its barycentric; lanes without
// a triangle (or past the row) hold zeros.
template <int kChannels>
struct CornerBlock {
  Float8 corner[3][kChannels];
  Float8 b[3];
  int has_triangle;  // bit l: pixel l has a triangle
};

// Reads 3-float vertex rows 4 floats at a time (8 rows per LoadRows8); the
// last vertex's row, whose 4th float may lie past the array, from a copy.
class VertexRows {
 public:
  explicit VertexRows(const ShadingVertices<const float>& vertices) : vertices_(vertices) {
    const float* arrays[4] = {vertices.normals, vertices.positions, vertices.diffuse,
                              vertices.specular};
    const int64_t last = 3 * (vertices.vertex_count - 1);
    for (int k = 0; k < 4; ++k) {
      for (int c = 0; c < 4; ++c) last_[k][c] = c < 3 && arrays[k] && last >= 0
                                                   ? arrays[k][last + c] : 0.0f;
    }
  }
  // Array k's (normals, positions, diffuse, specular) row of vertex v.
  const float* Row(int k, int32_t v) const {
    if (v + int64_t{1} >= vertices_.vertex_count) return last_[k];
    const float* array = k == 0 ? vertices_.normals : k == 1 ? vertices_.positions
                       : k == 2 ? vertices_.diffuse : vertices_.specular;
    return array + 3 * static_cast<int64_t>(v);
  }
  static const float* Zero() {
    static const float zero[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    return zero;
  }

 private:
  const ShadingVertices<const float>& vertices_;
  float last_[4][4];
};

// Loads the corners and barycentrics of pixels [x0, x0 + n) (n <= 8).
template <int kChannels>
__attribute__((target("avx2"))) inline void GatherCorners(
    const ShadingVertices<const float>& vertices, const VertexRows& rows,
    const int32_t* triangles, const int32_t* ids, const float* bary, int64_t x0, int n,
    CornerBlock<kChannels>* block) {
  constexpr int kArrays = kChannels / 3;  // 3-float arrays: 3 or 4
  const float* row[3][kArrays][8];
  alignas(32) float shininess[3][8] = {};
  block->has_triangle = 0;
  for (int l = 0; l < 8; ++l) {
    const int64_t x = x0 + l;
    const bool has_triangle = l < n && ids[x] >= 0;
    block->has_triangle |= has_triangle << l;
    const int32_t* tri = has_triangle ? triangles + 3 * static_cast<int64_t>(ids[x]) : nullptr;
    for (int i = 0; i < 3; ++i) {
      for (int k = 0; k < kArrays; ++k) row[i][k][l] = tri ? rows.Row(k, tri[i]) : rows.Zero();
      if (kChannels == 13 && tri) shininess[i][l] = vertices.shininess[tri[i]];
    }
  }
  for (int i = 0; i < 3; ++i) {
    for (int k = 0; k < kArrays; ++k) {
      __m256 columns[4];
      LoadRows8(row[i][k], columns);
      for (int c = 0; c < 3; ++c) block->corner[i][3 * k + c] = columns[c];
    }
    if (kChannels == 13) block->corner[i][12] = Load8(shininess[i]);
  }
  Load3Lanes(bary + 3 * x0, n, block->b);
  const Mask8 has = LaneMask(block->has_triangle);
  for (int i = 0; i < 3; ++i) block->b[i] = Select(has, block->b[i], Float8(0.0f));
}

// InterpolateCorners of the 8 lanes; returns the covered lanes (Covered and
// with a triangle).
template <int kChannels>
__attribute__((target("avx2"))) inline Mask8 InterpolateBlock(
    const CornerBlock<kChannels>& block, Float8 pixel[kChannels]) {
  BlendCorners<kChannels>(block.b, block.corner, pixel);
  return LaneMask(block.has_triangle) & Covered(pixel);
}

// ShadeRowBaseline, 8 pixels per step; lights is scratch for L lights.
template <int kChannels>
__attribute__((target("avx2"), flatten)) void ShadeRowAvx2(
    const ShadingVertices<const float>& vertices, const int32_t* triangles, const int32_t* ids,
    const float* bary, int64_t width, const PhongImage& image, LightTerms<Float8>* lights,
    float* rgba) {
  const VertexRows rows(vertices);
  CornerBlock<kChannels> block;
  PixelTerms<Float8> terms;
  for (int64_t x0 = 0; x0 < width; x0 += 8) {
    const int n = static_cast<int>(width - x0 < 8 ? width - x0 : 8);
    GatherCorners<kChannels>(vertices, rows, triangles, ids, bary, x0, n, &block);
    Float8 pixel[kChannels], rgb[3];
    const int covered = Bits(InterpolateBlock<kChannels>(block, pixel));
    float* out = rgba + 4 * x0;
    if (covered == 0) {
      for (int i = 0; i < 4 * n; ++i) out[i] = 0.0f;
      continue;
    }
    PhongPixel<kChannels>(pixel, image, &terms, lights, rgb);
    alignas(32) float rgb_lanes[3][8];
    for (int c = 0; c < 3; ++c) Store8(rgb_lanes[c], rgb[c]);
    for (int l = 0; l < n; ++l, out += 4) {
      const bool lane_covered = (covered >> l) & 1;
      for (int c = 0; c < 3; ++c) out[c] = lane_covered ? rgb_lanes[c][l] : 0.0f;
      out[3] = lane_covered ? 1.0f : 0.0f;
    }
  }
}

// ShadeRowBackwardBaseline, 8 pixels per step: the per-image sums are
// accumulated in Float8 lanes (lane l = pixel x0 + l, i.e. x % 8) and added
// in SumLanes8 order. lane_sums is scratch of ImageGradSize(L) Float8.
template <int kChannels>
__attribute__((target("avx2"), flatten)) void ShadeRowBackwardAvx2(
    const ShadingVertices<const float>& vertices, const int32_t* triangles, const int32_t* ids,
    const float* bary, const float* d_rgba, int64_t width, const PhongImage& image,
    LightTerms<Float8>* lights, const ShadingVertices<float>& d_vertices, float* d_bary,
    Float8* lane_sums, float* row_sums) {
  const int64_t sums = ImageGradSize(image.light_count);
  for (int64_t i = 0; i < sums; ++i) lane_sums[i] = Float8(0.0f);
  PhongImageGrad<Float8> grad = ImageGradAt(lane_sums, image.light_count);
  const VertexRows rows(vertices);
  CornerBlock<kChannels> block;
  PixelTerms<Float8> terms;
  const Float8 zero(0.0f);
  alignas(32) float bary_lanes[3][8];
  for (int64_t x0 = 0; x0 < width; x0 += 8) {
    const int n = static_cast<int>(width - x0 < 8 ? width - x0 : 8);
    GatherCorners<kChannels>(vertices, rows, triangles, ids, bary, x0, n, &block);
    Float8 pixel[kChannels], rgb[3], d_rgb[3], d_pixel[kChannels], d_bary8[3];
    const Mask8 covered_mask = InterpolateBlock<kChannels>(block, pixel);
    const int covered = Bits(covered_mask);
    if (covered == 0) {
      for (int i = 0; i < 3 * n; ++i) d_bary[3 * x0 + i] = 0.0f;
      continue;
    }
    if (n == 8) {
      const float* rows[8];
      for (int l = 0; l < 8; ++l) rows[l] = d_rgba + 4 * (x0 + l);
      __m256 columns[4];
      LoadRows8(rows, columns);
      for (int c = 0; c < 3; ++c) d_rgb[c] = columns[c];
    } else {
      alignas(32) float lanes[3][8] = {};
      for (int l = 0; l < n; ++l) {
        for (int c = 0; c < 3; ++c) lanes[c][l] = d_rgba[4 * (x0 + l) + c];
      }
      for (int c = 0; c < 3; ++c) d_rgb[c] = Load8(lanes[c]);
    }
    PhongPixel<kChannels>(pixel, image, &terms, lights, rgb);
    PhongBackwardPixel<kChannels>(pixel, image, terms, lights, d_rgb, covered_mask, d_pixel,
                                  &grad);
    for (int i = 0; i < 3; ++i) {
      d_bary8[i] = Select(covered_mask, DotInLanes8(d_pixel, block.corner[i], kChannels), zero);
      Store8(bary_lanes[i], block.b[i]);
    }
    Store3Lanes(d_bary8, n, d_bary + 3 * x0);
    alignas(32) float d_lanes[kChannels][8];
    for (int c = 0; c < kChannels; ++c) Store8(d_lanes[c], d_pixel[c]);
    for (int l = 0; l < n; ++l) {
      if (!((covered >> l) & 1)) continue;
      float d_pixel_lane[kMaxPixelChannels];
      for (int c = 0; c < kChannels; ++c) d_pixel_lane[c] = d_lanes[c][l];
      const int32_t* tri = triangles + 3 * static_cast<int64_t>(ids[x0 + l]);
      for (int i = 0; i < 3; ++i) {
        ScatterCorner<kChannels>(d_vertices, tri[i], bary_lanes[i][l], d_pixel_lane);
      }
    }
  }
  alignas(32) float lane[8];
  for (int64_t i = 0; i < sums; ++i) {
    Store8(lane, lane_sums[i]);
    row_sums[i] = SumLanes8(lane);
  }
}

}  // namespace renderer

#endif  // RENDERER_CPU_AVX2_DISPATCH

#endif  // RENDERER_KERNELS_PHONG_AVX2_H_
