// simd_io-inl.h — the dtypes in SIMD registers: the compute type of each storage type, scalar conversions, and
// vector loads and stores of contiguous, strided, partial and row-stepped elements that convert between the
// storage type (float16, bfloat16, float, double) and the compute type (float, or double for double).
// Per target (Highway's toggle guard); every kernel file includes it.
#if defined(XENT_SIMD_IO_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SIMD_IO_INL_H_
#undef XENT_SIMD_IO_INL_H_
#else
#define XENT_SIMD_IO_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "hwy/highway.h"
#include "src/tuning.h"
#include "xent/half.h"

// For a lambda called from a hot loop: GCC keeps lambdas called from several places out of line, and each call
// then reloads its captures and re-broadcasts its constants. Not under sanitizers, whose instrumentation of the
// forcibly inlined lambdas makes the build of the kernels several times slower.
#ifndef XENT_LAMBDA_INLINE
#if defined(__SANITIZE_ADDRESS__)  // gcc
#define XENT_ADDRESS_SANITIZER 1
#elif defined(__has_feature)       // clang
#if __has_feature(address_sanitizer)
#define XENT_ADDRESS_SANITIZER 1
#endif
#endif
#if defined(__GNUC__) && !defined(XENT_ADDRESS_SANITIZER)
#define XENT_LAMBDA_INLINE __attribute__((always_inline))
#else
#define XENT_LAMBDA_INLINE
#endif
#endif

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Compute type: float for every 16/32-bit storage type, double for double.
template <typename T>
using Compute = std::conditional_t<std::is_same_v<T, double>, double, float>;

// This target's tuning table (tuning.h).
inline constexpr const Tuning& kTuning = TuningFor(HWY_MAX_BYTES);

// ---- Scalar conversions between storage and compute types.
template <typename T>
HWY_INLINE Compute<T> ToCompute(T v) {
  if constexpr (std::is_same_v<T, hwy::float16_t>) {
    return xent::to_float(xent::float16{v.bits});
  } else if constexpr (std::is_same_v<T, hwy::bfloat16_t>) {
    return xent::to_float(xent::bfloat16{v.bits});
  } else {
    return v;
  }
}

// Rounds a double result once to T (see xent::round_to_odd_float for the 16-bit types).
template <typename T>
HWY_INLINE T FromDouble(double v) {
  if constexpr (std::is_same_v<T, hwy::float16_t>) {
    return T{xent::to_float16(v).bits};
  } else if constexpr (std::is_same_v<T, hwy::bfloat16_t>) {
    return T{xent::to_bfloat16(v).bits};
  } else {
    return static_cast<T>(v);
  }
}

// Rounds a compute-type value to the storage type G, to nearest even.
template <typename G, typename A>
HWY_INLINE G FromCompute(A v) {
  if constexpr (std::is_same_v<G, hwy::float16_t>) {
    G out;
    out.bits = xent::to_float16(static_cast<float>(v)).bits;
    return out;
  } else if constexpr (std::is_same_v<G, hwy::bfloat16_t>) {
    G out;
    out.bits = xent::to_bfloat16(static_cast<float>(v)).bits;
    return out;
  } else {
    return static_cast<G>(v);
  }
}

// Highway 1.0.3 converts float16 natively (F16C, round to nearest even) only on AVX2 and AVX-512; its emulation
// elsewhere truncates and ignores inf/NaN, so those targets convert float16 lane by lane with xent/half.h.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
inline constexpr bool kNativeFloat16 = true;
#else
inline constexpr bool kNativeFloat16 = false;
#endif

// ---- One vector's worth of contiguous lanes at p.
template <class DA, typename T>
HWY_INLINE hn::Vec<DA> LoadPromote(DA da, const T* HWY_RESTRICT p) {
  if constexpr (std::is_same_v<T, hn::TFromD<DA>>) {
    return hn::LoadU(da, p);
  } else if constexpr (std::is_same_v<T, hwy::float16_t> && !kNativeFloat16) {
    HWY_ALIGN float lanes[HWY_MAX_BYTES / sizeof(float)];
    for (size_t i = 0; i < hn::Lanes(da); ++i) lanes[i] = ToCompute(p[i]);
    return hn::Load(da, lanes);
  } else {
    return hn::PromoteTo(da, hn::LoadU(hn::Rebind<T, DA>(), p));
  }
}

