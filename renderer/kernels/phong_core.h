// Framework-free per-pixel Phong shading of interpolated buffers and its
// gradient: mesh_renderer's shading stage (tf_mesh_renderer's phong_shader
// without the legacy image-wide specular normalisation), one pixel at a time.
//
// A pixel holds kPixelChannels interpolated floats: unit-ish normal (3, it is
// normalised here), world position (3), diffuse colour (3), then optionally
// specular colour (3) and a per-pixel shininess (1). Empty pixels carry a
// negative diffuse colour (mesh_renderer's background attribute) and shade to
// RGBA (0, 0, 0, 0); covered ones get alpha 1 and
//   rgb = ambient * d + sum_l ndl_l * d * I_l + sum_l rdc_l ^ shininess * s * I_l
// with ndl_l = clip(n . normalize(light_l - p), 0, 1), and, with specular,
// rdc_l = clip(normalize(camera - p) . normalize(2 ndl_l n - to_light_l), 0, 1)
// where ndl_l != 0, else 0. Normalisation is TensorFlow's l2_normalize:
// x / sqrt(max(x . x, 1e-12)).
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

struct PhongLayout {
  int channels;  // 9 (diffuse only), 12 (+ specular) or 13 (+ per-pixel shininess)
  bool specular() const { return channels >= 12; }
  bool pixel_shininess() const { return channels == 13; }
};

