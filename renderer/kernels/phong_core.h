// Framework-free per-pixel Phong shading of rasterized meshes and its
// gradient: mesh_renderer's interpolation and shading stages (tf_mesh_renderer's
// rasterize + phong_shader without the legacy image-wide specular
// normalisation) fused, one pixel at a time, so that the interpolated buffer
// is never stored.
//
// A pixel's 9, 12 or 13 shading channels are interpolated from the vertex
// arrays: unit-ish normal (3, it is normalised here), world position (3),
// diffuse colour (3), then optionally specular colour (3) and a per-vertex
// shininess (1). Pixels without a triangle, or whose
// interpolated diffuse colour is negative in every channel (mesh_renderer's
// coverage test), shade to RGBA (0, 0, 0, 0); covered ones get alpha 1 and
//   rgb = ambient * d + sum_l ndl_l * d * I_l + sum_l rdc_l ^ shininess * s * I_l
// with ndl_l = clip(n . normalize(light_l - p), 0, 1), and, with specular,
// rdc_l = clip(normalize(camera - p) . normalize(2 ndl_l n - to_light_l), 0, 1)
// where ndl_l != 0, else 0. Normalisation is TensorFlow's l2_normalize:
// x / sqrt(max(x . x, 1e-12)). Interpolation is the interpolation op's
// arithmetic (sum_i b_i a_i in corner order), so the result is bit-identical
// to interpolating first and shading the buffer.
#ifndef RENDERER_KERNELS_PHONG_CORE_H_
#define RENDERER_KERNELS_PHONG_CORE_H_

#include <cmath>
#include <cstdint>

#include "renderer/kernels/rasterizer_core.h"

