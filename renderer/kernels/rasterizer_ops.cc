// TensorFlow bindings (op definitions and CPU kernels) for rasterizer_core.h.
//
// Ops:
//   RendererRasterize        clip [B,V,4], triangles [T,3] -> ids [B,H,W],
//                            barycentrics [B,H,W,3], depth [B,H,W]
//   RendererRasterizeGrad    d barycentrics -> d clip [B,V,4]
//   RendererInterpolate      attributes [B,V,C] + rasterizer output -> [B,H,W,C]
//   RendererInterpolateGrad  d out -> d attributes, d barycentrics, d background
//
// All kernels shard over TensorFlow's intra-op thread pool. Work is split so
// that every output element is computed by exactly one thread in a fixed
// order, so results are bit-identical for any thread count.
#include <algorithm>
#include <cstring>
#include <string>

#include "renderer/kernels/raster_checks.h"
#include "renderer/kernels/rasterizer_cpu.h"
#include "renderer/kernels/tf_kernel_support.h"

namespace renderer {
namespace {

using namespace tf_kernels;  // NOLINT: TensorFlow names and ParallelFor

// Rough per-unit costs (in cycles) that guide Shard's block sizes.
constexpr int64_t kCostPerVertex = 40;
constexpr int64_t kCostPerPixel = 60;

// ---------------------------------------------------------------------------
// Op definitions.
// ---------------------------------------------------------------------------

REGISTER_OP("RendererRasterize")
    .Input("clip_vertices: float32")
    .Input("triangles: int32")
    .Attr("image_width: int >= 1")
    .Attr("image_height: int >= 1")
    .Output("triangle_ids: int32")
    .Output("barycentrics: float32")
    .Output("depth: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle vertices, triangles;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &vertices));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &triangles));
      DimensionHandle unused;
      TF_RETURN_IF_ERROR(c->WithValue(c->Dim(vertices, 2), 4, &unused));
      TF_RETURN_IF_ERROR(c->WithValue(c->Dim(triangles, 1), 3, &unused));
      int64_t width, height;
      TF_RETURN_IF_ERROR(c->GetAttr("image_width", &width));
      TF_RETURN_IF_ERROR(c->GetAttr("image_height", &height));
      const DimensionHandle batch = c->Dim(vertices, 0);
      c->set_output(0, c->MakeShape({batch, height, width}));
      c->set_output(1, c->MakeShape({batch, height, width, 3}));
      c->set_output(2, c->MakeShape({batch, height, width}));
      return Status();
    })
    .Doc(R"doc(
Rasterizes triangles given by clip-space vertices (tf_mesh_renderer semantics).
Row 0 of the outputs is NDC y = -1. Empty pixels: id -1, barycentrics 0, depth 1.
)doc");

REGISTER_OP("RendererRasterizeGrad")
    .Input("clip_vertices: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Input("barycentrics: float32")
    .Input("df_dbarycentrics: float32")
    .Output("df_dclip_vertices: float32")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return Status();
    });

REGISTER_OP("RendererInterpolate")
    .Input("attributes: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Input("barycentrics: float32")
    .Input("background: float32")
    .Output("images: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle attributes, ids;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &attributes));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 3, &ids));
      ShapeHandle out;
      TF_RETURN_IF_ERROR(c->Concatenate(ids, c->Vector(c->Dim(attributes, 2)), &out));
      c->set_output(0, out);
      return Status();
    })
    .Doc("Perspective-correct interpolation of per-vertex attributes.");

REGISTER_OP("RendererInterpolateGrad")
    .Input("attributes: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Input("barycentrics: float32")
    .Input("df_dimages: float32")
    .Output("df_dattributes: float32")
    .Output("df_dbarycentrics: float32")
    .Output("df_dbackground: float32")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(3));
      ShapeHandle attributes;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &attributes));
      c->set_output(2, c->Vector(c->Dim(attributes, 2)));
      return Status();
    });

// ---------------------------------------------------------------------------
// Kernels.
// ---------------------------------------------------------------------------

class RasterizeOp : public OpKernel {
 public:
  explicit RasterizeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("image_width", &width_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("image_height", &height_));
    OP_REQUIRES(ctx, width_ <= kMaxImageSize && height_ <= kMaxImageSize,
                errors::InvalidArgument("image size ", width_, " x ", height_,
                                        " exceeds the maximum of ", kMaxImageSize));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& clip = ctx->input(0);
    const Tensor& triangles = ctx->input(1);
    OP_REQUIRES(ctx, clip.dims() == 3 && clip.dim_size(2) == 4,
                errors::InvalidArgument("clip_vertices must have shape [B, V, 4], got shape ",
                                        clip.shape().DebugString()));
    const int64_t batch = clip.dim_size(0), vertex_count = clip.dim_size(1);
    OP_REQUIRES_OK(ctx, CheckTriangles(triangles, vertex_count));
    const int64_t triangle_count = triangles.dim_size(0);
    const int width = width_, height = height_;
    const int64_t pixels = static_cast<int64_t>(width) * height;

