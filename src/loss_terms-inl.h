// loss_terms-inl.h — the per-element formulas every kernel shares: the loss options as a transform of logits and
// labels (soft-cap, effective labels), the reference a row is computed against, and the two gradients. One vector
// of elements at a time; in the row kernel the vector is classes of one row, in the lane kernels rows (one per
// lane) of one class, so there every argument but x, y and e varies per lane.
#if defined(XENT_LOSS_TERMS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_LOSS_TERMS_INL_H_
#undef XENT_LOSS_TERMS_INL_H_
#else
#define XENT_LOSS_TERMS_INL_H_
#endif

#include <cstdint>
#include <limits>

#include "hwy/highway.h"
#include "src/simd_math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The loss options inside a kernel (the general path, Layout::general): logits are soft-capped,
// x' = c·tanh(x/c), and labels become effective labels a = w·(alpha·y + beta), with y = 0 when there is no label
// stream (class-index targets, whose target term the caller adds per row).
template <typename T>
struct Transform {
  const T* weight = nullptr;  // class-strided, or null for w = 1
  int64_t weight_stride = 0;
  double alpha = 1, beta = 0;
  double softcap = 0;  // 0: none
};

// c·tanh(x/c); ±inf → ±c, NaN stays NaN.
template <class DA>
HWY_INLINE hn::Vec<DA> Softcap(DA da, hn::Vec<DA> x, hn::Vec<DA> cap, hn::Vec<DA> inv_cap) {
  const auto capped = hn::Mul(cap, TanhAny(da, hn::Mul(x, inv_cap)));
  return hn::IfThenElse(hn::IsNaN(x), x, hn::IfThenElse(hn::IsInf(x), hn::CopySign(cap, x), capped));
}

// reference_of (row_state.h) of each lane: the max, or 0 for a max of −inf.
template <class D>
HWY_INLINE hn::Vec<D> ReferenceOf(D d, hn::Vec<D> max) {
  return hn::IfThenZeroElse(hn::Eq(max, hn::Set(d, -std::numeric_limits<hn::TFromD<D>>::infinity())), max);
}

// The gradients:
//   gx = s·e − g·y, e = exp(x' − r), times d(c·tanh(x/c))/dx = 1 − tanh² = 1 − (x'/c)² where soft-capped;
//   gy = 2g · (log_sum/2 − (x/2 − r/2)), halved so that x − r cannot overflow (see ForwardRange), and 0 where
//        y = 0 and x = −inf (see xent.h), unless the row is NaN (a NaN or +inf logit: log_sum is NaN).
template <class V>
HWY_INLINE V GradLogits(V scale, V e, V g, V y) {
  return hn::MulSub(scale, e, hn::Mul(g, y));
}
template <class V>
HWY_INLINE V SoftcapSlope(V grad, V capped_x, V inv_cap) {
  const V q = hn::Mul(capped_x, inv_cap);
  return hn::Mul(grad, hn::NegMulAdd(q, q, hn::Set(hn::DFromV<V>(), hn::TFromV<V>{1})));
}
template <class V>
HWY_INLINE V GradLabels(V x, V y, V half_ref, V half_log_sum, V twice_g) {
  using A = hn::TFromV<V>;
  const hn::DFromV<V> d;
  const auto masked = hn::And(hn::Eq(y, hn::Zero(d)), hn::Eq(x, hn::Set(d, -std::numeric_limits<A>::infinity())));
  const auto half_t = hn::MulSub(x, hn::Set(d, A{0.5}), half_ref);
  // half_log_sum · 0: 0, or NaN in a NaN row (log_sum is never infinite).
  return hn::IfThenElse(masked, hn::Mul(half_log_sum, hn::Zero(d)), hn::Mul(twice_g, hn::Sub(half_log_sum, half_t)));
}

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_LOSS_TERMS_INL_H_
