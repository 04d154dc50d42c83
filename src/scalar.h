// scalar.h — reading and writing single elements of any xent dtype, for the scalar parts of the library
// (validation of targets, reductions, broadcast gradients). Kernels use their own typed SIMD loads.
#pragma once

#include <cstdint>

#include "xent/half.h"
#include "xent/xent.h"

namespace xent::internal {

// Bytes per element of a dtype (float or integer).
constexpr int64_t dtype_size(int32_t d) {
  return d == XENT_FLOAT64 || d == XENT_INT64 ? 8 : d == XENT_FLOAT32 || d == XENT_INT32 ? 4 : 2;
}

inline double load_as_double(const void* base, xent_dtype dtype, int64_t index) {
  switch (dtype) {
    case XENT_FLOAT16: return to_float(static_cast<const float16*>(base)[index]);
    case XENT_BFLOAT16: return to_float(static_cast<const bfloat16*>(base)[index]);
    case XENT_FLOAT32: return static_cast<const float*>(base)[index];
    case XENT_FLOAT64: return static_cast<const double*>(base)[index];
    case XENT_INT32: return static_cast<const int32_t*>(base)[index];
    case XENT_INT64: return static_cast<double>(static_cast<const int64_t*>(base)[index]);
  }
  return 0;
}

// Rounds once to the dtype (float types only).
inline void store_from_double(void* base, xent_dtype dtype, int64_t index, double v) {
  switch (dtype) {
    case XENT_FLOAT16: static_cast<float16*>(base)[index] = to_float16(v); break;
    case XENT_BFLOAT16: static_cast<bfloat16*>(base)[index] = to_bfloat16(v); break;
    case XENT_FLOAT32: static_cast<float*>(base)[index] = static_cast<float>(v); break;
    case XENT_FLOAT64: static_cast<double*>(base)[index] = v; break;
    default: break;
  }
}

}  // namespace xent::internal