template <class DA, typename T>
HWY_INLINE void DemoteStore(DA da, hn::Vec<DA> v, T* HWY_RESTRICT p) {
  if constexpr (std::is_same_v<T, hn::TFromD<DA>>) {
    hn::StoreU(v, da, p);
  } else if constexpr (std::is_same_v<T, hwy::float16_t> && !kNativeFloat16) {
    HWY_ALIGN float lanes[HWY_MAX_BYTES / sizeof(float)];
    hn::Store(v, da, lanes);
    for (size_t i = 0; i < hn::Lanes(da); ++i) p[i].bits = xent::to_float16(lanes[i]).bits;
  } else if constexpr (std::is_same_v<T, hwy::float16_t>) {
    hn::StoreU(hn::DemoteTo(hn::Rebind<T, DA>(), v), hn::Rebind<T, DA>(), p);  // cvtps_ph: nearest even
  } else {
    // bfloat16, round to nearest even (Highway 1.0.3's DemoteTo truncates): add 0x7FFF + lsb, keep high half;
    // NaN is kept quiet instead of being rounded into infinity.
    const hn::RebindToUnsigned<DA> du;
    const hn::RebindToSigned<DA> di;
    const hn::Rebind<uint16_t, DA> du16;
    const auto bits = hn::BitCast(du, v);
    const auto lsb = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u));
    auto rounded = hn::Add(bits, hn::Add(hn::Set(du, 0x7FFFu), lsb));
    rounded = hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)), hn::Or(bits, hn::Set(du, 0x00400000u)), rounded);
    const auto high = hn::BitCast(di, hn::ShiftRight<16>(rounded));
    hn::StoreU(hn::DemoteTo(du16, high), du16, reinterpret_cast<uint16_t*>(p));
  }
}

// ---- Strided and partial vectors.

// Elements p[0], p[stride], ... p[(count − 1)·stride] in the compute type, one by one; the other lanes hold
// `fill`. Not inlined: inlined into the lane kernel's class loops, this rarely taken path made GCC keep less in
// registers there.
template <class DA, typename T>
HWY_NOINLINE hn::Vec<DA> LoadEachLane(DA da, const T* HWY_RESTRICT p, int64_t stride, size_t count,
                                      hn::TFromD<DA> fill) {
  HWY_ALIGN hn::TFromD<DA> lanes[HWY_MAX_BYTES / sizeof(hn::TFromD<DA>)];
  for (size_t i = 0; i < hn::Lanes(da); ++i)
    lanes[i] = i < count ? ToCompute(p[static_cast<int64_t>(i) * stride]) : fill;
  return hn::Load(da, lanes);
}

// Lanes(da) elements p[0], p[stride], ... in the compute type.
template <class DA, typename T>
HWY_INLINE hn::Vec<DA> LoadLanes(DA da, const T* HWY_RESTRICT p, int64_t stride) {
  if (stride == 1) return LoadPromote(da, p);
  if (stride == 0) return hn::Set(da, ToCompute(*p));
  if constexpr (std::is_same_v<T, hn::TFromD<DA>>) {
    // Hardware gather (AVX2/AVX-512) when the offsets fit the index type.
    constexpr int64_t kMaxOffset = sizeof(T) == 4 ? INT32_MAX : INT64_MAX / 2;
    if (stride > 0 && stride <= kMaxOffset / static_cast<int64_t>(hn::Lanes(da))) {
      const hn::RebindToSigned<DA> di;
      using TI = hn::TFromD<decltype(di)>;
      return hn::GatherIndex(da, p, hn::Mul(hn::Iota(di, 0), hn::Set(di, static_cast<TI>(stride))));
    }
  }
  return LoadEachLane(da, p, stride, hn::Lanes(da), hn::TFromD<DA>{0});
}

// AVX2 and AVX-512 masked loads of 32/64-bit lanes never touch masked-off memory (the fault is suppressed);
// other targets and types: LoadEachLane (16-bit lanes on AVX-512: below).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
inline constexpr bool kSafeMaskedLoad = true;
#else
inline constexpr bool kSafeMaskedLoad = false;
#endif
// AVX-512 (BW) masked loads of 16-bit lanes likewise: float16/bfloat16 partial vectors are converted as one
// vector, not lane by lane through Highway's scalar conversion.
inline constexpr bool kSafeMaskedLoad16 = HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3;

// Whether the first lanes of contiguous T load as one masked vector of DA, converted to the compute type, never
// touching memory past them (the two cases above).
template <class DA, typename T>
inline constexpr bool kMaskedLanes =
    (kSafeMaskedLoad && std::is_same_v<T, hn::TFromD<DA>>) ||
    (kSafeMaskedLoad16 && sizeof(T) == 2 && (!std::is_same_v<T, hwy::float16_t> || kNativeFloat16));

