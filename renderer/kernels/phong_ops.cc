// TensorFlow bindings (op definitions and CPU kernels) for phong_core.h.
//
// Ops:
//   RendererPhongShade      normals, positions, diffuse_colors [B,V,3],
//                           specular_colors [B,V,3] (or [B,0,3]: none),
//                           triangles [T,3], triangle_ids [B,H,W], barycentrics
//                           [B,H,W,3], light_positions [B,L,3],
//                           light_intensities [B,L,3], ambient [B,3],
//                           camera_position [B,3], shininess [B] (per image) or
//                           [B,V] (per vertex, with specular colours)
//                           -> rgba [B,H,W,4], rows flipped (row 0 = top)
//   RendererPhongShadeGrad  ... d rgba -> d of the vertex arrays, the
//                           barycentrics and the lighting inputs; the vertex
//                           arrays listed in skip_vertex_arrays (input
//                           indices 0-3) get an empty [B,0,3] gradient and
//                           are not scattered into (nobody needs them)
//
// The forward pass shards over (image, row). The gradient runs one image per
// shard in pixel order (the scatter into the vertex arrays and the per-image
// sums, which are added per row, then row by row), so results are
// bit-identical for any thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "renderer/kernels/phong_cpu.h"
#include "renderer/kernels/raster_checks.h"
#include "renderer/kernels/tf_kernel_support.h"

