// TensorFlow bindings (op definitions and CPU kernels) for linear_basis.h
// and vertex_normals.h.
//
// Ops:
//   Deep3dLinearBasis        mean [R], basis [R, K], coefficients [B, K] -> [B, R]
//   Deep3dLinearBasisGrad    basis [R, K], d out [B, R] -> d coefficients [B, K]
//   Deep3dVertexNormals      shape [B, N, 3], triangles [T, 3], point_buf [N, P]
//                            -> normals [B, N, 3], unnormalised sums [B, N, 3]
//   Deep3dVertexNormalsGrad  ... d normals -> d shape [B, N, 3]
//   Deep3dPoseLight          shape, normals, albedo [B, N, 3], angles [B, 3],
//                            translation [B, 3], gamma [B, 27], world_to_clip [4, 4],
//                            keypoints [L] -> vertices, normals, colors [B, N, 3],
//                            landmarks [B, L, 2], clip_vertices [B, N, 4]
//                            (gradient: deep3dface/face_ops.py)
//
// All shard over TensorFlow's intra-op thread pool with every output element
// computed in a fixed order, so results are bit-identical for any thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "deep3dface/kernels/linear_basis.h"
#include "deep3dface/kernels/pose_light.h"
#include "deep3dface/kernels/vertex_normals.h"
#include "renderer/kernels/index_range.h"
#include "renderer/kernels/tf_kernel_support.h"

namespace deep3dface {
namespace {

using namespace ::renderer::tf_kernels;  // NOLINT: TensorFlow names and ParallelFor

Status CheckBasis(const Tensor& basis) {
  if (basis.dims() != 2) {
    return errors::InvalidArgument("basis must have shape [R, K], got shape ",
                                   basis.shape().DebugString());
  }
  if (basis.dim_size(1) > (int64_t{1} << 30)) {
    return errors::InvalidArgument("basis has too many columns: ", basis.dim_size(1));
  }
  return Status();
}

REGISTER_OP("Deep3dLinearBasis")
    .Input("mean: float32")
    .Input("basis: float32")
    .Input("coefficients: float32")
    .Attr("simd: bool = true")
    .Output("combined: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle mean, basis, coeff;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 1, &mean));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &basis));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &coeff));
      DimensionHandle rows, cols;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(mean, 0), c->Dim(basis, 0), &rows));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(basis, 1), c->Dim(coeff, 1), &cols));
      c->set_output(0, c->Matrix(c->Dim(coeff, 0), rows));
      return Status();
    })
    .Doc("combined[b, r] = mean[r] + sum_k basis[r, k] * coefficients[b, k].");

REGISTER_OP("Deep3dLinearBasisGrad")
    .Input("basis: float32")
    .Input("d_combined: float32")
    .Attr("simd: bool = true")
    .Output("d_coefficients: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle basis, grad;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &basis));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &grad));
      DimensionHandle unused;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(basis, 0), c->Dim(grad, 1), &unused));
      c->set_output(0, c->Matrix(c->Dim(grad, 0), c->Dim(basis, 1)));
      return Status();
    });

class LinearBasisOp : public OpKernel {
 public:
  explicit LinearBasisOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("simd", &simd_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& mean_t = ctx->input(0);
    const Tensor& basis_t = ctx->input(1);
    const Tensor& coeff_t = ctx->input(2);
    OP_REQUIRES_OK(ctx, CheckBasis(basis_t));
    const int64_t rows = basis_t.dim_size(0);
    const int k_count = static_cast<int>(basis_t.dim_size(1));
    OP_REQUIRES(ctx, mean_t.dims() == 1 && mean_t.dim_size(0) == rows,
                errors::InvalidArgument("mean must have shape [R] = [", rows, "], got shape ",
                                        mean_t.shape().DebugString()));
    OP_REQUIRES(ctx, coeff_t.dims() == 2 && coeff_t.dim_size(1) == k_count,
                errors::InvalidArgument("coefficients must have shape [B, K] with K = ",
                                        k_count, ", got shape ",
                                        coeff_t.shape().DebugString()));
    const int64_t batch = coeff_t.dim_size(0);
    Tensor* out_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, rows}), &out_t));
    if (batch == 0 || rows == 0) return;
    const float* mean = mean_t.flat<float>().data();
    const float* basis = basis_t.flat<float>().data();
    const float* coeff = coeff_t.flat<float>().data();
    float* out = out_t->flat<float>().data();
    const bool simd = simd_;
    ParallelFor(ctx, rows, 2 * batch * k_count + 1, [&](int64_t begin, int64_t end) {
      CombineRows(mean, basis, coeff, batch, rows, k_count, begin, end, out, simd);
    });
  }

 private:
  bool simd_ = true;
};

