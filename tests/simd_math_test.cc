// simd_math_test.cc — the error bounds src/simd_math-inl.h states, asserted over the functions' input ranges on
// every SIMD target compiled in and supported by this CPU (Highway's math_test.cc habit): exp of t ≤ 0 and tanh,
// float and double, against the C library in a wider type, and their special values.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/simd_math_test.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <limits>

#include "hwy/highway.h"
#include "src/simd_math-inl.h"

#ifndef XENT_TESTS_SIMD_MATH_TEST_ONCE_
#define XENT_TESTS_SIMD_MATH_TEST_ONCE_
namespace xent::test {
// The largest error found, in units in the last place of the exact result, and where.
struct Worst {
  double ulp = 0;
  double at = 0;
  int64_t samples = 0;  // how many values were compared
};
}  // namespace xent::test
#endif

HWY_BEFORE_NAMESPACE();
namespace xent::test::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace xi = xent::internal::HWY_NAMESPACE;

// One ulp of the floating-point type F at the exact (wider) value r: the spacing of F's numbers around |r|
// (at least that of its subnormals).
template <typename F>
long double UlpAt(long double r) {
  int exponent = 0;
  std::frexp(static_cast<double>(std::fabs(r)), &exponent);
  return std::max(std::ldexp(1.0L, exponent - std::numeric_limits<F>::digits),
                  static_cast<long double>(std::numeric_limits<F>::denorm_min()));
}

// Evaluates f on every `step`-th number of type F between lo and hi (walking the bit patterns, so every binade
// gets its share), a vector at a time, and returns the worst error against exact(x).
template <typename F, class Fn, class Exact>
Worst WorstError(F lo, F hi, uint64_t step, const Fn& f, const Exact& exact) {
  using U = hwy::MakeUnsigned<F>;
  const hn::ScalableTag<F> d;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN F in[HWY_MAX_BYTES / sizeof(F)] = {}, out[HWY_MAX_BYTES / sizeof(F)] = {};
  // Signed magnitudes walk from lo to hi through the bit patterns of |x| (negative ranges walk downward).
  const auto bits = [](F x) {
    U u;
    std::memcpy(&u, &x, sizeof(u));
    return u;
  };
  const auto from_bits = [](U u) {
    F x;
    std::memcpy(&x, &u, sizeof(x));
    return x;
  };
  const bool negative = hi <= 0;
  const U first = bits(std::fabs(negative ? hi : lo)), last = bits(std::fabs(negative ? lo : hi));
  Worst worst;
  size_t filled = 0;
  const auto flush = [&] {
    hn::Store(f(d, hn::Load(d, in)), d, out);
    for (size_t i = 0; i < filled; ++i) {
      const long double r = exact(static_cast<long double>(in[i]));
      const double ulp = static_cast<double>(std::fabs(static_cast<long double>(out[i]) - r) / UlpAt<F>(r));
      if (!(ulp <= worst.ulp)) worst.ulp = ulp, worst.at = static_cast<double>(in[i]);  // NaN counts as worst
    }
    worst.samples += static_cast<int64_t>(filled);
    filled = 0;
  };
  for (uint64_t u = first; u <= last; u += step) {
    const F x = from_bits(static_cast<U>(u));
    in[filled++] = negative ? -x : x;
    if (filled == N) flush();
  }
  if (filled > 0) {
    for (size_t i = filled; i < N; ++i) in[i] = in[0];
    flush();
  }
  return worst;
}

// Each function on `count` values, in place (special values).
template <typename F, class Fn>
void Apply(F* values, size_t count, const Fn& f) {
  const hn::ScalableTag<F> d;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN F lanes[HWY_MAX_BYTES / sizeof(F)] = {};
  for (size_t i = 0; i < count; i += N) {
    for (size_t k = 0; k < N; ++k) lanes[k] = values[i + k < count ? i + k : i];
    hn::Store(f(d, hn::Load(d, lanes)), d, lanes);
    for (size_t k = 0; k < N && i + k < count; ++k) values[i + k] = lanes[k];
  }
}

// The worse of two ranges' results, with both ranges' samples.
Worst Worse(Worst a, const Worst& b) {
  const int64_t samples = a.samples + b.samples;
  if (b.ulp > a.ulp) a = b;
  a.samples = samples;
  return a;
}

const auto kExp = [](auto d, auto v) { return xi::ExpNonPositive(d, v); };
const auto kTanh = [](auto d, auto v) { return xi::TanhAny(d, v); };
const auto kExactExp = [](long double x) { return std::exp(x); };
const auto kExactTanh = [](long double x) { return std::tanh(x); };