    Tensor *ids_t, *bary_t, *depth_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, height, width}), &ids_t));
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output(1, TensorShape({batch, height, width, 3}), &bary_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({batch, height, width}), &depth_t));
    if (batch == 0) return;

    static_assert(sizeof(PixelBounds) == 4 * sizeof(int16_t), "PixelBounds layout");
    Tensor bounds_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_INT16,
                                           TensorShape({batch * vertex_count * 4}), &bounds_t));
    auto* bounds = reinterpret_cast<PixelBounds*>(bounds_t.flat<int16_t>().data());
    const float* v = clip.flat<float>().data();
    const int32_t* tri = triangles.flat<int32_t>().data();
    int32_t* ids = ids_t->flat<int32_t>().data();
    float* bary = bary_t->flat<float>().data();
    float* depth = depth_t->flat<float>().data();

    ParallelFor(ctx, batch * vertex_count, kCostPerVertex, [&](int64_t begin, int64_t end) {
      ProjectVertexBounds(v, begin, end, width, height, bounds);
    });

    // Split each image into horizontal bands only when there are fewer images
    // than threads; each band walks every triangle, so bands cost set-up time.
    const int64_t bands = std::min<int64_t>(
        height, std::max<int64_t>(1, (NumThreads(ctx) + batch - 1) / batch));
    const int64_t rows_per_band = (height + bands - 1) / bands;
    const int64_t cost = (triangle_count * 20 + pixels * 10) / bands + 1;
    ParallelFor(ctx, batch * bands, cost, [&](int64_t begin, int64_t end) {
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t b = unit / bands;
        const int row_begin = static_cast<int>((unit % bands) * rows_per_band);
        const int row_end = static_cast<int>(std::min<int64_t>(height, row_begin + rows_per_band));
        if (row_begin >= row_end) continue;
        int32_t* ids_b = ids + b * pixels;
        float* bary_b = bary + 3 * b * pixels;
        float* depth_b = depth + b * pixels;
        ClearRows(width, row_begin, row_end, ids_b, bary_b, depth_b);
        RasterizeRows(v + 4 * b * vertex_count, bounds + b * vertex_count, tri, triangle_count,
                      width, height, row_begin, row_end, ids_b, bary_b, depth_b);
      }
    });
  }

 private:
  int width_ = 0, height_ = 0;
};

class RasterizeGradOp : public OpKernel {
 public:
  explicit RasterizeGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& clip = ctx->input(0);
    const Tensor& triangles = ctx->input(1);
    const Tensor& ids_t = ctx->input(2);
    const Tensor& bary_t = ctx->input(3);
    const Tensor& grad_t = ctx->input(4);
    OP_REQUIRES(ctx, clip.dims() == 3 && clip.dim_size(2) == 4,
                errors::InvalidArgument("clip_vertices must have shape [B, V, 4], got shape ",
                                        clip.shape().DebugString()));
    const int64_t batch = clip.dim_size(0), vertex_count = clip.dim_size(1);
    OP_REQUIRES_OK(ctx, CheckTriangles(triangles, vertex_count));
    OP_REQUIRES_OK(ctx, CheckRasterOutput(ids_t, bary_t, batch, triangles.dim_size(0)));
    OP_REQUIRES(ctx, grad_t.shape() == bary_t.shape(),
                errors::InvalidArgument("df_dbarycentrics must have the shape of barycentrics ",
                                        bary_t.shape().DebugString(), ", got ",
                                        grad_t.shape().DebugString()));
    const int height = static_cast<int>(ids_t.dim_size(1));
    const int width = static_cast<int>(ids_t.dim_size(2));
    const int64_t pixels = static_cast<int64_t>(width) * height;

    Tensor* out_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, clip.shape(), &out_t));
    float* out = out_t->flat<float>().data();
    std::memset(out, 0, sizeof(float) * out_t->NumElements());
    const float* v = clip.flat<float>().data();
    const int32_t* tri = triangles.flat<int32_t>().data();
    const int32_t* ids = ids_t.flat<int32_t>().data();
    const float* bary = bary_t.flat<float>().data();
    const float* grad = grad_t.flat<float>().data();
    ParallelFor(ctx, batch, pixels * kCostPerPixel, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        RasterizeBackwardImage(v + 4 * b * vertex_count, tri, ids + b * pixels,
                               bary + 3 * b * pixels, grad + 3 * b * pixels, width, height,
                               out + 4 * b * vertex_count);
      }
    });
  }
};

