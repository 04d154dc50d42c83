// kernels.cc — dtype dispatch, row scheduling over threads, and Highway's per-target compilation of the row
// kernel (row_kernel-inl.h). The kernel is written once; foreach_target.h re-includes this file per target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <omp.h>

#include <algorithm>
#include <vector>

#include "hwy/highway.h"
#include "src/kernels.h"
#include "src/lane_kernel-inl.h"
#include "src/row_kernel-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Pointers to one row of every operand.
template <typename T, typename G>
struct Row {
  const T* x;
  const T* y;
  T* loss;
  const T* grad_loss;
  G* gx;
  G* gy;
};

template <typename T, typename G>
Row<T, G> RowAt(const Layout& l, int64_t row) {
  std::array<int64_t, kNumOperands> offset{};
  for (int d = l.batch_rank - 1; d >= 0; --d) {
    const int64_t i = row % l.batch_shape[d];
    row /= l.batch_shape[d];
    for (int k = 0; k < kNumOperands; ++k) offset[k] += i * l.batch_strides[k][d];
  }
  const auto at = [&](Operand k, auto* type) -> decltype(type) {
    return l.data[k] ? static_cast<decltype(type)>(l.data[k]) + offset[k] : nullptr;
  };
  return {at(kLogits, (const T*)nullptr), at(kLabels, (const T*)nullptr), at(kLoss, (T*)nullptr),
          at(kGradLoss, (const T*)nullptr), at(kGradLogits, (G*)nullptr), at(kGradLabels, (G*)nullptr)};
}

template <typename T, typename G>
RowResult FinishRow(const Row<T, G>& r, const RowState& state) {
  const double g = r.grad_loss ? static_cast<double>(ToCompute(*r.grad_loss)) : 1.0;
  const RowResult result = Finalize(state, g);
  if (r.loss) *r.loss = FromDouble<T>(result.loss);
  return result;
}

// Below this many elements a call runs on one thread: waking threads costs more than the work.
inline constexpr int64_t kMinParallelElements = int64_t{1} << 15;
// Rows this short are computed one per SIMD lane even when contiguous: per-row overhead (reductions across
// lanes, a log) would dominate them.
inline constexpr int64_t kShortRow = 32;
// A row is split across threads only into pieces of at least this many classes.
inline constexpr int64_t kMinSplit = int64_t{1} << 16;