// float exp over [−87.3, 0] (every 127th float: 8.8·10^6 of them, every binade) and its flush to 0 below.
Worst ExpFloat() { return WorstError<float>(-87.3f, 0.0f, 127, kExp, kExactExp); }
Worst ExpFloatBelowRange() {
  Worst worst;
  float values[] = {-87.69f, -88.0f, -100.0f, -1e30f, -std::numeric_limits<float>::max()};
  Apply(values, 5, kExp);
  for (float v : values) worst.ulp = std::max(worst.ulp, static_cast<double>(std::fabs(v)));
  return worst;  // the largest result: must be 0
}
// double exp over [−745, 0], every 2^42nd double (about 10^6, every binade).
Worst ExpDouble() { return WorstError<double>(-745.0, 0.0, uint64_t{1} << 42, kExp, kExactExp); }
// tanh over [0, 10] and [−10, 0] (every 251st float: 4.3·10^6 of each sign; tanh is within half an ulp of ±1
// beyond 9.01).
Worst TanhFloat() {
  return Worse(WorstError<float>(0.0f, 10.0f, 251, kTanh, kExactTanh),
               WorstError<float>(-10.0f, 0.0f, 251, kTanh, kExactTanh));
}
Worst TanhDouble() {
  return Worse(WorstError<double>(0.0, 20.0, uint64_t{1} << 42, kTanh, kExactTanh),
               WorstError<double>(-20.0, 0.0, uint64_t{1} << 42, kTanh, kExactTanh));
}

// Special values: exp(−inf) = 0, exp(NaN) = NaN, exp(0) = 1; tanh(±inf) = ±1, tanh(NaN) = NaN, tanh(±0) = ±0.
template <typename F>
bool SpecialValues() {
  constexpr F kInf = std::numeric_limits<F>::infinity(), kNaN = std::numeric_limits<F>::quiet_NaN();
  F e[] = {-kInf, kNaN, F{0}};
  Apply(e, 3, kExp);
  F t[] = {kInf, -kInf, kNaN, F{0}, -F{0}};
  Apply(t, 5, kTanh);
  return e[0] == 0 && std::isnan(e[1]) && e[2] == 1 && t[0] == 1 && t[1] == -1 && std::isnan(t[2]) && t[3] == 0 &&
         !std::signbit(t[3]) && t[4] == 0 && std::signbit(t[4]);
}
bool SpecialValuesFloat() { return SpecialValues<float>(); }
bool FusedMulAdd() { return xi::kFusedMulAdd; }
bool SpecialValuesDouble() { return SpecialValues<double>(); }

}  // namespace xent::test::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <gtest/gtest.h>

#include <functional>

#include "hwy/targets.h"

namespace xent::test {
HWY_EXPORT(ExpFloat);
HWY_EXPORT(ExpFloatBelowRange);
HWY_EXPORT(ExpDouble);
HWY_EXPORT(TanhFloat);
HWY_EXPORT(TanhDouble);
HWY_EXPORT(SpecialValuesFloat);
HWY_EXPORT(SpecialValuesDouble);
HWY_EXPORT(FusedMulAdd);

namespace {

// Runs body on each SIMD target compiled into this test and supported by this CPU.
void for_each_target(const std::function<void()>& body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

// The bounds of simd_math-inl.h's comments.
TEST(SimdMath, ExpFloatWithin089UlpWithFmaAnd12Without) {
  for_each_target([] {
    const Worst w = HWY_DYNAMIC_DISPATCH(ExpFloat)();
    EXPECT_GT(w.samples, 5000000);
    EXPECT_LE(w.ulp, HWY_DYNAMIC_DISPATCH(FusedMulAdd)() ? 0.89 : 1.2) << "at " << w.at;
    EXPECT_EQ(HWY_DYNAMIC_DISPATCH(ExpFloatBelowRange)().ulp, 0.0) << "exp(t) for t <= -87.68 must be 0";
  });
}

TEST(SimdMath, ExpDoubleWithin1Ulp) {
  for_each_target([] {
    const Worst w = HWY_DYNAMIC_DISPATCH(ExpDouble)();
    EXPECT_GT(w.samples, 1000000);
    EXPECT_LE(w.ulp, 1.0) << "at " << w.at;
  });
}

TEST(SimdMath, TanhFloatWithin16Ulp) {
  for_each_target([] {
    const Worst w = HWY_DYNAMIC_DISPATCH(TanhFloat)();
    EXPECT_GT(w.samples, 5000000);
    EXPECT_LE(w.ulp, 1.6) << "at " << w.at;
  });
}

// Highway's Tanh states 4 ulp.
TEST(SimdMath, TanhDoubleWithin4Ulp) {
  for_each_target([] {
    const Worst w = HWY_DYNAMIC_DISPATCH(TanhDouble)();
    EXPECT_GT(w.samples, 1000000);
    EXPECT_LE(w.ulp, 4.0) << "at " << w.at;
  });
}

TEST(SimdMath, SpecialValues) {
  for_each_target([] {
    EXPECT_TRUE(HWY_DYNAMIC_DISPATCH(SpecialValuesFloat)());
    EXPECT_TRUE(HWY_DYNAMIC_DISPATCH(SpecialValuesDouble)());
  });
}

}  // namespace
}  // namespace xent::test
#endif  // HWY_ONCE