class LinearBasisGradOp : public OpKernel {
 public:
  explicit LinearBasisGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("simd", &simd_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& basis_t = ctx->input(0);
    const Tensor& grad_t = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckBasis(basis_t));
    const int64_t rows = basis_t.dim_size(0);
    const int k_count = static_cast<int>(basis_t.dim_size(1));
    OP_REQUIRES(ctx, grad_t.dims() == 2 && grad_t.dim_size(1) == rows,
                errors::InvalidArgument("d_combined must have shape [B, R] with R = ", rows,
                                        ", got shape ", grad_t.shape().DebugString()));
    const int64_t batch = grad_t.dim_size(0);
    Tensor* out_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, k_count}), &out_t));
    float* out = out_t->flat<float>().data();
    const int64_t per_block = batch * k_count;
    std::fill(out, out + per_block, 0.0f);
    if (per_block == 0 || rows == 0) return;
    // Fixed blocks of rows, each summed by one thread, then added in block
    // order: the same sums for any thread count.
    const int64_t blocks = (rows + kGradBlockRows - 1) / kGradBlockRows;
    Tensor partial_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT,
                                           TensorShape({blocks, per_block}), &partial_t));
    float* partial = partial_t.flat<float>().data();
    const float* basis = basis_t.flat<float>().data();
    const float* grad = grad_t.flat<float>().data();
    const bool simd = simd_;
    ParallelFor(ctx, blocks, 2 * kGradBlockRows * per_block, [&](int64_t begin, int64_t end) {
      for (int64_t block = begin; block < end; ++block) {
        const int64_t r_begin = block * kGradBlockRows;
        const int64_t r_end = std::min(rows, r_begin + kGradBlockRows);
        CoefficientGrad(basis, grad, batch, rows, k_count, r_begin, r_end,
                        partial + block * per_block, simd);
      }
    });
    for (int64_t block = 0; block < blocks; ++block) {
      const float* p = partial + block * per_block;
      for (int64_t i = 0; i < per_block; ++i) out[i] += p[i];
    }
  }

 private:
  bool simd_ = true;
};

// OK if every index of t is in [0, limit]; else names the first one outside.
Status CheckIndices(const Tensor& t, int64_t limit, const char* name, const char* range) {
  const int32_t* idx = t.flat<int32_t>().data();
  const int64_t n = t.NumElements();
  if (!::renderer::AnyOutside(idx, n, 0, limit + 1)) return Status();
  const int64_t width = t.dims() == 2 ? t.dim_size(1) : 1;
  for (int64_t i = 0; i < n; ++i) {
    if (idx[i] < 0 || idx[i] > limit) {
      if (t.dims() != 2) {
        return errors::InvalidArgument(name, "[", i, "] = ", idx[i], " is out of range ", range,
                                       limit, "]");
      }
      return errors::InvalidArgument(name, "[", i / width, ", ", i % width, "] = ", idx[i],
                                     " is out of range ", range, limit, "]");
    }
  }
  return Status();
}

// Checks shape [B, N, 3], triangles [T, 3] in [0, N), point_buf [N, P] in [0, T].
Status CheckNormalInputs(const Tensor& shape, const Tensor& triangles, const Tensor& point_buf) {
  if (shape.dims() != 3 || shape.dim_size(2) != 3) {
    return errors::InvalidArgument("shape must have shape [B, N, 3], got shape ",
                                   shape.shape().DebugString());
  }
  if (triangles.dims() != 2 || triangles.dim_size(1) != 3) {
    return errors::InvalidArgument("triangles must have shape [T, 3], got shape ",
                                   triangles.shape().DebugString());
  }
  if (point_buf.dims() != 2 || point_buf.dim_size(0) != shape.dim_size(1)) {
    return errors::InvalidArgument("point_buf must have shape [N, P] with N = ",
                                   shape.dim_size(1), ", got shape ",
                                   point_buf.shape().DebugString());
  }
  TF_RETURN_IF_ERROR(CheckIndices(triangles, shape.dim_size(1) - 1, "triangles", "[0, "));
  return CheckIndices(point_buf, triangles.dim_size(0), "point_buf",
                      "(T = padding) [0, ");
}

