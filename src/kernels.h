// kernels.h — the computation behind the C API, for a validated Layout. Plain header: no SIMD here.
#pragma once

#include "src/plan.h"

namespace xent::internal {

// run_kernels for one dtype of logits, on the best SIMD target of this CPU. Each is defined in its own
// translation unit: src/kernels.cc, compiled once per dtype.
template <xent_dtype kDtype>
void run_kernels_of(const Layout& layout, bool gradients_in_compute_type, int threads);
template <>
void run_kernels_of<XENT_FLOAT16>(const Layout& layout, bool gradients_in_compute_type, int threads);
template <>
void run_kernels_of<XENT_BFLOAT16>(const Layout& layout, bool gradients_in_compute_type, int threads);
template <>
void run_kernels_of<XENT_FLOAT32>(const Layout& layout, bool gradients_in_compute_type, int threads);
template <>
void run_kernels_of<XENT_FLOAT64>(const Layout& layout, bool gradients_in_compute_type, int threads);

// Computes loss and the requested gradients for every row of the layout, with up to `threads` OpenMP threads,
// on the best SIMD target of this CPU. Operands are of `dtype`, except the gradients when
// `gradients_in_compute_type` (float for 16/32-bit dtypes, double for float64): broadcast-input gradients are
// first written in that type to a temporary and summed afterwards.
inline void run_kernels(const Layout& layout, xent_dtype dtype, bool gradients_in_compute_type, int threads) {
  switch (dtype) {
    case XENT_FLOAT16:
      return run_kernels_of<XENT_FLOAT16>(layout, gradients_in_compute_type, threads);
    case XENT_BFLOAT16:
      return run_kernels_of<XENT_BFLOAT16>(layout, gradients_in_compute_type, threads);
    case XENT_FLOAT32:
      return run_kernels_of<XENT_FLOAT32>(layout, gradients_in_compute_type, threads);
    case XENT_FLOAT64:
      return run_kernels_of<XENT_FLOAT64>(layout, gradients_in_compute_type, threads);
    default:  // validation admits only the four float dtypes for logits
      return;
  }
}

}  // namespace xent::internal
