// kernels.cc — dtype dispatch, row scheduling over threads, and Highway's per-target compilation of the row
// kernel (row_kernel-inl.h). The kernel is written once; foreach_target.h re-includes this file per target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "hwy/highway.h"
#include "src/kernels.h"
#include "src/lane_kernel-inl.h"
#include "src/row_kernel-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Pointers to one row of every operand.
// Pointers to one row of every operand (labels: element offset, as they may be class indices).
template <typename T, typename G>
struct Row {
  const T* x;
  const T* y;
  T* loss;
  const T* grad_loss;
  G* gx;
  G* gy;
  int64_t label_offset;
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
  return {at(kLogits, (const T*)nullptr),
          l.sparse ? nullptr : at(kLabels, (const T*)nullptr),
          at(kLoss, (T*)nullptr),
          at(kGradLoss, (const T*)nullptr),
          at(kGradLogits, (G*)nullptr),
          at(kGradLabels, (G*)nullptr),
          offset[kLabels]};
}

// Everything a row needs beyond its pointers on the general path: the class-index target and its effective
// label (1 − eps)·w_t, added to the row state as one term.
struct Target {
  int64_t index = -1;  // −1: no class-index target
  bool ignored = false;
  double class_weight = 0;  // w_t
  double weight = 0;        // (1 − eps) · w_t
  double logit = 0;    // x'_t (soft-capped)
};

template <typename T, typename G>
Target TargetOf(const Layout& l, const Row<T, G>& r, int64_t x_stride) {
  Target t;
  if (!l.sparse) return t;
  const Options& o = l.options;
  t.index = l.label_dtype == XENT_INT32 ? static_cast<const int32_t*>(l.data[kLabels])[r.label_offset]
                                        : static_cast<const int64_t*>(l.data[kLabels])[r.label_offset];
  if (o.has_ignore && t.index == o.ignore_index) {
    t.ignored = true;
    return t;
  }
  // scan_targets has checked 0 ≤ index < C.
  t.class_weight = o.weight ? ToCompute(static_cast<const T*>(o.weight)[t.index * o.weight_stride]) : 1.0;
  t.weight = o.alpha * t.class_weight;
  const double x = ToCompute(r.x[t.index * x_stride]);
  t.logit = o.softcap != 0 ? o.softcap * std::tanh(x / o.softcap) : x;
  return t;
}

// Adds the target's term to a finished row state.
inline RowState WithTarget(RowState s, const Target& t) {
  if (t.index < 0 || t.weight == 0) return s;
  s.label_sum += t.weight;
  s.label_dot += t.weight * (t.logit - reference_of(s.max));
  return s;
}

template <typename T, typename G>
RowResult FinishRow(const Layout& l, int64_t i, const Row<T, G>& r, const RowState& state) {
  const double g = l.grad_scale * (r.grad_loss ? static_cast<double>(ToCompute(*r.grad_loss)) : 1.0);
  const RowResult result = Finalize(state, g, l.options.z_loss);
  if (l.row_loss) l.row_loss[i] = result.loss;
  else if (r.loss) *r.loss = FromDouble<T>(result.loss);
  return result;
}

// An ignored row: loss 0, gradient 0.
template <typename T, typename G>
void IgnoreRow(const Layout& l, int64_t i, const Row<T, G>& r) {
  if (l.row_loss) l.row_loss[i] = 0;
  else if (r.loss) *r.loss = FromDouble<T>(0.0);
  if (r.gx)
    for (int64_t j = 0; j < l.classes; ++j) r.gx[j * l.class_stride[kGradLogits]] = FromDouble<G>(0.0);
}

// The target's gradient element, recomputed in double from the row and written once (the vector pass wrote it
// without the target's term): (s·exp(x'_t − r) − g·a_t)·dx'/dx.
template <typename T, typename G>
void FixTargetGradient(const Layout& l, const Row<T, G>& r, const Target& t, const RowResult& row) {
  if (t.index < 0 || !r.gx) return;
  const Options& o = l.options;
  const double a = t.weight + o.beta * t.class_weight;
  double v = row.softmax_scale * std::exp(t.logit - row.reference) - row.grad_loss * a;
  if (o.softcap != 0) v *= 1 - (t.logit / o.softcap) * (t.logit / o.softcap);
  r.gx[t.index * l.class_stride[kGradLogits]] = FromDouble<G>(v);
}

// Below this many elements a call runs on one thread: waking threads costs more than the work.
inline constexpr int64_t kMinParallelElements = int64_t{1} << 15;
// Rows this short are computed one per SIMD lane even when contiguous: per-row overhead (reductions across
// lanes, a log) would dominate them.
inline constexpr int64_t kShortRow = 32;
// Gradient outputs at least this large are written with non-temporal stores.
inline constexpr int64_t kMinStreamBytes = int64_t{64} << 20;
// The lane kernel prefetches the group this many groups ahead.
inline constexpr int64_t kLaneAhead = 2;
// A row is split across threads only into pieces of at least this many classes.
inline constexpr int64_t kMinSplit = int64_t{1} << 16;