template <typename T, typename G>
void RunTyped(const Layout& l, int threads) {
  using A = Compute<T>;
  const hn::ScalableTag<A> da;
  const int64_t rows = l.rows, C = l.classes;
  if (rows == 0) return;
  const bool grads = l.data[kGradLogits] || l.data[kGradLabels];
  const int64_t xs = l.class_stride[kLogits], ys = l.class_stride[kLabels];
  const int64_t gxs = l.class_stride[kGradLogits], gys = l.class_stride[kGradLabels];
  const bool parallel = threads > 1 && rows * C >= kMinParallelElements;

  // Rows whose classes are strided (class axis not last) or short, with neighbouring rows along the innermost
  // batch dimension: one row per SIMD lane (lane_kernel-inl.h).
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(da));
  const int inner = l.batch_rank - 1;
  if (inner >= 0 && l.batch_shape[inner] >= lanes && (xs != 1 || C <= kShortRow)) {
    const int64_t I = l.batch_shape[inner], groups = (I + lanes - 1) / lanes, outer = rows / I;
    const auto lane_operand = [&](Operand k, auto* type) {
      return LaneOperand<std::remove_pointer_t<decltype(type)>>{nullptr, l.batch_strides[k][inner], l.class_stride[k]};
    };
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
    for (int64_t w = 0; w < outer * groups; ++w) {
      const int64_t first = (w / groups) * I + (w % groups) * lanes;
      const Row<T, G> r = RowAt<T, G>(l, first);
      LaneGroup<T, G> group{lane_operand(kLogits, (const T*)nullptr), lane_operand(kLabels, (const T*)nullptr),
                            lane_operand(kLoss, (T*)nullptr),         lane_operand(kGradLoss, (const T*)nullptr),
                            lane_operand(kGradLogits, (G*)nullptr),   lane_operand(kGradLabels, (G*)nullptr),
                            static_cast<size_t>(std::min(lanes, I - (w % groups) * lanes))};
      group.x.data = r.x, group.y.data = r.y, group.loss.data = r.loss, group.grad_loss.data = r.grad_loss;
      group.gx.data = r.gx, group.gy.data = r.gy;
      LaneRows(da, group, C);
    }
    return;
  }

  // Pieces per row: 1 when rows alone keep every thread busy (each thread then reads a row once, computes its
  // state, and writes its gradients while the row is still in cache); otherwise rows are split into pieces
  // whose states are merged (1 × 16M classes uses every core).
  int64_t pieces = 1;
  if (parallel && rows < 4 * threads && C >= 2 * kMinSplit)
    pieces = std::min((4 * threads + rows - 1) / rows, C / kMinSplit);

  if (pieces == 1) {
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
    for (int64_t i = 0; i < rows; ++i) {
      const Row<T, G> r = RowAt<T, G>(l, i);
      const Row<T, G> next = RowAt<T, G>(l, i + 1 < rows ? i + 1 : i);
      const RowResult result = FinishRow(r, ForwardRange(da, r.x, xs, r.y, ys, C, next.x, next.y));
      if (grads) GradientRange(da, r.x, xs, r.y, ys, C, result, r.gx, gxs, r.gy, gys);
    }
    return;
  }

  // Split rows: piece p of a row covers classes [p·len, min(C, (p+1)·len)), len a multiple of kBlock.
  const int64_t len = (C / pieces + kBlock - 1) / kBlock * kBlock;
  pieces = (C + len - 1) / len;
  std::vector<RowState> states(static_cast<size_t>(rows * pieces));
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t w = 0; w < rows * pieces; ++w) {
    const Row<T, G> r = RowAt<T, G>(l, w / pieces);
    const int64_t begin = (w % pieces) * len, n = std::min(len, C - begin);
    states[w] = ForwardRange(da, r.x + begin * xs, xs, r.y + begin * ys, ys, n);
  }
  std::vector<RowResult> results(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    RowState s = states[i * pieces];
    for (int64_t p = 1; p < pieces; ++p) s = Merge(s, states[i * pieces + p]);
    results[i] = FinishRow(RowAt<T, G>(l, i), s);
  }
  if (!grads) return;
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t w = 0; w < rows * pieces; ++w) {
    const Row<T, G> r = RowAt<T, G>(l, w / pieces);
    const int64_t begin = (w % pieces) * len, n = std::min(len, C - begin);
    GradientRange(da, r.x + begin * xs, xs, r.y + begin * ys, ys, n, results[w / pieces],
                  r.gx ? r.gx + begin * gxs : nullptr, gxs, r.gy ? r.gy + begin * gys : nullptr, gys);
  }
}

void RunKernels(const Layout& l, xent_dtype dtype, bool gradients_in_compute_type, int threads) {
  switch (dtype) {
    case XENT_FLOAT16:
      return gradients_in_compute_type ? RunTyped<hwy::float16_t, float>(l, threads)
                                       : RunTyped<hwy::float16_t, hwy::float16_t>(l, threads);
    case XENT_BFLOAT16:
      return gradients_in_compute_type ? RunTyped<hwy::bfloat16_t, float>(l, threads)
                                       : RunTyped<hwy::bfloat16_t, hwy::bfloat16_t>(l, threads);
    case XENT_FLOAT32:
      return RunTyped<float, float>(l, threads);
    case XENT_FLOAT64:
      return RunTyped<double, double>(l, threads);
  }
}

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent::internal {
HWY_EXPORT(RunKernels);

void run_kernels(const Layout& layout, xent_dtype dtype, bool gradients_in_compute_type, int threads) {
  HWY_DYNAMIC_DISPATCH(RunKernels)(layout, dtype, gradients_in_compute_type, threads);
}
}  // namespace xent::internal
#endif  // HWY_ONCE