namespace renderer {

constexpr float kNormalizeEpsilon = 1e-12f;  // tf.math.l2_normalize's default

// Per-image shading parameters (pointers into [B, ...] tensors at image b).
struct PhongImage {
  const float* light_positions;    // [L, 3]
  const float* light_intensities;  // [L, 3]
  int light_count;
  const float* ambient;  // [3]
  const float* camera;   // [3], read only with specular
  float shininess;       // used when the pixel has no shininess channel
};

// Shading channels: 9 (diffuse only), 12 (+ specular) or 13 (+ per-pixel
// shininess); the per-pixel functions take them as a template argument.
constexpr bool HasSpecular(int channels) { return channels >= 12; }
constexpr bool HasPixelShininess(int channels) { return channels == 13; }

constexpr int kMaxPixelChannels = 13;

// One image's vertex arrays: a pixel's shading channels are the interpolated
// [normal, position, diffuse(, specular(, shininess))].
template <typename Float>
struct ShadingVertices {
  Float* normals;    // [V, 3]
  Float* positions;  // [V, 3]
  Float* diffuse;    // [V, 3]
  Float* specular;   // [V, 3], with 12 or 13 channels
  Float* shininess;  // [V], with 13 channels
  int64_t vertex_count;
};

// corner[0, kChannels) = vertex v's shading channels.
template <int kChannels>
RENDERER_HD void GatherCorner(const ShadingVertices<const float>& vertices, int32_t v,
                              float* corner) {
  const int64_t i = 3 * static_cast<int64_t>(v);
  for (int c = 0; c < 3; ++c) {
    corner[c] = vertices.normals[i + c];
    corner[3 + c] = vertices.positions[i + c];
    corner[6 + c] = vertices.diffuse[i + c];
    if (kChannels >= 12) corner[9 + c] = vertices.specular[i + c];
  }
  if (kChannels == 13) corner[12] = vertices.shininess[v];
}

// d_array[3 v, 3 v + 3) += b * d_channels[0, 3); a null array is a gradient
// nobody asked for (RendererPhongShadeGrad's skip_vertex_arrays).
RENDERER_HD void ScatterVec3(float* d_array, int32_t v, float b, const float* d_channels) {
  if (d_array == nullptr) return;
  float* d = d_array + 3 * static_cast<int64_t>(v);
  for (int c = 0; c < 3; ++c) d[c] += b * d_channels[c];
}

// Adds b * d_pixel to vertex v's gradients (laid out as ShadingVertices).
template <int kChannels>
RENDERER_HD void ScatterCorner(const ShadingVertices<float>& d_vertices, int32_t v, float b,
                               const float* d_pixel) {
  ScatterVec3(d_vertices.normals, v, b, d_pixel);
  ScatterVec3(d_vertices.positions, v, b, d_pixel + 3);
  ScatterVec3(d_vertices.diffuse, v, b, d_pixel + 6);
  if (kChannels >= 12) ScatterVec3(d_vertices.specular, v, b, d_pixel + 9);
  if (kChannels == 13) d_vertices.shininess[v] += b * d_pixel[12];
}

// pixel = b0 corner0 + b1 corner1 + b2 corner2, channel by channel (the
// interpolation op's arithmetic); F = float or a lane type (phong_core.h).
template <int kChannels, typename F, int kStride>
RENDERER_HD void BlendCorners(const F* b, const F (*corners)[kStride], F* pixel) {
  for (int c = 0; c < kChannels; ++c) {
    pixel[c] = b[0] * corners[0][c] + b[1] * corners[1][c] + b[2] * corners[2][c];
  }
}

// BlendCorners of triangle tri's corners, corners[i] = GatherCorner(tri[i]).
template <int kChannels>
RENDERER_HD void InterpolateCorners(const ShadingVertices<const float>& vertices,
                                    const int32_t* tri, const float* bary,
                                    float corners[3][kMaxPixelChannels], float* pixel) {
  for (int i = 0; i < 3; ++i) GatherCorner<kChannels>(vertices, tri[i], corners[i]);
  BlendCorners<kChannels>(bary, corners, pixel);
}

// Backward of InterpolateCorners for d pixel: adds to the corners' vertex
// gradients and writes d bary[i] = d pixel . corners[i] (DotInLanes8 order,
// as the interpolation op's gradient).
template <int kChannels>
RENDERER_HD void InterpolateCornersBackward(const ShadingVertices<float>& d_vertices,
                                            const int32_t* tri, const float* bary,
                                            const float corners[3][kMaxPixelChannels],
                                            const float* d_pixel, float* d_bary) {
  for (int i = 0; i < 3; ++i) {
    ScatterCorner<kChannels>(d_vertices, tri[i], bary[i], d_pixel);
    d_bary[i] = DotInLanes8(d_pixel, corners[i], kChannels);
  }
}

// The scalar lane operations the per-pixel code is written in (F = float);
// float8_avx2.h defines them for 8 lanes (F = Float8).
RENDERER_HD float Select(bool c, float a, float b) { return c ? a : b; }
RENDERER_HD float Sqrt(float a) { return sqrtf(a); }
RENDERER_HD float Pow(float x, float y) { return powf(x, y); }
RENDERER_HD float Log(float x) { return logf(x); }
RENDERER_HD bool Any(bool c) { return c; }

template <typename F>
using MaskOf = decltype(F() >= F());

// acc += v where c (lane by lane; other lanes keep acc exactly).
template <typename F>
RENDERER_HD void AddIf(MaskOf<F> c, F& acc, F v) {
  acc = Select(c, acc + v, acc);
}

template <typename F>
RENDERER_HD void SubIf(MaskOf<F> c, F& acc, F v) {
  acc = Select(c, acc - v, acc);
}

template <typename F>
RENDERER_HD F Dot3(const F* a, const F* b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

// y = x / sqrt(max(x . x, eps)); returns 1 / sqrt(max(x . x, eps)) and
// whether x . x >= eps (the gradient then flows through the norm).
template <typename F>
RENDERER_HD F Normalize3(const F* x, F* y, MaskOf<F>* through_norm) {
  const F s = Dot3(x, x);
  *through_norm = s >= F(kNormalizeEpsilon);
  const F inv = F(1.0f) / Sqrt(Select(*through_norm, s, F(kNormalizeEpsilon)));
  for (int i = 0; i < 3; ++i) y[i] = x[i] * inv;
  return inv;
}

// Adds d x for y = Normalize3(x) given d y: inv dy - inv^3 (x . dy) x.
template <typename F>
RENDERER_HD void NormalizeBackward3(const F* x, F inv, MaskOf<F> through_norm, const F* dy,
                                    F* dx) {
  const F k = Select(through_norm, inv * inv * inv * Dot3(x, dy), F(0.0f));
  for (int i = 0; i < 3; ++i) dx[i] += inv * dy[i] - k * x[i];
}

// Whether any interpolated diffuse channel is >= 0 (mesh_renderer's coverage).
template <typename F>
RENDERER_HD MaskOf<F> Covered(const F* pixel) {
  const F zero(0.0f);
  return MaskOf<F>((pixel[6] >= zero) | (pixel[7] >= zero) | (pixel[8] >= zero));
}

// Intermediate values of one light at one pixel, kept for the gradient.
template <typename F>
struct LightTerms {
  F to_light_raw[3], to_light[3], inv_light;
  MaskOf<F> light_norm;
  F n_dot_l_raw, n_dot_l;
  F reflected_raw[3], reflected[3], inv_reflected;
  MaskOf<F> reflected_norm;
  F r_dot_c_raw, r_dot_c, specularity;
};

template <typename F>
struct PixelTerms {
  F normal[3], inv_normal;
  MaskOf<F> normal_norm;
  F to_camera_raw[3], to_camera[3], inv_camera;
  MaskOf<F> camera_norm;
  F shininess;
};

// Shades a covered pixel (F = float; pixel[c] is channel c) or 8 pixels (F =
// Float8; pixel[c] holds channel c of each): writes rgb[3]; fills terms (and
// lights[L]) for PhongBackwardPixel.
template <int kChannels, typename F>
RENDERER_HD void PhongPixel(const F* pixel, const PhongImage& image, PixelTerms<F>* terms,
                            LightTerms<F>* lights, F rgb[3]) {
  const F* position = pixel + 3;
  const F* diffuse = pixel + 6;
  terms->inv_normal = Normalize3(pixel, terms->normal, &terms->normal_norm);
  for (int c = 0; c < 3; ++c) rgb[c] = F(image.ambient[c]) * diffuse[c];
  if (HasSpecular(kChannels)) {
    for (int i = 0; i < 3; ++i) terms->to_camera_raw[i] = F(image.camera[i]) - position[i];
    terms->inv_camera = Normalize3(terms->to_camera_raw, terms->to_camera, &terms->camera_norm);
    terms->shininess = HasPixelShininess(kChannels) ? pixel[12] : F(image.shininess);
  }
  for (int l = 0; l < image.light_count; ++l) {
    LightTerms<F>& t = lights[l];
    const float* intensity = image.light_intensities + 3 * l;
    for (int i = 0; i < 3; ++i) {
      t.to_light_raw[i] = F(image.light_positions[3 * l + i]) - position[i];
    }
    t.inv_light = Normalize3(t.to_light_raw, t.to_light, &t.light_norm);
    t.n_dot_l_raw = Dot3(terms->normal, t.to_light);
    t.n_dot_l = Clamp(t.n_dot_l_raw, F(0.0f), F(1.0f));
    for (int c = 0; c < 3; ++c) rgb[c] += t.n_dot_l * diffuse[c] * F(intensity[c]);
    if (!HasSpecular(kChannels)) continue;
    for (int i = 0; i < 3; ++i) {
      t.reflected_raw[i] = F(2.0f) * t.n_dot_l * terms->normal[i] - t.to_light[i];
    }
    t.inv_reflected = Normalize3(t.reflected_raw, t.reflected, &t.reflected_norm);
    t.r_dot_c_raw = Dot3(terms->to_camera, t.reflected);
    t.r_dot_c = Select(t.n_dot_l != F(0.0f), Clamp(t.r_dot_c_raw, F(0.0f), F(1.0f)), F(0.0f));
    t.specularity = Pow(t.r_dot_c, terms->shininess);
    for (int c = 0; c < 3; ++c) rgb[c] += t.specularity * pixel[9 + c] * F(intensity[c]);
  }
}

// Per-image gradient accumulators (the caller zeroes them).
template <typename F>
struct PhongImageGrad {
  F* light_positions;    // [L, 3]
  F* light_intensities;  // [L, 3]
  F* ambient;            // [3]
  F* camera;             // [3]
  F* shininess;          // [1], per-image shininess only
};

// Gradient of PhongPixel given d rgb: writes d pixel (all channels) and adds
// to the per-image accumulators where `active` (all lanes of F = float are).
// TensorFlow's conventions at the kinks: clip passes the gradient on [0, 1]
// inclusive, l2_normalize's max passes it to x . x when x . x >= eps; d pow /
// d base is taken as 0 at base 0 (TensorFlow's formula is inf * 0 there for
// shininess < 1).
template <int kChannels, typename F>
RENDERER_HD void PhongBackwardPixel(const F* pixel, const PhongImage& image,
                                    const PixelTerms<F>& terms, const LightTerms<F>* lights,
                                    const F d_rgb[3], MaskOf<F> active, F* d_pixel,
                                    PhongImageGrad<F>* grad) {
  const F zero(0.0f);
  const F* diffuse = pixel + 6;
  for (int i = 0; i < kChannels; ++i) d_pixel[i] = zero;
  F* d_position = d_pixel + 3;
  F* d_diffuse = d_pixel + 6;
  F d_normal[3] = {zero, zero, zero};
  F d_to_camera[3] = {zero, zero, zero};
  for (int c = 0; c < 3; ++c) {
    d_diffuse[c] = d_rgb[c] * F(image.ambient[c]);
    AddIf(active, grad->ambient[c], d_rgb[c] * diffuse[c]);
  }
  for (int l = 0; l < image.light_count; ++l) {
    const LightTerms<F>& t = lights[l];
    const float* intensity = image.light_intensities + 3 * l;
    F* d_intensity = grad->light_intensities + 3 * l;
    F d_n_dot_l = zero;
    for (int c = 0; c < 3; ++c) {
      d_diffuse[c] += d_rgb[c] * t.n_dot_l * F(intensity[c]);
      d_n_dot_l += d_rgb[c] * diffuse[c] * F(intensity[c]);
      AddIf(active, d_intensity[c], d_rgb[c] * t.n_dot_l * diffuse[c]);
    }
    F d_to_light[3] = {zero, zero, zero};
    if (HasSpecular(kChannels)) {
      F d_specularity = zero;
      for (int c = 0; c < 3; ++c) {
        const F specular = pixel[9 + c];
        d_pixel[9 + c] += d_rgb[c] * t.specularity * F(intensity[c]);
        d_specularity += d_rgb[c] * specular * F(intensity[c]);
        AddIf(active, d_intensity[c], d_rgb[c] * t.specularity * specular);
      }
      const auto r_dot_c_positive = t.r_dot_c > zero;
      const F d_shininess =
          Select(r_dot_c_positive, d_specularity * t.specularity * Log(t.r_dot_c), zero);
      if (HasPixelShininess(kChannels)) {
        d_pixel[12] += d_shininess;
      } else {
        AddIf(active, grad->shininess[0], d_shininess);
      }
      const F d_r_dot_c = Select(
          r_dot_c_positive,
          d_specularity * terms.shininess * Pow(t.r_dot_c, terms.shininess - F(1.0f)), zero);
      const auto flows = (t.n_dot_l != zero) & (t.r_dot_c_raw >= zero) &
                         (t.r_dot_c_raw <= F(1.0f)) & (d_r_dot_c != zero);
      if (Any(flows)) {
        F d_reflected[3], d_reflected_raw[3] = {zero, zero, zero};
        for (int i = 0; i < 3; ++i) {
          AddIf(flows, d_to_camera[i], d_r_dot_c * t.reflected[i]);
          d_reflected[i] = d_r_dot_c * terms.to_camera[i];
        }
        NormalizeBackward3(t.reflected_raw, t.inv_reflected, t.reflected_norm, d_reflected,
                           d_reflected_raw);
        // reflected_raw = 2 ndl n - to_light.
        AddIf(flows, d_n_dot_l, F(2.0f) * Dot3(d_reflected_raw, terms.normal));
        for (int i = 0; i < 3; ++i) {
          AddIf(flows, d_normal[i], F(2.0f) * t.n_dot_l * d_reflected_raw[i]);
          SubIf(flows, d_to_light[i], d_reflected_raw[i]);
        }
      }
    }
    const auto n_dot_l_flows =
        (t.n_dot_l_raw >= zero) & (t.n_dot_l_raw <= F(1.0f)) & (d_n_dot_l != zero);
    for (int i = 0; i < 3; ++i) {
      AddIf(n_dot_l_flows, d_normal[i], d_n_dot_l * t.to_light[i]);
      AddIf(n_dot_l_flows, d_to_light[i], d_n_dot_l * terms.normal[i]);
    }
    // to_light = normalize(light - position), used by both terms above.
    F d_to_light_raw[3] = {zero, zero, zero};
    NormalizeBackward3(t.to_light_raw, t.inv_light, t.light_norm, d_to_light, d_to_light_raw);
    for (int i = 0; i < 3; ++i) {
      AddIf(active, grad->light_positions[3 * l + i], d_to_light_raw[i]);
      d_position[i] -= d_to_light_raw[i];
    }
  }
  if (HasSpecular(kChannels)) {
    F d_to_camera_raw[3] = {zero, zero, zero};
    NormalizeBackward3(terms.to_camera_raw, terms.inv_camera, terms.camera_norm, d_to_camera,
                       d_to_camera_raw);
    for (int i = 0; i < 3; ++i) {
      AddIf(active, grad->camera[i], d_to_camera_raw[i]);
      d_position[i] -= d_to_camera_raw[i];
    }
  }
  NormalizeBackward3(pixel, terms.inv_normal, terms.normal_norm, d_normal, d_pixel);
}

// The per-image gradient sums of the lighting inputs, one array: light
// positions 3 L, light intensities 3 L, ambient 3, camera 3, shininess 1.
RENDERER_HD int64_t ImageGradSize(int light_count) { return 6 * light_count + 7; }

template <typename F>
RENDERER_HD PhongImageGrad<F> ImageGradAt(F* sums, int light_count) {
  const int l3 = 3 * light_count;
  return PhongImageGrad<F>{sums, sums + l3, sums + 2 * l3, sums + 2 * l3 + 3, sums + 2 * l3 + 6};
}

// Shades one image row of `width` pixels: ids, bary and rgba point at the
// row (rgba is the output row, 4 floats per pixel); lights is scratch for
// image.light_count lights.
template <int kChannels>
void ShadeRowBaseline(const ShadingVertices<const float>& vertices, const int32_t* triangles,
                      const int32_t* ids, const float* bary, int64_t width,
                      const PhongImage& image, LightTerms<float>* lights, float* rgba) {
  PixelTerms<float> terms;
  float corners[3][kMaxPixelChannels], pixel[kMaxPixelChannels];
  for (int64_t x = 0; x < width; ++x, rgba += 4) {
    if (ids[x] >= 0) {
      InterpolateCorners<kChannels>(vertices, triangles + 3 * static_cast<int64_t>(ids[x]),
                                    bary + 3 * x, corners, pixel);
      if (Covered(pixel)) {
        PhongPixel<kChannels>(pixel, image, &terms, lights, rgba);
        rgba[3] = 1.0f;
        continue;
      }
    }
    rgba[0] = rgba[1] = rgba[2] = rgba[3] = 0.0f;
  }
}

// Gradient of ShadeRowBaseline given the row's d rgba: adds to d_vertices
// (pixel by pixel in order), writes the row's d bary and its per-image sums
// row_sums[ImageGradSize(L)]. The sums are kept in 8 lanes (pixel x adds to
// lane x % 8) and added in SumLanes8 order, as the AVX2 driver adds them;
// lane_sums is scratch of 8 ImageGradSize(L) floats.
template <int kChannels>
void ShadeRowBackwardBaseline(const ShadingVertices<const float>& vertices,
                              const int32_t* triangles, const int32_t* ids, const float* bary,
                              const float* d_rgba, int64_t width, const PhongImage& image,
                              LightTerms<float>* lights, const ShadingVertices<float>& d_vertices,
                              float* d_bary, float* lane_sums, float* row_sums) {
  const int64_t sums = ImageGradSize(image.light_count);
  for (int64_t i = 0; i < 8 * sums; ++i) lane_sums[i] = 0.0f;
  PixelTerms<float> terms;
  float corners[3][kMaxPixelChannels], pixel[kMaxPixelChannels], d_pixel[kMaxPixelChannels];
  float rgb[3];
  for (int64_t x = 0; x < width; ++x) {
    float* db = d_bary + 3 * x;
    db[0] = db[1] = db[2] = 0.0f;
    if (ids[x] < 0) continue;
    const int32_t* tri = triangles + 3 * static_cast<int64_t>(ids[x]);
    InterpolateCorners<kChannels>(vertices, tri, bary + 3 * x, corners, pixel);
    if (!Covered(pixel)) continue;
    PhongPixel<kChannels>(pixel, image, &terms, lights, rgb);
    PhongImageGrad<float> grad = ImageGradAt(lane_sums + (x % 8) * sums, image.light_count);
    PhongBackwardPixel<kChannels>(pixel, image, terms, lights, d_rgba + 4 * x, true, d_pixel,
                                  &grad);
    InterpolateCornersBackward<kChannels>(d_vertices, tri, bary + 3 * x, corners, d_pixel, db);
  }
  for (int64_t i = 0; i < sums; ++i) {
    float lane[8];
    for (int l = 0; l < 8; ++l) lane[l] = lane_sums[l * sums + i];
    row_sums[i] = SumLanes8(lane);
  }
}

}  // namespace renderer

#endif  // RENDERER_KERNELS_PHONG_CORE_H_
