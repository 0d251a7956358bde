// Checks of rasterizer_core.h that the TensorFlow-level tests cannot reach:
// the SSE2 vertex-bounds driver against the portable per-vertex function
// (bit for bit), and both against pixel bounds computed in double precision;
// the AVX2 rasterizer driver against the baseline (bit for bit) on dense
// meshes, large and degenerate triangles, non-finite vertices, depth ties and
// row bands.
// Exit status 0 on success; failures are printed one per line.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "renderer/kernels/rasterizer_cpu.h"

namespace {

int failures = 0;

void Fail(const char* what, const float* c, int w, int h) {
  if (++failures <= 20) {
    std::printf("FAIL %s: clip (%.9g, %.9g, %.9g, %.9g) image %dx%d\n", what, c[0], c[1], c[2],
                c[3], w, h);
  }
}

bool Same(const renderer::PixelBounds& a, const renderer::PixelBounds& b) {
  return a.x_lo == b.x_lo && a.y_lo == b.y_lo && a.neg_x_hi == b.neg_x_hi &&
         a.neg_y_hi == b.neg_y_hi;
}

// First and last pixel index whose centre is within the slack of s, clamped
// like PixelBounds ([0, size] and [-1, size - 1]), in double precision.
void ExactSpan(double s, int size, int* first, int* last) {
  *first = static_cast<int>(std::fmin(std::fmax(std::ceil(s - renderer::kBoundsSlack), 0.0), size));
  *last = static_cast<int>(
      std::fmin(std::fmax(std::floor(s + renderer::kBoundsSlack), -1.0), size - 1.0));
}

void CheckVertex(const float* c, int w, int h) {
  renderer::PixelBounds simd;
  renderer::ProjectVertexBounds(c, 0, 1, w, h, &simd);
  const renderer::PixelBounds scalar = renderer::VertexPixelBounds(c, w, h);
  if (!Same(simd, scalar)) Fail("driver != VertexPixelBounds", c, w, h);
  const bool drawable = std::isfinite(c[0]) && std::isfinite(c[1]) && std::isfinite(c[2]) &&
                        std::isfinite(c[3]) && c[3] > 0.0f &&
                        std::isfinite(c[0] / c[3]) && std::isfinite(c[1] / c[3]) &&
                        std::isfinite(c[2] / c[3]);
  if (!drawable) {
    if (!Same(scalar, renderer::WholeImageBounds(w, h))) Fail("not whole image", c, w, h);
    return;
  }
  // The screen position in double. Float rounding of the screen position may
  // move a bound by one pixel where s -/+ slack is within a few float ulps of
  // an integer (4 ulps of the position, at least 1e-4 px).
  const double sx = (static_cast<double>(c[0]) / c[3] + 1.0) * 0.5 * w - 0.5;
  const double sy = (static_cast<double>(c[1]) / c[3] + 1.0) * 0.5 * h - 0.5;
  int fx, lx, fy, ly;
  ExactSpan(sx, w, &fx, &lx);
  ExactSpan(sy, h, &fy, &ly);
  const int got[4] = {scalar.x_lo, -scalar.neg_x_hi, scalar.y_lo, -scalar.neg_y_hi};
  const int want[4] = {fx, lx, fy, ly};
  const double pos[4] = {sx - renderer::kBoundsSlack, sx + renderer::kBoundsSlack,
                         sy - renderer::kBoundsSlack, sy + renderer::kBoundsSlack};
  for (int i = 0; i < 4; ++i) {
    if (got[i] == want[i]) continue;
    const double s = i < 2 ? sx : sy;
    const double ulp = std::fabs(std::nextafter(static_cast<float>(s), 1e30f) - static_cast<float>(s));
    const double tolerance = std::fmax(1e-4, 4.0 * ulp);
    if (!(std::fabs(pos[i] - std::round(pos[i])) < tolerance && std::abs(got[i] - want[i]) <= 1)) {
      Fail("bounds differ from double precision", c, w, h);
    }
  }
}

// The driver over many vertices at once (8 per step with AVX2, the rest one
// by one) against VertexPixelBounds of each.
void CheckProjectMany(const std::vector<float>& clip, int w, int h) {
  const int64_t n = static_cast<int64_t>(clip.size() / 4);
  std::vector<renderer::PixelBounds> bounds(n);
  renderer::ProjectVertexBounds(clip.data(), 0, n, w, h, bounds.data());
  for (int64_t v = 0; v < n; ++v) {
    if (!Same(bounds[v], renderer::VertexPixelBounds(&clip[4 * v], w, h))) {
      Fail("bulk driver != VertexPixelBounds", &clip[4 * v], w, h);
    }
  }
}

#if defined(RENDERER_CPU_AVX2_DISPATCH)
// Interpolation and its gradient with both drivers, for several channel
// counts (compile-time and run-time, with and without a partial last chunk of
// 8), compared bit for bit.
void CheckInterpolateDrivers(int64_t vertex_count, const std::vector<int32_t>& ids,
                             const std::vector<float>& bary, const std::vector<int32_t>& tri,
                             const char* scene) {
  const int64_t pixels = static_cast<int64_t>(ids.size());
  for (int channels : {1, 3, 4, 5, 9, 12, 16, 17}) {
    std::vector<float> attr(vertex_count * channels), grad(pixels * channels),
        background(channels);
    for (size_t i = 0; i < attr.size(); ++i) {
      attr[i] = static_cast<float>((i * 7717) % 997) / 99.0f - 5.0f;
    }
    for (size_t i = 0; i < grad.size(); ++i) {
      grad[i] = static_cast<float>((i * 6151) % 1009) / 101.0f - 4.0f;
    }
    for (int c = 0; c < channels; ++c) background[c] = -1.0f - c;
    std::vector<float> out[2], dattr[2], dbary[2], dbg[2];
    for (int m = 0; m < 2; ++m) {
      out[m].assign(pixels * channels, 7.0f);
      dattr[m].assign(vertex_count * channels, 0.0f);
      dbary[m].assign(3 * pixels, 7.0f);
      dbg[m].assign(channels, 0.0f);
      renderer::DispatchChannels(channels, [&](auto k) {
        constexpr int kChannels = decltype(k)::value;
        if (m == 0) {
          renderer::InterpolatePixelsBaseline<kChannels>(attr.data(), channels, tri.data(),
                                                         ids.data(), bary.data(),
                                                         background.data(), 0, pixels,
                                                         out[m].data());
          renderer::InterpolateBackwardBaseline<kChannels>(
              attr.data(), channels, tri.data(), ids.data(), bary.data(), grad.data(), pixels,
              dbary[m].data(), dattr[m].data(), dbg[m].data());
        } else {
          renderer::InterpolatePixelsAvx2<kChannels>(attr.data(), channels, tri.data(),
                                                     ids.data(), bary.data(), background.data(),
                                                     0, pixels, out[m].data());
          renderer::InterpolateBackwardAvx2<kChannels>(
              attr.data(), channels, tri.data(), ids.data(), bary.data(), grad.data(), pixels,
              dbary[m].data(), dattr[m].data(), dbg[m].data());
        }
      });
    }
    const auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      return std::memcmp(a.data(), b.data(), 4 * a.size()) == 0;
    };
    if (!(same(out[0], out[1]) && same(dattr[0], dattr[1]) && same(dbary[0], dbary[1]) &&
          same(dbg[0], dbg[1])) &&
        ++failures <= 20) {
      std::printf("FAIL AVX2 interpolation != baseline: %s, %d channels\n", scene, channels);
    }
  }
}

