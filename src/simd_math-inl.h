// simd_math-inl.h — the transcendental functions of the kernels, per target: exp of t ≤ 0 and tanh, with their
// error bounds (asserted over their input ranges by tests/simd_math_test.cc on every compiled target).
// Included once per Highway target; hence the toggle guard instead of #pragma once.
#if defined(XENT_SIMD_MATH_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SIMD_MATH_INL_H_
#undef XENT_SIMD_MATH_INL_H_
#else
#define XENT_SIMD_MATH_INL_H_
#endif

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Whether hn::Max(a, b) returns b when b is NaN (x86 SIMD: maxps returns its second operand if either is NaN).
#if HWY_ARCH_X86 && HWY_TARGET != HWY_EMU128 && HWY_TARGET != HWY_SCALAR
inline constexpr bool kMaxKeepsNaN = true;
#else
inline constexpr bool kMaxKeepsNaN = false;
#endif

// Whether MulAdd is one fused operation (x86: AVX2 and later; Highway emulates it with a multiply and an add on
// SSE4, SSSE3 and the emulated targets).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
inline constexpr bool kFusedMulAdd = true;
#else
inline constexpr bool kFusedMulAdd = false;
#endif

// exp(t) for t ≤ 0 (and NaN), float.
// Valid range: t ≤ 0. Error: ≤ 0.89 float32 ulp relative for t ≥ −87.3 with a fused multiply-add (AVX2, AVX-512),
// ≤ 1.2 ulp without (each polynomial step rounds twice); t ≤ −87.68 (results below 2^−126.5) gives 0, which is
// harmless here because every sum it feeds also holds exp(0) = 1. −inf → 0, NaN → NaN.
// Why not hn::Exp: it handles the full range and takes about three times the operations, and the dense forward is
// bound by the exp's operations wherever the bus is fast.
// exp(t) = 2^k · p(f), k = round(t / ln2), f = t − k·ln2 ∈ [−ln2/2, ln2/2], p a degree-6 polynomial
// (1 + f + f²·q(f), q fitted by iteratively reweighted least squares on the relative error of exp), evaluated as
// 1 + f·(1 + f·q(f)): 13 vector operations.
template <class D, HWY_IF_FLOAT(hn::TFromD<D>), hwy::EnableIf<sizeof(hn::TFromD<D>) == 4>* = nullptr>
HWY_INLINE hn::Vec<D> ExpNonPositive(D d, hn::Vec<D> t) {
  const hn::RebindToSigned<D> di;
  // Adding 1.5·2^23 + 127 rounds t/ln2 to an integer and holds k + 127 in the low mantissa bits (n's bits are
  // 0x4B400000 + 127 + k, the ulp at n is 1).
  const auto shifter = hn::Set(d, 12582912.0f + 127.0f);
  // t ≤ −87.68 rounds to k = −127, whose 2^k below has a zero exponent field: exactly 0, −inf included. Clamping t
  // at −88 keeps k there with one max (x86's max returns its second operand, t, when either is NaN); other
  // targets, whose max may drop the NaN, compare and select instead.
  if constexpr (kMaxKeepsNaN) t = hn::Max(hn::Set(d, -88.0f), t);
  const auto n = hn::MulAdd(t, hn::Set(d, 1.44269504088896341f), shifter);
  const auto k = hn::Sub(n, shifter);
  // f = t − k·ln2 in two steps (Cody and Waite), t − k·ln2_hi exact: with a fused multiply-add the product is not
  // rounded; without one (SSE4, SSSE3, the emulated targets) ln2_hi keeps 9 significant bits, so that k·ln2_hi is
  // exact for |k| ≤ 127 and so is the subtraction (Sterbenz).
  constexpr float kLn2Hi = kFusedMulAdd ? 0x1.62e430p-1f : 0x1.63p-1f;
  constexpr float kLn2Lo = kFusedMulAdd ? -0x1.05c610p-29f : -0x1.bd0106p-13f;  // ln2 − ln2_hi
  auto f = hn::NegMulAdd(k, hn::Set(d, kLn2Hi), t);
  f = hn::NegMulAdd(k, hn::Set(d, kLn2Lo), f);
  auto q = hn::MulAdd(hn::Set(d, 0x1.6a2450p-10f), f, hn::Set(d, 0x1.1239d4p-7f));
  q = hn::MulAdd(q, f, hn::Set(d, 0x1.5558f2p-5f));
  q = hn::MulAdd(q, f, hn::Set(d, 0x1.555492p-3f));
  q = hn::MulAdd(q, f, hn::Set(d, 0x1.fffffcp-2f));
  const auto one = hn::Set(d, 1.0f);
  const auto p = hn::MulAdd(hn::MulAdd(q, f, one), f, one);
  // 2^k: shifting n's bits left by 23 puts k + 127 ∈ [0, 127] into the exponent field and drops the rest.
  const auto scale = hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(di, n)));
  if constexpr (kMaxKeepsNaN) return hn::Mul(p, scale);
  return hn::IfThenZeroElse(hn::Lt(t, hn::Set(d, -87.68f)), hn::Mul(p, scale));
}

