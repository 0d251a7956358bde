// Framework-free range check of index arrays, shared by the op libraries
// (renderer/kernels/rasterizer_ops.cc, deep3dface/kernels/face_ops.cc).
#ifndef RENDERER_KERNELS_INDEX_RANGE_H_
#define RENDERER_KERNELS_INDEX_RANGE_H_

#include <algorithm>
#include <cstdint>

namespace renderer {

// Whether any of values[0, n) lies outside [lo, hi), lo <= 0: one unsigned
// compare per value (values below lo wrap above the bound), OR-reduced without
// an early exit so that compilers vectorize it; callers search for the
// offending value only when there is one.
inline bool AnyOutside(const int32_t* values, int64_t n, int32_t lo, int64_t hi) {
  if (hi <= lo) return n > 0;
  // hi - lo, capped at the count of int32 values >= lo (a larger hi admits them all).
  const uint32_t bound =
      static_cast<uint32_t>(std::min<int64_t>(hi - lo, int64_t{INT32_MAX} - lo + 1));
  const uint32_t shift = static_cast<uint32_t>(-static_cast<int64_t>(lo));
  uint32_t outside = 0;
  for (int64_t i = 0; i < n; ++i) {
    outside |= static_cast<uint32_t>(values[i]) + shift >= bound;
  }
  return outside != 0;
}

}  // namespace renderer

#endif  // RENDERER_KERNELS_INDEX_RANGE_H_
