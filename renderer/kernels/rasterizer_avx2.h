// AVX2 CPU drivers of the rasterizer (x86-64, chosen at run time by
// rasterizer_cpu.h): the baseline drivers of rasterizer_core.h, 8 triangles,
// pixels or vertices per step, with the same floating-point operations in the
// same order, so their outputs are bit-identical to the baseline's
// (tests/cc/core_test.cc checks every driver). Compiled with
// -ffp-contract=off like the rest of the library: no FMA contraction on
// either side. Empty outside x86-64 GCC/Clang host compilation.
#ifndef RENDERER_KERNELS_RASTERIZER_AVX2_H_
#define RENDERER_KERNELS_RASTERIZER_AVX2_H_

#include <algorithm>

#include "renderer/kernels/rasterizer_core.h"
#include "renderer/kernels/simd_x86.h"

#if defined(RENDERER_CPU_AVX2_DISPATCH)

namespace renderer {

// Lane-wise IsFinite (as a mask), Clamp, CeilToInt and FloorToInt.
__attribute__((target("avx2"))) inline __m256 Finite8(__m256 v) {
  return _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_EQ_OQ);
}
__attribute__((target("avx2"))) inline __m256 Clamp8(__m256 v, __m256 lo, __m256 hi) {
  return _mm256_min_ps(_mm256_max_ps(v, lo), hi);
}
__attribute__((target("avx2"))) inline __m256i CeilToInt8(__m256 v) {
  const __m256i i = _mm256_cvttps_epi32(v);  // minus -1 where i < v
  return _mm256_sub_epi32(
      i, _mm256_castps_si256(_mm256_cmp_ps(_mm256_cvtepi32_ps(i), v, _CMP_LT_OQ)));
}
__attribute__((target("avx2"))) inline __m256i FloorToInt8(__m256 v) {
  const __m256i i = _mm256_cvttps_epi32(v);  // plus -1 where i > v
  return _mm256_add_epi32(
      i, _mm256_castps_si256(_mm256_cmp_ps(_mm256_cvtepi32_ps(i), v, _CMP_GT_OQ)));
}

// PixelCenterNdc of 8 pixel indices: (2 i + 1 - size) / size, exactly.
__attribute__((target("avx2"))) inline __m256 PixelCenterNdc8(__m256i i, int size) {
  return _mm256_div_ps(
      _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_add_epi32(i, i), _mm256_set1_epi32(1 - size))),
      _mm256_set1_ps(static_cast<float>(size)));
}

// Eight 4-float rows as one register per column (an 8 x 4 transpose).
__attribute__((target("avx2"))) inline void LoadRows8(const float* const rows[8],
                                                      __m256 out[4]) {
  __m256 t[4];
  for (int l = 0; l < 4; ++l) {
    t[l] = _mm256_set_m128(_mm_loadu_ps(rows[l + 4]), _mm_loadu_ps(rows[l]));
  }
  const __m256 u0 = _mm256_unpacklo_ps(t[0], t[1]), u1 = _mm256_unpackhi_ps(t[0], t[1]);
  const __m256 u2 = _mm256_unpacklo_ps(t[2], t[3]), u3 = _mm256_unpackhi_ps(t[2], t[3]);
  out[0] = _mm256_shuffle_ps(u0, u2, _MM_SHUFFLE(1, 0, 1, 0));
  out[1] = _mm256_shuffle_ps(u0, u2, _MM_SHUFFLE(3, 2, 3, 2));
  out[2] = _mm256_shuffle_ps(u1, u3, _MM_SHUFFLE(1, 0, 1, 0));
  out[3] = _mm256_shuffle_ps(u1, u3, _MM_SHUFFLE(3, 2, 3, 2));
}