REGISTER_OP("Deep3dVertexNormals")
    .Input("shape: float32")
    .Input("triangles: int32")
    .Input("point_buf: int32")
    .Attr("normalize_faces: bool = true")
    .Attr("simd: bool = true")
    .Output("normals: float32")
    .Output("summed: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle shape;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &shape));
      c->set_output(0, shape);
      c->set_output(1, shape);
      return Status();
    })
    .Doc("Deep3D's vertex normals: normalised sums of (unit) incident face normals.");

REGISTER_OP("Deep3dVertexNormalsGrad")
    .Input("shape: float32")
    .Input("triangles: int32")
    .Input("point_buf: int32")
    .Input("summed: float32")
    .Input("normals: float32")
    .Input("d_normals: float32")
    .Attr("normalize_faces: bool = true")
    .Output("d_shape: float32")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return Status();
    });

class VertexNormalsOp : public OpKernel {
 public:
  explicit VertexNormalsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("normalize_faces", &normalize_faces_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("simd", &simd_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& shape_t = ctx->input(0);
    const Tensor& triangles_t = ctx->input(1);
    const Tensor& point_buf_t = ctx->input(2);
    OP_REQUIRES_OK(ctx, CheckNormalInputs(shape_t, triangles_t, point_buf_t));
    const int64_t batch = shape_t.dim_size(0), vertices = shape_t.dim_size(1);
    const int64_t triangle_count = triangles_t.dim_size(0);
    const int width = static_cast<int>(point_buf_t.dim_size(1));
    Tensor *normals_t, *summed_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape_t.shape(), &normals_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, shape_t.shape(), &summed_t));
    // Face normals per image with a zero row T for point_buf's padding index.
    const int64_t face_rows = triangle_count + 1;
    Tensor face_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT,
                                           TensorShape({batch, face_rows, 3}), &face_t));
    const float* shape = shape_t.flat<float>().data();
    const int32_t* triangles = triangles_t.flat<int32_t>().data();
    const int32_t* point_buf = point_buf_t.flat<int32_t>().data();
    float* face = face_t.flat<float>().data();
    float* normals = normals_t->flat<float>().data();
    float* summed = summed_t->flat<float>().data();
    for (int64_t b = 0; b < batch; ++b) {
      std::fill_n(face + 3 * (b * face_rows + triangle_count), 3, 0.0f);
    }
    const bool normalize_faces = normalize_faces_, simd = simd_;
    ParallelForImages(ctx, batch, triangle_count, 30, [&](int64_t b, int64_t lo, int64_t hi) {
      FaceNormals(shape + 3 * b * vertices, triangles, lo, hi, normalize_faces,
                  face + 3 * b * face_rows, simd);
    });
    ParallelForImages(ctx, batch, vertices, 10 * width, [&](int64_t b, int64_t lo, int64_t hi) {
      SumVertexNormals(face + 3 * b * face_rows, point_buf, width, lo, hi,
                       summed + 3 * b * vertices, normals + 3 * b * vertices, simd);
    });
  }

 private:
  bool normalize_faces_ = true;
  bool simd_ = true;
};