// Highway 1.0.3's Exp and Tanh of double convert to int32 inside; on the emulated targets (EMU128, SCALAR) that
// conversion is a C++ cast, undefined behaviour for a NaN lane (UBSan; found by the fuzzer). Those targets get 0
// in NaN lanes, and the callers select the NaN back; real SIMD targets convert NaN by instruction (defined) and
// skip the select.
#define XENT_EMULATED_TARGET (HWY_TARGET == HWY_EMU128 || HWY_TARGET == HWY_SCALAR)
template <class D>
HWY_INLINE hn::Vec<D> NaNToZeroOnEmulated(D d, hn::Vec<D> v) {
#if XENT_EMULATED_TARGET
  (void)d;
  return hn::IfThenZeroElse(hn::IsNaN(v), v);
#else
  (void)d;
  return v;
#endif
}

// exp(t) for t ≤ 0, double: Highway's Exp (≤ 1 ulp), with −inf → 0 and NaN → NaN made explicit.
template <class D, HWY_IF_FLOAT(hn::TFromD<D>), hwy::EnableIf<sizeof(hn::TFromD<D>) == 8>* = nullptr>
HWY_INLINE hn::Vec<D> ExpNonPositive(D d, hn::Vec<D> t) {
  const auto e = hn::IfThenZeroElse(hn::Lt(t, hn::Set(d, -745.0)), hn::Exp(d, NaNToZeroOnEmulated(d, t)));
  return hn::IfThenElse(hn::IsNaN(t), t, e);
}

// tanh(y), float. Error: ≤ 1.6 float32 ulp. |y| < 0.625: y + y³·q(y²), q of degree 4 fitted like the exp polynomial; else (1 − e)/(1 + e) with
// e = exp(−2|y|) ≤ 0.29, so 1 − e cannot cancel. ±inf → ±1, NaN → NaN.
// Why not hn::Tanh: it takes more operations for the same accuracy here, and soft-capping costs a tanh per logit
// in every pass.
template <class D, HWY_IF_FLOAT(hn::TFromD<D>), hwy::EnableIf<sizeof(hn::TFromD<D>) == 4>* = nullptr>
HWY_INLINE hn::Vec<D> TanhAny(D d, hn::Vec<D> y) {
  const auto a = hn::Abs(y);
  const auto z = hn::Mul(a, a);
  auto q = hn::MulAdd(hn::Set(d, -0x1.75e1d2p-8f), z, hn::Set(d, 0x1.52269cp-6f));
  q = hn::MulAdd(q, z, hn::Set(d, -0x1.b83c5ap-5f));
  q = hn::MulAdd(q, z, hn::Set(d, 0x1.110726p-3f));
  q = hn::MulAdd(q, z, hn::Set(d, -0x1.555532p-2f));
  const auto small = hn::MulAdd(hn::Mul(a, z), q, a);
  const auto e = ExpNonPositive(d, hn::Mul(a, hn::Set(d, -2.0f)));
  const auto one = hn::Set(d, 1.0f);
  const auto large = hn::Div(hn::Sub(one, e), hn::Add(one, e));
  const auto t = hn::IfThenElse(hn::Lt(a, hn::Set(d, 0.625f)), small, large);
  return hn::IfThenElse(hn::IsNaN(y), y, hn::CopySign(t, y));
}

// tanh(y), double: Highway's Tanh.
template <class D, HWY_IF_FLOAT(hn::TFromD<D>), hwy::EnableIf<sizeof(hn::TFromD<D>) == 8>* = nullptr>
HWY_INLINE hn::Vec<D> TanhAny(D d, hn::Vec<D> y) {
#if XENT_EMULATED_TARGET
  return hn::IfThenElse(hn::IsNaN(y), y, hn::Tanh(d, NaNToZeroOnEmulated(d, y)));
#else
  return hn::Tanh(d, y);
#endif
}

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_SIMD_MATH_INL_H_