// ProjectVertexBounds for 8 vertices per step, [begin, end) with end - begin
// a multiple of 8: the same arithmetic lane-wise (bit-identical, checked by
// tests/cc/core_test.cc).
__attribute__((target("avx2"))) inline void ProjectVertexBoundsAvx2(
    const float* clip, int64_t begin, int64_t end, int width, int height,
    PixelBounds* bounds) {
  const float fw = static_cast<float>(width), fh = static_cast<float>(height);
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256 half_w = _mm256_set1_ps(0.5f * fw), half_h = _mm256_set1_ps(0.5f * fh);
  const __m256 point_five = _mm256_set1_ps(0.5f), slack = _mm256_set1_ps(kBoundsSlack);
  const __m256 neg_one = _mm256_set1_ps(-1.0f);
  const __m256 float_w = _mm256_set1_ps(fw), float_h = _mm256_set1_ps(fh);
  const __m256 last_x = _mm256_set1_ps(fw - 1.0f), last_y = _mm256_set1_ps(fh - 1.0f);
  const __m256i whole_x = _mm256_set1_epi32(1 - width), whole_y = _mm256_set1_epi32(1 - height);
  for (int64_t v = begin; v < end; v += 8) {
    const float* rows[8];
    for (int l = 0; l < 8; ++l) rows[l] = clip + 4 * (v + l);
    __m256 xyzw[4];
    LoadRows8(rows, xyzw);
    const __m256 x = xyzw[0], y = xyzw[1], z = xyzw[2], w = xyzw[3];
    const __m256 ndc_x = _mm256_div_ps(x, w), ndc_y = _mm256_div_ps(y, w);
    const __m256 valid = _mm256_and_ps(
        _mm256_and_ps(_mm256_cmp_ps(w, zero, _CMP_GT_OQ), Finite8(w)),
        _mm256_and_ps(_mm256_and_ps(Finite8(ndc_x), Finite8(ndc_y)),
                      Finite8(_mm256_div_ps(z, w))));
    const __m256 sx = _mm256_sub_ps(_mm256_mul_ps(_mm256_add_ps(ndc_x, one), half_w), point_five);
    const __m256 sy = _mm256_sub_ps(_mm256_mul_ps(_mm256_add_ps(ndc_y, one), half_h), point_five);
    const __m256i keep = _mm256_castps_si256(valid);
    const __m256i x_lo =
        _mm256_and_si256(keep, CeilToInt8(Clamp8(_mm256_sub_ps(sx, slack), zero, float_w)));
    const __m256i y_lo =
        _mm256_and_si256(keep, CeilToInt8(Clamp8(_mm256_sub_ps(sy, slack), zero, float_h)));
    const __m256i neg_x_hi = _mm256_blendv_epi8(
        whole_x,
        _mm256_sub_epi32(_mm256_setzero_si256(),
                         FloorToInt8(Clamp8(_mm256_add_ps(sx, slack), neg_one, last_x))),
        keep);
    const __m256i neg_y_hi = _mm256_blendv_epi8(
        whole_y,
        _mm256_sub_epi32(_mm256_setzero_si256(),
                         FloorToInt8(Clamp8(_mm256_add_ps(sy, slack), neg_one, last_y))),
        keep);
    // Per 128-bit half (vertices 0-3 | 4-7): int16 [x_lo y_lo] and [neg_x_hi neg_y_hi],
    // interleaved into 4 PixelBounds per half.
    const __m256i lo = _mm256_packs_epi32(x_lo, y_lo), hi = _mm256_packs_epi32(neg_x_hi, neg_y_hi);
    const __m256i xs = _mm256_unpacklo_epi16(lo, hi), ys = _mm256_unpackhi_epi16(lo, hi);
    const __m256i first = _mm256_unpacklo_epi16(xs, ys), second = _mm256_unpackhi_epi16(xs, ys);
    __m256i* out = reinterpret_cast<__m256i*>(bounds + v);
    _mm256_storeu_si256(out, _mm256_permute2x128_si256(first, second, 0x20));
    _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(first, second, 0x31));
  }
}
// Pixel test of 8 triangles at one pixel each: TestPixel and Barycentrics
// with the same operations in the same order (hence the same bits; no FMA).
// v[k][c]: coordinate c (x, y, z, w) of vertex k of the 8 triangles.
struct PixelTest8 {
  __m256 z, b0, b1, b2;
  int mask;  // bit l: lane l passed TestPixel
};