// Rasterizes clip [V, 4] with both drivers, split into `bands` row bands, and
// compares every output bit; then the same for the gradient drivers.
void CheckRasterizeDrivers(const std::vector<float>& clip, const std::vector<int32_t>& tri,
                           int w, int h, int bands, const char* scene) {
  const int64_t vertex_count = static_cast<int64_t>(clip.size() / 4);
  const int64_t triangle_count = static_cast<int64_t>(tri.size() / 3);
  const int64_t pixels = static_cast<int64_t>(w) * h;
  std::vector<renderer::PixelBounds> bounds(vertex_count);
  renderer::ProjectVertexBounds(clip.data(), 0, vertex_count, w, h, bounds.data());
  std::vector<int32_t> ids[2];
  std::vector<float> bary[2], depth[2];
  for (int m = 0; m < 2; ++m) {
    ids[m].assign(pixels, 7);
    bary[m].assign(3 * pixels, 7.0f);
    depth[m].assign(pixels, 7.0f);
    const int rows = (h + bands - 1) / bands;
    for (int r0 = 0; r0 < h; r0 += rows) {
      const int r1 = r0 + rows < h ? r0 + rows : h;
      renderer::ClearRows(w, r0, r1, ids[m].data(), bary[m].data(), depth[m].data());
      auto* driver = m == 0 ? renderer::RasterizeRowsBaseline : renderer::RasterizeRowsAvx2;
      driver(clip.data(), bounds.data(), tri.data(), triangle_count, w, h, r0, r1,
             ids[m].data(), bary[m].data(), depth[m].data());
    }
  }
  // Backward of a loss with pseudo-random df/dbary (zero on every third pixel).
  std::vector<float> df_dbary(3 * pixels);
  for (int64_t i = 0; i < 3 * pixels; ++i) {
    df_dbary[i] = (i / 3) % 3 == 0 ? 0.0f : static_cast<float>((i * 7919) % 1000) / 500.0f - 1.0f;
  }
  std::vector<float> dclip[2];
  for (int m = 0; m < 2; ++m) {
    dclip[m].assign(4 * vertex_count, 0.0f);
    auto* driver = m == 0 ? renderer::RasterizeBackwardImageBaseline
                          : renderer::RasterizeBackwardImageAvx2;
    driver(clip.data(), tri.data(), ids[0].data(), bary[0].data(), df_dbary.data(), w, h,
           dclip[m].data());
  }
  if (std::memcmp(dclip[0].data(), dclip[1].data(), 4 * dclip[0].size()) != 0 &&
      ++failures <= 20) {
    std::printf("FAIL AVX2 rasterizer gradient != baseline: %s, %dx%d\n", scene, w, h);
  }
  CheckInterpolateDrivers(vertex_count, ids[0], bary[0], tri, scene);
  int64_t covered = 0;
  for (int64_t p = 0; p < pixels; ++p) covered += ids[0][p] >= 0;
  const bool same = ids[0] == ids[1] &&
                    std::memcmp(bary[0].data(), bary[1].data(), 12 * pixels) == 0 &&
                    std::memcmp(depth[0].data(), depth[1].data(), 4 * pixels) == 0;
  if (!same && ++failures <= 20) {
    std::printf("FAIL AVX2 rasterizer != baseline: %s, %dx%d, %d bands\n", scene, w, h, bands);
  }
  if (covered == 0 && pixels > 64 && ++failures <= 20) {
    std::printf("FAIL scene %s covers no pixel of %dx%d (the check proves nothing)\n", scene, w,
                h);
  }
}

