// TensorFlow-side helpers shared by the op libraries' kernels (renderer and
// deep3dface): sharding over the intra-op pool and the names they use.
#ifndef RENDERER_KERNELS_TF_KERNEL_SUPPORT_H_
#define RENDERER_KERNELS_TF_KERNEL_SUPPORT_H_

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
