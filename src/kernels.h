// kernels.h — the kernel layer's entry points for a validated Layout, per dtype. Plain header: no SIMD here. Each
// is defined in src/kernels.cc, compiled once per dtype, and runs on the best SIMD target of this CPU.
#pragma once

#include <type_traits>

#include "src/paths.h"
#include "src/plan.h"
#include "src/row_state.h"

namespace xent::internal {

// Per dtype of logits (XENT_FLOAT16 ... XENT_FLOAT64); the functions below pick one by the dtype.
template <xent_dtype kDtype>
void run_kernels_of(const Layout& layout, bool gradients_in_compute_type, int threads);
template <xent_dtype kDtype>
TargetTraits target_traits_of();
template <xent_dtype kDtype>
void shard_statistics_of(const Layout& layout, RowState* states, int threads);
template <xent_dtype kDtype>
void shard_finish_of(const Layout& layout, const RowState* merged, int threads);
// The four dtypes' definitions live in their own translation units (declared here before any use).
#define XENT_KERNEL_ENTRY_POINTS(D)                                                     \
  template <>                                                                           \
  void run_kernels_of<D>(const Layout& layout, bool gradients_in_compute_type, int threads); \
  template <>                                                                           \
  TargetTraits target_traits_of<D>();                                                   \
  template <>                                                                           \
  void shard_statistics_of<D>(const Layout& layout, RowState* states, int threads);     \
  template <>                                                                           \
  void shard_finish_of<D>(const Layout& layout, const RowState* merged, int threads);
XENT_KERNEL_ENTRY_POINTS(XENT_FLOAT16)
XENT_KERNEL_ENTRY_POINTS(XENT_BFLOAT16)
XENT_KERNEL_ENTRY_POINTS(XENT_FLOAT32)
XENT_KERNEL_ENTRY_POINTS(XENT_FLOAT64)
#undef XENT_KERNEL_ENTRY_POINTS

// Calls f with the dtype as a compile-time constant (validation admits only the four float dtypes for logits).
template <typename F>
auto with_dtype(xent_dtype dtype, const F& f) {
  switch (dtype) {
    case XENT_FLOAT16: return f(std::integral_constant<xent_dtype, XENT_FLOAT16>{});
    case XENT_BFLOAT16: return f(std::integral_constant<xent_dtype, XENT_BFLOAT16>{});
    case XENT_FLOAT64: return f(std::integral_constant<xent_dtype, XENT_FLOAT64>{});
    default: return f(std::integral_constant<xent_dtype, XENT_FLOAT32>{});
  }
}

// Computes loss and the requested gradients for every row of the layout, with up to `threads` OpenMP threads, on
// the path choose_path() picks. Operands are of `dtype`, except the gradients when `gradients_in_compute_type`
// (float for 16/32-bit dtypes, double for float64): broadcast-input gradients are first written in that type to a
// temporary and summed afterwards.
inline void run_kernels(const Layout& layout, xent_dtype dtype, bool gradients_in_compute_type, int threads) {
  with_dtype(dtype, [&](auto d) { run_kernels_of<decltype(d)::value>(layout, gradients_in_compute_type, threads); });
}

// What choose_path() knows of the SIMD target dispatched now, for this dtype.
inline TargetTraits target_traits(xent_dtype dtype) {
  return with_dtype(dtype, [](auto d) { return target_traits_of<decltype(d)::value>(); });
}

}  // namespace xent::internal