class InterpolateOp : public OpKernel {
 public:
  explicit InterpolateOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& attr_t = ctx->input(0);
    const Tensor& triangles = ctx->input(1);
    const Tensor& ids_t = ctx->input(2);
    const Tensor& bary_t = ctx->input(3);
    const Tensor& background_t = ctx->input(4);
    OP_REQUIRES_OK(ctx, CheckAttributes(attr_t));
    const int64_t batch = attr_t.dim_size(0), vertex_count = attr_t.dim_size(1);
    const int channels = static_cast<int>(attr_t.dim_size(2));
    OP_REQUIRES_OK(ctx, CheckTriangles(triangles, vertex_count));
    OP_REQUIRES_OK(ctx, CheckRasterOutput(ids_t, bary_t, batch, triangles.dim_size(0)));
    OP_REQUIRES(ctx, background_t.dims() == 1 && background_t.dim_size(0) == channels,
                errors::InvalidArgument("background must have shape [C] = [", channels,
                                        "], got shape ", background_t.shape().DebugString()));
    const int64_t pixels = ids_t.dim_size(1) * ids_t.dim_size(2);

    TensorShape out_shape = ids_t.shape();
    out_shape.AddDim(channels);
    Tensor* out_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out_t));
    const float* attr = attr_t.flat<float>().data();
    const int32_t* tri = triangles.flat<int32_t>().data();
    const int32_t* ids = ids_t.flat<int32_t>().data();
    const float* bary = bary_t.flat<float>().data();
    const float* background = background_t.flat<float>().data();
    float* out = out_t->flat<float>().data();
    ParallelForImages(ctx, batch, pixels, 4 * channels + 8,
                      [&](int64_t b, int64_t lo, int64_t hi) {
      const int64_t base = b * pixels;
      InterpolatePixels(attr + b * vertex_count * channels, channels, tri, ids + base,
                        bary + 3 * base, background, lo, hi, out + base * channels);
    });
  }
};

class InterpolateGradOp : public OpKernel {
 public:
  explicit InterpolateGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& attr_t = ctx->input(0);
    const Tensor& triangles = ctx->input(1);
    const Tensor& ids_t = ctx->input(2);
    const Tensor& bary_t = ctx->input(3);
    const Tensor& grad_t = ctx->input(4);
    OP_REQUIRES_OK(ctx, CheckAttributes(attr_t));
    const int64_t batch = attr_t.dim_size(0), vertex_count = attr_t.dim_size(1);
    const int channels = static_cast<int>(attr_t.dim_size(2));
    OP_REQUIRES_OK(ctx, CheckTriangles(triangles, vertex_count));
    OP_REQUIRES_OK(ctx, CheckRasterOutput(ids_t, bary_t, batch, triangles.dim_size(0)));
    TensorShape image_shape = ids_t.shape();
    image_shape.AddDim(channels);
    OP_REQUIRES(ctx, grad_t.shape() == image_shape,
                errors::InvalidArgument("df_dimages must have shape ", image_shape.DebugString(),
                                        ", got ", grad_t.shape().DebugString()));
    const int64_t pixels = ids_t.dim_size(1) * ids_t.dim_size(2);

    Tensor *dattr_t, *dbary_t, *dbg_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, attr_t.shape(), &dattr_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, bary_t.shape(), &dbary_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({channels}), &dbg_t));
    Tensor partial_bg_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT,
                                           TensorShape({batch, channels}), &partial_bg_t));
    const float* attr = attr_t.flat<float>().data();
    const int32_t* tri = triangles.flat<int32_t>().data();
    const int32_t* ids = ids_t.flat<int32_t>().data();
    const float* bary = bary_t.flat<float>().data();
    const float* grad = grad_t.flat<float>().data();
    float* dattr = dattr_t->flat<float>().data();
    float* dbary = dbary_t->flat<float>().data();
    float* partial_bg = partial_bg_t.flat<float>().data();
    std::memset(dattr, 0, sizeof(float) * dattr_t->NumElements());
    std::memset(partial_bg, 0, sizeof(float) * partial_bg_t.NumElements());

    // One image per unit: the scatter into attributes runs in pixel order.
    ParallelFor(ctx, batch, pixels * (6 * channels + 4), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        InterpolateBackward(attr + b * vertex_count * channels, channels, tri, ids + b * pixels,
                            bary + 3 * b * pixels, grad + b * pixels * channels, pixels,
                            dbary + 3 * b * pixels, dattr + b * vertex_count * channels,
                            partial_bg + b * channels);
      }
    });
    float* dbg = dbg_t->flat<float>().data();
    for (int c = 0; c < channels; ++c) {
      float s = 0.0f;
      for (int64_t b = 0; b < batch; ++b) s += partial_bg[b * channels + c];
      dbg[c] = s;
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("RendererRasterize").Device(DEVICE_CPU), RasterizeOp);
REGISTER_KERNEL_BUILDER(Name("RendererRasterizeGrad").Device(DEVICE_CPU), RasterizeGradOp);
REGISTER_KERNEL_BUILDER(Name("RendererInterpolate").Device(DEVICE_CPU), InterpolateOp);
REGISTER_KERNEL_BUILDER(Name("RendererInterpolateGrad").Device(DEVICE_CPU), InterpolateGradOp);

}  // namespace
}  // namespace renderer
