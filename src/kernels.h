// kernels.h — the computation behind the C API, for a validated Layout. Plain header: no SIMD here.
#pragma once

#include "src/plan.h"

namespace xent::internal {

// Computes loss and the requested gradients for every row of the layout, with up to `threads` OpenMP threads,
// on the best SIMD target of this CPU. Operands are of `dtype`, except the gradients when
// `gradients_in_compute_type` (float for 16/32-bit dtypes, double for float64): broadcast-input gradients are
// first written in that type to a temporary and summed afterwards.
void run_kernels(const Layout& layout, xent_dtype dtype, bool gradients_in_compute_type, int threads);

}  // namespace xent::internal