__attribute__((target("avx2"))) inline PixelTest8 TestPixel8(const __m256 v[3][4], __m256 px,
                                                             __m256 py) {
  const __m256 ax = _mm256_sub_ps(v[0][0], _mm256_mul_ps(v[0][3], px));
  const __m256 ay = _mm256_sub_ps(v[0][1], _mm256_mul_ps(v[0][3], py));
  const __m256 bx = _mm256_sub_ps(v[1][0], _mm256_mul_ps(v[1][3], px));
  const __m256 by = _mm256_sub_ps(v[1][1], _mm256_mul_ps(v[1][3], py));
  const __m256 cx = _mm256_sub_ps(v[2][0], _mm256_mul_ps(v[2][3], px));
  const __m256 cy = _mm256_sub_ps(v[2][1], _mm256_mul_ps(v[2][3], py));
  __m256 e0 = _mm256_sub_ps(_mm256_mul_ps(bx, cy), _mm256_mul_ps(by, cx));
  __m256 e1 = _mm256_sub_ps(_mm256_mul_ps(cx, ay), _mm256_mul_ps(cy, ax));
  __m256 e2 = _mm256_sub_ps(_mm256_mul_ps(ax, by), _mm256_mul_ps(ay, bx));
  __m256 det = _mm256_add_ps(
      _mm256_add_ps(_mm256_mul_ps(e0, v[0][3]), _mm256_mul_ps(e1, v[1][3])),
      _mm256_mul_ps(e2, v[2][3]));
  const __m256 zero = _mm256_setzero_ps();
  const __m256 flip = _mm256_and_ps(_mm256_cmp_ps(det, zero, _CMP_LT_OQ), _mm256_set1_ps(-0.0f));
  e0 = _mm256_xor_ps(e0, flip);
  e1 = _mm256_xor_ps(e1, flip);
  e2 = _mm256_xor_ps(e2, flip);
  det = _mm256_xor_ps(det, flip);
  const __m256 sum = _mm256_add_ps(_mm256_add_ps(e0, e1), e2);
  __m256 ok = _mm256_and_ps(
      _mm256_and_ps(_mm256_cmp_ps(e0, zero, _CMP_GE_OQ), _mm256_cmp_ps(e1, zero, _CMP_GE_OQ)),
      _mm256_and_ps(_mm256_cmp_ps(e2, zero, _CMP_GE_OQ), _mm256_cmp_ps(sum, zero, _CMP_GT_OQ)));
  ok = _mm256_and_ps(ok, _mm256_cmp_ps(sum, _mm256_set1_ps(kMaxFiniteFloat), _CMP_LE_OQ));
  PixelTest8 r;
  r.z = _mm256_div_ps(
      _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(e0, v[0][2]), _mm256_mul_ps(e1, v[1][2])),
                    _mm256_mul_ps(e2, v[2][2])),
      det);
  ok = _mm256_and_ps(ok, _mm256_and_ps(_mm256_cmp_ps(r.z, _mm256_set1_ps(-1.0f), _CMP_GE_OQ),
                                       _mm256_cmp_ps(r.z, _mm256_set1_ps(1.0f), _CMP_LE_OQ)));
  r.mask = _mm256_movemask_ps(ok);
  r.b0 = _mm256_div_ps(e0, sum);
  r.b1 = _mm256_div_ps(e1, sum);
  r.b2 = _mm256_div_ps(e2, sum);
  return r;
}

// Coordinates of 8 vertices (rows of clip [V, 4]) as x, y, z, w registers.
__attribute__((target("avx2"))) inline void LoadVertices8(const float* clip,
                                                          const int32_t index[8],
                                                          __m256 out[4]) {
  const float* rows[8];
  for (int l = 0; l < 8; ++l) rows[l] = clip + 4 * static_cast<int64_t>(index[l]);
  LoadRows8(rows, out);
}

// The vertex indices of 8 consecutive triangles (24 int32) as index[k][l] =
// vertex k of triangle l.
__attribute__((target("avx2"))) inline void LoadTriangles8(const int32_t* triangles,
                                                           int32_t index[3][8]) {
  __m256 k[3];  // int32 bits, moved as floats
  Load3x8(reinterpret_cast<const float*>(triangles), &k[0], &k[1], &k[2]);
  for (int i = 0; i < 3; ++i) _mm256_store_ps(reinterpret_cast<float*>(index[i]), k[i]);
}