// Whether non-temporal gradient stores are safe from 4K aliasing: a streamed store that lands a little ahead of a
// later load modulo 4 KiB stalls that load until the store drains, and streamed stores drain slowly. Measured
// (Zen 3, 2 threads, a plain loop over 4096 rows of 32000 floats: sum x and y, then stream two outputs at a fixed
// distance d ahead of them): d = 0 or ≥ 1 KiB ran at 29-38 GB/s, d = 32 B at 3.1, 256 B at 15, 512 B at 23 GB/s;
// regular stores at 18-21 GB/s for any d. xent at d = 64 B: 3.8 GB/s streamed, 8-14 GB/s with regular stores.
// So stream only when every gradient keeps one fixed distance to every input it is computed from (the same
// strides in bytes), and that distance is 0 or at least 2 KiB ahead modulo 4 KiB.
template <typename T, typename G>
bool StreamWithoutAliasing(const Layout& l) {
  for (Operand out : {kGradLogits, kGradLabels}) {
    if (!l.data[out]) continue;
    for (Operand in : {kLogits, kLabels}) {
      if (!l.data[in] || (in == kLabels && l.sparse)) continue;
      const auto bytes = [](int64_t stride, size_t size) { return stride * static_cast<int64_t>(size); };
      if (bytes(l.class_stride[out], sizeof(G)) != bytes(l.class_stride[in], sizeof(T))) return false;
      for (int d = 0; d < l.batch_rank; ++d)
        if (bytes(l.batch_strides[out][d], sizeof(G)) != bytes(l.batch_strides[in][d], sizeof(T))) return false;
      const uintptr_t ahead = (reinterpret_cast<uintptr_t>(l.data[out]) - reinterpret_cast<uintptr_t>(l.data[in])) % 4096;
      if (ahead != 0 && ahead < 2048) return false;
    }
  }
  return true;
}

// Makes every thread's non-temporal stores visible before the call returns (and before FixTargetGradient).
inline void FlushStreams(int threads) {
#pragma omp parallel num_threads(threads)
  hwy::FlushStream();
}