namespace renderer {
namespace {

using namespace tf_kernels;  // NOLINT: TensorFlow names and ParallelFor

constexpr int64_t kCostPerShadedPixel = 150;

// Input order; the gradient op appends df_drgba and returns d of every input
// but the integer ones, in this order.
enum Input {
  kNormals, kPositions, kDiffuse, kSpecular,  // vertex arrays
  kTriangles, kTriangleIds, kBarycentrics,
  kLightPositions, kLightIntensities, kAmbient, kCamera, kShininess,
  kInputCount
};
constexpr Input kLightingInputs[] = {kLightPositions, kLightIntensities, kAmbient, kCamera,
                                     kShininess};
constexpr int kLighting = 5;

bool Contains(const std::vector<int32_t>& list, int value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Each input's shape; [B, 0, 3] for skipped vertex arrays.
Status GradShapes(InferenceContext* c) {
  std::vector<int32_t> skip;
  TF_RETURN_IF_ERROR(c->GetAttr("skip_vertex_arrays", &skip));
  for (int i = 0, out = 0; i < kInputCount; ++i) {
    if (i == kTriangles || i == kTriangleIds) continue;
    ShapeHandle shape = c->input(i);
    if (i <= kSpecular && Contains(skip, i)) {
      TF_RETURN_IF_ERROR(c->ReplaceDim(c->input(i), 1, c->MakeDim(0), &shape));
    }
    c->set_output(out++, shape);
  }
  return Status();
}

// Both ops' inputs, in Input order (a fragment of an op definition chain).
#define RENDERER_PHONG_SHADE_INPUTS        \
  Input("normals: float32")                \
      .Input("positions: float32")         \
      .Input("diffuse_colors: float32")    \
      .Input("specular_colors: float32")   \
      .Input("triangles: int32")           \
      .Input("triangle_ids: int32")        \
      .Input("barycentrics: float32")      \
      .Input("light_positions: float32")   \
      .Input("light_intensities: float32") \
      .Input("ambient: float32")           \
      .Input("camera_position: float32")   \
      .Input("shininess: float32")

REGISTER_OP("RendererPhongShade")
    .RENDERER_PHONG_SHADE_INPUTS
    .Output("rgba: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle ids;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(kTriangleIds), 3, &ids));
      ShapeHandle rgba;
      TF_RETURN_IF_ERROR(c->Concatenate(ids, c->Vector(4), &rgba));
      c->set_output(0, rgba);
      return Status();
    })
    .Doc(R"doc(
Phong shading of rasterized meshes: mesh_renderer's interpolation of the vertex
arrays and its shading, fused. Output rows are flipped: row 0 is the top.
)doc");

REGISTER_OP("RendererPhongShadeGrad")
    .RENDERER_PHONG_SHADE_INPUTS
    .Input("df_drgba: float32")
    .Output("df_dnormals: float32")
    .Output("df_dpositions: float32")
    .Output("df_ddiffuse_colors: float32")
    .Output("df_dspecular_colors: float32")
    .Output("df_dbarycentrics: float32")
    .Output("df_dlight_positions: float32")
    .Output("df_dlight_intensities: float32")
    .Output("df_dambient: float32")
    .Output("df_dcamera_position: float32")
    .Output("df_dshininess: float32")
    .Attr("skip_vertex_arrays: list(int) = []")
    .SetShapeFn(GradShapes);

// Validated shapes.
struct PhongShapes {
  int64_t batch, vertex_count, height, width, light_count;
  int channels;  // 9, 12 or 13
};

const char* const kVertexArrayNames[] = {"normals", "positions", "diffuse_colors",
                                         "specular_colors"};

Status CheckShape(const Tensor& t, const TensorShape& want, const char* name,
                  const char* layout) {
  if (t.shape() != want) {
    return errors::InvalidArgument(name, " must have shape ", layout, " = ", want.DebugString(),
                                   ", got shape ", t.shape().DebugString());
  }
  return Status();
}

Status CheckVertexArrays(OpKernelContext* ctx, PhongShapes* s) {
  const Tensor& normals = ctx->input(kNormals);
  TF_RETURN_IF_ERROR(CheckRank(normals, 3, "normals", "[B, V, 3]"));
  s->batch = normals.dim_size(0);
  s->vertex_count = normals.dim_size(1);
  const TensorShape shape({s->batch, s->vertex_count, 3});
  const TensorShape none({s->batch, 0, 3});
  for (int i = kNormals; i <= kSpecular; ++i) {
    const TensorShape& got = ctx->input(i).shape();
    if (got != shape && !(i == kSpecular && got == none)) {
      return errors::InvalidArgument(kVertexArrayNames[i], " must have shape [B, V, 3] = ",
                                     shape.DebugString(), i == kSpecular ? " or [B, 0, 3]" : "",
                                     ", got ", got.DebugString());
    }
  }
  // [B, 0, 3] specular colours mean none (with V = 0 either reading holds).
  const bool specular = ctx->input(kSpecular).shape() == shape;
  const Tensor& shininess = ctx->input(kShininess);
  if (shininess.dims() == 2 && !specular) {
    return errors::InvalidArgument("per-vertex shininess [B, V] needs specular colours");
  }
  TF_RETURN_IF_ERROR(CheckShape(
      shininess,
      shininess.dims() == 2 ? TensorShape({s->batch, s->vertex_count}) : TensorShape({s->batch}),
      "shininess", "[B] or [B, V]"));
  s->channels = !specular ? 9 : shininess.dims() == 2 ? 13 : 12;
  return Status();
}

Status CheckPhongInputs(OpKernelContext* ctx, PhongShapes* s) {
  TF_RETURN_IF_ERROR(CheckVertexArrays(ctx, s));
  const Tensor& triangles = ctx->input(kTriangles);
  const Tensor& ids = ctx->input(kTriangleIds);
  TF_RETURN_IF_ERROR(CheckTriangles(triangles, s->vertex_count));
  TF_RETURN_IF_ERROR(
      CheckRasterOutput(ids, ctx->input(kBarycentrics), s->batch, triangles.dim_size(0)));
  s->height = ids.dim_size(1);
  s->width = ids.dim_size(2);
  const Tensor& positions = ctx->input(kLightPositions);
  const Tensor& intensities = ctx->input(kLightIntensities);
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
  TF_RETURN_IF_ERROR(
      CheckShape(ctx->input(kAmbient), TensorShape({s->batch, 3}), "ambient", "[B, 3]"));
  return CheckShape(ctx->input(kCamera), TensorShape({s->batch, 3}), "camera_position",
                    "[B, 3]");
}

// The float inputs' data by Input (nullptr for the integer ones).
struct FloatInputs {
  explicit FloatInputs(OpKernelContext* ctx) {
    for (int i = 0; i < kInputCount; ++i) {
      data[i] = i == kTriangles || i == kTriangleIds ? nullptr
                                                     : ctx->input(i).flat<float>().data();
    }
  }
  const float* data[kInputCount];
};

PhongImage ImageParams(const float* const in[kInputCount], const PhongShapes& s, int64_t b) {
  const int64_t lights = s.light_count;
  return PhongImage{in[kLightPositions] + 3 * lights * b, in[kLightIntensities] + 3 * lights * b,
                    static_cast<int>(lights), in[kAmbient] + 3 * b, in[kCamera] + 3 * b,
                    s.channels == 13 ? 0.0f : in[kShininess][b]};
}

// Image b's part of the vertex arrays (and per-vertex shininess) of data laid
// out as the inputs, indexed by Input: the inputs or their gradients.
template <typename Float>
ShadingVertices<Float> ImageVertices(Float* const by_input[kInputCount], const PhongShapes& s,
                                     int64_t b) {
  const auto at = [&](int input, int64_t offset) {  // null stays null (skipped)
    return by_input[input] == nullptr ? nullptr : by_input[input] + offset;
  };
  const int64_t size = 3 * s.vertex_count * b;
  return ShadingVertices<Float>{
      at(kNormals, size), at(kPositions, size), at(kDiffuse, size),
      s.channels >= 12 ? at(kSpecular, size) : nullptr,
      s.channels == 13 ? at(kShininess, s.vertex_count * b) : nullptr, s.vertex_count};
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
    float* rgba = rgba_t->flat<float>().data();
    switch (s.channels) {
      case 9: return Shade<9>(ctx, s, rgba);
      case 12: return Shade<12>(ctx, s, rgba);
      default: return Shade<13>(ctx, s, rgba);
    }
  }