// TriangleBounds of 8 triangles as int32 lanes: pixel box [x0, x1) x [y0, y1).
__attribute__((target("avx2"))) inline void TriangleBounds8(const PixelBounds* bounds,
                                                            const int32_t index[3][8],
                                                            __m256i* x0, __m256i* y0,
                                                            __m256i* x1, __m256i* y1) {
  __m128i pairs[4];  // boxes of triangles 2i and 2i + 1, 4 int16 each
  for (int i = 0; i < 4; ++i) {
    __m128i box[2];
    for (int j = 0; j < 2; ++j) {
      const int l = 2 * i + j;
      box[j] = _mm_min_epi16(
          _mm_min_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bounds + index[0][l])),
                        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bounds + index[1][l]))),
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bounds + index[2][l])));
    }
    pairs[i] = _mm_unpacklo_epi64(box[0], box[1]);
  }
  // Transpose the 8 x 4 int16 matrix into one register of 8 values per field.
  const __m128i a0 = _mm_unpacklo_epi16(pairs[0], pairs[1]);  // triangles 0, 2
  const __m128i a1 = _mm_unpackhi_epi16(pairs[0], pairs[1]);  // triangles 1, 3
  const __m128i c0 = _mm_unpacklo_epi16(pairs[2], pairs[3]);  // triangles 4, 6
  const __m128i c1 = _mm_unpackhi_epi16(pairs[2], pairs[3]);  // triangles 5, 7
  const __m128i a_xy = _mm_unpacklo_epi16(a0, a1), a_hi = _mm_unpackhi_epi16(a0, a1);
  const __m128i c_xy = _mm_unpacklo_epi16(c0, c1), c_hi = _mm_unpackhi_epi16(c0, c1);
  const __m256i one = _mm256_set1_epi32(1);
  *x0 = _mm256_cvtepi16_epi32(_mm_unpacklo_epi64(a_xy, c_xy));
  *y0 = _mm256_cvtepi16_epi32(_mm_unpackhi_epi64(a_xy, c_xy));
  *x1 = _mm256_sub_epi32(one, _mm256_cvtepi16_epi32(_mm_unpacklo_epi64(a_hi, c_hi)));
  *y1 = _mm256_sub_epi32(one, _mm256_cvtepi16_epi32(_mm_unpackhi_epi64(a_hi, c_hi)));
}

// Writes the pixels of 8 lanes' PixelTest8 results that pass the depth test.
inline void WritePixels8(const int32_t pixel[8], const float z[8], const float b0[8],
                         const float b1[8], const float b2[8], int lane, int32_t id,
                         int32_t* ids, float* bary, float* depth) {
  const int64_t p = pixel[lane];
  if (z[lane] > depth[p]) return;
  ids[p] = id;
  depth[p] = z[lane];
  bary[3 * p] = b0[lane];
  bary[3 * p + 1] = b1[lane];
  bary[3 * p + 2] = b2[lane];
}

// Bits 0-7 of m moved to the even bits 0, 2, ..., 14.
inline unsigned SpreadBits8(unsigned m) {
  m = (m | m << 4) & 0x0F0Fu;
  m = (m | m << 2) & 0x3333u;
  return (m | m << 1) & 0x5555u;
}

// The pixel tests of one group of 8 triangles: up to two pixels per lane (k).
struct alignas(32) GroupTests8 {
  int32_t pixel[2][8];
  float z[2][8], b0[2][8], b1[2][8], b2[2][8];
};

// Per group of a batch: lanes whose k-th pixel passed (hits[k]) and lanes with a
// box of more than two pixels (large, drawn by the baseline in their turn).
struct GroupHits8 {
  uint8_t hits[2], large;
};

constexpr int kGroupsPerBatch = 32;

// Writes a batch's hits in index order (lane by lane, k = 0 before 1) and draws
// its large lanes at their place.
inline void WriteGroups8(const GroupTests8* tests, const GroupHits8* group_hits, int groups,
                         int64_t first_triangle, const float* clip, const PixelBounds* bounds,
                         const int32_t* triangles, int width, int height, int row_begin,
                         int row_end, int32_t* ids, float* bary, float* depth) {
  for (int g = 0; g < groups; ++g) {
    const GroupTests8& r = tests[g];
    const GroupHits8 h = group_hits[g];
    const int64_t t0 = first_triangle + 8 * g;
    if (h.large == 0) {
      for (unsigned slots = SpreadBits8(h.hits[0]) | SpreadBits8(h.hits[1]) << 1; slots != 0;
           slots &= slots - 1) {
        const int s = __builtin_ctz(slots), l = s >> 1, k = s & 1;
        WritePixels8(r.pixel[k], r.z[k], r.b0[k], r.b1[k], r.b2[k], l,
                     static_cast<int32_t>(t0 + l), ids, bary, depth);
      }
      continue;
    }
    for (int lanes = h.hits[0] | h.hits[1] | h.large; lanes != 0; lanes &= lanes - 1) {
      const int l = __builtin_ctz(lanes);
      const int32_t id = static_cast<int32_t>(t0 + l);
      if (h.large >> l & 1) {
        RasterizeTriangle(clip, bounds, triangles, id, width, height, row_begin, row_end, ids,
                          bary, depth);
        continue;
      }
      for (int k = 0; k < 2; ++k) {
        if (h.hits[k] >> l & 1) {
          WritePixels8(r.pixel[k], r.z[k], r.b0[k], r.b1[k], r.b2[k], l, id, ids, bary, depth);
        }
      }
    }
  }
}

