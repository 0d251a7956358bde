// Framework-free core of Deep3D's vertex normals (SPEC 2.7) and their gradient.
//
// For one shape [N, 3]: face normal f_t = (v0 - v1) x (v1 - v2) of triangle
// t = (v0, v1, v2), unit-normalised in Deep3D's mode; vertex normal
// n_v = normalize(sum_p f_{point_buf[v, p]}), where the padding index T
// stands for a zero normal. normalize(x) = x / sqrt(max(|x|^2, 1e-12)), as
// tf.math.l2_normalize. All sums run in a fixed order (point_buf order in the
// forward pass, triangle order in the backward scatter), so results do not
// depend on threading.
#ifndef DEEP3DFACE_KERNELS_VERTEX_NORMALS_H_
#define DEEP3DFACE_KERNELS_VERTEX_NORMALS_H_

#include <cmath>
#include <cstdint>

#include "deep3dface/kernels/simd_dispatch.h"

namespace deep3dface {

constexpr float kNormalizeEpsilon = 1e-12f;  // tf.math.l2_normalize's default

// y = x / sqrt(max(|x|^2, eps)); returns the scale 1 / sqrt(max(|x|^2, eps)).
inline float Normalize3(const float x[3], float y[3]) {
  const float sq = x[0] * x[0] + x[1] * x[1] + x[2] * x[2];
  const float inv = 1.0f / std::sqrt(sq > kNormalizeEpsilon ? sq : kNormalizeEpsilon);
  y[0] = x[0] * inv;
  y[1] = x[1] * inv;
  y[2] = x[2] * inv;
  return inv;
}

// Gradient of Normalize3 at x (with y = normalize(x), inv its scale) for dy:
// (dy - y (y . dy)) inv where |x|^2 > eps, dy inv (a constant scale) below.
inline void Normalize3Grad(const float x[3], const float y[3], float inv, const float dy[3],
                           float dx[3]) {
  const float sq = x[0] * x[0] + x[1] * x[1] + x[2] * x[2];
  const float dot = sq > kNormalizeEpsilon ? y[0] * dy[0] + y[1] * dy[1] + y[2] * dy[2] : 0.0f;
  for (int i = 0; i < 3; ++i) dx[i] = (dy[i] - y[i] * dot) * inv;
}

inline void Cross(const float a[3], const float b[3], float c[3]) {
  c[0] = a[1] * b[2] - a[2] * b[1];
  c[1] = a[2] * b[0] - a[0] * b[2];
  c[2] = a[0] * b[1] - a[1] * b[0];
}

// x[i] = normalize(x[i]) for the 3-vectors i in [0, count). The AVX2 loop
// does 8 at a time with the same operations (sqrt and division are exact in
// every instruction set; max(sq, eps) picks eps for NaN like Normalize3), so
// the result does not depend on the instruction set.
inline void NormalizeManyBaseline(float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) Normalize3(x + 3 * i, x + 3 * i);
}

#if defined(RENDERER_CPU_AVX2_DISPATCH)
__attribute__((target("avx2"))) inline void NormalizeManyAvx2(float* x, int64_t count) {
  const __m256 eps = _mm256_set1_ps(kNormalizeEpsilon), one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    __m256 vx, vy, vz;
    Load3x8(x + 3 * i, &vx, &vy, &vz);
    const __m256 sq = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(vx, vx), _mm256_mul_ps(vy, vy)),
                                    _mm256_mul_ps(vz, vz));
    const __m256 inv = _mm256_div_ps(one, _mm256_sqrt_ps(_mm256_max_ps(sq, eps)));
    Store3x8(x + 3 * i, _mm256_mul_ps(vx, inv), _mm256_mul_ps(vy, inv), _mm256_mul_ps(vz, inv));
  }
  NormalizeManyBaseline(x + 3 * i, count - i);
}
#endif

inline void NormalizeMany(float* x, int64_t count, bool allow_simd = true) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (allow_simd && CpuHasAvx2()) return NormalizeManyAvx2(x, count);
#endif
  NormalizeManyBaseline(x, count);
}

