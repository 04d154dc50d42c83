// row_stages-inl.h — the stages (stages.h) of one row on the row kernel: statistics of the row's classes in fixed
// pieces merged in order, the class-index target's term, the finish (loss and RowResult), the gradients of a range
// of classes, and the target's own gradient element. What schedule-inl.h composes for whole rows, split rows and
// shards of a vocabulary.
#if defined(XENT_ROW_STAGES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_ROW_STAGES_INL_H_
#undef XENT_ROW_STAGES_INL_H_
#else
#define XENT_ROW_STAGES_INL_H_
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "hwy/highway.h"
#include "src/loss_terms-inl.h"
#include "src/plan.h"
#include "src/row_kernel-inl.h"
#include "src/row_state.h"
#include "src/simd_io-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

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

// The pointers of row `row` (counted over the batch dimensions, row-major) of every operand.
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

// The row's class-index target, with its index among the layout's classes: for a shard of a vocabulary (stages.h)
// a target in another shard has index −1 here (its term comes from that shard), unless ignored.
template <typename T, typename G>
Target TargetOf(const Layout& l, const Row<T, G>& r, int64_t x_stride) {
  Target t;
  if (!l.sparse) return t;
  const Options& o = l.options;
  const int64_t index = l.label_dtype == XENT_INT32 ? static_cast<const int32_t*>(l.data[kLabels])[r.label_offset]
                                                    : static_cast<const int64_t*>(l.data[kLabels])[r.label_offset];
  if (o.has_ignore && index == o.ignore_index) {
    t.ignored = true;
    return t;
  }
  // scan_targets has checked 0 ≤ index < vocab_size.
  if (index < l.vocab_start || index - l.vocab_start >= l.classes) return t;
  t.index = index - l.vocab_start;
  t.class_weight = o.weight ? ToCompute(static_cast<const T*>(o.weight)[t.index * o.weight_stride]) : 1.0;
  t.weight = o.alpha * t.class_weight;
  const double x = ToCompute(r.x[t.index * x_stride]);
  t.logit = o.softcap != 0 ? o.softcap * std::tanh(x / o.softcap) : x;
  return t;
}

// Adds the target's term to a row's statistics (stage 1: the term of a class-index target's one effective label,
// which the vector passes leave out).
inline RowState WithTarget(RowState s, const Target& t) {
  if (t.index < 0 || t.weight == 0) return s;
  s.label_sum += t.weight;
  s.label_dot += t.weight * (t.logit - reference_of(s.max));
  return s;
}

// Stage 3's finish of row i from its statistics (the whole row's): its RowResult, and its loss written (to
// row_loss in double for reductions).
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

// The target's gradient element, recomputed in double from the row (the vector pass wrote it without the target's
// term): (s·exp(x'_t − r) − g·a_t)·dx'/dx, and where it goes (null: the row has no target, or no grad_logits).
template <typename G>
struct TargetGradient {
  G* at = nullptr;
  G value{};
};
template <typename T, typename G>
TargetGradient<G> TargetGradientOf(const Layout& l, const Row<T, G>& r, const Target& t, const RowResult& row) {
  if (t.index < 0 || !r.gx) return {};
  const Options& o = l.options;
  const double a = t.weight + o.beta * t.class_weight;
  double v = row.softmax_scale * std::exp(t.logit - row.reference) - row.grad_loss * a;
  if (o.softcap != 0) v *= 1 - (t.logit / o.softcap) * (t.logit / o.softcap);
  return {r.gx + t.index * l.class_stride[kGradLogits], FromDouble<G>(v)};
}

// Writes the target's gradient element over the one the vector pass wrote.
template <typename T, typename G>
void FixTargetGradient(const Layout& l, const Row<T, G>& r, const Target& t, const RowResult& row) {
  if (const TargetGradient<G> fix = TargetGradientOf(l, r, t, row); fix.at) *fix.at = fix.value;
}

// The loss options of a layout as the kernels apply them (the general path; the plain path ignores them).
template <typename T>
Transform<T> TransformOf(const Layout& l) {
  Transform<T> tr;
  tr.weight = static_cast<const T*>(l.options.weight);
  tr.weight_stride = l.options.weight_stride;
  tr.alpha = l.options.alpha;
  tr.beta = l.options.beta;
  tr.softcap = l.options.softcap;
  return tr;
}

// The transform of classes [begin, …) of a row: class weights from `begin` on.
template <typename T>
Transform<T> TransformFrom(Transform<T> tr, int64_t begin) {
  if (tr.weight) tr.weight += begin * tr.weight_stride;
  return tr;
}

// Statistics (stage 1) of n classes of one row at x and y (strides as in ForwardRange), without the class-index
// target's term (WithTarget). A row of more than kTuning.piece_classes classes is computed as pieces of that many,
// merged left to right: the same arithmetic whether the pieces run on one thread (here) or on several (RunRows'
// split rows), so a row's result does not depend on the thread count. x_after/y_after: where the caller reads
// next, asked for during the last block. kept: the row's exps for GradientRange (n ≤ max_kept_exps only).
template <bool kGeneral, bool kUnitStrides, class DA, typename T>
RowState RowStatistics(DA da, const T* x, int64_t xs, const T* y, int64_t ys, int64_t n, const Transform<T>& tr,
                       const T* x_after = nullptr, const T* y_after = nullptr,
                       const KeptExps<hn::TFromD<DA>>* kept = nullptr) {
  const int64_t piece = kTuning.piece_classes;
  if (n <= piece) return ForwardRange<kGeneral, kUnitStrides>(da, x, xs, y, ys, n, tr, x_after, y_after, kept);
  RowState state;
  for (int64_t begin = 0; begin < n; begin += piece) {
    const int64_t len = std::min(piece, n - begin), end = begin + len;
    const bool last = end >= n;
    state = Merge(state, ForwardRange<kGeneral, kUnitStrides>(
                             da, x + begin * xs, xs, y ? y + begin * ys : nullptr, ys, len, TransformFrom(tr, begin),
                             last ? x_after : x + end * xs, last ? y_after : (y ? y + end * ys : nullptr)));
  }
  return state;
}

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_ROW_STAGES_INL_H_