// RasterizeRowsBaseline, 8 triangles at a time: the boxes of most triangles
// of a dense mesh hold at most two pixel centres, so those pixels are tested
// in 8 lanes; a triangle with a larger box goes through the baseline on its
// own, in its turn. The tests of a batch of groups are made first and their
// hits written afterwards, in index order: when each group's writes followed
// its tests, every mispredicted branch on the hits (about one per group) waited
// for the group's divisions, so consecutive groups could not overlap (-20 %
// time on a face).
// Bit-identical to the baseline (tests/cc/core_test.cc).
__attribute__((target("avx2"))) inline void RasterizeRowsAvx2(
    const float* clip, const PixelBounds* bounds, const int32_t* triangles,
    int64_t triangle_count, int width, int height, int row_begin, int row_end, int32_t* ids,
    float* bary, float* depth) {
  const int64_t simd_end = triangle_count - triangle_count % 8;
  alignas(32) int32_t vertex[3][8];
  alignas(32) GroupTests8 tests[kGroupsPerBatch];
  GroupHits8 group_hits[kGroupsPerBatch];
  const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2);
  const __m256i size_w = _mm256_set1_epi32(width), size_h = _mm256_set1_epi32(height);
  const __m256i first_row = _mm256_set1_epi32(row_begin), last_row = _mm256_set1_epi32(row_end);
  for (int64_t batch = 0; batch < simd_end; batch += 8 * kGroupsPerBatch) {
    const int groups = static_cast<int>(std::min<int64_t>(kGroupsPerBatch, (simd_end - batch) / 8));
    for (int g = 0; g < groups; ++g) {
      const int64_t t0 = batch + 8 * g;
      LoadTriangles8(triangles + 3 * t0, vertex);
      __m256i x0, y0, x1, y1;
      TriangleBounds8(bounds, vertex, &x0, &y0, &x1, &y1);
      const __m256i whole = _mm256_and_si256(
          _mm256_and_si256(_mm256_cmpeq_epi32(x0, _mm256_setzero_si256()),
                           _mm256_cmpeq_epi32(y0, _mm256_setzero_si256())),
          _mm256_and_si256(_mm256_cmpeq_epi32(x1, size_w), _mm256_cmpeq_epi32(y1, size_h)));
      y0 = _mm256_max_epi32(y0, first_row);
      y1 = _mm256_min_epi32(y1, last_row);
      const __m256i w = _mm256_sub_epi32(x1, x0), h = _mm256_sub_epi32(y1, y0);
      const __m256i nonempty = _mm256_and_si256(_mm256_cmpgt_epi32(w, _mm256_setzero_si256()),
                                                _mm256_cmpgt_epi32(h, _mm256_setzero_si256()));
      const __m256i w1 = _mm256_cmpeq_epi32(w, one), h1 = _mm256_cmpeq_epi32(h, one);
      const __m256i wide = _mm256_and_si256(_mm256_cmpeq_epi32(w, two), h1);  // 2 x 1
      const __m256i tall = _mm256_and_si256(w1, _mm256_cmpeq_epi32(h, two));  // 1 x 2
      const __m256i small = _mm256_andnot_si256(
          whole, _mm256_or_si256(_mm256_and_si256(w1, h1), _mm256_or_si256(wide, tall)));
      const int nonempty_mask = _mm256_movemask_ps(_mm256_castsi256_ps(nonempty));
      const int small_mask = _mm256_movemask_ps(_mm256_castsi256_ps(small)) & nonempty_mask;
      GroupHits8& gh = group_hits[g];
      gh.large = static_cast<uint8_t>(nonempty_mask & ~small_mask);
      gh.hits[0] = gh.hits[1] = 0;
      if (small_mask == 0) continue;
      __m256 v[3][4];
      for (int k = 0; k < 3; ++k) LoadVertices8(clip, vertex[k], v[k]);
      const __m256i second = _mm256_and_si256(_mm256_or_si256(wide, tall), small);
      const int second_mask = _mm256_movemask_ps(_mm256_castsi256_ps(second)) & small_mask;
      GroupTests8& r = tests[g];
      for (int k = 0; k < (second_mask ? 2 : 1); ++k) {
        const __m256i ix = k == 0 ? x0 : _mm256_sub_epi32(x0, wide);  // wide lanes are -1
        const __m256i iy = k == 0 ? y0 : _mm256_sub_epi32(y0, tall);
        const PixelTest8 t =
            TestPixel8(v, PixelCenterNdc8(ix, width), PixelCenterNdc8(iy, height));
        gh.hits[k] = static_cast<uint8_t>(t.mask & (k == 0 ? small_mask : second_mask));
        _mm256_store_si256(reinterpret_cast<__m256i*>(r.pixel[k]),
                           _mm256_add_epi32(_mm256_mullo_epi32(iy, size_w), ix));
        _mm256_store_ps(r.z[k], t.z);
        _mm256_store_ps(r.b0[k], t.b0);
        _mm256_store_ps(r.b1[k], t.b1);
        _mm256_store_ps(r.b2[k], t.b2);
      }
    }
    WriteGroups8(tests, group_hits, groups, batch, clip, bounds, triangles, width, height,
                 row_begin, row_end, ids, bary, depth);
  }
  for (int64_t t = simd_end; t < triangle_count; ++t) {
    RasterizeTriangle(clip, bounds, triangles, t, width, height, row_begin, row_end, ids, bary,
                      depth);
  }
}
// sum_i df/db_i (v_j - v_k) for coordinate c, (i, j, k) cyclic, 8 lanes.
__attribute__((target("avx2"))) inline __m256 WeightedEdges8(const __m256 g[3],
                                                             const __m256 v[3][4], int c) {
  return _mm256_add_ps(
      _mm256_add_ps(_mm256_mul_ps(g[0], _mm256_sub_ps(v[1][c], v[2][c])),
                    _mm256_mul_ps(g[1], _mm256_sub_ps(v[2][c], v[0][c]))),
      _mm256_mul_ps(g[2], _mm256_sub_ps(v[0][c], v[1][c])));
}

