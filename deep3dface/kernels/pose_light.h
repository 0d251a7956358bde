// Framework-free core of the posed, lit face (SPEC 2.6, 2.8, 2.9) for one
// image: rotation R = Rz Ry Rx of Euler angles, posed vertices R s + t, rotated
// normals R n, spherical-harmonics colours albedo * (Y(R n) . gamma_k), and
// clip-space positions M [v; 1]. The camera and SH constants come from the
// caller (deep3dface/constants.py names them once).
//
// Every output element is computed from its own vertex only, in the order of
// deep3dface/posing.py's TensorFlow formula, so the results do not depend on
// threading; the AVX2 loop performs the scalar body's operations in the same
// order, 8 vertices at a time, so both give the same bits (compiled with
// -ffp-contract=off; tested).
#ifndef DEEP3DFACE_KERNELS_POSE_LIGHT_H_
#define DEEP3DFACE_KERNELS_POSE_LIGHT_H_

#include <cmath>
#include <cstdint>

#include "deep3dface/kernels/simd_dispatch.h"

namespace deep3dface {

constexpr int kShBands = 9;  // SH basis functions per colour channel

// Per-image parameters of the pose and lighting.
struct Pose {
  float rotation[9];     // row-major R = Rz Ry Rx
  float translation[3];  // dm
  float gamma[27];       // R, G, B blocks of 9 SH coefficients (ambient prior included)
};

// Per-call constants.
struct PoseLightConstants {
  float sh_factors[kShBands];  // Y_j = sh_factors[j] * (polynomial j of the normal)
  float world_to_clip[16];     // row-major 4 x 4
};

// 3 x 3 row-major product c = a b, each entry summed left to right.
inline void MatMul3(const float* a, const float* b, float* c) {
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      c[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
    }
  }
}

// R = Rz Ry Rx for angles (x, y, z) in radians, row-major.
inline void RotationMatrix(const float angles[3], float rotation[9]) {
  const float cx = std::cos(angles[0]), sx = std::sin(angles[0]);
  const float cy = std::cos(angles[1]), sy = std::sin(angles[1]);
  const float cz = std::cos(angles[2]), sz = std::sin(angles[2]);
  const float rx[9] = {1.0f, 0.0f, 0.0f, 0.0f, cx, -sx, 0.0f, sx, cx};
  const float ry[9] = {cy, 0.0f, sy, 0.0f, 1.0f, 0.0f, -sy, 0.0f, cy};
  const float rz[9] = {cz, -sz, 0.0f, sz, cz, 0.0f, 0.0f, 0.0f, 1.0f};
  float rzy[9];
  MatMul3(rz, ry, rzy);
  MatMul3(rzy, rx, rotation);
}

// Vertices [begin, end) of one image; every array is that image's [N, 3]
// (clip [N, 4]).
DEEP3D_ALWAYS_INLINE void PoseLightBody(const float* shape, const float* normals,
                                        const float* albedo, const Pose& pose,
                                        const PoseLightConstants& k, int64_t begin,
                                        int64_t end, float* vertices, float* normals_out,
                                        float* colors, float* clip) {
  const float* r = pose.rotation;
  const float* t = pose.translation;
  const float* m = k.world_to_clip;
  const float* f = k.sh_factors;
  for (int64_t i = begin; i < end; ++i) {
    const float* s = shape + 3 * i;
    const float* n = normals + 3 * i;
    float v[3], rn[3];
    for (int a = 0; a < 3; ++a) {
      v[a] = s[0] * r[3 * a] + s[1] * r[3 * a + 1] + s[2] * r[3 * a + 2] + t[a];
      rn[a] = n[0] * r[3 * a] + n[1] * r[3 * a + 1] + n[2] * r[3 * a + 2];
      vertices[3 * i + a] = v[a];
      normals_out[3 * i + a] = rn[a];
    }
    for (int a = 0; a < 4; ++a) {
      clip[4 * i + a] = v[0] * m[4 * a] + v[1] * m[4 * a + 1] + v[2] * m[4 * a + 2] + m[4 * a + 3];
    }
    const float nx = rn[0], ny = rn[1], nz = rn[2];
    const float y[kShBands] = {f[0],
                               f[1] * ny,
                               f[2] * nz,
                               f[3] * nx,
                               f[4] * nx * ny,
                               f[5] * ny * nz,
                               f[6] * (3.0f * nz * nz - 1.0f),
                               f[7] * nx * nz,
                               f[8] * (nx * nx - ny * ny)};
    for (int c = 0; c < 3; ++c) {
      const float* g = pose.gamma + kShBands * c;
      float shading = y[0] * g[0];
      for (int j = 1; j < kShBands; ++j) shading += y[j] * g[j];
      colors[3 * i + c] = albedo[3 * i + c] * shading;
    }
  }
}

