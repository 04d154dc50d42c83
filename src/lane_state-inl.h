// lane_state-inl.h — the lane kernels' arithmetic, one row per SIMD lane: a block of classes summed into each
// lane's statistics (SumLanes: max, Σexp, label terms), statistics of several blocks merged per lane in double
// (MergeLanes, MergedLanes: row_state.h's Merge in vectors), and the finish of each lane's row (FinishLanes: loss,
// reference, log-sum, softmax scale). TinyRows, ShortRows and LaneRows are this arithmetic over different ways of
// loading a group's classes; the gradients' formulas are loss_terms-inl.h's.
#if defined(XENT_LANE_STATE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_LANE_STATE_INL_H_
#undef XENT_LANE_STATE_INL_H_
#else
#define XENT_LANE_STATE_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/loss_terms-inl.h"
#include "src/row_state.h"
#include "src/simd_math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Class-index targets without label smoothing: the one nonzero effective label of each lane, `weight` (alpha·w_t;
// 0 for an ignored lane or one past the group), at class `index` (−1: none), both as values of the compute type.
template <class DA>
struct LaneTargets {
  hn::Vec<DA> index, weight;
};

// A hook that does nothing, for SumLanes' touch (no prefetch) or keep (the exps are not needed).
struct NoHook {
  template <class... Args>
  HWY_INLINE void operator()(Args...) const {}
};

// Sums of one block of classes [begin, end) of every lane (x_at(c): class c of the lanes): max, then
// Σ exp(x − r), Σ y, Σ_{y≠0} y·(x/2 − r/2), as in ForwardRange (row_kernel-inl.h), which explains the halving.
// labels: y_at(c), class c's labels of the lanes; or LaneTargets, whose logit at the target is picked in the max
// pass, so that the exp pass sums exps only (one-hot labels would cost a label vector, a compare and a select per
// class).
// touch(c) and keep(c, e) are called once per class in the second pass: touch asks for a later block's lines
// (LaneRows, ShortRows), keep gets class c's exps exp(x − r) (TinyRows and ShortRows keep them for the gradients).
// Prefetches go out in the exp pass, about 13 vector operations a class, not in the max pass, about 2: from there
// they leave in bursts, and memory and computation take turns instead of overlapping.
template <class DA>
struct LaneBlock {
  hn::Vec<DA> max, ref, sum, label_sum, half_dot;
};
template <class DA, class XAt, class Labels, class Touch, class Keep>
HWY_INLINE LaneBlock<DA> SumLanes(DA da, int64_t begin, int64_t end, const XAt& x_at, const Labels& labels,
                                  const Touch& touch, const Keep& keep) {
  using A = hn::TFromD<DA>;
  constexpr bool kTargets = std::is_same_v<Labels, LaneTargets<DA>>;
  const auto zero = hn::Zero(da), half = hn::Set(da, A{0.5}), one = hn::Set(da, A{1});
  const auto neg_inf = hn::Set(da, -std::numeric_limits<A>::infinity());
  // Two running maxima: short rows are a chain of C dependent maxima otherwise.
  auto max = neg_inf, max1 = neg_inf;
  // With targets: x at each lane's target, if this block has it; `column` is class c as a value.
  auto picked = zero, column = hn::Set(da, static_cast<A>(begin));
  const auto pick = [&](hn::Vec<DA> xv) XENT_LAMBDA_INLINE {
    if constexpr (kTargets) {
      picked = hn::IfThenElse(hn::Eq(labels.index, column), xv, picked);
      column = hn::Add(column, one);
    }
  };
  int64_t c = begin;
  for (; c + 1 < end; c += 2) {
    const auto x0 = x_at(c), x1 = x_at(c + 1);
    max = hn::Max(max, x0), max1 = hn::Max(max1, x1);
    pick(x0), pick(x1);
  }
  if (c < end) {
    const auto x0 = x_at(c);
    max = hn::Max(max, x0);
    pick(x0);
  }
  max = hn::Max(max, max1);
  const auto ref = ReferenceOf(da, max);
  const auto half_ref = hn::Mul(ref, half);
  auto sum = zero, label_sum = zero, half_dot = zero;
  const auto add = [&](int64_t c, hn::Vec<DA> xv, hn::Vec<DA> e) XENT_LAMBDA_INLINE {
    keep(c, e);
    sum = hn::Add(sum, e);
    if constexpr (!kTargets) {
      const auto yv = labels(c);
      label_sum = hn::Add(label_sum, yv);
      half_dot = hn::MulAdd(yv, hn::IfThenElseZero(hn::Ne(yv, zero), hn::MulSub(xv, half, half_ref)), half_dot);
    }
  };
  if (end - begin == 2) {
    // Two classes, one exp: x − ref is 0 for the larger (its exp 1) and the other's is exp of their sum. Where
    // neither is 0, the lane's max is −inf (both −inf: 0, as exp gives each) or +inf or NaN (the sum NaN: the
    // row's sum is NaN either way). The same bits as an exp per class wherever the row's sum is a number; rows of
    // two classes are bound by their exps.
    touch(begin), touch(begin + 1);
    const auto x0 = x_at(begin), x1 = x_at(begin + 1);
    const auto d0 = hn::Sub(x0, ref), d1 = hn::Sub(x1, ref);
    const auto e = ExpNonPositive(da, hn::Add(d0, d1));
    add(begin, x0, hn::IfThenElse(hn::Eq(d0, zero), one, e));
    add(begin + 1, x1, hn::IfThenElse(hn::Eq(d1, zero), one, e));
  } else {
    for (int64_t c = begin; c < end; ++c) {
      touch(c);
      const auto xv = x_at(c);
      add(c, xv, ExpNonPositive(da, hn::Sub(xv, ref)));
    }
  }
  if constexpr (kTargets) {  // the one term of the lanes whose target is in [begin, end)
    const auto hit = hn::And(hn::Ge(labels.index, hn::Set(da, static_cast<A>(begin))),
                             hn::Lt(labels.index, hn::Set(da, static_cast<A>(end))));
    label_sum = hn::IfThenElseZero(hit, labels.weight);
    half_dot = hn::IfThenElseZero(hn::And(hit, hn::Ne(labels.weight, zero)),
                                  hn::Mul(labels.weight, hn::MulSub(picked, half, half_ref)));
  }
  return {max, ref, sum, label_sum, half_dot};
}