// BarycentricGrad of 8 pixels: dv[3 m + c] lanes; returns the mask of lanes
// whose 9 values are finite.
__attribute__((target("avx2"))) inline int BarycentricGrad8(const __m256 v[3][4], __m256 px,
                                                            __m256 py, const __m256 b[3],
                                                            const __m256 g[3], __m256 dv[9]) {
  const __m256 ux = WeightedEdges8(g, v, 0), uy = WeightedEdges8(g, v, 1);
  const __m256 uw = WeightedEdges8(g, v, 3);
  const __m256 gx = _mm256_sub_ps(_mm256_mul_ps(py, uw), uy);
  const __m256 gy = _mm256_sub_ps(ux, _mm256_mul_ps(px, uw));
  const __m256 gw = _mm256_sub_ps(_mm256_mul_ps(px, uy), _mm256_mul_ps(py, ux));
  const __m256 det = _mm256_add_ps(
      _mm256_add_ps(
          _mm256_mul_ps(v[0][0], _mm256_sub_ps(_mm256_mul_ps(v[1][1], v[2][3]),
                                               _mm256_mul_ps(v[1][3], v[2][1]))),
          _mm256_mul_ps(v[0][1], _mm256_sub_ps(_mm256_mul_ps(v[1][3], v[2][0]),
                                               _mm256_mul_ps(v[1][0], v[2][3])))),
      _mm256_mul_ps(v[0][3], _mm256_sub_ps(_mm256_mul_ps(v[1][0], v[2][1]),
                                           _mm256_mul_ps(v[1][1], v[2][0]))));
  const __m256 inv_s = _mm256_div_ps(
      _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(b[0], v[0][3]), _mm256_mul_ps(b[1], v[1][3])),
                    _mm256_mul_ps(b[2], v[2][3])),
      det);
  __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int m = 0; m < 3; ++m) {
    const __m256 s = _mm256_mul_ps(b[m], inv_s);
    dv[3 * m + 0] = _mm256_mul_ps(s, gx);
    dv[3 * m + 1] = _mm256_mul_ps(s, gy);
    dv[3 * m + 2] = _mm256_mul_ps(s, gw);
    for (int c = 0; c < 3; ++c) finite = _mm256_and_ps(finite, Finite8(dv[3 * m + c]));
  }
  return _mm256_movemask_ps(finite);
}

