// lane_group-inl.h — a group of up to one vector of rows, one row per SIMD lane, as the lane kernels see it: its
// operands (element (row l, class c) of x at x.data[l·x.lane_stride + c·x.class_stride]; loss and grad_loss of row
// l at [l·lane_stride]), what its lanes read besides logits and labels (class-index targets, upstream gradients),
// where their losses go, and the prefetches that ask for later groups while this one computes.
#if defined(XENT_LANE_GROUP_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_LANE_GROUP_INL_H_
#undef XENT_LANE_GROUP_INL_H_
#else
#define XENT_LANE_GROUP_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "src/loss_terms-inl.h"
#include "src/scalar.h"
#include "src/simd_io-inl.h"
#include "xent/xent.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// One operand of a group: element (row l, class c) at data[l·lane_stride + c·class_stride].
template <typename T>
struct LaneOperand {
  T* data;
  int64_t lane_stride;
  int64_t class_stride;
};

// A group of `count` rows, one per lane: its operands and what its lanes share.
template <typename T, typename G>
struct LaneGroup {
  LaneOperand<const T> x, y;
  LaneOperand<T> loss;           // class_stride unused
  LaneOperand<const T> grad_loss;  // data may be null; class_stride unused
  LaneOperand<G> gx, gy;         // data may be null
  size_t count;                  // rows in this group, 1..Lanes
  // The general path (options, class-index targets, reductions; see Layout).
  Transform<T> tr;
  double z_loss = 0;
  const void* targets = nullptr;  // class indices of target_dtype at targets[l · targets_lane_stride], or null
  xent_dtype target_dtype = XENT_INT64;
  int64_t targets_lane_stride = 0;
  bool has_ignore = false;
  int64_t ignore_index = 0;
  double grad_scale = 1;
  double* row_loss = nullptr;  // reductions: losses in double at row_loss[first_row + l]
  int64_t first_row = 0;
  bool stream = false;  // non-temporal gradient stores (see StoreLanes)
  // The same lanes of a later stage (staged groups, see RunLaneGroups): the forward asks for one line of each
  // class of them into L2, at data + c·class_stride, while it computes class c. data null: nothing (lane_stride
  // unused).
  LaneOperand<const T> x_next{}, y_next{};

  // This group's operands read or written per class, its targets and its first row as those of the rows from row i
  // of `from` on (i counted along the lanes). Loss and upstream gradient stay at `from`'s first row: StoreGroupLosses
  // and UpstreamGradients take the offset.
  HWY_INLINE void SetFirst(const LaneGroup& from, int64_t i) {
    const auto at = [i](auto* p, int64_t lane_stride) { return p ? p + i * lane_stride : nullptr; };
    x.data = at(from.x.data, from.x.lane_stride), y.data = at(from.y.data, from.y.lane_stride);
    gx.data = at(from.gx.data, from.gx.lane_stride), gy.data = at(from.gy.data, from.gy.lane_stride);
    if (from.targets)
      targets = static_cast<const char*>(from.targets) + i * from.targets_lane_stride * dtype_size(from.target_dtype);
    first_row = from.first_row + i;
  }
};

// The class-index targets of a group's lanes l < count as values of the compute type A: target[l] (−1 for an
// ignored lane), ignored[l] (1 for an ignored lane, else 0) and the effective label at the target,
// target_weight[l] = alpha·w_t (0 for an ignored lane), as LaneRows' y_at computes it.
template <typename A, typename T, typename G>
HWY_INLINE void ReadTargets(const LaneGroup<T, G>& a, size_t count, A* target, A* ignored, A* target_weight) {
  const Transform<T>& tr = a.tr;
  const A alpha = static_cast<A>(tr.alpha);
  // kPlain: contiguous targets without class weights, the stride and the weight as constants, a loop GCC vectorises
  // (AVX3: two loads and conversions of 8 int64 targets, where with a variable stride it loaded and converted them
  // one by one).
  const auto read = [&](const auto* targets, auto plain) XENT_LAMBDA_INLINE {
    constexpr bool kPlain = decltype(plain)::value;
    const int64_t stride = kPlain ? 1 : a.targets_lane_stride;
    for (size_t l = 0; l < count; ++l) {
      const int64_t t = targets[static_cast<int64_t>(l) * stride];
      const bool skip = a.has_ignore && t == a.ignore_index;
      target[l] = skip ? A{-1} : static_cast<A>(t);
      ignored[l] = skip ? A{1} : A{0};
      target_weight[l] =
          skip ? A{0} : alpha * (!kPlain && tr.weight ? ToCompute(tr.weight[t * tr.weight_stride]) : A{1});
    }
  };
  const auto read_any = [&](const auto* targets) XENT_LAMBDA_INLINE {
    if (a.targets_lane_stride == 1 && !tr.weight) read(targets, std::true_type{});
    else read(targets, std::false_type{});
  };
  if (a.target_dtype == XENT_INT32) read_any(static_cast<const int32_t*>(a.targets));
  else read_any(static_cast<const int64_t*>(a.targets));
}

// A group's class-index targets as vectors: per lane, the target as a value of the compute type (index; −1 for an
// ignored lane, a lane past count, or no targets), its effective label alpha·w_t (weight; 0 where the index is −1),
// and which lanes are ignored.
template <class DA>
struct GroupTargets {
  hn::Vec<DA> index, weight;
  hn::Mask<DA> ignored;
};

