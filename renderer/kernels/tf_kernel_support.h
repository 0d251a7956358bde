// TensorFlow-side helpers shared by the op libraries' kernels (renderer and
// deep3dface): sharding over the intra-op pool and the names they use.
#ifndef RENDERER_KERNELS_TF_KERNEL_SUPPORT_H_
#define RENDERER_KERNELS_TF_KERNEL_SUPPORT_H_

#include <algorithm>
#include <cstdint>
#include <functional>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace renderer {
namespace tf_kernels {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
namespace errors = ::tensorflow::errors;

// Splits [0, total) into shards over the intra-op pool; fn(begin, end).
inline void ParallelFor(OpKernelContext* ctx, int64_t total, int64_t cost_per_unit,
                        const std::function<void(int64_t, int64_t)>& fn) {
  const auto& pool = *ctx->device()->tensorflow_cpu_worker_threads();
  ::tensorflow::Shard(pool.num_threads, pool.workers, total, cost_per_unit, fn);
}

// Shards (image, element) units, batch x count of them, over the pool and
// calls fn(b, lo, hi) for each image b's elements [lo, hi) in a shard (a
// shard may span images).
template <typename Fn>
void ParallelForImages(OpKernelContext* ctx, int64_t batch, int64_t count,
                       int64_t cost_per_unit, const Fn& fn) {
  ParallelFor(ctx, batch * count, cost_per_unit, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin / count; b * count < end; ++b) {
      fn(b, std::max(begin, b * count) - b * count, std::min(end, (b + 1) * count) - b * count);
    }
  });
}

inline int NumThreads(OpKernelContext* ctx) {
  return ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
}

inline Status CheckRank(const Tensor& t, int rank, const char* name, const char* layout) {
  if (t.dims() != rank) {
    return errors::InvalidArgument(name, " must have shape ", layout, ", got shape ",
                                   t.shape().DebugString());
  }
  return Status();
}

}  // namespace tf_kernels
}  // namespace renderer

#endif  // RENDERER_KERNELS_TF_KERNEL_SUPPORT_H_