// The gradients (x, y, w) of one vertex of 8 lanes, dv[0..2], as 8 (x, y, 0, w) rows
// of 4 floats for 128-bit adds into dclip [V, 4]: lane l's row at UpdateOfLane.
__attribute__((target("avx2"))) inline void StoreVertexGrads8(const __m256 dv[3],
                                                              float out[32]) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 xy_lo = _mm256_unpacklo_ps(dv[0], dv[1]), xy_hi = _mm256_unpackhi_ps(dv[0], dv[1]);
  const __m256 zw_lo = _mm256_unpacklo_ps(zero, dv[2]), zw_hi = _mm256_unpackhi_ps(zero, dv[2]);
  // Each register holds the rows of lanes j (low half) and j + 4 (high half).
  _mm256_store_ps(out, _mm256_shuffle_ps(xy_lo, zw_lo, _MM_SHUFFLE(1, 0, 1, 0)));
  _mm256_store_ps(out + 8, _mm256_shuffle_ps(xy_lo, zw_lo, _MM_SHUFFLE(3, 2, 3, 2)));
  _mm256_store_ps(out + 16, _mm256_shuffle_ps(xy_hi, zw_hi, _MM_SHUFFLE(1, 0, 1, 0)));
  _mm256_store_ps(out + 24, _mm256_shuffle_ps(xy_hi, zw_hi, _MM_SHUFFLE(3, 2, 3, 2)));
}

inline const float* UpdateOfLane(const float updates[3][32], int lane) {
  return updates[0] + 8 * (lane & 3) + 4 * (lane >> 2);
}

// RasterizeBackwardImageBaseline with BarycentricGrad evaluated for 8 pixels
// of a row per step (same operations in the same order: the same bits) and
// the results scattered pixel by pixel in order, one 4-float add per vertex
// (z gains +0, exactly), so the sums are bit-identical to the baseline's
// (tests/cc/core_test.cc).
__attribute__((target("avx2"))) inline void RasterizeBackwardImageAvx2(
    const float* clip, const int32_t* triangles, const int32_t* ids, const float* bary,
    const float* df_dbary, int width, int height, float* dclip) {
  alignas(32) int32_t tid[8], vertex[3][8];
  alignas(32) float updates[3][32];
  const int simd_width = width - width % 8;
  const __m256 zero = _mm256_setzero_ps();
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int iy = 0; iy < height; ++iy) {
    const __m256 py = _mm256_set1_ps(PixelCenterNdc(iy, height));
    for (int ix = 0; ix < simd_width; ix += 8) {
      const int64_t p = static_cast<int64_t>(iy) * width + ix;
      const __m256i id = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ids + p));
      __m256 g[3];
      Load3x8(df_dbary + 3 * p, &g[0], &g[1], &g[2]);
      const __m256 nonzero = _mm256_or_ps(
          _mm256_or_ps(_mm256_cmp_ps(g[0], zero, _CMP_NEQ_UQ),
                       _mm256_cmp_ps(g[1], zero, _CMP_NEQ_UQ)),
          _mm256_cmp_ps(g[2], zero, _CMP_NEQ_UQ));
      // Lanes with a triangle (id >= 0: sign bit clear) and a nonzero gradient.
      int active = _mm256_movemask_ps(_mm256_andnot_ps(_mm256_castsi256_ps(id), nonzero));
      if (active == 0) continue;
      // Empty lanes use triangle 0: computed, never scattered.
      _mm256_store_si256(reinterpret_cast<__m256i*>(tid),
                         _mm256_max_epi32(id, _mm256_setzero_si256()));
      for (int l = 0; l < 8; ++l) {
        const int32_t* tri = triangles + 3 * static_cast<int64_t>(tid[l]);
        vertex[0][l] = tri[0];
        vertex[1][l] = tri[1];
        vertex[2][l] = tri[2];
      }
      __m256 v[3][4], b[3], dv[9];
      for (int k = 0; k < 3; ++k) LoadVertices8(clip, vertex[k], v[k]);
      Load3x8(bary + 3 * p, &b[0], &b[1], &b[2]);
      const __m256i column = _mm256_add_epi32(_mm256_set1_epi32(ix), lane);
      active &= BarycentricGrad8(v, PixelCenterNdc8(column, width), py, b, g, dv);
      if (active == 0) continue;
      for (int m = 0; m < 3; ++m) StoreVertexGrads8(dv + 3 * m, updates[m]);
      for (; active != 0; active &= active - 1) {
        const int l = __builtin_ctz(active);
        const int32_t* tri = triangles + 3 * static_cast<int64_t>(tid[l]);
        const float* update = UpdateOfLane(updates, l);
        for (int m = 0; m < 3; ++m) {  // one (x, y, z, w) add per vertex; z += 0
          float* d = dclip + 4 * static_cast<int64_t>(tri[m]);
          _mm_storeu_ps(d, _mm_add_ps(_mm_loadu_ps(d), _mm_load_ps(update + 32 * m)));
        }
      }
    }
    for (int ix = simd_width; ix < width; ++ix) {
      RasterizeBackwardPixel(clip, triangles, ids, bary, df_dbary, width, height, ix, iy,
                             dclip);
    }
  }
}
// b0 x0 + b1 x1 + b2 x2, added left to right.
__attribute__((target("avx2"))) inline __m256 Blend3(__m256 b0, __m256 b1, __m256 b2,
                                                     __m256 x0, __m256 x1, __m256 x2) {
  return _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(b0, x0), _mm256_mul_ps(b1, x1)),
                       _mm256_mul_ps(b2, x2));
}