// RowStates (row_state.h) of Lanes(dd) lanes in double vectors, and Merge on them: the same terms in the same
// order, so a lane's merged state is what Merge gives up to exp's last bit (Highway's Exp: 1 ulp). Rows of more
// than kLaneBlock classes merge one such state per block; per lane with std::exp they would cost two scalar exps
// per lane and block.
template <class DD>
struct LaneStates {
  hn::Vec<DD> max, sum, label_sum, label_dot;
};
template <class DD>
HWY_INLINE LaneStates<DD> MergeLanes(DD dd, const LaneStates<DD>& a, const LaneStates<DD>& b) {
  const auto zero = hn::Zero(dd);
  LaneStates<DD> m;
  m.max = hn::IfThenElse(hn::Or(hn::IsNaN(a.max), hn::IsNaN(b.max)),
                         hn::Set(dd, std::numeric_limits<double>::quiet_NaN()), hn::Max(a.max, b.max));
  const auto r = ReferenceOf(dd, m.max), ra = ReferenceOf(dd, a.max), rb = ReferenceOf(dd, b.max);
  // sum · exp(ref − r); ref − r ≤ 0 wherever the sum is not 0, and is clamped into Exp's range for the lanes that
  // are not (their result is not selected); a NaN (Exp gives 0 for it) is kept.
  const auto rescale = [&](hn::Vec<DD> sum, hn::Vec<DD> ref) {
    const auto t = hn::Sub(ref, r);
    const auto e = hn::IfThenElse(hn::IsNaN(t), t, hn::Exp(dd, NaNToZeroOnEmulated(dd, hn::Min(hn::Max(t, hn::Set(dd, -1000.0)), zero))));
    return hn::IfThenZeroElse(hn::Eq(sum, zero), hn::IfThenElse(hn::Eq(ref, r), sum, hn::Mul(sum, e)));
  };
  const auto shift = [&](hn::Vec<DD> label_sum, hn::Vec<DD> ref) {
    return hn::IfThenZeroElse(hn::Eq(label_sum, zero), hn::Mul(label_sum, hn::Sub(ref, r)));
  };
  m.sum = hn::Add(rescale(a.sum, ra), rescale(b.sum, rb));
  m.label_sum = hn::Add(a.label_sum, b.label_sum);
  m.label_dot = hn::Add(hn::Add(hn::Add(a.label_dot, shift(a.label_sum, ra)), b.label_dot), shift(b.label_sum, rb));
  return m;
}

