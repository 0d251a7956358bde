// TensorFlow bindings (op definitions and CPU kernels) for phong_core.h.
//
// Ops:
//   RendererPhongShade      pixels [B,H,W,C] (C = 9, 12 or 13), light_positions
//                           [B,L,3], light_intensities [B,L,3], ambient [B,3],
//                           camera_position [B,3], shininess [B]
//                           -> rgba [B,H,W,4], rows flipped (row 0 = top)
//   RendererPhongShadeGrad  ... d rgba -> d of the six inputs
//
// The forward pass shards over (image, row); the gradient over (image, band)
// with a fixed number of row bands per image whose per-image sums (lights,
// ambient, camera, shininess) are added in band order, so results are
// bit-identical for any thread count.
#include <algorithm>
#include <vector>

#include "renderer/kernels/phong_core.h"
#include "renderer/kernels/tf_kernel_support.h"

namespace renderer {
namespace {

using namespace tf_kernels;  // NOLINT: TensorFlow names and ParallelFor

constexpr int kGradBands = 8;  // row bands per image in the gradient (fixed: determinism)
constexpr int64_t kCostPerShadedPixel = 150;

REGISTER_OP("RendererPhongShade")
    .Input("pixels: float32")
    .Input("light_positions: float32")
    .Input("light_intensities: float32")
    .Input("ambient: float32")
    .Input("camera_position: float32")
    .Input("shininess: float32")
    .Output("rgba: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle pixels;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &pixels));
      ShapeHandle rgba;
      TF_RETURN_IF_ERROR(c->ReplaceDim(pixels, 3, c->MakeDim(4), &rgba));
      c->set_output(0, rgba);
      return Status();
    })
    .Doc(R"doc(
Phong shading of interpolated [normal, position, diffuse(, specular(, shininess))]
pixels (mesh_renderer's shading stage). Output rows are flipped: row 0 is the top.
)doc");

REGISTER_OP("RendererPhongShadeGrad")
    .Input("pixels: float32")
    .Input("light_positions: float32")
    .Input("light_intensities: float32")
    .Input("ambient: float32")
    .Input("camera_position: float32")
    .Input("shininess: float32")
    .Input("df_drgba: float32")
    .Output("df_dpixels: float32")
    .Output("df_dlight_positions: float32")
    .Output("df_dlight_intensities: float32")
    .Output("df_dambient: float32")
    .Output("df_dcamera_position: float32")
    .Output("df_dshininess: float32")
    .SetShapeFn([](InferenceContext* c) {
      for (int i = 0; i < 6; ++i) c->set_output(i, c->input(i));
      return Status();
    });

// Validated shapes of the six inputs.
struct PhongShapes {
  int64_t batch, height, width, light_count;
  PhongLayout layout;
};

Status CheckPerImage(const Tensor& t, int64_t batch, int64_t inner, const char* name,
                     const char* layout) {
  const bool ok = inner == 0 ? (t.dims() == 1 && t.dim_size(0) == batch)
                             : (t.dims() == 2 && t.dim_size(0) == batch && t.dim_size(1) == inner);
  if (!ok) {
    return errors::InvalidArgument(name, " must have shape ", layout, " with B = ", batch,
                                   ", got shape ", t.shape().DebugString());
  }
  return Status();
}

Status CheckPhongInputs(OpKernelContext* ctx, PhongShapes* s) {
  const Tensor& pixels = ctx->input(0);
  TF_RETURN_IF_ERROR(CheckRank(pixels, 4, "pixels", "[B, H, W, C]"));
  const int64_t channels = pixels.dim_size(3);
  if (channels != 9 && channels != 12 && channels != 13) {
    return errors::InvalidArgument("pixels must have 9, 12 or 13 channels, got shape ",
                                   pixels.shape().DebugString());
  }
  s->batch = pixels.dim_size(0);
  s->height = pixels.dim_size(1);
  s->width = pixels.dim_size(2);
  s->layout = PhongLayout{static_cast<int>(channels)};
  const Tensor& positions = ctx->input(1);
  const Tensor& intensities = ctx->input(2);
  if (positions.dims() != 3 || positions.dim_size(0) != s->batch || positions.dim_size(2) != 3) {
    return errors::InvalidArgument("light_positions must have shape [B, L, 3] with B = ",
                                   s->batch, ", got shape ", positions.shape().DebugString());
  }
  if (intensities.shape() != positions.shape()) {
    return errors::InvalidArgument("light_intensities must have the shape of light_positions ",
                                   positions.shape().DebugString(), ", got ",
                                   intensities.shape().DebugString());
  }
  s->light_count = positions.dim_size(1);
  TF_RETURN_IF_ERROR(CheckPerImage(ctx->input(3), s->batch, 3, "ambient", "[B, 3]"));
  TF_RETURN_IF_ERROR(CheckPerImage(ctx->input(4), s->batch, 3, "camera_position", "[B, 3]"));
  return CheckPerImage(ctx->input(5), s->batch, 0, "shininess", "[B]");
}

PhongImage ImageParams(OpKernelContext* ctx, const PhongShapes& s, int64_t b) {
  const int64_t lights = s.light_count;
  return PhongImage{ctx->input(1).flat<float>().data() + 3 * lights * b,
                    ctx->input(2).flat<float>().data() + 3 * lights * b,
                    static_cast<int>(lights),
                    ctx->input(3).flat<float>().data() + 3 * b,
                    ctx->input(4).flat<float>().data() + 3 * b,
                    ctx->input(5).flat<float>().data()[b]};
}

class PhongShadeOp : public OpKernel {
 public:
  explicit PhongShadeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    PhongShapes s;
    OP_REQUIRES_OK(ctx, CheckPhongInputs(ctx, &s));
    Tensor* rgba_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            0, TensorShape({s.batch, s.height, s.width, 4}), &rgba_t));
    const float* pixels = ctx->input(0).flat<float>().data();
    float* rgba = rgba_t->flat<float>().data();
    const int channels = s.layout.channels;
    ParallelForImages(ctx, s.batch, s.height, s.width * kCostPerShadedPixel,
                      [&](int64_t b, int64_t row_begin, int64_t row_end) {
      PixelTerms terms;
      std::vector<LightTerms> lights(s.light_count);
      const PhongImage image = ImageParams(ctx, s, b);
      for (int64_t row = row_begin; row < row_end; ++row) {
        const float* in = pixels + (b * s.height + row) * s.width * channels;
        float* out = rgba + (b * s.height + (s.height - 1 - row)) * s.width * 4;
        for (int64_t x = 0; x < s.width; ++x, in += channels, out += 4) {
          if (!Covered(in)) {
            out[0] = out[1] = out[2] = out[3] = 0.0f;
            continue;
          }
          PhongPixel(in, s.layout, image, &terms, lights.data(), out);
          out[3] = 1.0f;
        }
      }
    });
  }
};

