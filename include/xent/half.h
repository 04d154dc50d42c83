/// @file xent/half.h
/// 16-bit floating-point storage types for the C++ API.
///
/// xent reads and writes float16 (IEEE binary16) and bfloat16 tensors; it computes in float32 and rounds once.
/// These types only hold the 16 bits and convert to and from float with round-to-nearest-even, so a caller
/// without its own half type can fill inputs and read results. NaN stays NaN (quiet), ±inf stays ±inf,
/// float values beyond the 16-bit range round to ±inf, and subnormals are kept.
#pragma once

#include <cstdint>
#include <cstring>

namespace xent {

/// IEEE binary16: 1 sign, 5 exponent and 10 mantissa bits.
struct float16 {
  uint16_t bits;  ///< the encoding
};
/// bfloat16: the upper 16 bits of a float32 (1 sign, 8 exponent, 7 mantissa bits).
struct bfloat16 {
  uint16_t bits;  ///< the encoding
};

/// The bits of a float.
inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
/// The float of these bits.
inline float float_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// Exact.
inline float to_float(bfloat16 h) { return float_from_bits(uint32_t{h.bits} << 16); }

/// Rounded to nearest even; NaN stays a (quiet) NaN.
inline bfloat16 to_bfloat16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return {static_cast<uint16_t>((u >> 16) | 0x0040u)};  // quiet NaN
  const uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);                                 // nearest even
  return {static_cast<uint16_t>(rounded >> 16)};
}

/// Exact, subnormals included.
inline float to_float(float16 h) {
  const uint32_t sign = uint32_t{h.bits & 0x8000u} << 16;
  const uint32_t exponent = (h.bits >> 10) & 0x1Fu;
  const uint32_t mantissa = h.bits & 0x3FFu;
  if (exponent == 0x1F) return float_from_bits(sign | 0x7F800000u | (mantissa << 13));  // inf or NaN
  if (exponent != 0) return float_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa · 2^-24, exact in float.
  const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
  return sign ? -magnitude : magnitude;
}

/// Rounded to nearest even; beyond 65504 (rounding to 65520 or more) ±inf; NaN stays a (quiet) NaN.
inline float16 to_float16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return {static_cast<uint16_t>(sign | 0x7E00u | ((abs >> 13) & 0x3FFu))};  // NaN
  if (abs >= 0x477FF000u) return {static_cast<uint16_t>(sign | 0x7C00u)};  // rounds to ≥ 65520: inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero) in float16: round |f| / 2^-24 to the nearest integer, ties to even.
    // Adding 0.5 (i.e. 2^-1 scaled) in float with the default rounding mode does exactly that.
    const float scaled = float_from_bits(abs) * 0x1p24f;  // exact: a power-of-two scale
    const float rounded = (scaled + 0x1p23f) - 0x1p23f;    // RNE to an integer, |scaled| < 2^10
    return {static_cast<uint16_t>(sign | static_cast<uint16_t>(rounded))};
  }
  // Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even.
  const uint32_t rebased = abs - (112u << 23);
  const uint32_t rounded = rebased + 0xFFFu + ((rebased >> 13) & 1u);
  return {static_cast<uint16_t>(sign | (rounded >> 13))};
}

/// A double rounded once to float16/bfloat16: first to float with round-to-odd (truncate, then set the last bit
/// if anything was dropped), then to nearest even; the pair equals one correct rounding of the double.
inline float round_to_odd_float(double v) {
  float f = static_cast<float>(v);
  if (v == v && static_cast<double>(f) != v && f - f == 0) {  // inexact and finite
    if ((f > 0 && static_cast<double>(f) > v) || (f < 0 && static_cast<double>(f) < v)) {
      f = float_from_bits(float_bits(f) - 1);  // one ulp toward zero: truncation
    }
    f = float_from_bits(float_bits(f) | 1u);
  }
  return f;
}
/// One correct rounding of a double (see round_to_odd_float).
inline float16 to_float16(double v) { return to_float16(round_to_odd_float(v)); }
/// One correct rounding of a double (see round_to_odd_float).
inline bfloat16 to_bfloat16(double v) { return to_bfloat16(round_to_odd_float(v)); }

}  // namespace xent