// The lanes' results when one block holds all their classes, in vectors, as Finalize (row_state.h) per row:
// loss = label_sum · log_sum − label_dot (0 · NaN stays NaN), softmax scale g·label_sum / sum, and with a
// z-loss λ: + λ·lse², scale + 2λ·lse·g / sum. Rows of only −inf: log_sum 0, scale 0.
template <class DA>
struct LaneResults {
  hn::Vec<DA> ref, log_sum, scale, loss;
};
template <class DA>
HWY_INLINE LaneResults<DA> FinishLanes(DA da, const LaneBlock<DA>& b, hn::Vec<DA> g, double z_loss) {
  using A = hn::TFromD<DA>;
  const auto empty = hn::Eq(b.sum, hn::Zero(da));  // every logit −inf
  const auto log = hn::IfThenElse(hn::IsNaN(b.sum), b.sum, hn::Log(da, hn::IfThenElse(empty, hn::Set(da, A{1}), b.sum)));
  const auto log_sum = hn::IfThenZeroElse(empty, log);
  auto scale = hn::IfThenZeroElse(empty, hn::Div(hn::Mul(g, b.label_sum), b.sum));
  auto loss = hn::Sub(hn::Mul(b.label_sum, log_sum), hn::Add(b.half_dot, b.half_dot));
  if (z_loss != 0) {
    const auto z = hn::Set(da, static_cast<A>(z_loss));
    const auto lse = hn::Add(b.ref, log_sum);
    loss = hn::IfThenElse(empty, loss, hn::MulAdd(hn::Mul(z, lse), lse, loss));
    scale = hn::IfThenElse(empty, scale, hn::MulAdd(hn::Mul(hn::Add(z, z), lse), hn::Div(g, b.sum), scale));
  }
  return {b.ref, log_sum, scale, loss};
}

// Rows of more than kLaneBlock classes, one per lane: each lane's RowState (row_state.h) of the blocks merged so
// far, in double, and once finished its results in the compute type (LaneRows, its sweeps, ShortRows).
template <typename A>
struct MergedLanes {
  static constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(A);
  HWY_ALIGN double max[kMaxLanes], sum[kMaxLanes], label_sum[kMaxLanes], label_dot[kMaxLanes];
  HWY_ALIGN A ref[kMaxLanes], log_sum[kMaxLanes], scale[kMaxLanes];

  // Every lane's row empty: no block merged yet.
  void Start() {
    std::fill_n(max, kMaxLanes, -std::numeric_limits<double>::infinity());
    std::fill_n(sum, kMaxLanes, 0.0), std::fill_n(label_sum, kMaxLanes, 0.0), std::fill_n(label_dot, kMaxLanes, 0.0);
  }

  // Merges the lanes' next block (MergeLanes, Lanes(dd) lanes at a time).
  template <class DA>
  HWY_INLINE void Merge(DA da, const LaneBlock<DA>& b) {
    using DD = hn::ScalableTag<double>;
    const DD dd;
    HWY_ALIGN A m[kMaxLanes] = {}, s[kMaxLanes] = {}, ys[kMaxLanes] = {}, d[kMaxLanes] = {};  // {}: see Finish
    hn::Store(b.max, da, m), hn::Store(b.sum, da, s), hn::Store(b.label_sum, da, ys), hn::Store(b.half_dot, da, d);
    // Lanes i to i + Lanes(dd) of a block's vector, in double.
    const auto promoted = [&](const A* p) XENT_LAMBDA_INLINE {
      if constexpr (std::is_same_v<A, double>) {
        return hn::Load(dd, p);
      } else {
        return hn::PromoteTo(dd, hn::Load(hn::Rebind<A, DD>(), p));
      }
    };
    for (size_t i = 0; i < hn::Lanes(da); i += hn::Lanes(dd)) {
      const LaneStates<DD> merged = MergeLanes(
          dd, {hn::Load(dd, max + i), hn::Load(dd, sum + i), hn::Load(dd, label_sum + i), hn::Load(dd, label_dot + i)},
          {promoted(m + i), promoted(s + i), promoted(ys + i), hn::Add(promoted(d + i), promoted(d + i))});
      hn::Store(merged.max, dd, max + i), hn::Store(merged.sum, dd, sum + i);
      hn::Store(merged.label_sum, dd, label_sum + i), hn::Store(merged.label_dot, dd, label_dot + i);
    }
  }

  // Finalize (row_state.h) of lanes [0, count) with upstream gradients g: ref, log_sum and scale (0 past count),
  // and loss[l] (0 where ignored[l] ≠ 0).
  template <class DA>
  HWY_INLINE void Finish(DA da, hn::Vec<DA> g, double z_loss, const A* ignored, size_t count, A* loss) {
    HWY_ALIGN A gl[kMaxLanes] = {};  // {} silences -Wmaybe-uninitialized (GCC 12, the scalar target)
    hn::Store(g, da, gl);
    std::fill_n(ref, kMaxLanes, A{0}), std::fill_n(log_sum, kMaxLanes, A{0}), std::fill_n(scale, kMaxLanes, A{0});
    for (size_t l = 0; l < count; ++l) {
      const RowState state{max[l], sum[l], label_sum[l], label_dot[l]};
      RowResult result = Finalize(state, gl[l], z_loss);
      if (ignored[l] != 0) result.loss = 0;
      loss[l] = static_cast<A>(result.loss), ref[l] = static_cast<A>(result.reference);
      log_sum[l] = static_cast<A>(result.log_sum), scale[l] = static_cast<A>(result.softmax_scale);
    }
  }
};

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_LANE_STATE_INL_H_