class PhongShadeGradOp : public OpKernel {
 public:
  explicit PhongShadeGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    PhongShapes s;
    OP_REQUIRES_OK(ctx, CheckPhongInputs(ctx, &s));
    const Tensor& d_rgba_t = ctx->input(6);
    OP_REQUIRES(ctx, d_rgba_t.shape() == TensorShape({s.batch, s.height, s.width, 4}),
                errors::InvalidArgument("df_drgba must have shape [B, H, W, 4] = ",
                                        TensorShape({s.batch, s.height, s.width, 4}).DebugString(),
                                        ", got ", d_rgba_t.shape().DebugString()));
    Tensor* outputs[6];
    for (int i = 0; i < 6; ++i) {
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, ctx->input(i).shape(), &outputs[i]));
    }
    // Per (image, band) sums, laid out as gradient outputs 1-5 one after the
    // other: light positions 3 L, light intensities 3 L, ambient 3, camera 3,
    // shininess 1.
    const int64_t slot_size[5] = {3 * s.light_count, 3 * s.light_count, 3, 3, 1};
    int64_t slot[5], sums = 0;
    for (int k = 0; k < 5; ++k) {
      slot[k] = sums;
      sums += slot_size[k];
    }
    std::vector<float> partial(s.batch * kGradBands * sums, 0.0f);
    const float* pixels = ctx->input(0).flat<float>().data();
    const float* d_rgba = d_rgba_t.flat<float>().data();
    float* d_pixels = outputs[0]->flat<float>().data();
    const int channels = s.layout.channels;
    const int64_t rows_per_band = (s.height + kGradBands - 1) / kGradBands;
    ParallelFor(ctx, s.batch * kGradBands, rows_per_band * s.width * 2 * kCostPerShadedPixel,
                [&](int64_t begin, int64_t end) {
      PixelTerms terms;
      std::vector<LightTerms> lights(s.light_count);
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t b = unit / kGradBands, band = unit % kGradBands;
        const PhongImage image = ImageParams(ctx, s, b);
        float* sum = partial.data() + unit * sums;
        PhongImageGrad grad{sum + slot[0], sum + slot[1], sum + slot[2], sum + slot[3],
                            sum + slot[4]};
        const int64_t row_end = std::min(s.height, (band + 1) * rows_per_band);
        for (int64_t row = band * rows_per_band; row < row_end; ++row) {
          const int64_t first = (b * s.height + row) * s.width;
          const float* g = d_rgba + (b * s.height + (s.height - 1 - row)) * s.width * 4;
          for (int64_t x = 0; x < s.width; ++x, g += 4) {
            const float* in = pixels + (first + x) * channels;
            float* d_in = d_pixels + (first + x) * channels;
            if (!Covered(in)) {
              std::fill(d_in, d_in + channels, 0.0f);
              continue;
            }
            float rgb[3];
            PhongPixel(in, s.layout, image, &terms, lights.data(), rgb);
            PhongBackwardPixel(in, s.layout, image, terms, lights.data(), g, d_in, &grad);
          }
        }
      }
    });
    // Per-image sums in band order (independent of the thread count).
    std::vector<float> total(sums);
    for (int64_t b = 0; b < s.batch; ++b) {
      std::fill(total.begin(), total.end(), 0.0f);
      for (int band = 0; band < kGradBands; ++band) {
        const float* sum = partial.data() + (b * kGradBands + band) * sums;
        for (int64_t i = 0; i < sums; ++i) total[i] += sum[i];
      }
      for (int k = 0; k < 5; ++k) {
        std::copy_n(total.begin() + slot[k], slot_size[k],
                    outputs[k + 1]->flat<float>().data() + b * slot_size[k]);
      }
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("RendererPhongShade").Device(DEVICE_CPU), PhongShadeOp);
REGISTER_KERNEL_BUILDER(Name("RendererPhongShadeGrad").Device(DEVICE_CPU), PhongShadeGradOp);

}  // namespace
}  // namespace renderer