#if defined(RENDERER_CPU_AVX2_DISPATCH)
// Stores 8 consecutive 4-vectors from their components.
__attribute__((target("avx2"))) inline void Store4x8(float* p, __m256 x, __m256 y, __m256 z,
                                                     __m256 w) {
  const __m256 t0 = _mm256_unpacklo_ps(x, y), t1 = _mm256_unpackhi_ps(x, y);
  const __m256 t2 = _mm256_unpacklo_ps(z, w), t3 = _mm256_unpackhi_ps(z, w);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
  _mm256_storeu_ps(p, _mm256_permute2f128_ps(u0, u1, 0x20));
  _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
  _mm256_storeu_ps(p + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
  _mm256_storeu_ps(p + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
}

// a[0] * x + a[1] * y + a[2] * z (+ a[3] if affine), summed left to right as
// PoseLightBody does.
template <bool kAffine>
__attribute__((target("avx2"))) inline __m256 Dot3(const float* a, __m256 x, __m256 y,
                                                   __m256 z) {
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(a[0])),
                                         _mm256_mul_ps(y, _mm256_set1_ps(a[1]))),
                           _mm256_mul_ps(z, _mm256_set1_ps(a[2])));
  return kAffine ? _mm256_add_ps(s, _mm256_set1_ps(a[3])) : s;
}

// PoseLightBody for 8 vertices at a time (same operations, same order, so
// the same bits), then the body for the remainder.
__attribute__((target("avx2"))) inline void PoseLightAvx2(
    const float* shape, const float* normals, const float* albedo, const Pose& pose,
    const PoseLightConstants& k, int64_t begin, int64_t end, float* vertices,
    float* normals_out, float* colors, float* clip) {
  const float* r = pose.rotation;
  const float* t = pose.translation;
  const float* m = k.world_to_clip;
  const float* f = k.sh_factors;
  const __m256 one = _mm256_set1_ps(1.0f), three = _mm256_set1_ps(3.0f);
  __m256 factor[kShBands], gamma[3 * kShBands];
  for (int j = 0; j < kShBands; ++j) factor[j] = _mm256_set1_ps(f[j]);
  for (int j = 0; j < 3 * kShBands; ++j) gamma[j] = _mm256_set1_ps(pose.gamma[j]);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    __m256 s[3], n[3], v[3], rn[3];
    Load3x8(shape + 3 * i, &s[0], &s[1], &s[2]);
    Load3x8(normals + 3 * i, &n[0], &n[1], &n[2]);
    for (int a = 0; a < 3; ++a) {
      const float row[4] = {r[3 * a], r[3 * a + 1], r[3 * a + 2], t[a]};
      v[a] = Dot3<true>(row, s[0], s[1], s[2]);
      rn[a] = Dot3<false>(row, n[0], n[1], n[2]);
    }
    Store3x8(vertices + 3 * i, v[0], v[1], v[2]);
    Store3x8(normals_out + 3 * i, rn[0], rn[1], rn[2]);
    Store4x8(clip + 4 * i, Dot3<true>(m, v[0], v[1], v[2]), Dot3<true>(m + 4, v[0], v[1], v[2]),
             Dot3<true>(m + 8, v[0], v[1], v[2]), Dot3<true>(m + 12, v[0], v[1], v[2]));
    const __m256 nx = rn[0], ny = rn[1], nz = rn[2];
    const __m256 y[kShBands] = {
        factor[0],
        _mm256_mul_ps(factor[1], ny),
        _mm256_mul_ps(factor[2], nz),
        _mm256_mul_ps(factor[3], nx),
        _mm256_mul_ps(_mm256_mul_ps(factor[4], nx), ny),
        _mm256_mul_ps(_mm256_mul_ps(factor[5], ny), nz),
        _mm256_mul_ps(factor[6], _mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(three, nz), nz), one)),
        _mm256_mul_ps(_mm256_mul_ps(factor[7], nx), nz),
        _mm256_mul_ps(factor[8], _mm256_sub_ps(_mm256_mul_ps(nx, nx), _mm256_mul_ps(ny, ny)))};
    __m256 shading[3];
    for (int c = 0; c < 3; ++c) {
      const __m256* g = gamma + kShBands * c;
      shading[c] = _mm256_mul_ps(y[0], g[0]);
      for (int j = 1; j < kShBands; ++j) {
        shading[c] = _mm256_add_ps(shading[c], _mm256_mul_ps(y[j], g[j]));
      }
    }
    __m256 rgb[3];
    Interleave3x8(shading[0], shading[1], shading[2], rgb);
    for (int q = 0; q < 3; ++q) {
      const int64_t o = 3 * i + 8 * q;
      _mm256_storeu_ps(colors + o, _mm256_mul_ps(_mm256_loadu_ps(albedo + o), rgb[q]));
    }
  }
  PoseLightBody(shape, normals, albedo, pose, k, i, end, vertices, normals_out, colors, clip);
}
#endif

inline void PoseLight(const float* shape, const float* normals, const float* albedo,
                      const Pose& pose, const PoseLightConstants& k, int64_t begin, int64_t end,
                      float* vertices, float* normals_out, float* colors, float* clip,
                      bool allow_simd = true) {
#if defined(RENDERER_CPU_AVX2_DISPATCH)
  if (allow_simd && CpuHasAvx2()) {
    return PoseLightAvx2(shape, normals, albedo, pose, k, begin, end, vertices, normals_out,
                         colors, clip);
  }
#endif
  PoseLightBody(shape, normals, albedo, pose, k, begin, end, vertices, normals_out, colors, clip);
}

// Deep3D's pinhole projection of one posed vertex to (u, v_up) pixels.
inline void Project(const float v[3], float focal, float principal_point, float distance,
                    float uv[2]) {
  const float depth = distance - v[2];
  uv[0] = principal_point + focal * v[0] / depth;
  uv[1] = principal_point + focal * v[1] / depth;
}

}  // namespace deep3dface

#endif  // DEEP3DFACE_KERNELS_POSE_LIGHT_H_
