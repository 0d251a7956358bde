// Framework-free core of the differentiable triangle rasterizer.
//
// Everything here is plain C++ on raw float/int32 buffers so that the same
// per-triangle and per-pixel functions drive the CPU kernels (this file's
// drivers, called by rasterizer_ops.cc over TensorFlow's thread pool) and the
// CUDA kernels (RENDERER_HD marks them __host__ __device__ under nvcc).
//
// Semantics follow google/tf_mesh_renderer's RasterizeTriangles op (see
// docs/renderer.md and SPEC §5.4):
//  * Homogeneous (Olano-Greer) rasterization of clip-space vertices (x, y, z, w):
//    no clipping is needed; triangles crossing w = 0 are handled exactly and
//    triangles with all three w < 0 are skipped.
//  * Pixel (ix, iy) has its centre at NDC ((2ix+1-W)/W, (2iy+1-H)/H): row 0 is
//    NDC y = -1 (the bottom of the image; callers flip rows for display).
//  * No back-face culling: edge values are sign-corrected by the determinant of
//    the triangle's (x, y, w) matrix, so both windings rasterize. A pixel is
//    inside iff all edge values are >= 0 and one is > 0.
//  * Perspective-correct barycentrics b = e / sum(e); depth z = b.z / b.w in NDC,
//    kept iff -1 <= z <= 1 and z <= z_buffer (ties: the later triangle wins).
//  * Deviation: empty pixels get triangle id kEmptyTriangle (-1) instead of the
//    original's ambiguous 0, and triangles with any non-finite vertex coordinate
//    are not drawn (the original could write NaN barycentrics for them).
#ifndef RENDERER_KERNELS_RASTERIZER_CORE_H_
#define RENDERER_KERNELS_RASTERIZER_CORE_H_

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__SSE2__) && !defined(__CUDACC__)
#define RENDERER_CPU_SSE2 1
#include <emmintrin.h>
#endif

#if defined(__CUDACC__)
#define RENDERER_HD __host__ __device__ __forceinline__
#else
#define RENDERER_HD inline
#endif