 private:
  template <int kChannels>
  static void Shade(OpKernelContext* ctx, const PhongShapes& s, float* rgba) {
    const FloatInputs in(ctx);
    const int32_t* triangles = ctx->input(kTriangles).flat<int32_t>().data();
    const int32_t* ids = ctx->input(kTriangleIds).flat<int32_t>().data();
    const float* bary = in.data[kBarycentrics];
    ParallelForImages(ctx, s.batch, s.height, s.width * kCostPerShadedPixel,
                      [&](int64_t b, int64_t row_begin, int64_t row_end) {
      PhongScratch scratch(s.light_count);
      const PhongImage image = ImageParams(in.data, s, b);
      const ShadingVertices<const float> vertices = ImageVertices(in.data, s, b);
      for (int64_t row = row_begin; row < row_end; ++row) {
        const int64_t first = (b * s.height + row) * s.width;
        float* out = rgba + (b * s.height + (s.height - 1 - row)) * s.width * 4;
        scratch.ShadeRow<kChannels>(vertices, triangles, ids + first, bary + 3 * first, s.width,
                                    image, out);
      }
    });
  }
};

class PhongShadeGradOp : public OpKernel {
 public:
  explicit PhongShadeGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::vector<int32_t> skip;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_vertex_arrays", &skip));
    for (int32_t i : skip) {
      OP_REQUIRES(ctx, i >= kNormals && i <= kSpecular,
                  errors::InvalidArgument("skip_vertex_arrays entry ", i,
                                          " is not a vertex array's input index (0 to 3)"));
      skipped_[i] = true;
    }
  }