// ScalarRows with AVX2, 8 channels per step and the last partial chunk one
// by one (masked stores are slow on AMD Zen): the same products, sums and
// accumulation order (DotInLanes8), so the same bits. Worth it from 8
// channels on.
struct Avx2Rows {
  __attribute__((target("avx2"))) static void Blend(const float* a0, const float* a1,
                                                    const float* a2, float b0, float b1,
                                                    float b2, int channels, float* out) {
    const int full = channels - channels % 8;
    const __m256 w0 = _mm256_set1_ps(b0), w1 = _mm256_set1_ps(b1), w2 = _mm256_set1_ps(b2);
    for (int c = 0; c < full; c += 8) {
      _mm256_storeu_ps(out + c, Blend3(w0, w1, w2, _mm256_loadu_ps(a0 + c),
                                       _mm256_loadu_ps(a1 + c), _mm256_loadu_ps(a2 + c)));
    }
    for (int c = full; c < channels; ++c) out[c] = b0 * a0[c] + b1 * a1[c] + b2 * a2[c];
  }

  __attribute__((target("avx2"))) static float Backward(const float* g, const float* a,
                                                        float b, int channels, float* d) {
    const int full = channels - channels % 8;
    const __m256 w = _mm256_set1_ps(b);
    __m256 dot = _mm256_setzero_ps();
    for (int c = 0; c < full; c += 8) {
      const __m256 gc = _mm256_loadu_ps(g + c);
      dot = _mm256_add_ps(dot, _mm256_mul_ps(gc, _mm256_loadu_ps(a + c)));
      _mm256_storeu_ps(d + c, _mm256_add_ps(_mm256_loadu_ps(d + c), _mm256_mul_ps(w, gc)));
    }
    alignas(32) float lane[8];
    _mm256_store_ps(lane, dot);
    if (full < channels) {
      AddLanes8(g, a, full, channels, lane);
      for (int c = full; c < channels; ++c) d[c] += b * g[c];
    }
    return SumLanes8(lane);
  }
};

// The baseline interpolation drivers compiled for AVX2 with Avx2Rows
// (flatten: everything inlined into the AVX2 function).
template <int kChannels>
__attribute__((target("avx2"), flatten)) void InterpolatePixelsAvx2(
    const float* attr, int runtime_channels, const int32_t* triangles, const int32_t* ids,
    const float* bary, const float* background, int64_t begin, int64_t end, float* out) {
  InterpolatePixelsBaseline<kChannels, Avx2Rows>(attr, runtime_channels, triangles, ids, bary,
                                                 background, begin, end, out);
}

template <int kChannels>
__attribute__((target("avx2"), flatten)) void InterpolateBackwardAvx2(
    const float* attr, int runtime_channels, const int32_t* triangles, const int32_t* ids,
    const float* bary, const float* df_dout, int64_t pixel_count, float* df_dbary,
    float* df_dattr, float* df_dbackground) {
  InterpolateBackwardBaseline<kChannels, Avx2Rows>(attr, runtime_channels, triangles, ids, bary,
                                                   df_dout, pixel_count, df_dbary, df_dattr,
                                                   df_dbackground);
}

}  // namespace renderer

#endif  // RENDERER_CPU_AVX2_DISPATCH

#endif  // RENDERER_KERNELS_RASTERIZER_AVX2_H_