template <bool kGeneral, typename T, typename G>
void RunTyped(const Layout& l, int threads) {
  using A = Compute<T>;
  const hn::ScalableTag<A> da;
  const int64_t rows = l.rows, C = l.classes;
  if (rows == 0) return;
  const bool grads = l.data[kGradLogits] || l.data[kGradLabels];
  const int64_t xs = l.class_stride[kLogits], ys = l.class_stride[kLabels];
  const int64_t gxs = l.class_stride[kGradLogits], gys = l.class_stride[kGradLabels];
  const bool parallel = threads > 1 && rows * C >= kMinParallelElements;
  // Gradients this large will not be read back from cache: write them around it.
  const bool stream = grads && rows * C * static_cast<int64_t>(sizeof(G)) >= kMinStreamBytes &&
                      StreamWithoutAliasing<T, G>(l);
  Transform<T> tr;
  if constexpr (kGeneral) {
    tr.weight = static_cast<const T*>(l.options.weight);
    tr.weight_stride = l.options.weight_stride;
    tr.alpha = l.options.alpha;
    tr.beta = l.options.beta;
    tr.softcap = l.options.softcap;
  }
  const auto piece_transform = [&](int64_t begin) {
    Transform<T> t = tr;
    if (t.weight) t.weight += begin * t.weight_stride;
    return t;
  };

  // Rows whose classes are strided (class axis not last) or short, with neighbouring rows along the innermost
  // batch dimension: one row per SIMD lane (lane_kernel-inl.h). Class indices are compared as values of the
  // compute type there, exact below 2^24.
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(da));
  const int inner = l.batch_rank - 1;
  if (inner >= 0 && l.batch_shape[inner] >= lanes && (xs != 1 || C <= kShortRow) && C < (int64_t{1} << 24)) {
    const int64_t I = l.batch_shape[inner], groups = (I + lanes - 1) / lanes, outer = rows / I;
    const auto lane_operand = [&](Operand k, auto* type) {
      return LaneOperand<std::remove_pointer_t<decltype(type)>>{nullptr, l.batch_strides[k][inner], l.class_stride[k]};
    };
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
    for (int64_t w = 0; w < outer * groups; ++w) {
      const int64_t first = (w / groups) * I + (w % groups) * lanes;
      const Row<T, G> r = RowAt<T, G>(l, first);
      if (w % groups + kLaneAhead < groups) {  // a later group of the same run of rows
        const int64_t skip = kLaneAhead * lanes;
        const size_t n = static_cast<size_t>(std::min(lanes, I - (w % groups) * lanes - skip));
        const int64_t x_step = l.batch_strides[kLogits][inner], y_step = l.batch_strides[kLabels][inner];
        PrefetchGroup(LaneOperand<const T>{r.x + skip * x_step, x_step, xs}, C, n);
        if (r.y) PrefetchGroup(LaneOperand<const T>{r.y + skip * y_step, y_step, ys}, C, n);
      }
      LaneGroup<T, G> group;  // not group{}: zeroing the whole struct per group was 6% of 16384x10 (rep stos)
      group.x = lane_operand(kLogits, (const T*)nullptr);
      group.y = lane_operand(kLabels, (const T*)nullptr);
      group.loss = lane_operand(kLoss, (T*)nullptr);
      group.grad_loss = lane_operand(kGradLoss, (const T*)nullptr);
      group.gx = lane_operand(kGradLogits, (G*)nullptr);
      group.gy = lane_operand(kGradLabels, (G*)nullptr);
      group.count = static_cast<size_t>(std::min(lanes, I - (w % groups) * lanes));
      group.x.data = r.x, group.y.data = r.y, group.loss.data = r.loss, group.grad_loss.data = r.grad_loss;
      group.gx.data = r.gx, group.gy.data = r.gy;
      group.grad_scale = l.grad_scale;
      group.row_loss = l.row_loss;
      group.first_row = first;
      group.stream = stream;
      if constexpr (kGeneral) {
        group.tr = tr;
        group.z_loss = l.options.z_loss;
        if (l.sparse) {
          group.targets = static_cast<const char*>(l.data[kLabels]) +
                          r.label_offset * (l.label_dtype == XENT_INT32 ? 4 : 8);
          group.target_dtype = l.label_dtype;
          group.targets_lane_stride = l.batch_strides[kLabels][inner];
          group.has_ignore = l.options.has_ignore;
          group.ignore_index = l.options.ignore_index;
        }
      }
      LaneRows<kGeneral>(da, group, C);
    }
    if (stream) FlushStreams(threads);
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
      const Target t = TargetOf<T, G>(l, r, xs);
      if (t.ignored) {
        IgnoreRow(l, i, r);
        continue;
      }
      const Row<T, G> next = RowAt<T, G>(l, i + 1 < rows ? i + 1 : i);
      const RowState state = ForwardRange<kGeneral>(da, r.x, xs, r.y, ys, C, tr, next.x, next.y);
      const RowResult result = FinishRow(l, i, r, WithTarget(state, t));
      if (grads) {
        GradientRange<kGeneral>(da, r.x, xs, r.y, ys, C, result, tr, r.gx, gxs, r.gy, gys, stream);
        FixTargetGradient(l, r, t, result);
      }
    }
    if (stream) FlushStreams(threads);
    return;
  }

  // Split rows: piece p of a row covers classes [p·len, min(C, (p+1)·len)), len a multiple of kBlock.
  const int64_t len = (C / pieces + kBlock - 1) / kBlock * kBlock;
  pieces = (C + len - 1) / len;
  std::vector<RowState> states(static_cast<size_t>(rows * pieces));
  std::vector<Target> targets(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) targets[i] = TargetOf<T, G>(l, RowAt<T, G>(l, i), xs);
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t w = 0; w < rows * pieces; ++w) {
    if (targets[w / pieces].ignored) continue;
    const Row<T, G> r = RowAt<T, G>(l, w / pieces);
    const int64_t begin = (w % pieces) * len, n = std::min(len, C - begin);
    states[w] = ForwardRange<kGeneral>(da, r.x + begin * xs, xs, r.y ? r.y + begin * ys : nullptr, ys, n,
                                       piece_transform(begin));
  }
  std::vector<RowResult> results(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    const Row<T, G> r = RowAt<T, G>(l, i);
    if (targets[i].ignored) {
      IgnoreRow(l, i, r);
      continue;
    }
    RowState s = states[i * pieces];
    for (int64_t p = 1; p < pieces; ++p) s = Merge(s, states[i * pieces + p]);
    results[i] = FinishRow(l, i, r, WithTarget(s, targets[i]));
  }
  if (!grads) return;
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t w = 0; w < rows * pieces; ++w) {
    if (targets[w / pieces].ignored) continue;
    const Row<T, G> r = RowAt<T, G>(l, w / pieces);
    const int64_t begin = (w % pieces) * len, n = std::min(len, C - begin);
    GradientRange<kGeneral>(da, r.x + begin * xs, xs, r.y ? r.y + begin * ys : nullptr, ys, n, results[w / pieces],
                            piece_transform(begin), r.gx ? r.gx + begin * gxs : nullptr, gxs,
                            r.gy ? r.gy + begin * gys : nullptr, gys, stream);
  }
  if (stream) FlushStreams(threads);
  for (int64_t i = 0; i < rows; ++i)
    if (!targets[i].ignored) FixTargetGradient(l, RowAt<T, G>(l, i), targets[i], results[i]);
}

template <typename T, typename G>
void RunTyped(const Layout& l, int threads) {
  if (l.general) RunTyped<true, T, G>(l, threads);
  else RunTyped<false, T, G>(l, threads);
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
    default:  // validation admits only the four float dtypes for logits
      return;
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