class VertexNormalsGradOp : public OpKernel {
 public:
  explicit VertexNormalsGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("normalize_faces", &normalize_faces_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& shape_t = ctx->input(0);
    const Tensor& triangles_t = ctx->input(1);
    const Tensor& point_buf_t = ctx->input(2);
    OP_REQUIRES_OK(ctx, CheckNormalInputs(shape_t, triangles_t, point_buf_t));
    for (int i = 3; i < 6; ++i) {
      OP_REQUIRES(ctx, ctx->input(i).shape() == shape_t.shape(),
                  errors::InvalidArgument("input ", i, " must have the shape of shape ",
                                          shape_t.shape().DebugString(), ", got ",
                                          ctx->input(i).shape().DebugString()));
    }
    const int64_t batch = shape_t.dim_size(0), vertices = shape_t.dim_size(1);
    const int64_t triangle_count = triangles_t.dim_size(0);
    const int width = static_cast<int>(point_buf_t.dim_size(1));
    Tensor* d_shape_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape_t.shape(), &d_shape_t));
    Tensor face_grad_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT,
                                           TensorShape({batch, triangle_count, 3}),
                                           &face_grad_t));
    const float* shape = shape_t.flat<float>().data();
    const int32_t* triangles = triangles_t.flat<int32_t>().data();
    const int32_t* point_buf = point_buf_t.flat<int32_t>().data();
    const float* summed = ctx->input(3).flat<float>().data();
    const float* normals = ctx->input(4).flat<float>().data();
    const float* d_normals = ctx->input(5).flat<float>().data();
    float* face_grad = face_grad_t.flat<float>().data();
    float* d_shape = d_shape_t->flat<float>().data();
    const bool normalize_faces = normalize_faces_;
    // One image per unit: the scatters run in a fixed order.
    ParallelFor(ctx, batch, 60 * triangle_count + 20 * width * vertices,
                [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t off = 3 * b * vertices;
        VertexNormalsBackward(shape + off, triangles, triangle_count, point_buf, width,
                              vertices, normalize_faces, summed + off, normals + off,
                              d_normals + off, face_grad + 3 * b * triangle_count,
                              d_shape + off);
      }
    });
  }

 private:
  bool normalize_faces_ = true;
};

REGISTER_OP("Deep3dPoseLight")
    .Input("shape: float32")
    .Input("normals: float32")
    .Input("albedo: float32")
    .Input("angles: float32")
    .Input("translation: float32")
    .Input("gamma: float32")
    .Input("world_to_clip: float32")
    .Input("keypoints: int32")
    .Attr("sh_factors: list(float)")
    .Attr("ambient_prior: float")
    .Attr("focal: float")
    .Attr("principal_point: float")
    .Attr("camera_distance: float")
    .Attr("simd: bool = true")
    .Output("vertices: float32")
    .Output("rotated_normals: float32")
    .Output("colors: float32")
    .Output("landmarks: float32")
    .Output("clip_vertices: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle shape, keypoints;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &shape));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(7), 1, &keypoints));
      for (int i = 0; i < 3; ++i) c->set_output(i, shape);
      c->set_output(3, c->MakeShape({c->Dim(shape, 0), c->Dim(keypoints, 0), c->MakeDim(2)}));
      c->set_output(4, c->MakeShape({c->Dim(shape, 0), c->Dim(shape, 1), c->MakeDim(4)}));
      return Status();
    })
    .Doc("Deep3D's posed vertices, rotated normals, SH-lit colours, landmarks and clip space.");

