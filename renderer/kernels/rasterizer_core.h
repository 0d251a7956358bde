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
//  * No back-face culling: the edge matrix is sign-corrected so both windings
//    rasterize. A pixel is inside iff all edge values are >= 0 and one is > 0.
//  * Perspective-correct barycentrics b = e / sum(e); depth z = b.z / b.w in NDC,
//    kept iff -1 <= z <= 1 and z <= z_buffer (ties: the later triangle wins).
//  * Deviation: empty pixels get triangle id kEmptyTriangle (-1) instead of the
//    original's ambiguous 0, and triangles with any non-finite vertex coordinate
//    are not drawn (the original could write NaN barycentrics for them).
#ifndef RENDERER_KERNELS_RASTERIZER_CORE_H_
#define RENDERER_KERNELS_RASTERIZER_CORE_H_

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define RENDERER_HD __host__ __device__ __forceinline__
#else
#define RENDERER_HD inline
#endif

namespace renderer {

constexpr int32_t kEmptyTriangle = -1;
constexpr float kEmptyDepth = 1.0f;  // z-buffer initial value (NDC far plane)
// Pixel-space slack added to screen bounding boxes so that rounding in the
// perspective divide never drops a pixel the exact edge test would accept.
constexpr float kBoundsSlack = 1e-3f;

// Vertex classes for bounding boxes.
enum VertexClass : int32_t { kInFront = 0, kBehind = 1, kNonFinite = 2 };

// Per-vertex screen position of a clip-space vertex, in pixel-centre units
// (pixel ix has its centre at sx = ix).
struct ScreenVertex {
  float sx;
  float sy;
  int32_t cls;
};

struct PixelRange {
  int x0, x1, y0, y1;  // half-open [x0, x1) x [y0, y1)
};

RENDERER_HD float PixelCenterNdc(int i, int size) {
  return static_cast<float>(2 * i + 1 - size) / static_cast<float>(size);
}

RENDERER_HD bool IsFinite(float v) { return v - v == 0.0f; }

RENDERER_HD ScreenVertex ProjectVertex(const float* clip, int width, int height) {
  ScreenVertex s;
  const float x = clip[0], y = clip[1], z = clip[2], w = clip[3];
  if (!(IsFinite(x) && IsFinite(y) && IsFinite(z) && IsFinite(w))) {
    s.sx = s.sy = 0.0f;
    s.cls = kNonFinite;
  } else if (w <= 0.0f) {
    s.sx = s.sy = 0.0f;
    s.cls = kBehind;
  } else {
    s.sx = (x / w + 1.0f) * (0.5f * width) - 0.5f;
    s.sy = (y / w + 1.0f) * (0.5f * height) - 0.5f;
    s.cls = kInFront;
  }
  return s;
}

// Plain compares (not fminf/fmaxf, which are library calls on x86): inputs are
// finite here because non-finite vertices are classified before any bounds.
RENDERER_HD float Min2(float a, float b) { return a < b ? a : b; }
RENDERER_HD float Max2(float a, float b) { return a > b ? a : b; }
RENDERER_HD float Min3(float a, float b, float c) { return Min2(a, Min2(b, c)); }
RENDERER_HD float Max3(float a, float b, float c) { return Max2(a, Max2(b, c)); }

// First and one-past-last pixel index whose centre lies in [lo, hi], clamped.
// Floor/ceil by truncation (values are clamped to >= -1 first, so lo + 1 and
// hi + 1 are non-negative): ceilf/floorf are library calls without SSE4.1.
RENDERER_HD void CenterSpan(float lo, float hi, int size, int* first, int* last) {
  lo = Max2(lo - kBoundsSlack, -1.0f) + 1.0f;
  hi = Min2(Max2(hi + kBoundsSlack, -1.0f), static_cast<float>(size)) + 1.0f;
  if (lo > static_cast<float>(size) + 1.0f) lo = static_cast<float>(size) + 1.0f;
  const int lo_floor = static_cast<int>(lo);
  *first = lo_floor + (static_cast<float>(lo_floor) < lo ? 1 : 0) - 1;  // ceil
  *last = static_cast<int>(hi);  // floor(hi - 1) + 1
  if (*first < 0) *first = 0;
  if (*last > size) *last = size;
}

// Pixels a triangle may cover. Returns false if it cannot cover any pixel.
RENDERER_HD bool TrianglePixelRange(const ScreenVertex& a, const ScreenVertex& b,
                                    const ScreenVertex& c, const float* clip_a,
                                    const float* clip_b, const float* clip_c,
                                    int width, int height, PixelRange* r) {
  if ((a.cls | b.cls | c.cls) == kInFront) {
    CenterSpan(Min3(a.sx, b.sx, c.sx), Max3(a.sx, b.sx, c.sx), width, &r->x0, &r->x1);
    CenterSpan(Min3(a.sy, b.sy, c.sy), Max3(a.sy, b.sy, c.sy), height, &r->y0, &r->y1);
    return r->x0 < r->x1 && r->y0 < r->y1;
  }
  if (a.cls == kNonFinite || b.cls == kNonFinite || c.cls == kNonFinite) return false;
  if (clip_a[3] < 0.0f && clip_b[3] < 0.0f && clip_c[3] < 0.0f) return false;
  // A vertex at or behind the eye: the projected triangle may be unbounded.
  r->x0 = 0;
  r->x1 = width;
  r->y0 = 0;
  r->y1 = height;
  return true;
}

// Adjugate of M = [[x0 x1 x2], [y0 y1 y2], [w0 w1 w2]], negated when det(M) < 0
// so that inside points have non-negative edge values for either winding.
// Row i is the cross product of the other two vertices (x, y, w).
RENDERER_HD void EdgeMatrix(const float* v0, const float* v1, const float* v2, float m[9]) {
  const float x0 = v0[0], y0 = v0[1], w0 = v0[3];
  const float x1 = v1[0], y1 = v1[1], w1 = v1[3];
  const float x2 = v2[0], y2 = v2[1], w2 = v2[3];
  m[0] = y1 * w2 - w1 * y2;
  m[1] = w1 * x2 - x1 * w2;
  m[2] = x1 * y2 - y1 * x2;
  m[3] = y2 * w0 - w2 * y0;
  m[4] = w2 * x0 - x2 * w0;
  m[5] = x2 * y0 - y2 * x0;
  m[6] = y0 * w1 - w0 * y1;
  m[7] = w0 * x1 - x0 * w1;
  m[8] = x0 * y1 - y0 * x1;
  const float det = x0 * m[0] + y0 * m[1] + w0 * m[2];
  if (det < 0.0f) {
    for (int i = 0; i < 9; ++i) m[i] = -m[i];
  }
}

// Inside test and depth of one pixel. Returns false when the pixel is outside
// or its NDC depth is outside [-1, 1]; otherwise sets the edge values e and
// the depth z = (e . z) / (e . w) (the normalisation of e cancels).
RENDERER_HD bool TestPixel(const float m[9], const float* v0, const float* v1,
                           const float* v2, float px, float py, float e[3], float* z) {
  e[0] = m[0] * px + m[1] * py + m[2];
  e[1] = m[3] * px + m[4] * py + m[5];
  e[2] = m[6] * px + m[7] * py + m[8];
  if (!(e[0] >= 0.0f && e[1] >= 0.0f && e[2] >= 0.0f)) return false;  // also rejects NaN
  if (!(e[0] + e[1] + e[2] > 0.0f)) return false;
  const float clip_z = e[0] * v0[2] + e[1] * v1[2] + e[2] * v2[2];
  const float clip_w = e[0] * v0[3] + e[1] * v1[3] + e[2] * v2[3];
  *z = clip_z / clip_w;
  return *z >= -1.0f && *z <= 1.0f;  // false for NaN
}

// Perspective-correct barycentrics b = e / sum(e) of a pixel that passed TestPixel.
RENDERER_HD void Barycentrics(const float e[3], float b[3]) {
  const float sum = e[0] + e[1] + e[2];
  b[0] = e[0] / sum;
  b[1] = e[1] / sum;
  b[2] = e[2] / sum;
}

// Gradient of f(b(v)) w.r.t. the clip-space x, y, w of the three vertices of
// the triangle covering pixel (px, py), given df/db. With p = (px, py, 1) and
// u_i = v_j - v_k for (i, j, k) cyclic, e_i = p . (v_j x v_k) and
// d f / d v_m = (e_m / S^2) * sum_i df/db_i (p x u_i), S = sum(e).
// Writes dv[m*3 + {0,1,2}] = d/d(x, y, w) of vertex m. Returns false (and
// writes nothing) when the result would not be finite.
RENDERER_HD bool BarycentricGrad(const float* v0, const float* v1, const float* v2,
                                 float px, float py, const float df_db[3],
                                 float dv[9]) {
  const float* v[3] = {v0, v1, v2};
  float g[3] = {0.0f, 0.0f, 0.0f};
  float e[3];
  for (int i = 0; i < 3; ++i) {
    const float* vj = v[(i + 1) % 3];
    const float* vk = v[(i + 2) % 3];
    const float ux = vj[0] - vk[0], uy = vj[1] - vk[1], uw = vj[3] - vk[3];
    // p x u with p = (px, py, 1).
    g[0] += df_db[i] * (py * uw - uy);
    g[1] += df_db[i] * (ux - px * uw);
    g[2] += df_db[i] * (px * uy - py * ux);
    // e_i = p . (v_j x v_k)
    const float cx = vj[1] * vk[3] - vj[3] * vk[1];
    const float cy = vj[3] * vk[0] - vj[0] * vk[3];
    const float cw = vj[0] * vk[1] - vj[1] * vk[0];
    e[i] = px * cx + py * cy + cw;
  }
  const float sum = e[0] + e[1] + e[2];
  const float inv_sq = 1.0f / (sum * sum);
  for (int m = 0; m < 3; ++m) {
    const float s = e[m] * inv_sq;
    dv[3 * m + 0] = s * g[0];
    dv[3 * m + 1] = s * g[1];
    dv[3 * m + 2] = s * g[2];
  }
  for (int i = 0; i < 9; ++i) {
    if (!IsFinite(dv[i])) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// CPU drivers. Each works on one image; callers shard over images and rows.
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

inline void ProjectVertices(const float* clip, int64_t begin, int64_t end, int width,
                            int height, ScreenVertex* screen) {
  for (int64_t v = begin; v < end; ++v) screen[v] = ProjectVertex(clip + 4 * v, width, height);
}

// Rasterizes all triangles, in index order, into rows [row_begin, row_end) of
// one image. ids/bary/depth point at the image's full buffers and must have
// been cleared for those rows. Results per pixel do not depend on how rows
// are split, so any sharding gives bit-identical output.
inline void RasterizeRows(const float* clip, const ScreenVertex* screen,
                          const int32_t* triangles, int64_t triangle_count, int width,
                          int height, int row_begin, int row_end, int32_t* ids,
                          float* bary, float* depth) {
  float m[9], e[3], z;
  for (int64_t t = 0; t < triangle_count; ++t) {
    const int32_t i0 = triangles[3 * t], i1 = triangles[3 * t + 1], i2 = triangles[3 * t + 2];
    const ScreenVertex &s0 = screen[i0], &s1 = screen[i1], &s2 = screen[i2];
    // Cheap row rejection before anything else: most triangles miss a band.
    if (s0.cls == kInFront && s1.cls == kInFront && s2.cls == kInFront) {
      if (Max3(s0.sy, s1.sy, s2.sy) + kBoundsSlack < row_begin ||
          Min3(s0.sy, s1.sy, s2.sy) - kBoundsSlack > row_end - 1) {
        continue;
      }
    }
    const float* v0 = clip + 4 * i0;
    const float* v1 = clip + 4 * i1;
    const float* v2 = clip + 4 * i2;
    PixelRange r;
    if (!TrianglePixelRange(s0, s1, s2, v0, v1, v2, width, height, &r)) continue;
    const int y0 = r.y0 > row_begin ? r.y0 : row_begin;
    const int y1 = r.y1 < row_end ? r.y1 : row_end;
    if (y0 >= y1) continue;
    EdgeMatrix(v0, v1, v2, m);
    for (int iy = y0; iy < y1; ++iy) {
      const float py = PixelCenterNdc(iy, height);
      const int64_t row = static_cast<int64_t>(iy) * width;
      for (int ix = r.x0; ix < r.x1; ++ix) {
        const float px = PixelCenterNdc(ix, width);
        if (!TestPixel(m, v0, v1, v2, px, py, e, &z)) continue;
        const int64_t p = row + ix;
        if (z > depth[p]) continue;
        ids[p] = static_cast<int32_t>(t);
        depth[p] = z;
        Barycentrics(e, bary + 3 * p);
      }
    }
  }
}

// Accumulates d f / d clip for one image into dclip [V, 4] (z stays 0), in
// pixel order, so the sum is deterministic.
inline void RasterizeBackwardImage(const float* clip, const int32_t* triangles,
                                   const int32_t* ids, const float* df_dbary, int width,
                                   int height, float* dclip) {
  float dv[9];
  for (int iy = 0; iy < height; ++iy) {
    const float py = PixelCenterNdc(iy, height);
    for (int ix = 0; ix < width; ++ix) {
      const int64_t p = static_cast<int64_t>(iy) * width + ix;
      const int32_t t = ids[p];
      if (t < 0) continue;
      const float* g = df_dbary + 3 * p;
      if (g[0] == 0.0f && g[1] == 0.0f && g[2] == 0.0f) continue;
      const int32_t* tri = triangles + 3 * static_cast<int64_t>(t);
      const float px = PixelCenterNdc(ix, width);
      if (!BarycentricGrad(clip + 4 * tri[0], clip + 4 * tri[1], clip + 4 * tri[2], px, py,
                           g, dv)) {
        continue;
      }
      for (int m = 0; m < 3; ++m) {
        float* d = dclip + 4 * static_cast<int64_t>(tri[m]);
        d[0] += dv[3 * m + 0];
        d[1] += dv[3 * m + 1];
        d[3] += dv[3 * m + 2];
      }
    }
  }
}

// out[p, :] = sum_i bary[p, i] * attr[tri[ids[p]][i], :], or background where
// ids[p] is empty, for pixels [begin, end) of one image.
inline void InterpolatePixels(const float* attr, int channels, const int32_t* triangles,
                              const int32_t* ids, const float* bary, const float* background,
                              int64_t begin, int64_t end, float* out) {
  for (int64_t p = begin; p < end; ++p) {
    float* o = out + p * channels;
    const int32_t t = ids[p];
    if (t < 0) {
      for (int c = 0; c < channels; ++c) o[c] = background[c];
      continue;
    }
    const int32_t* tri = triangles + 3 * static_cast<int64_t>(t);
    const float* a0 = attr + static_cast<int64_t>(tri[0]) * channels;
    const float* a1 = attr + static_cast<int64_t>(tri[1]) * channels;
    const float* a2 = attr + static_cast<int64_t>(tri[2]) * channels;
    const float b0 = bary[3 * p], b1 = bary[3 * p + 1], b2 = bary[3 * p + 2];
    for (int c = 0; c < channels; ++c) o[c] = b0 * a0[c] + b1 * a1[c] + b2 * a2[c];
  }
}

// d f / d bary for pixels [begin, end) of one image (0 on empty pixels).
inline void InterpolateBackwardBary(const float* attr, int channels,
                                    const int32_t* triangles, const int32_t* ids,
                                    const float* df_dout, int64_t begin, int64_t end,
                                    float* df_dbary) {
  for (int64_t p = begin; p < end; ++p) {
    float* d = df_dbary + 3 * p;
    const int32_t t = ids[p];
    if (t < 0) {
      d[0] = d[1] = d[2] = 0.0f;
      continue;
    }
    const int32_t* tri = triangles + 3 * static_cast<int64_t>(t);
    const float* g = df_dout + p * channels;
    for (int i = 0; i < 3; ++i) {
      const float* a = attr + static_cast<int64_t>(tri[i]) * channels;
      float s = 0.0f;
      for (int c = 0; c < channels; ++c) s += g[c] * a[c];
      d[i] = s;
    }
  }
}

// Accumulates d f / d attr [V, C] and d f / d background [C] of one image in
// pixel order (deterministic). Both must be zeroed by the caller.
inline void InterpolateBackwardAttr(int channels, const int32_t* triangles,
                                    const int32_t* ids, const float* bary,
                                    const float* df_dout, int64_t pixel_count,
                                    float* df_dattr, float* df_dbackground) {
  for (int64_t p = 0; p < pixel_count; ++p) {
    const float* g = df_dout + p * channels;
    const int32_t t = ids[p];
    if (t < 0) {
      for (int c = 0; c < channels; ++c) df_dbackground[c] += g[c];
      continue;
    }
    const int32_t* tri = triangles + 3 * static_cast<int64_t>(t);
    for (int i = 0; i < 3; ++i) {
      const float b = bary[3 * p + i];
      float* d = df_dattr + static_cast<int64_t>(tri[i]) * channels;
      for (int c = 0; c < channels; ++c) d[c] += b * g[c];
    }
  }
}

}  // namespace renderer

#endif  // RENDERER_KERNELS_RASTERIZER_CORE_H_