// The first `count` contiguous elements at p as one masked load (kMaskedLanes), converted to the compute type;
// lanes ≥ count are 0.
template <class DA, typename T>
HWY_INLINE hn::Vec<DA> LoadMaskedLanes(DA da, const T* HWY_RESTRICT p, size_t count) {
  static_assert(kMaskedLanes<DA, T>);
  if constexpr (std::is_same_v<T, hn::TFromD<DA>>) {
    return hn::MaskedLoad(hn::FirstN(da, count), da, p);
  } else {
    const hn::Rebind<T, DA> dt;
    return hn::PromoteTo(da, hn::MaskedLoad(hn::FirstN(dt, count), dt, p));
  }
}

// The first `count` (< Lanes) elements as above; the other lanes hold `fill`. Never reads past element count-1.
template <class DA, typename T>
HWY_INLINE hn::Vec<DA> LoadPartial(DA da, const T* HWY_RESTRICT p, int64_t stride, size_t count,
                                   hn::TFromD<DA> fill) {
  if constexpr (kMaskedLanes<DA, T>) {
    if (stride == 1) return hn::IfThenElse(hn::FirstN(da, count), LoadMaskedLanes(da, p, count), hn::Set(da, fill));
  }
  return LoadEachLane(da, p, stride, count, fill);
}

// Lanes of row-stepped elements starting at p; lanes ≥ count are 0.
template <class DA, typename T>
HWY_INLINE hn::Vec<DA> LoadRows(DA da, const T* p, int64_t lane_stride, size_t count) {
  if (count == hn::Lanes(da)) return LoadLanes(da, p, lane_stride);
  return LoadPartial(da, p, lane_stride, count, hn::TFromD<DA>{0});
}

// Writes the first `count` lanes of v to p[0], p[stride], ... stream: gradients far larger than the caches go
// around them (non-temporal stores: no read-for-ownership of each line, a third of forward+gradient traffic); the
// caller ends its writes with hwy::FlushStream().
template <class DA, typename G>
HWY_INLINE void StoreLanes(DA da, hn::Vec<DA> v, G* HWY_RESTRICT p, int64_t stride, size_t count, bool stream = false) {
  if constexpr (std::is_same_v<G, hn::TFromD<DA>>) {
    if (stream && stride == 1 && count == hn::Lanes(da) && reinterpret_cast<uintptr_t>(p) % (hn::Lanes(da) * sizeof(G)) == 0)
      return hn::Stream(v, da, p);
  }
  if (stride == 1 && count == hn::Lanes(da)) return DemoteStore(da, v, p);
  HWY_ALIGN hn::TFromD<DA> lanes[HWY_MAX_BYTES / sizeof(hn::TFromD<DA>)];
  hn::Store(v, da, lanes);
  // count ≤ Lanes; the bound says so to GCC, which otherwise warned of lanes past the vector (scalar target).
  const size_t n = std::min(count, hn::Lanes(da));
  for (size_t i = 0; i < n; ++i) p[static_cast<int64_t>(i) * stride] = FromCompute<G>(lanes[i]);
}

// ---- Contiguous rows of a few classes.

// v[c] = class c of Lanes contiguous rows of C ∈ [2, 4] classes at p: C vector loads deinterleaved by shuffles.
template <class DA>
HWY_INLINE void LoadClasses(DA da, const hn::TFromD<DA>* HWY_RESTRICT p, int64_t C, hn::Vec<DA>* v) {
  if (C == 2) hn::LoadInterleaved2(da, p, v[0], v[1]);
  if (C == 3) hn::LoadInterleaved3(da, p, v[0], v[1], v[2]);
  if (C == 4) hn::LoadInterleaved4(da, p, v[0], v[1], v[2], v[3]);
}

// The reverse of LoadClasses: class c of Lanes rows from v[c], stored as contiguous rows at p.
template <class DA>
HWY_INLINE void StoreClasses(DA da, const hn::Vec<DA>* v, int64_t C, hn::TFromD<DA>* HWY_RESTRICT p) {
  if (C == 2) hn::StoreInterleaved2(v[0], v[1], da, p);
  if (C == 3) hn::StoreInterleaved3(v[0], v[1], v[2], da, p);
  if (C == 4) hn::StoreInterleaved4(v[0], v[1], v[2], v[3], da, p);
}

// Lanes contiguous rows of C classes at p (float16/bfloat16 or the compute type), converted to the compute type
// into out[0, Lanes·C) with vector loads.
template <class DA, typename T>
HWY_INLINE void PromoteRows(DA da, const T* HWY_RESTRICT p, int64_t C, hn::TFromD<DA>* HWY_RESTRICT out) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  for (int64_t i = 0; i < N * C; i += N) hn::Store(LoadPromote(da, p + i), da, out + i);
}

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_SIMD_IO_INL_H_