class PoseLightOp : public OpKernel {
 public:
  explicit PoseLightOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::vector<float> factors;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("sh_factors", &factors));
    OP_REQUIRES(ctx, factors.size() == kShBands,
                errors::InvalidArgument("sh_factors must have ", kShBands, " values, got ",
                                        factors.size()));
    std::copy(factors.begin(), factors.end(), constants_.sh_factors);
    OP_REQUIRES_OK(ctx, ctx->GetAttr("ambient_prior", &ambient_prior_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("focal", &focal_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("principal_point", &principal_point_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("camera_distance", &camera_distance_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("simd", &simd_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& shape_t = ctx->input(0);
    OP_REQUIRES(ctx, shape_t.dims() == 3 && shape_t.dim_size(2) == 3,
                errors::InvalidArgument("shape must have shape [B, N, 3], got shape ",
                                        shape_t.shape().DebugString()));
    const int64_t batch = shape_t.dim_size(0), vertex_count = shape_t.dim_size(1);
    const char* names[] = {"shape", "normals", "albedo", "angles", "translation", "gamma",
                           "world_to_clip"};
    const TensorShape expected[] = {shape_t.shape(), shape_t.shape(), shape_t.shape(),
                                    TensorShape({batch, 3}), TensorShape({batch, 3}),
                                    TensorShape({batch, 3 * kShBands}), TensorShape({4, 4})};
    for (int i = 1; i < 7; ++i) {
      OP_REQUIRES(ctx, ctx->input(i).shape() == expected[i],
                  errors::InvalidArgument(names[i], " must have shape ",
                                          expected[i].DebugString(), ", got ",
                                          ctx->input(i).shape().DebugString()));
    }
    const Tensor& keypoints_t = ctx->input(7);
    OP_REQUIRES(ctx, keypoints_t.dims() == 1,
                errors::InvalidArgument("keypoints must have shape [L], got shape ",
                                        keypoints_t.shape().DebugString()));
    OP_REQUIRES_OK(ctx, CheckIndices(keypoints_t, vertex_count - 1, "keypoints", "[0, "));
    const int64_t landmark_count = keypoints_t.dim_size(0);
    Tensor* out[5];
    for (int i = 0; i < 3; ++i) {
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, shape_t.shape(), &out[i]));
    }
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({batch, landmark_count, 2}),
                                             &out[3]));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({batch, vertex_count, 4}),
                                             &out[4]));
    const float* angles = ctx->input(3).flat<float>().data();
    const float* translation = ctx->input(4).flat<float>().data();
    const float* gamma = ctx->input(5).flat<float>().data();
    PoseLightConstants constants = constants_;
    std::copy_n(ctx->input(6).flat<float>().data(), 16, constants.world_to_clip);
    std::vector<Pose> poses(batch);
    for (int64_t b = 0; b < batch; ++b) {
      RotationMatrix(angles + 3 * b, poses[b].rotation);
      std::copy_n(translation + 3 * b, 3, poses[b].translation);
      std::copy_n(gamma + 3 * kShBands * b, 3 * kShBands, poses[b].gamma);
      for (int c = 0; c < 3; ++c) poses[b].gamma[kShBands * c] += ambient_prior_;
    }
    const float* shape = shape_t.flat<float>().data();
    const float* normals = ctx->input(1).flat<float>().data();
    const float* albedo = ctx->input(2).flat<float>().data();
    float* vertices = out[0]->flat<float>().data();
    float* rotated = out[1]->flat<float>().data();
    float* colors = out[2]->flat<float>().data();
    float* clip = out[4]->flat<float>().data();
    const bool simd = simd_;
    ParallelForImages(ctx, batch, vertex_count, 120, [&](int64_t b, int64_t lo, int64_t hi) {
      const int64_t o3 = 3 * b * vertex_count;
      PoseLight(shape + o3, normals + o3, albedo + o3, poses[b], constants, lo, hi,
                vertices + o3, rotated + o3, colors + o3, clip + 4 * b * vertex_count, simd);
    });
    const int32_t* keypoints = keypoints_t.flat<int32_t>().data();
    float* landmarks = out[3]->flat<float>().data();
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t l = 0; l < landmark_count; ++l) {
        Project(vertices + 3 * (b * vertex_count + keypoints[l]), focal_, principal_point_,
                camera_distance_, landmarks + 2 * (b * landmark_count + l));
      }
    }
  }

 private:
  PoseLightConstants constants_;
  float ambient_prior_ = 0.0f, focal_ = 0.0f, principal_point_ = 0.0f, camera_distance_ = 0.0f;
  bool simd_ = true;
};

REGISTER_KERNEL_BUILDER(Name("Deep3dPoseLight").Device(DEVICE_CPU), PoseLightOp);
REGISTER_KERNEL_BUILDER(Name("Deep3dLinearBasis").Device(DEVICE_CPU), LinearBasisOp);
REGISTER_KERNEL_BUILDER(Name("Deep3dLinearBasisGrad").Device(DEVICE_CPU), LinearBasisGradOp);
REGISTER_KERNEL_BUILDER(Name("Deep3dVertexNormals").Device(DEVICE_CPU), VertexNormalsOp);
REGISTER_KERNEL_BUILDER(Name("Deep3dVertexNormalsGrad").Device(DEVICE_CPU), VertexNormalsGradOp);

}  // namespace
}  // namespace deep3dface