  void Compute(OpKernelContext* ctx) override {
    PhongShapes s;
    OP_REQUIRES_OK(ctx, CheckPhongInputs(ctx, &s));
    const TensorShape rgba_shape({s.batch, s.height, s.width, 4});
    const Tensor& d_rgba = ctx->input(kInputCount);
    OP_REQUIRES(ctx, d_rgba.shape() == rgba_shape,
                errors::InvalidArgument("df_drgba must have shape [B, H, W, 4] = ",
                                        rgba_shape.DebugString(), ", got ",
                                        d_rgba.shape().DebugString()));
    Grads g;
    for (int i = 0, out = 0; i < kInputCount; ++i) {
      if (i == kTriangles || i == kTriangleIds) continue;
      const bool skipped = skipped_[i];
      TensorShape shape = ctx->input(i).shape();
      if (skipped) shape.set_dim(1, 0);
      Tensor* t;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(out++, shape, &t));
      g.d[i] = skipped ? nullptr : t->flat<float>().data();
    }
    g.d_rgba = d_rgba.flat<float>().data();
    switch (s.channels) {
      case 9: return Backward<9>(ctx, s, g);
      case 12: return Backward<12>(ctx, s, g);
      default: return Backward<13>(ctx, s, g);
    }
  }

 private:
  struct Grads {
    float* d[kInputCount];  // d of each float input, by Input; null if skipped
    const float* d_rgba;
  };

  bool skipped_[kInputCount] = {};  // by Input, from skip_vertex_arrays

  template <int kChannels>
  static void Backward(OpKernelContext* ctx, const PhongShapes& s, const Grads& g) {
    const FloatInputs in(ctx);
    const int64_t sums = ImageGradSize(s.light_count);
    const int32_t* triangles = ctx->input(kTriangles).flat<int32_t>().data();
    const int32_t* ids = ctx->input(kTriangleIds).flat<int32_t>().data();
    const float* bary = in.data[kBarycentrics];
    ParallelFor(ctx, s.batch, s.height * s.width * 2 * kCostPerShadedPixel,
                [&](int64_t begin, int64_t end) {
      PhongScratch scratch(s.light_count);
      std::vector<float> image_sum(sums), row_sum(sums);
      for (int64_t b = begin; b < end; ++b) {
        const PhongImage image = ImageParams(in.data, s, b);
        const ShadingVertices<const float> vertices = ImageVertices(in.data, s, b);
        const ShadingVertices<float> d_vertices = ImageVertices(g.d, s, b);
        const int64_t array_size = 3 * s.vertex_count;
        for (float* d : {d_vertices.normals, d_vertices.positions, d_vertices.diffuse,
                         kChannels >= 12 ? d_vertices.specular : nullptr}) {
          if (d != nullptr) std::memset(d, 0, sizeof(float) * array_size);
        }
        if (kChannels == 13) std::memset(d_vertices.shininess, 0, sizeof(float) * s.vertex_count);
        std::fill(image_sum.begin(), image_sum.end(), 0.0f);
        for (int64_t row = 0; row < s.height; ++row) {
          const int64_t first = (b * s.height + row) * s.width;
          scratch.ShadeRowBackward<kChannels>(
              vertices, triangles, ids + first, bary + 3 * first,
              g.d_rgba + (b * s.height + (s.height - 1 - row)) * s.width * 4, s.width, image,
              d_vertices, g.d[kBarycentrics] + 3 * first, row_sum.data());
          for (int64_t i = 0; i < sums; ++i) image_sum[i] += row_sum[i];
        }
        // image_sum is laid out as the lighting inputs' gradients (ImageGradAt).
        const PhongImageGrad<float> total = ImageGradAt(image_sum.data(), s.light_count);
        const float* parts[kLighting] = {total.light_positions, total.light_intensities,
                                         total.ambient, total.camera, total.shininess};
        for (int i = 0; i < kLighting; ++i) {
          const Tensor& input = ctx->input(kLightingInputs[i]);
          if (kLightingInputs[i] == kShininess && kChannels == 13) continue;  // per vertex
          const int64_t size = input.NumElements() / s.batch;
          std::copy_n(parts[i], size, g.d[kLightingInputs[i]] + b * size);
        }
      }
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("RendererPhongShade").Device(DEVICE_CPU), PhongShadeOp);
REGISTER_KERNEL_BUILDER(Name("RendererPhongShadeGrad").Device(DEVICE_CPU), PhongShadeGradOp);

}  // namespace
}  // namespace renderer
