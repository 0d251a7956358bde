// Checks of rasterizer_core.h that the TensorFlow-level tests cannot reach:
// the SSE2 vertex-bounds driver against the portable per-vertex function
// (bit for bit), and both against pixel bounds computed in double precision.
// Exit status 0 on success; failures are printed one per line.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "renderer/kernels/rasterizer_core.h"

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
    }
  }
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("core_test: all checks passed\n");
  return 0;
}