namespace renderer {

constexpr int32_t kEmptyTriangle = -1;
constexpr float kEmptyDepth = 1.0f;  // z-buffer initial value (NDC far plane)
constexpr float kMaxFiniteFloat = 3.40282346638528859812e+38f;  // FLT_MAX
// Pixel-space slack added to screen bounding boxes so that rounding in the
// perspective divide never drops a pixel the exact edge test would accept.
constexpr float kBoundsSlack = 1e-3f;

// Conservative pixel bounds of one vertex, inclusive, clamped to the image:
// the centres of pixels [x_lo, x_hi] x [y_lo, y_hi] lie within kBoundsSlack of
// its screen position. The high bounds are stored negated so that a triangle's
// box is the element-wise minimum of its three vertices' bounds (one packed
// 16-bit min on CPUs). A vertex at or behind the eye (w <= 0) or with a
// non-finite coordinate spans the whole image; the rasterizer then checks the
// triangle's vertices before drawing it.
struct PixelBounds {
  int16_t x_lo, y_lo, neg_x_hi, neg_y_hi;
};
constexpr int kMaxImageSize = 32767;  // PixelBounds holds pixel indices in int16

RENDERER_HD bool IsFinite(float v) { return v - v == 0.0f; }

// Plain compares (not fminf/fmaxf, which are library calls on x86).
RENDERER_HD float Min2(float a, float b) { return a < b ? a : b; }
RENDERER_HD float Max2(float a, float b) { return a > b ? a : b; }
RENDERER_HD float Clamp(float v, float lo, float hi) { return Min2(Max2(v, lo), hi); }
// floor/ceil of a value in int range, exact, without library calls.
RENDERER_HD int FloorToInt(float v) {
  const int i = static_cast<int>(v);
  return i - (static_cast<float>(i) > v ? 1 : 0);
}
RENDERER_HD int CeilToInt(float v) {
  const int i = static_cast<int>(v);
  return i + (static_cast<float>(i) < v ? 1 : 0);
}

RENDERER_HD PixelBounds WholeImageBounds(int width, int height) {
  return PixelBounds{0, 0, static_cast<int16_t>(1 - width), static_cast<int16_t>(1 - height)};
}

// Pixel (ix, iy) has its centre at screen position (ix, iy), i.e. NDC
// x = (2 ix + 1 - W) / W: s = (ndc + 1) * W / 2 - 1 / 2.
RENDERER_HD PixelBounds VertexPixelBounds(const float* clip, int width, int height) {
  const float x = clip[0], y = clip[1], z = clip[2], w = clip[3];
  const float ndc_x = x / w, ndc_y = y / w, ndc_z = z / w;
  if (!(w > 0.0f && IsFinite(ndc_x) && IsFinite(ndc_y) && IsFinite(ndc_z) && IsFinite(w))) {
    return WholeImageBounds(width, height);
  }
  const float fw = static_cast<float>(width), fh = static_cast<float>(height);
  const float sx = (ndc_x + 1.0f) * (0.5f * fw) - 0.5f;
  const float sy = (ndc_y + 1.0f) * (0.5f * fh) - 0.5f;
  PixelBounds b;
  b.x_lo = static_cast<int16_t>(CeilToInt(Clamp(sx - kBoundsSlack, 0.0f, fw)));
  b.y_lo = static_cast<int16_t>(CeilToInt(Clamp(sy - kBoundsSlack, 0.0f, fh)));
  b.neg_x_hi = static_cast<int16_t>(-FloorToInt(Clamp(sx + kBoundsSlack, -1.0f, fw - 1.0f)));
  b.neg_y_hi = static_cast<int16_t>(-FloorToInt(Clamp(sy + kBoundsSlack, -1.0f, fh - 1.0f)));
  return b;
}

RENDERER_HD int Min3(int a, int b, int c) {
  const int m = a < b ? a : b;
  return m < c ? m : c;
}

// Pixel box of a triangle: element-wise minimum of its vertices' bounds.
RENDERER_HD PixelBounds TriangleBounds(const PixelBounds& a, const PixelBounds& b,
                                       const PixelBounds& c) {
  PixelBounds r;
  r.x_lo = static_cast<int16_t>(Min3(a.x_lo, b.x_lo, c.x_lo));
  r.y_lo = static_cast<int16_t>(Min3(a.y_lo, b.y_lo, c.y_lo));
  r.neg_x_hi = static_cast<int16_t>(Min3(a.neg_x_hi, b.neg_x_hi, c.neg_x_hi));
  r.neg_y_hi = static_cast<int16_t>(Min3(a.neg_y_hi, b.neg_y_hi, c.neg_y_hi));
  return r;
}

// Whether a triangle whose box is the whole image may be drawn: a vertex may
// be behind the eye (fine unless all three are, w < 0) or non-finite (never).
RENDERER_HD bool DrawableAcrossEye(const float* v0, const float* v1, const float* v2) {
  for (int i = 0; i < 4; ++i) {
    if (!(IsFinite(v0[i]) && IsFinite(v1[i]) && IsFinite(v2[i]))) return false;
  }
  return !(v0[3] < 0.0f && v1[3] < 0.0f && v2[3] < 0.0f);
}

RENDERER_HD float PixelCenterNdc(int i, int size) {
  return static_cast<float>(2 * i + 1 - size) / static_cast<float>(size);
}

// Inside test and depth of pixel p = (px, py, 1). The homogeneous edge values
// e_i = det[p; v_j; v_k] ((i, j, k) cyclic, v = (x, y, w)) are computed as 2-D
// cross products of v_j - w_j p and v_k - w_k p (the same determinant, and an
// edge shared by two triangles gets exactly negated values, so no gaps). They
// are sign-corrected by det[v0; v1; v2] = sum_i e_i w_i, which makes both
// windings draw. Returns false when p is outside (inside: all e_i >= 0, one
// > 0) or its NDC depth z = (e . z) / (e . w) is outside [-1, 1]; otherwise
// sets e and z.
RENDERER_HD bool TestPixel(const float* v0, const float* v1, const float* v2, float px,
                           float py, float e[3], float* z) {
  const float ax = v0[0] - v0[3] * px, ay = v0[1] - v0[3] * py;
  const float bx = v1[0] - v1[3] * px, by = v1[1] - v1[3] * py;
  const float cx = v2[0] - v2[3] * px, cy = v2[1] - v2[3] * py;
  e[0] = bx * cy - by * cx;
  e[1] = cx * ay - cy * ax;
  e[2] = ax * by - ay * bx;
  float det = e[0] * v0[3] + e[1] * v1[3] + e[2] * v2[3];
  if (det < 0.0f) {
    e[0] = -e[0];
    e[1] = -e[1];
    e[2] = -e[2];
    det = -det;
  }
  if (!(e[0] >= 0.0f && e[1] >= 0.0f && e[2] >= 0.0f)) return false;  // also rejects NaN
  // A finite sum: extreme but finite coordinates can overflow it to inf, which would give
  // a covered pixel whose barycentrics e / sum are all zero.
  const float sum = e[0] + e[1] + e[2];
  if (!(sum > 0.0f && sum <= kMaxFiniteFloat)) return false;
  *z = (e[0] * v0[2] + e[1] * v1[2] + e[2] * v2[2]) / det;
  return *z >= -1.0f && *z <= 1.0f;  // false for NaN (det = 0: degenerate)
}

// Perspective-correct barycentrics b = e / sum(e) of a pixel that passed TestPixel.
RENDERER_HD void Barycentrics(const float e[3], float b[3]) {
  const float sum = e[0] + e[1] + e[2];
  b[0] = e[0] / sum;
  b[1] = e[1] / sum;
  b[2] = e[2] / sum;
}

// Gradient of f(b(v)) w.r.t. the clip-space x, y, w of the three vertices of
// the triangle covering pixel p = (px, py, 1), given its barycentrics b and
// df/db. With u_i = v_j - v_k for (i, j, k) cyclic, e_i = p . (v_j x v_k) and
// S = sum(e), d f / d v_m = (e_m / S^2) sum_i df/db_i (p x u_i)
//                         = (b_m / S) (p x U),  U = sum_i df/db_i u_i,
// and S = det / (b . w) because sum_i e_i w_i = det[v0; v1; v2].
// Writes dv[m*3 + {0,1,2}] = d/d(x, y, w) of vertex m. Returns false (and
// writes nothing) when the result would not be finite.
RENDERER_HD bool BarycentricGrad(const float* v0, const float* v1, const float* v2,
                                 float px, float py, const float b[3], const float df_db[3],
                                 float dv[9]) {
  const float ux = df_db[0] * (v1[0] - v2[0]) + df_db[1] * (v2[0] - v0[0]) +
                   df_db[2] * (v0[0] - v1[0]);
  const float uy = df_db[0] * (v1[1] - v2[1]) + df_db[1] * (v2[1] - v0[1]) +
                   df_db[2] * (v0[1] - v1[1]);
  const float uw = df_db[0] * (v1[3] - v2[3]) + df_db[1] * (v2[3] - v0[3]) +
                   df_db[2] * (v0[3] - v1[3]);
  const float gx = py * uw - uy, gy = ux - px * uw, gw = px * uy - py * ux;  // p x U
  const float det = v0[0] * (v1[1] * v2[3] - v1[3] * v2[1]) +
                    v0[1] * (v1[3] * v2[0] - v1[0] * v2[3]) +
                    v0[3] * (v1[0] * v2[1] - v1[1] * v2[0]);
  const float inv_s = (b[0] * v0[3] + b[1] * v1[3] + b[2] * v2[3]) / det;
  for (int m = 0; m < 3; ++m) {
    const float s = b[m] * inv_s;
    dv[3 * m + 0] = s * gx;
    dv[3 * m + 1] = s * gy;
    dv[3 * m + 2] = s * gw;
  }
  for (int i = 0; i < 9; ++i) {
    if (!IsFinite(dv[i])) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Baseline CPU drivers (portable; SSE2 for the vertex bounds). Each works on
// one image; callers shard over images and rows. rasterizer_cpu.h picks these
// or their AVX2 versions (rasterizer_avx2.h).
// ---------------------------------------------------------------------------

// Fills ids with kEmptyTriangle, barycentrics with 0 and depth with 1 for
// rows [row_begin, row_end).
inline void ClearRows(int width, int row_begin, int row_end, int32_t* ids, float* bary,
                      float* depth) {
  const int64_t begin = static_cast<int64_t>(row_begin) * width;
  const int64_t end = static_cast<int64_t>(row_end) * width;
  for (int64_t p = begin; p < end; ++p) {
    ids[p] = kEmptyTriangle;
    depth[p] = kEmptyDepth;
    bary[3 * p + 0] = bary[3 * p + 1] = bary[3 * p + 2] = 0.0f;
  }
}

// bounds[v] = VertexPixelBounds(clip + 4 v) for v in [begin, end).
inline void ProjectVertexBoundsBaseline(const float* clip, int64_t begin, int64_t end,
                                        int width, int height, PixelBounds* bounds) {
#if defined(RENDERER_CPU_SSE2)
  // The same arithmetic as VertexPixelBounds, one vertex per 4-lane vector
  // (tests/cc/core_test.cc checks that both agree bit for bit).
  const float fw = static_cast<float>(width), fh = static_cast<float>(height);
  const __m128 half = _mm_setr_ps(0.5f * fw, 0.5f * fh, 0.5f * fw, 0.5f * fh);
  const __m128 one = _mm_set1_ps(1.0f), point_five = _mm_set1_ps(0.5f);
  const __m128 slack = _mm_setr_ps(-kBoundsSlack, -kBoundsSlack, kBoundsSlack, kBoundsSlack);
  const __m128 lower = _mm_setr_ps(0.0f, 0.0f, -1.0f, -1.0f);
  const __m128 upper = _mm_setr_ps(fw, fh, fw - 1.0f, fh - 1.0f);
  const __m128i lo_lanes = _mm_setr_epi32(-1, -1, 0, 0), hi_lanes = _mm_setr_epi32(0, 0, -1, -1);
  const PixelBounds whole = WholeImageBounds(width, height);
  for (int64_t i = begin; i < end; ++i) {
    const __m128 c = _mm_loadu_ps(clip + 4 * i);
    const __m128 w = _mm_shuffle_ps(c, c, _MM_SHUFFLE(3, 3, 3, 3));
    const __m128 ndc = _mm_div_ps(c, w);
    const __m128 zero = _mm_setzero_ps();
    const int finite = _mm_movemask_ps(_mm_cmpeq_ps(_mm_sub_ps(ndc, ndc), zero)) &
                       _mm_movemask_ps(_mm_cmpeq_ps(_mm_sub_ps(c, c), zero));
    if (!(finite == 0xF && _mm_cvtss_f32(w) > 0.0f)) {
      bounds[i] = whole;
      continue;
    }
    const __m128 ndc_xy = _mm_shuffle_ps(ndc, ndc, _MM_SHUFFLE(1, 0, 1, 0));
    const __m128 s = _mm_sub_ps(_mm_mul_ps(_mm_add_ps(ndc_xy, one), half), point_five);
    const __m128 v = _mm_min_ps(_mm_max_ps(_mm_add_ps(s, slack), lower), upper);
    __m128i k = _mm_cvttps_epi32(v);
    const __m128 f = _mm_cvtepi32_ps(k);
    k = _mm_sub_epi32(k, _mm_and_si128(_mm_castps_si128(_mm_cmplt_ps(f, v)), lo_lanes));  // ceil
    k = _mm_add_epi32(k, _mm_and_si128(_mm_castps_si128(_mm_cmpgt_ps(f, v)), hi_lanes));  // floor
    k = _mm_sub_epi32(_mm_xor_si128(k, hi_lanes), hi_lanes);  // negate the high bounds
    _mm_storel_epi64(reinterpret_cast<__m128i*>(bounds + i), _mm_packs_epi32(k, k));
  }
#else
  for (int64_t i = begin; i < end; ++i) bounds[i] = VertexPixelBounds(clip + 4 * i, width, height);
#endif
}

// Rasterizes triangle t into rows [row_begin, row_end) of one image (see
// RasterizeRows).
inline void RasterizeTriangle(const float* clip, const PixelBounds* bounds,
                              const int32_t* triangles, int64_t t, int width, int height,
                              int row_begin, int row_end, int32_t* ids, float* bary,
                              float* depth) {
  float e[3], z;
  const int32_t i0 = triangles[3 * t], i1 = triangles[3 * t + 1], i2 = triangles[3 * t + 2];
  const PixelBounds box = TriangleBounds(bounds[i0], bounds[i1], bounds[i2]);
  const int x0 = box.x_lo, x1 = 1 - box.neg_x_hi;  // [x0, x1)
  int y0 = box.y_lo, y1 = 1 - box.neg_y_hi;
  const bool whole_image = x0 == 0 && y0 == 0 && x1 == width && y1 == height;
  if (y0 < row_begin) y0 = row_begin;
  if (y1 > row_end) y1 = row_end;
  if (x0 >= x1 || y0 >= y1) return;
  const float* v0 = clip + 4 * i0;
  const float* v1 = clip + 4 * i1;
  const float* v2 = clip + 4 * i2;
  if (whole_image && !DrawableAcrossEye(v0, v1, v2)) return;
  for (int iy = y0; iy < y1; ++iy) {
    const float py = PixelCenterNdc(iy, height);
    const int64_t row = static_cast<int64_t>(iy) * width;
    for (int ix = x0; ix < x1; ++ix) {
      if (!TestPixel(v0, v1, v2, PixelCenterNdc(ix, width), py, e, &z)) continue;
      const int64_t p = row + ix;
      if (z > depth[p]) continue;
      ids[p] = static_cast<int32_t>(t);
      depth[p] = z;
      Barycentrics(e, bary + 3 * p);
    }
  }
}

// Rasterizes all triangles, in index order, into rows [row_begin, row_end) of
// one image. ids/bary/depth point at the image's full buffers and must have
// been cleared for those rows. Results per pixel do not depend on how rows
// are split, so any sharding gives bit-identical output.
inline void RasterizeRowsBaseline(const float* clip, const PixelBounds* bounds,
                                  const int32_t* triangles, int64_t triangle_count, int width,
                                  int height, int row_begin, int row_end, int32_t* ids,
                                  float* bary, float* depth) {
  for (int64_t t = 0; t < triangle_count; ++t) {
    RasterizeTriangle(clip, bounds, triangles, t, width, height, row_begin, row_end, ids, bary,
                      depth);
  }
}

// Adds the gradient dv (BarycentricGrad) of one pixel to its triangle's
// vertices in dclip [V, 4] (x, y, w; z has no gradient).
inline void ScatterVertexGrad(const int32_t* tri, const float dv[9], float* dclip) {
  for (int m = 0; m < 3; ++m) {
    float* d = dclip + 4 * static_cast<int64_t>(tri[m]);
    d[0] += dv[3 * m + 0];
    d[1] += dv[3 * m + 1];
    d[3] += dv[3 * m + 2];
  }
}

// Gradient of pixel (ix, iy) (see RasterizeBackwardImage), added to dclip.
inline void RasterizeBackwardPixel(const float* clip, const int32_t* triangles,
                                   const int32_t* ids, const float* bary,
                                   const float* df_dbary, int width, int height, int ix,
                                   int iy, float* dclip) {
  const int64_t p = static_cast<int64_t>(iy) * width + ix;
  const int32_t t = ids[p];
  if (t < 0) return;
  const float* g = df_dbary + 3 * p;
  if (g[0] == 0.0f && g[1] == 0.0f && g[2] == 0.0f) return;
  const int32_t* tri = triangles + 3 * static_cast<int64_t>(t);
  float dv[9];
  if (!BarycentricGrad(clip + 4 * tri[0], clip + 4 * tri[1], clip + 4 * tri[2],
                       PixelCenterNdc(ix, width), PixelCenterNdc(iy, height), bary + 3 * p, g,
                       dv)) {
    return;
  }
  ScatterVertexGrad(tri, dv, dclip);
}

// Accumulates d f / d clip for one image into dclip [V, 4] (z stays 0), in
// pixel order, so the sum is deterministic.
inline void RasterizeBackwardImageBaseline(const float* clip, const int32_t* triangles,
                                           const int32_t* ids, const float* bary,
                                           const float* df_dbary, int width, int height,
                                           float* dclip) {
  for (int iy = 0; iy < height; ++iy) {
    for (int ix = 0; ix < width; ++ix) {
      RasterizeBackwardPixel(clip, triangles, ids, bary, df_dbary, width, height, ix, iy,
                             dclip);
    }
  }
}

// sum_c g[c] a[c] for c < channels, in the order an 8-lane vector unit adds
// it (so the scalar and AVX2 gradients agree bit for bit): lane l sums the
// products of channels l, l + 8, ... (a missing channel adds +0), then
// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
// AddLanes8 adds the products of channels [c0, min(c0 + 8, channels)). F is
// float, or a lane type (one pixel per lane, as the shading's Float8) whose
// g[c], a[c] hold channel c of several pixels.
template <typename F>
RENDERER_HD void AddLanes8(const F* g, const F* a, int c0, int channels, F lane[8]) {
  for (int l = 0; l < 8; ++l) lane[l] += c0 + l < channels ? g[c0 + l] * a[c0 + l] : F(0.0f);
}

template <typename F>
RENDERER_HD F SumLanes8(const F lane[8]) {
  return ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
}

template <typename F>
RENDERER_HD F DotInLanes8(const F* g, const F* a, int channels) {
  const F zero(0.0f);
  F lane[8] = {zero, zero, zero, zero, zero, zero, zero, zero};
  for (int c0 = 0; c0 < channels; c0 += 8) AddLanes8(g, a, c0, channels, lane);
  return SumLanes8(lane);
}

// The per-pixel arithmetic of interpolation, one channel at a time (the
// AVX2 version is Avx2Rows in rasterizer_avx2.h).
struct ScalarRows {
  // out[c] = b0 a0[c] + b1 a1[c] + b2 a2[c].
  static void Blend(const float* a0, const float* a1, const float* a2, float b0, float b1,
                    float b2, int channels, float* out) {
    for (int c = 0; c < channels; ++c) out[c] = b0 * a0[c] + b1 * a1[c] + b2 * a2[c];
  }
  // d[c] += b g[c]; returns g . a (DotInLanes8).
  static float Backward(const float* g, const float* a, float b, int channels, float* d) {
    for (int c = 0; c < channels; ++c) d[c] += b * g[c];
    return DotInLanes8(g, a, channels);
  }
};

// out[p, :] = sum_i bary[p, i] * attr[tri[ids[p]][i], :], or background where
// ids[p] is empty, for pixels [begin, end) of one image. kChannels > 0 is the
// channel count as a compile-time constant (so the per-channel loops unroll);
// 0 means `runtime_channels`.
template <int kChannels, typename Rows = ScalarRows>
void InterpolatePixelsBaseline(const float* attr, int runtime_channels,
                               const int32_t* triangles, const int32_t* ids, const float* bary,
                               const float* background, int64_t begin, int64_t end,
                               float* out) {
  const int channels = kChannels > 0 ? kChannels : runtime_channels;
  for (int64_t p = begin; p < end; ++p) {
    float* o = out + p * channels;
    const int32_t t = ids[p];
    if (t < 0) {
      for (int c = 0; c < channels; ++c) o[c] = background[c];
      continue;
    }
    const int32_t* tri = triangles + 3 * static_cast<int64_t>(t);
    Rows::Blend(attr + static_cast<int64_t>(tri[0]) * channels,
                attr + static_cast<int64_t>(tri[1]) * channels,
                attr + static_cast<int64_t>(tri[2]) * channels, bary[3 * p], bary[3 * p + 1],
                bary[3 * p + 2], channels, o);
  }
}

// Backward of InterpolatePixelsBaseline for one image, in one pass over its
// pixels: writes d f / d bary (0 on empty pixels) and accumulates
// d f / d attr [V, C] and d f / d background [C] in pixel order
// (deterministic). df_dattr and df_dbackground must be zeroed by the caller.
template <int kChannels, typename Rows = ScalarRows>
void InterpolateBackwardBaseline(const float* attr, int runtime_channels,
                                 const int32_t* triangles, const int32_t* ids,
                                 const float* bary, const float* df_dout, int64_t pixel_count,
                                 float* df_dbary, float* df_dattr, float* df_dbackground) {
  const int channels = kChannels > 0 ? kChannels : runtime_channels;
  for (int64_t p = 0; p < pixel_count; ++p) {
    const float* g = df_dout + p * channels;
    float* db = df_dbary + 3 * p;
    const int32_t t = ids[p];
    if (t < 0) {
      for (int c = 0; c < channels; ++c) df_dbackground[c] += g[c];
      db[0] = db[1] = db[2] = 0.0f;
      continue;
    }
    const int32_t* tri = triangles + 3 * static_cast<int64_t>(t);
    for (int i = 0; i < 3; ++i) {
      const int64_t offset = static_cast<int64_t>(tri[i]) * channels;
      db[i] = Rows::Backward(g, attr + offset, bary[3 * p + i], channels, df_dattr + offset);
    }
  }
}

// Calls fn(std::integral_constant<int, k>) with k = channels for the counts
// mesh_renderer and the face model use, or k = 0 (run-time count) otherwise.
template <typename Fn>
void DispatchChannels(int channels, Fn&& fn) {
  switch (channels) {
    case 1: return fn(std::integral_constant<int, 1>());
    case 3: return fn(std::integral_constant<int, 3>());
    case 4: return fn(std::integral_constant<int, 4>());
    case 9: return fn(std::integral_constant<int, 9>());
    case 12: return fn(std::integral_constant<int, 12>());
    default: return fn(std::integral_constant<int, 0>());
  }
}

}  // namespace renderer

#endif  // RENDERER_KERNELS_RASTERIZER_CORE_H_