// A (n + 1)^2-vertex grid over [-extent, extent]^2 at depth 0.5 in clip space
// (w = 1 plus a tilt), two triangles per cell with alternating winding, and
// every 5th triangle repeated (exact depth ties).
void GridScene(int n, float extent, std::mt19937& rng, std::vector<float>* clip,
               std::vector<int32_t>* tri) {
  std::uniform_real_distribution<float> jitter(-0.3f, 0.3f);
  clip->clear();
  tri->clear();
  for (int j = 0; j <= n; ++j) {
    for (int i = 0; i <= n; ++i) {
      const float x = extent * (2.0f * (i + 0.5f * jitter(rng)) / n - 1.0f);
      const float y = extent * (2.0f * (j + 0.5f * jitter(rng)) / n - 1.0f);
      const float w = 1.0f + 0.2f * x;
      clip->insert(clip->end(), {x * w, y * w, (0.5f + 0.3f * jitter(rng)) * w, w});
    }
  }
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < n; ++i) {
      const int32_t a = j * (n + 1) + i, b = a + 1, c = a + n + 1, d = c + 1;
      if ((i + j) % 2) {
        tri->insert(tri->end(), {a, b, d, a, c, d});
      } else {
        tri->insert(tri->end(), {a, d, b, a, d, c});
      }
      if (tri->size() % 5 == 0) tri->insert(tri->end(), tri->end() - 3, tri->end() - 0);
    }
  }
}