RENDERER_HD float Dot3(const float* a, const float* b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

// y = x / sqrt(max(x . x, eps)); returns 1 / sqrt(max(x . x, eps)) and
// whether x . x >= eps (the gradient then flows through the norm).
RENDERER_HD float Normalize3(const float* x, float* y, bool* through_norm) {
  const float s = Dot3(x, x);
  *through_norm = s >= kNormalizeEpsilon;
  const float inv = 1.0f / sqrtf(*through_norm ? s : kNormalizeEpsilon);
  for (int i = 0; i < 3; ++i) y[i] = x[i] * inv;
  return inv;
}

// Adds d x for y = Normalize3(x) given d y: inv dy - inv^3 (x . dy) x.
RENDERER_HD void NormalizeBackward3(const float* x, float inv, bool through_norm,
                                    const float* dy, float* dx) {
  const float k = through_norm ? inv * inv * inv * Dot3(x, dy) : 0.0f;
  for (int i = 0; i < 3; ++i) dx[i] += inv * dy[i] - k * x[i];
}

RENDERER_HD bool Covered(const float* pixel) {
  return pixel[6] >= 0.0f || pixel[7] >= 0.0f || pixel[8] >= 0.0f;
}

// Intermediate values of one light at one pixel, kept for the gradient.
struct LightTerms {
  float to_light_raw[3], to_light[3], inv_light;
  bool light_norm;
  float n_dot_l_raw, n_dot_l;
  float reflected_raw[3], reflected[3], inv_reflected;
  bool reflected_norm;
  float r_dot_c_raw, r_dot_c, specularity;
};

struct PixelTerms {
  float normal[3], inv_normal;
  bool normal_norm;
  float to_camera_raw[3], to_camera[3], inv_camera;
  bool camera_norm;
  float shininess;
};

// Shades one covered pixel: writes rgb[3]; fills terms (and lights[L]) for
// PhongBackwardPixel.
RENDERER_HD void PhongPixel(const float* pixel, const PhongLayout& layout,
                            const PhongImage& image, PixelTerms* terms, LightTerms* lights,
                            float rgb[3]) {
  const float* position = pixel + 3;
  const float* diffuse = pixel + 6;
  terms->inv_normal = Normalize3(pixel, terms->normal, &terms->normal_norm);
  for (int c = 0; c < 3; ++c) rgb[c] = image.ambient[c] * diffuse[c];
  if (layout.specular()) {
    for (int i = 0; i < 3; ++i) terms->to_camera_raw[i] = image.camera[i] - position[i];
    terms->inv_camera = Normalize3(terms->to_camera_raw, terms->to_camera, &terms->camera_norm);
    terms->shininess = layout.pixel_shininess() ? pixel[12] : image.shininess;
  }
  for (int l = 0; l < image.light_count; ++l) {
    LightTerms& t = lights[l];
    const float* intensity = image.light_intensities + 3 * l;
    for (int i = 0; i < 3; ++i) t.to_light_raw[i] = image.light_positions[3 * l + i] - position[i];
    t.inv_light = Normalize3(t.to_light_raw, t.to_light, &t.light_norm);
    t.n_dot_l_raw = Dot3(terms->normal, t.to_light);
    t.n_dot_l = Clamp(t.n_dot_l_raw, 0.0f, 1.0f);
    for (int c = 0; c < 3; ++c) rgb[c] += t.n_dot_l * diffuse[c] * intensity[c];
    if (!layout.specular()) continue;
    for (int i = 0; i < 3; ++i) {
      t.reflected_raw[i] = 2.0f * t.n_dot_l * terms->normal[i] - t.to_light[i];
    }
    t.inv_reflected = Normalize3(t.reflected_raw, t.reflected, &t.reflected_norm);
    t.r_dot_c_raw = Dot3(terms->to_camera, t.reflected);
    t.r_dot_c = t.n_dot_l != 0.0f ? Clamp(t.r_dot_c_raw, 0.0f, 1.0f) : 0.0f;
    t.specularity = powf(t.r_dot_c, terms->shininess);
    for (int c = 0; c < 3; ++c) rgb[c] += t.specularity * pixel[9 + c] * intensity[c];
  }
}

// Per-image gradient accumulators (the caller zeroes them).
struct PhongImageGrad {
  float* light_positions;    // [L, 3]
  float* light_intensities;  // [L, 3]
  float* ambient;            // [3]
  float* camera;             // [3]
  float* shininess;          // [1], per-image shininess only
};

// Gradient of one covered pixel given d rgb: writes d pixel (all channels)
// and adds to the per-image accumulators. TensorFlow's conventions at the
// kinks: clip passes the gradient on [0, 1] inclusive, l2_normalize's max
// passes it to x . x when x . x >= eps; d pow / d base is taken as 0 at base 0
// (TensorFlow's formula is inf * 0 there for shininess < 1).
RENDERER_HD void PhongBackwardPixel(const float* pixel, const PhongLayout& layout,
                                    const PhongImage& image, const PixelTerms& terms,
                                    const LightTerms* lights, const float d_rgb[3],
                                    float* d_pixel, PhongImageGrad* grad) {
  const float* position = pixel + 3;
  const float* diffuse = pixel + 6;
  for (int i = 0; i < layout.channels; ++i) d_pixel[i] = 0.0f;
  float* d_position = d_pixel + 3;
  float* d_diffuse = d_pixel + 6;
  float d_normal[3] = {0.0f, 0.0f, 0.0f};
  float d_to_camera[3] = {0.0f, 0.0f, 0.0f};
  for (int c = 0; c < 3; ++c) {
    d_diffuse[c] = d_rgb[c] * image.ambient[c];
    grad->ambient[c] += d_rgb[c] * diffuse[c];
  }
  for (int l = 0; l < image.light_count; ++l) {
    const LightTerms& t = lights[l];
    const float* intensity = image.light_intensities + 3 * l;
    float* d_intensity = grad->light_intensities + 3 * l;
    float d_n_dot_l = 0.0f;
    for (int c = 0; c < 3; ++c) {
      d_diffuse[c] += d_rgb[c] * t.n_dot_l * intensity[c];
      d_n_dot_l += d_rgb[c] * diffuse[c] * intensity[c];
      d_intensity[c] += d_rgb[c] * t.n_dot_l * diffuse[c];
    }
    float d_to_light[3] = {0.0f, 0.0f, 0.0f};
    if (layout.specular()) {
      float d_specularity = 0.0f;
      for (int c = 0; c < 3; ++c) {
        const float specular = pixel[9 + c];
        d_pixel[9 + c] += d_rgb[c] * t.specularity * intensity[c];
        d_specularity += d_rgb[c] * specular * intensity[c];
        d_intensity[c] += d_rgb[c] * t.specularity * specular;
      }
      const float d_shininess =
          t.r_dot_c > 0.0f ? d_specularity * t.specularity * logf(t.r_dot_c) : 0.0f;
      if (layout.pixel_shininess()) {
        d_pixel[12] += d_shininess;
      } else {
        grad->shininess[0] += d_shininess;
      }
      const float d_r_dot_c =
          t.r_dot_c > 0.0f
              ? d_specularity * terms.shininess * powf(t.r_dot_c, terms.shininess - 1.0f)
              : 0.0f;
      const bool passes = t.n_dot_l != 0.0f && t.r_dot_c_raw >= 0.0f && t.r_dot_c_raw <= 1.0f;
      if (passes && d_r_dot_c != 0.0f) {
        float d_reflected[3], d_reflected_raw[3] = {0.0f, 0.0f, 0.0f};
        for (int i = 0; i < 3; ++i) {
          d_to_camera[i] += d_r_dot_c * t.reflected[i];
          d_reflected[i] = d_r_dot_c * terms.to_camera[i];
        }
        NormalizeBackward3(t.reflected_raw, t.inv_reflected, t.reflected_norm, d_reflected,
                           d_reflected_raw);
        // reflected_raw = 2 ndl n - to_light.
        d_n_dot_l += 2.0f * Dot3(d_reflected_raw, terms.normal);
        for (int i = 0; i < 3; ++i) {
          d_normal[i] += 2.0f * t.n_dot_l * d_reflected_raw[i];
          d_to_light[i] -= d_reflected_raw[i];
        }
      }
    }
    if (t.n_dot_l_raw >= 0.0f && t.n_dot_l_raw <= 1.0f && d_n_dot_l != 0.0f) {
      for (int i = 0; i < 3; ++i) {
        d_normal[i] += d_n_dot_l * t.to_light[i];
        d_to_light[i] += d_n_dot_l * terms.normal[i];
      }
    }
    // to_light = normalize(light - position), used by both terms above.
    float d_to_light_raw[3] = {0.0f, 0.0f, 0.0f};
    NormalizeBackward3(t.to_light_raw, t.inv_light, t.light_norm, d_to_light, d_to_light_raw);
    for (int i = 0; i < 3; ++i) {
      grad->light_positions[3 * l + i] += d_to_light_raw[i];
      d_position[i] -= d_to_light_raw[i];
    }
  }
  if (layout.specular()) {
    float d_to_camera_raw[3] = {0.0f, 0.0f, 0.0f};
    NormalizeBackward3(terms.to_camera_raw, terms.inv_camera, terms.camera_norm, d_to_camera,
                       d_to_camera_raw);
    for (int i = 0; i < 3; ++i) {
      grad->camera[i] += d_to_camera_raw[i];
      d_position[i] -= d_to_camera_raw[i];
    }
  }
  NormalizeBackward3(pixel, terms.inv_normal, terms.normal_norm, d_normal, d_pixel);
}

}  // namespace renderer

#endif  // RENDERER_KERNELS_PHONG_CORE_H_