// Face normals of triangles [t_begin, t_end) into face[3 t ..] (unit if
// normalize_faces).
inline void FaceNormals(const float* shape, const int32_t* triangles, int64_t t_begin,
                        int64_t t_end, bool normalize_faces, float* face,
                        bool allow_simd = true) {
  for (int64_t t = t_begin; t < t_end; ++t) {
    const float* p0 = shape + 3 * static_cast<int64_t>(triangles[3 * t]);
    const float* p1 = shape + 3 * static_cast<int64_t>(triangles[3 * t + 1]);
    const float* p2 = shape + 3 * static_cast<int64_t>(triangles[3 * t + 2]);
    const float a[3] = {p0[0] - p1[0], p0[1] - p1[1], p0[2] - p1[2]};
    const float b[3] = {p1[0] - p2[0], p1[1] - p2[1], p1[2] - p2[2]};
    Cross(a, b, face + 3 * t);
  }
  if (normalize_faces) NormalizeMany(face + 3 * t_begin, t_end - t_begin, allow_simd);
}

// summed[v] = sum_p face[point_buf[v, p]] and normals[v] = normalize(summed[v])
// for v in [v_begin, v_end). face has T + 1 rows, row T zero (the padding
// index), so the sum needs no branch.
inline void SumVertexNormals(const float* face, const int32_t* point_buf, int width,
                             int64_t v_begin, int64_t v_end, float* summed, float* normals,
                             bool allow_simd = true) {
  for (int64_t v = v_begin; v < v_end; ++v) {
    float s[3] = {0.0f, 0.0f, 0.0f};
    const int32_t* buf = point_buf + v * width;
    for (int p = 0; p < width; ++p) {
      const float* f = face + 3 * static_cast<int64_t>(buf[p]);
      s[0] += f[0];
      s[1] += f[1];
      s[2] += f[2];
    }
    for (int i = 0; i < 3; ++i) summed[3 * v + i] = normals[3 * v + i] = s[i];
  }
  NormalizeMany(normals + 3 * v_begin, v_end - v_begin, allow_simd);
}

// Backward for one shape: d shape [N, 3] (written, not accumulated) from
// d normals. `face_grad` [T, 3] is scratch. Triangle-order scatter.
inline void VertexNormalsBackward(const float* shape, const int32_t* triangles,
                                  int64_t triangle_count, const int32_t* point_buf, int width,
                                  int64_t vertex_count, bool normalize_faces,
                                  const float* summed, const float* normals,
                                  const float* d_normals, float* face_grad, float* d_shape) {
  for (int64_t i = 0; i < 3 * triangle_count; ++i) face_grad[i] = 0.0f;
  for (int64_t v = 0; v < vertex_count; ++v) {
    const float* s = summed + 3 * v;
    const float sq = s[0] * s[0] + s[1] * s[1] + s[2] * s[2];
    const float inv = 1.0f / std::sqrt(sq > kNormalizeEpsilon ? sq : kNormalizeEpsilon);
    float ds[3];
    Normalize3Grad(s, normals + 3 * v, inv, d_normals + 3 * v, ds);
    const int32_t* buf = point_buf + v * width;
    for (int p = 0; p < width; ++p) {
      if (buf[p] >= triangle_count) continue;
      float* g = face_grad + 3 * static_cast<int64_t>(buf[p]);
      g[0] += ds[0];
      g[1] += ds[1];
      g[2] += ds[2];
    }
  }
  for (int64_t i = 0; i < 3 * vertex_count; ++i) d_shape[i] = 0.0f;
  for (int64_t t = 0; t < triangle_count; ++t) {
    const int64_t i0 = triangles[3 * t], i1 = triangles[3 * t + 1], i2 = triangles[3 * t + 2];
    const float* p0 = shape + 3 * i0;
    const float* p1 = shape + 3 * i1;
    const float* p2 = shape + 3 * i2;
    const float a[3] = {p0[0] - p1[0], p0[1] - p1[1], p0[2] - p1[2]};
    const float b[3] = {p1[0] - p2[0], p1[1] - p2[1], p1[2] - p2[2]};
    float dc[3] = {face_grad[3 * t], face_grad[3 * t + 1], face_grad[3 * t + 2]};
    if (normalize_faces) {
      float c[3], f[3], dy[3] = {dc[0], dc[1], dc[2]};
      Cross(a, b, c);
      const float inv = Normalize3(c, f);
      Normalize3Grad(c, f, inv, dy, dc);
    }
    float da[3], db[3];
    Cross(b, dc, da);  // d(a x b)/da^T dc = b x dc
    Cross(dc, a, db);  // d(a x b)/db^T dc = dc x a
    for (int i = 0; i < 3; ++i) {
      d_shape[3 * i0 + i] += da[i];
      d_shape[3 * i1 + i] += db[i] - da[i];
      d_shape[3 * i2 + i] -= db[i];
    }
  }
}

}  // namespace deep3dface

#endif  // DEEP3DFACE_KERNELS_VERTEX_NORMALS_H_
