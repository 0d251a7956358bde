// Validation of the rasterizer's inputs and outputs as other ops receive them
// (interpolation, shading, gradients), shared by the renderer's op kernels.
#ifndef RENDERER_KERNELS_RASTER_CHECKS_H_
#define RENDERER_KERNELS_RASTER_CHECKS_H_

#include "renderer/kernels/index_range.h"
#include "renderer/kernels/rasterizer_core.h"
#include "renderer/kernels/tf_kernel_support.h"

namespace renderer {
namespace tf_kernels {

// Triangles [T, 3] with every index in [0, vertex_count).
inline Status CheckTriangles(const Tensor& triangles, int64_t vertex_count) {
  if (triangles.dims() != 2 || triangles.dim_size(1) != 3) {
    return errors::InvalidArgument("triangles must have shape [T, 3], got shape ",
                                   triangles.shape().DebugString());
  }
  const int32_t* tri = triangles.flat<int32_t>().data();
  const int64_t n = triangles.NumElements();
  if (!AnyOutside(tri, n, 0, vertex_count)) return Status();
  for (int64_t i = 0; i < n; ++i) {
    if (tri[i] < 0 || tri[i] >= vertex_count) {
      return errors::InvalidArgument("triangles[", i / 3, ", ", i % 3, "] = ", tri[i],
                                     " is out of range [0, ", vertex_count, ")");
    }
  }
  return Status();
}

// Rasterizer output given to the interpolation/gradient ops: ids [B,H,W] in
// [-1, T) and barycentrics [B,H,W,3].
inline Status CheckRasterOutput(const Tensor& ids, const Tensor& bary,
                         int64_t batch, int64_t triangle_count) {
  TF_RETURN_IF_ERROR(CheckRank(ids, 3, "triangle_ids", "[B, H, W]"));
  if (ids.dim_size(0) != batch) {
    return errors::InvalidArgument("triangle_ids has batch size ", ids.dim_size(0),
                                   " but the vertex data has ", batch);
  }
  if (bary.dims() != 4 || bary.dim_size(0) != ids.dim_size(0) ||
      bary.dim_size(1) != ids.dim_size(1) || bary.dim_size(2) != ids.dim_size(2) ||
      bary.dim_size(3) != 3) {
    return errors::InvalidArgument("barycentrics must have shape [B, H, W, 3] matching ",
                                   "triangle_ids ", ids.shape().DebugString(), ", got ",
                                   bary.shape().DebugString());
  }
  const int32_t* id = ids.flat<int32_t>().data();
  const int64_t n = ids.NumElements();
  if (!AnyOutside(id, n, kEmptyTriangle, triangle_count)) return Status();
  for (int64_t p = 0; p < n; ++p) {
    if (id[p] < kEmptyTriangle || id[p] >= triangle_count) {
      return errors::InvalidArgument("triangle_ids value ", id[p], " at flat index ", p,
                                     " is out of range [-1, ", triangle_count, ")");
    }
  }
  return Status();
}

inline Status CheckAttributes(const Tensor& attributes) {
  TF_RETURN_IF_ERROR(CheckRank(attributes, 3, "attributes", "[B, V, C]"));
  if (attributes.dim_size(2) < 1) {
    return errors::InvalidArgument("attributes must have at least one channel, got shape ",
                                   attributes.shape().DebugString());
  }
  return Status();
}

}  // namespace tf_kernels
}  // namespace renderer

#endif  // RENDERER_KERNELS_RASTER_CHECKS_H_