void CheckRasterizeRowsAvx2() {
  if (!renderer::CpuHasAvx2()) {
    std::printf("core_test: no AVX2 on this CPU, AVX2 rasterizer not checked\n");
    return;
  }
  std::mt19937 rng(11);
  std::vector<float> clip;
  std::vector<int32_t> tri;
  const int sizes[][2] = {{1, 1}, {2, 3}, {5, 7}, {64, 48}, {224, 224}};
  for (const auto& s : sizes) {
    for (int bands : {1, 2, 3}) {
      // Dense: most boxes hold 0, 1 or 2 pixel centres (the AVX2 lanes).
      GridScene(2 * s[0] / 3 + 1, 0.9f, rng, &clip, &tri);
      CheckRasterizeDrivers(clip, tri, s[0], s[1], bands, "dense grid");
      // Coarser: boxes of several pixels (the per-triangle fallback).
      GridScene(s[0] / 5 + 1, 1.2f, rng, &clip, &tri);
      CheckRasterizeDrivers(clip, tri, s[0], s[1], bands, "coarse grid");
      // Dense grid with every 97th vertex replaced by a special value (triangles
      // whose box is the whole image, undrawable ones).
      GridScene(s[0] / 2 + 1, 1.0f, rng, &clip, &tri);
      const float specials[][4] = {
          {0, 0, 0, 0}, {0.1f, 0.1f, 0.5f, -1}, {std::numeric_limits<float>::quiet_NaN(), 0, 0, 1},
          {0, std::numeric_limits<float>::infinity(), 0, 1}, {0.2f, 0.1f, 5, 1}};
      for (size_t v = 3, k = 0; v < clip.size() / 4; v += 97, ++k) {
        std::memcpy(&clip[4 * v], specials[k % 5], sizeof(specials[0]));
      }
      CheckRasterizeDrivers(clip, tri, s[0], s[1], bands, "special vertices");
      tri.resize(tri.size() - 3 * (tri.size() / 3 % 8 == 0 ? 1 : 0));  // T % 8 != 0
      CheckRasterizeDrivers(clip, tri, s[0], s[1], bands, "tail");
    }
  }
}
#endif

}  // namespace

int main() {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float special[][4] = {
      {0, 0, 0, 1},         {1, 1, 0, 1},        {-1, -1, 0, 1},      {0.5f, -0.25f, 0.3f, 2},
      {3, 3, 0, 1},         {-3, 2, 0, 1},       {0, 0, 0, 0},        {0, 0, 0, -1},
      {1, 2, 3, -0.0f},     {nan, 0, 0, 1},      {0, inf, 0, 1},      {0, 0, -inf, 1},
      {0, 0, 0, inf},       {0, 0, 0, nan},      {1e30f, 0, 0, 1e-30f}, {1, 1, 1, 1e-38f},
      {2e9f, -2e9f, 0, 1},  {0, 0, 1e38f, 1e-3f},
  };
  const int sizes[][2] = {{1, 1}, {2, 3}, {224, 224}, {640, 480}, {7, 32767}};
  for (const auto& s : sizes) {
    for (const auto& c : special) CheckVertex(c, s[0], s[1]);
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f), uw(0.05f, 3.0f);
  for (const auto& s : sizes) {
    std::vector<float> many;
    for (int i = 0; i < 200000; ++i) {
      float c[4] = {u(rng), u(rng), u(rng), uw(rng)};
      c[0] *= c[3];
      c[1] *= c[3];
      if (i % 4 == 0) {  // exactly on or next to pixel centres
        const int ix = static_cast<int>(rng() % (s[0] + 2)) - 1;
        c[0] = (2.0f * ix + 1.0f - s[0]) / s[0] * c[3];
        if (i % 8 == 0) c[0] = std::nextafter(c[0], inf);
      }
      CheckVertex(c, s[0], s[1]);
      many.insert(many.end(), c, c + 4);
      if (i % 1000 == 0) {
        const auto& sp = special[(i / 1000) % (sizeof(special) / sizeof(special[0]))];
        many.insert(many.end(), sp, sp + 4);
      }
    }
    many.resize(many.size() - 4 * (many.size() / 4 % 8 == 0));  // a tail too
    CheckProjectMany(many, s[0], s[1]);
  }
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  CheckRasterizeRowsAvx2();
#endif
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("core_test: all checks passed\n");
  return 0;
}