// The same per lane in memory, where ReadGroupTargets reads them, and which lanes are ignored (1 or 0) for
// MergedLanes::Finish.
template <class DA>
struct TargetLanes {
  using A = hn::TFromD<DA>;
  static constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(A);
  HWY_ALIGN A target[kMaxLanes], ignored[kMaxLanes], target_weight[kMaxLanes];
  static constexpr A kNone[kMaxLanes] = {};
  const A* ignored_lanes(bool has_targets) const { return has_targets ? ignored : kNone; }
};

// Reads the targets of a group's lanes l < count (has_targets false, dense labels: no target, no lane ignored,
// nothing read).
template <class DA, typename T, typename G>
HWY_INLINE GroupTargets<DA> ReadGroupTargets(DA da, const LaneGroup<T, G>& a, size_t count, bool has_targets,
                                             TargetLanes<DA>& lanes) {
  using A = hn::TFromD<DA>;
  if (!has_targets) return {hn::Set(da, A{-1}), hn::Zero(da), hn::FirstN(da, 0)};
  ReadTargets(a, count, lanes.target, lanes.ignored, lanes.target_weight);
  for (size_t l = count; l < TargetLanes<DA>::kMaxLanes; ++l)
    lanes.target[l] = A{-1}, lanes.ignored[l] = A{0}, lanes.target_weight[l] = A{0};
  return {hn::Load(da, lanes.target), hn::Load(da, lanes.target_weight),
          hn::Eq(hn::Load(da, lanes.ignored), hn::Set(da, A{1}))};
}

// The upstream gradient of the lanes l < count of the group's rows i, i + 1, …: grad_scale · grad_loss[i + l]
// (grad_scale alone without grad_loss), 0 where the lane is ignored.
template <class DA, typename T, typename G>
HWY_INLINE hn::Vec<DA> UpstreamGradients(DA da, const LaneGroup<T, G>& a, int64_t i, size_t count,
                                         hn::Mask<DA> ignored) {
  auto g = hn::Set(da, static_cast<hn::TFromD<DA>>(a.grad_scale));
  if (a.grad_loss.data)
    g = hn::Mul(g, LoadRows(da, a.grad_loss.data + i * a.grad_loss.lane_stride, a.grad_loss.lane_stride, count));
  return hn::IfThenZeroElse(ignored, g);
}

// Writes the losses of the lanes l < count of the group's rows i, i + 1, …: to row_loss[first_row + i + l] in
// double (reductions) or to loss.
template <class DA, typename T, typename G>
HWY_INLINE void StoreGroupLosses(DA da, const LaneGroup<T, G>& a, int64_t i, hn::Vec<DA> loss, size_t count) {
  if (a.row_loss) {
    HWY_ALIGN hn::TFromD<DA> lanes[HWY_MAX_BYTES / sizeof(hn::TFromD<DA>)] = {};  // {}: -Wmaybe-uninitialized
    hn::Store(loss, da, lanes);
    for (size_t l = 0; l < count; ++l) a.row_loss[a.first_row + i + static_cast<int64_t>(l)] = lanes[l];
  } else if (a.loss.data) {
    StoreLanes(da, loss, a.loss.data + i * a.loss.lane_stride, a.loss.lane_stride, count);
  }
}

// Asks for a later group's elements (op.data at its first row, `count` rows) while this one computes: hardware
// prefetchers follow neither 21 streams 64 KiB apart (NCHW classes) nor gathers well. Covers the lines of each
// class's lanes when lanes are contiguous (a span that straddles one more line has it asked for with the next
// group), or the group's one run when its short rows are contiguous.
template <typename T>
HWY_INLINE void PrefetchGroup(const LaneOperand<const T>& op, int64_t C, int64_t count) {
  if (op.data == nullptr) return;
  constexpr int64_t kLine = 64 / sizeof(T);
  if (op.lane_stride == 1) {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < count; i += kLine) hwy::Prefetch(op.data + c * op.class_stride + i);
  } else if (op.class_stride == 1 && op.lane_stride == C) {
    for (int64_t i = 0; i < count * C + kLine - 1; i += kLine) hwy::Prefetch(op.data + std::min(i, count * C - 1));
  }
}

// Asks for the line at p into L2, not L1 (x86: prefetcht1).
HWY_INLINE void PrefetchToL2(const void* p) { __builtin_prefetch(p, 0, 2); }

// Asks for rows [at, min(at + most, end)) of x and y (absent operands: nothing), `at` counted in rows from their
// data, while earlier rows compute.
template <typename T>
HWY_INLINE void PrefetchRows(const LaneOperand<const T>& x, const LaneOperand<const T>& y, int64_t C, int64_t at,
                             int64_t end, int64_t most) {
  if (at >= end) return;
  const int64_t count = std::min(most, end - at);
  for (const LaneOperand<const T>* op : {&x, &y}) {
    if (op->data == nullptr) continue;
    PrefetchGroup(LaneOperand<const T>{op->data + at * op->lane_stride, op->lane_stride, op->class_stride}, C, count);
  }
}


}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_LANE_GROUP_INL_H_
