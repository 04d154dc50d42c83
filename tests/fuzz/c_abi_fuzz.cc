// c_abi_fuzz.cc — a coverage-guided fuzzer (libFuzzer) over every computing entry point of the C ABI (xent.h).
//
// Each input decodes into one call (or, for the sharded stages, one whole protocol: statistics, merge or rebase,
// finish) with its arguments drawn from a consistent design that hostile mutations then break: dtypes, ranks up to
// and past XENT_MAX_RANK, shapes of 0, 1, negative and huge sizes, strides of 0, negative, overlapping and huge
// values, axes, options, class indices, grad_loss, in-place requests, null pointers, outputs aliasing inputs. Every
// tensor lives in a heap buffer of exactly the bytes its descriptor can address, so that AddressSanitizer reports
// any access outside them. Checked on every input:
//   - the call returns a status, never XENT_INTERNAL, and a failure has a message;
//   - on failure, no buffer changed (outputs untouched, inputs never modified);
//   - on success, no input changed (unless it is the very view an output was asked to overwrite in place), and
//     every output equals a long double reference (tests/reference.h) computed from the inputs as the descriptors
//     address them, within a tolerance derived from the dtype and each value's magnitude.
// A descriptor whose byte extent passes 2^63 must be refused. The SIMD target is drawn from those compiled in and
// supported by the CPU. XENT_FUZZ_ENTRY=<name> (see kEntryNames) restricts the fuzzer to one entry point,
// XENT_FUZZ_SKIP=<name> leaves one out.
// docs/reliability.md has the commands, the campaigns' figures and the bugs this found.
#include <fuzzer/FuzzedDataProvider.h>

#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/reference.h"
#include "xent/half.h"
#include "xent/xent.h"

namespace {

using xent::test::Dense;
using xent::test::Expected;
using xent::test::Real;

enum Entry {
  kDense, kDenseGrad, kSparse, kSparseGrad, kCross, kCrossGrad, kLossShape, kCrossLossShape, kShards, kLinear,
  kLinearGrad, kLinearShards, kEntries
};
// kShards drives xent_shard_statistics, xent_merge_row_statistics, xent_rebase_row_statistics, xent_shard_finish;
// kLinearShards xent_linear_shard_statistics and xent_linear_shard_finish.
const char* const kEntryNames[kEntries] = {
    "softmax_cross_entropy", "softmax_cross_entropy_grad", "sparse_softmax_cross_entropy",
    "sparse_softmax_cross_entropy_grad", "cross_entropy", "cross_entropy_grad", "loss_shape",
    "cross_entropy_loss_shape", "shards", "linear_cross_entropy", "linear_cross_entropy_grad", "linear_shards"};

int g_entry = -1;  // from XENT_FUZZ_ENTRY; -1: the input chooses
int g_skip = -1;   // from XENT_FUZZ_SKIP: an entry point whose inputs are ignored (an open finding, CI's smoke run)
bool g_verbose = false;  // XENT_FUZZ_VERBOSE=1: failures print the call's inputs (to read a reproducer)
std::string g_inputs;    // the call's inputs, when verbose
// An infinite label (or probability target) makes its row's results ±inf or NaN, unspecified (xent.h): the terms
// are summed relative to the row's max, where inf · 0 can arise; so does an infinite grad_loss times a probability
// that underflowed to 0. Then a non-finite reference accepts either.
bool g_infinite_labels = false;
// A probability below the compute type's smallest normal number is flushed (float) or subnormal (double, few
// significant bits); the gradient terms it scales are then off by up to that, times g and the label mass: the
// call's largest |grad_loss| and label mass (finite ones) scale the absolute tolerance (ComputeUnderflow).
Real g_underflow_scale = 1;
// The inputs' intermediates pass the compute type's range (Reference::peak): a result may then be NaN or ±inf where
// the exact one is finite (the documented open limit, README: Limits; reproducers in tests/fuzz/open/). A finite
// result must still be right.
bool g_beyond_range = false;
// The largest finite value of the compute type (float for float16, bfloat16 and float32).
Real RangeOf(int32_t dtype) {
  return dtype == XENT_FLOAT64 ? std::numeric_limits<double>::max() : std::numeric_limits<float>::max();
}
void NoteRange(const xent::test::Reference& ref, int32_t dtype) { g_beyond_range = ref.peak > RangeOf(dtype) / 64; }

Real FiniteAbsMax(const std::vector<Real>& v, bool sum) {
  Real m = 0;
  for (Real x : v)
    if (std::isfinite(x)) m = sum ? m + std::fabs(x) : std::max(m, std::fabs(x));
  return m;
}

[[noreturn]] void Fail(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::fprintf(stderr, "xent fuzz: ");
  std::vfprintf(stderr, format, args);
  va_end(args);
  std::fprintf(stderr, "\n%s", g_inputs.c_str());
  std::abort();
}

constexpr size_t kMaxBufferBytes = 1 << 20;  // larger descriptors are skipped (valid, but too slow to fuzz)
constexpr int64_t kMaxElements = 1 << 20;     // the same for views of more elements (a broadcast over a few bytes)

int64_t DtypeSize(int32_t d) {
  switch (d) {
    case XENT_FLOAT16: case XENT_BFLOAT16: return 2;
    case XENT_FLOAT32: case XENT_INT32: return 4;
    case XENT_FLOAT64: case XENT_INT64: return 8;
    default: return 0;
  }
}
bool IsFloat(int32_t d) { return d >= XENT_FLOAT16 && d <= XENT_FLOAT64; }

// ---- Buffers and descriptors

struct Buffer {
  std::unique_ptr<unsigned char[]> bytes;  // exactly `size` bytes: ASan flags any access past them
  size_t size = 0;
  std::vector<unsigned char> before;  // contents before the call
};

enum class Extent { kOk, kTooLarge, kOverflows, kInvalid };

// The element offsets a descriptor can address: [low, high] (in elements), when rank, dtype and shape are valid.
Extent ExtentOf(const xent_tensor& t, int64_t* low, int64_t* count) {
  if (t.rank < 0 || t.rank > XENT_MAX_RANK || DtypeSize(t.dtype) == 0) return Extent::kInvalid;
  __int128 lo = 0, hi = 0, elements = 1;
  bool empty = false;
  for (int d = 0; d < t.rank; ++d) {
    if (t.shape[d] < 0) return Extent::kInvalid;
    if (t.shape[d] == 0) empty = true;
  }
  if (empty) {
    *low = 0, *count = 0;
    return Extent::kOk;
  }
  // Each span is below 2^126 in magnitude; the sums are held within ±2^100 (far past anything addressable), so that
  // sixteen of them cannot overflow __int128.
  constexpr __int128 kFar = static_cast<__int128>(1) << 100;
  for (int d = 0; d < t.rank; ++d) {
    const __int128 span = static_cast<__int128>(t.shape[d] - 1) * t.strides[d];
    (span < 0 ? lo : hi) += span;
    lo = std::max(lo, -kFar), hi = std::min(hi, kFar);
    elements *= t.shape[d];
    if (elements > (static_cast<__int128>(1) << 64)) elements = static_cast<__int128>(1) << 64;
  }
  const __int128 bytes = (hi - lo + 1) * DtypeSize(t.dtype);
  if (bytes >= (static_cast<__int128>(1) << 63) || elements * DtypeSize(t.dtype) >= (static_cast<__int128>(1) << 63))
    return Extent::kOverflows;
  if (bytes > static_cast<__int128>(kMaxBufferBytes) || elements > kMaxElements) return Extent::kTooLarge;
  *low = static_cast<int64_t>(lo);
  *count = static_cast<int64_t>(hi - lo + 1);
  return Extent::kOk;
}

// One tensor argument: its descriptor (as passed) and whether the pointer to it is passed at all.
struct Arg {
  xent_tensor t{};
  bool present = false;
  bool output = false;
  bool null_data = false;  // a hostile null data pointer
  bool overflows = false;  // its byte extent passes 2^63: every call taking it must fail
  int buffer = -1;  // index into Call::buffers; -1: data not ours (null or unaddressable)
};

struct Call {
  std::vector<Buffer> buffers;
  bool skip = false;       // a valid descriptor too large for this fuzzer

  // Places t's data in a new buffer of exactly the bytes it can address.
  void Place(Arg& a) {
    int64_t low = 0, count = 0;
    switch (ExtentOf(a.t, &low, &count)) {
      case Extent::kTooLarge: skip = true; [[fallthrough]];
      case Extent::kOverflows:
        if (!skip) a.overflows = true;
        [[fallthrough]];
      case Extent::kInvalid: {  // a small buffer: nothing may be read through this descriptor
        Buffer b;
        b.size = 16;
        b.bytes.reset(new unsigned char[b.size]());
        a.t.data = b.bytes.get();
        buffers.push_back(std::move(b));
        a.buffer = -1;
        return;
      }
      case Extent::kOk: break;
    }
    Buffer b;
    b.size = static_cast<size_t>(count * DtypeSize(a.t.dtype));
    b.bytes.reset(new unsigned char[b.size]);
    std::memset(b.bytes.get(), 0xA5, b.size);  // canary for outputs; inputs are filled after
    a.t.data = b.bytes.get() - low * DtypeSize(a.t.dtype);
    a.buffer = static_cast<int>(buffers.size());
    buffers.push_back(std::move(b));
  }
  void Snapshot() {
    for (Buffer& b : buffers) b.before.assign(b.bytes.get(), b.bytes.get() + b.size);
  }
  bool Changed(int i) const {
    const Buffer& b = buffers[i];
    return b.size != 0 && std::memcmp(b.before.data(), b.bytes.get(), b.size) != 0;
  }
  // Whether a byte that a's view addresses changed (not the rest of its buffer: an output placed in an input's
  // buffer, or a shard's view of part of a tensor, may write the bytes the view does not address).
  bool ViewChanged(const Arg& a) const;
};

// Element access through a descriptor (row-major flat index over its shape).
int64_t OffsetOf(const xent_tensor& t, int64_t flat) {
  int64_t at = 0;
  for (int d = t.rank - 1; d >= 0; --d) {
    at += (flat % t.shape[d]) * t.strides[d];
    flat /= t.shape[d];
  }
  return at;
}
int64_t Count(const xent_tensor& t) {  // of a placed descriptor: 0, or the elements of a buffer we allocated
  for (int d = 0; d < t.rank; ++d)
    if (t.shape[d] == 0) return 0;
  int64_t n = 1;
  for (int d = 0; d < t.rank; ++d) n *= t.shape[d];
  return n;
}
bool Call::ViewChanged(const Arg& a) const {
  const Buffer& b = buffers[a.buffer];
  const int64_t size = DtypeSize(a.t.dtype);
  const auto* base = b.bytes.get();
  for (int64_t i = 0; i < Count(a.t); ++i) {
    const auto* p = static_cast<const unsigned char*>(a.t.data) + OffsetOf(a.t, i) * size;
    if (p < base || p + size > base + b.size) return Changed(a.buffer);  // not a view of this buffer: all of it
    if (std::memcmp(b.before.data() + (p - base), p, static_cast<size_t>(size)) != 0) return true;
  }
  return false;
}

// Whether two elements of a placed descriptor share an address.
bool SelfOverlaps(const xent_tensor& t) {
  std::vector<int64_t> at(static_cast<size_t>(Count(t)));
  for (size_t i = 0; i < at.size(); ++i) at[i] = OffsetOf(t, static_cast<int64_t>(i));
  std::sort(at.begin(), at.end());
  return std::adjacent_find(at.begin(), at.end()) != at.end();
}
Real Get(const xent_tensor& t, int64_t flat) {
  const unsigned char* p = static_cast<const unsigned char*>(t.data) + OffsetOf(t, flat) * DtypeSize(t.dtype);
  switch (t.dtype) {
    case XENT_FLOAT16: { xent::float16 h; std::memcpy(&h, p, 2); return xent::to_float(h); }
    case XENT_BFLOAT16: { xent::bfloat16 h; std::memcpy(&h, p, 2); return xent::to_float(h); }
    case XENT_FLOAT32: { float f; std::memcpy(&f, p, 4); return f; }
    case XENT_FLOAT64: { double f; std::memcpy(&f, p, 8); return f; }
    case XENT_INT32: { int32_t i; std::memcpy(&i, p, 4); return i; }
    default: { int64_t i; std::memcpy(&i, p, 8); return static_cast<Real>(i); }
  }
}
int64_t GetIndex(const xent_tensor& t, int64_t flat) {
  const unsigned char* p = static_cast<const unsigned char*>(t.data) + OffsetOf(t, flat) * DtypeSize(t.dtype);
  if (t.dtype == XENT_INT32) { int32_t i; std::memcpy(&i, p, 4); return i; }
  int64_t i;
  std::memcpy(&i, p, 8);
  return i;
}
void Set(const xent_tensor& t, int64_t flat, double v, int64_t index) {
  unsigned char* p = static_cast<unsigned char*>(t.data) + OffsetOf(t, flat) * DtypeSize(t.dtype);
  switch (t.dtype) {
    case XENT_FLOAT16: { xent::float16 h = xent::to_float16(v); std::memcpy(p, &h, 2); break; }
    case XENT_BFLOAT16: { xent::bfloat16 h = xent::to_bfloat16(v); std::memcpy(p, &h, 2); break; }
    case XENT_FLOAT32: { float f = static_cast<float>(v); std::memcpy(p, &f, 4); break; }
    case XENT_FLOAT64: std::memcpy(p, &v, 8); break;
    case XENT_INT32: { int32_t i = static_cast<int32_t>(index); std::memcpy(p, &i, 4); break; }
    default: std::memcpy(p, &index, 8); break;
  }
}
Dense Read(const xent_tensor& t) {
  Dense d{std::vector<int64_t>(t.shape, t.shape + t.rank), std::vector<Real>(static_cast<size_t>(Count(t)))};
  for (int64_t i = 0; i < Count(t); ++i) d.values[i] = Get(t, i);
  return d;
}
// The values of an optional float input (grad_loss), or none when it is absent or not addressable.
std::vector<Real> ValuesOf(const Arg& a) {
  if (!a.present || a.buffer < 0 || !IsFloat(a.t.dtype)) return {};
  return Read(a.t).values;
}

void Note(const char* name, const Dense& d) {
  if (!g_verbose) return;
  g_inputs += std::string(name) + " shape [";
  for (int64_t n : d.shape) g_inputs += std::to_string(n) + " ";
  g_inputs += "] values";
  for (Real v : d.values) g_inputs += " " + std::to_string(static_cast<double>(v));
  g_inputs += "\n";
}

// ---- Drawing arguments

class Draw {
 public:
  explicit Draw(FuzzedDataProvider& f) : f_(f), rng_(f.ConsumeIntegral<uint32_t>()) {}

  bool Chance(int percent) { return f_.ConsumeIntegralInRange<int>(0, 99) < percent; }
  int Int(int lo, int hi) { return f_.ConsumeIntegralInRange<int>(lo, hi); }

  int64_t HostileInt() {
    static const int64_t kValues[] = {0, 1, -1, 2, 3, 7, 64, 1000, int64_t{1} << 31, (int64_t{1} << 32) + 1,
                                      int64_t{1} << 40, int64_t{1} << 62, std::numeric_limits<int64_t>::max(),
                                      std::numeric_limits<int64_t>::min(), -(int64_t{1} << 40), -1000};
    return f_.PickValueInArray(kValues);
  }

  // A value for a float input: mostly ordinary, with the fuzz input choosing how often special values appear.
  double Value(int special_percent, double scale) {
    std::uniform_int_distribution<int> percent(0, 99);
    if (percent(rng_) < special_percent) {
      static const double kSpecial[] = {-INFINITY, -INFINITY, INFINITY, NAN, 0.0, -0.0, 1e30, -1e30, 3e38,
                                        65504.0,   1e-40,     1e-8,     100.0};
      return kSpecial[std::uniform_int_distribution<int>(0, std::size(kSpecial) - 1)(rng_)];
    }
    return std::uniform_real_distribution<double>(-scale, scale)(rng_);
  }
  // Per-element choices come from the generator seeded by the input (the input picks the rates).
  bool Rng(int percent) { return std::uniform_int_distribution<int>(0, 99)(rng_) < percent; }
  double Weight() { return Rng(10) ? 0.0 : std::uniform_real_distribution<double>(0.5, 4.5)(rng_); }
  int64_t Index(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }

  // Strides for `shape` in a layout the input picks, per dimension: row-major, padded, reversed, column-major,
  // zero (broadcast; inputs only) or hostile.
  void Layout(xent_tensor& t, bool input) {
    const int kind = Int(0, 9);
    int64_t stride = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
      t.strides[d] = stride;
      stride *= std::max<int64_t>(t.shape[d], 1);
      if (kind == 1) stride = stride * 2 + 1;  // padded
    }
    if (kind == 2) {  // column-major
      stride = 1;
      for (int d = 0; d < t.rank; ++d) t.strides[d] = stride, stride *= std::max<int64_t>(t.shape[d], 1);
    }
    if (kind == 3 && t.rank > 0) t.strides[Int(0, t.rank - 1)] *= -1;  // reversed
    if (kind == 4 && t.rank > 0 && input) t.strides[Int(0, t.rank - 1)] = 0;  // broadcast view
    if (kind == 5 && t.rank > 0) t.strides[Int(0, t.rank - 1)] = HostileInt();
  }

  // A hostile change to one descriptor: dtype, rank, a dimension, a stride, or its data.
  void Mutate(Arg& a) {
    switch (Int(0, 6)) {
      case 0: a.t.dtype = Int(-1, 8); break;
      case 1: a.t.rank = f_.PickValueInArray({-1, 0, a.t.rank - 1, a.t.rank + 1, XENT_MAX_RANK + 1,
                                               std::numeric_limits<int32_t>::min()}); break;
      case 2: if (a.t.rank > 0 && a.t.rank <= XENT_MAX_RANK) a.t.shape[Int(0, a.t.rank - 1)] = HostileInt(); break;
      case 3: if (a.t.rank > 0 && a.t.rank <= XENT_MAX_RANK) a.t.strides[Int(0, a.t.rank - 1)] = HostileInt(); break;
      case 4: a.present = false; break;
      default: a.null_data = true; break;
    }
  }

  FuzzedDataProvider& f() { return f_; }
  std::mt19937& rng() { return rng_; }

 private:
  FuzzedDataProvider& f_;
  std::mt19937 rng_;
};

// ---- Checks

Real StorageEps(int32_t d) {
  switch (d) {
    case XENT_FLOAT16: return std::ldexp(Real{1}, -11);
    case XENT_BFLOAT16: return std::ldexp(Real{1}, -8);
    case XENT_FLOAT32: return std::ldexp(Real{1}, -24);
    default: return std::ldexp(Real{1}, -53);
  }
}
Real StorageTiny(int32_t d) {
  switch (d) {
    case XENT_FLOAT16: return std::ldexp(Real{1}, -24);
    case XENT_BFLOAT16: return std::ldexp(Real{1}, -133);
    case XENT_FLOAT32: return std::ldexp(Real{1}, -149);
    default: return std::ldexp(Real{1}, -1074);
  }
}
Real ComputeEps(int32_t d) { return StorageEps(d == XENT_FLOAT64 ? d : XENT_FLOAT32); }
// The float exp flushes results below 2^-126.5 to 0 (src/simd_math-inl.h), the double one below 2^-1074: a
// probability that small is 0, and so are the gradient terms it scales (times g, the label mass and the weights,
// absolute: 2^-110 allows factors up to 2^16).
Real ComputeUnderflow(int32_t d) { return std::ldexp(Real{1}, d == XENT_FLOAT64 ? -1000 : -110); }
Real RoundTo(int32_t d, Real v) {
  switch (d) {
    case XENT_FLOAT16: return xent::to_float(xent::to_float16(static_cast<double>(v)));
    case XENT_BFLOAT16: return xent::to_float(xent::to_bfloat16(static_cast<double>(v)));
    case XENT_FLOAT32: return static_cast<float>(v);
    default: return static_cast<double>(v);
  }
}

// got (through its descriptor) against the reference: NaN must be NaN, an infinity (after rounding to the dtype)
// the same infinity, a finite value within k·compute_eps·magnitude + storage_eps·|ref| + extra + storage_tiny.
void ExpectMatches(const xent_tensor& got, const Expected& ref, const char* what, Real k = 16,
                   const std::vector<Real>* extra = nullptr) {
  if (static_cast<size_t>(Count(got)) != ref.value.size())
    Fail("%s: %lld elements, the reference has %zu", what, static_cast<long long>(Count(got)), ref.value.size());
  for (size_t i = 0; i < ref.value.size(); ++i) {
    const Real g = Get(got, static_cast<int64_t>(i)), r = ref.value[i];
    bool ok;
    if (g_infinite_labels && !std::isfinite(RoundTo(got.dtype, r))) ok = !std::isfinite(g);
    else if ((g_beyond_range || ref.magnitude[i] > RangeOf(got.dtype) / 64) && !std::isfinite(g)) ok = true;
    else if (std::isnan(r)) ok = std::isnan(g);
    else if (std::isinf(RoundTo(got.dtype, r))) ok = g == RoundTo(got.dtype, r);
    else
      ok = std::fabs(g - r) <= k * ComputeEps(got.dtype) * ref.magnitude[i] + StorageEps(got.dtype) * std::fabs(r) +
                                   (got.dtype == XENT_FLOAT64 ? 1e-13 * ref.magnitude[i] : 0) +  // xent.h's bound
                                   (extra ? (*extra)[i] : 0) + StorageTiny(got.dtype) +
                                   ComputeUnderflow(got.dtype) * g_underflow_scale;
    if (!ok)
      Fail("%s[%zu] = %.17g, reference %.17g (magnitude %.6g, %s)", what, i, static_cast<double>(g),
           static_cast<double>(r), static_cast<double>(ref.magnitude[i]), xent_dtype_name(xent_dtype(got.dtype)));
  }
}

void ExpectShape(const xent_tensor& t, const std::vector<int64_t>& shape, const char* what) {
  if (t.rank != static_cast<int32_t>(shape.size()) || !std::equal(shape.begin(), shape.end(), t.shape))
    Fail("%s accepted with a shape other than the reference's", what);
}

std::string Describe(const Arg& a) {
  if (!a.present) return "(null)";
  std::string s = std::string(a.output ? "output" : "input") + " buffer " + std::to_string(a.buffer) + " data " +
                  std::to_string(reinterpret_cast<uintptr_t>(a.t.data) % 100000) + " dtype " + std::to_string(a.t.dtype) +
                  " shape [";
  for (int d = 0; d < a.t.rank && d < XENT_MAX_RANK; ++d) s += std::to_string(a.t.shape[d]) + (d + 1 < a.t.rank ? "," : "");
  s += "] strides [";
  for (int d = 0; d < a.t.rank && d < XENT_MAX_RANK; ++d) s += std::to_string(a.t.strides[d]) + (d + 1 < a.t.rank ? "," : "");
  return s + "]";
}

bool SameView(const xent_tensor& a, const xent_tensor& b) {
  if (a.data != b.data || a.dtype != b.dtype || a.rank != b.rank) return false;
  for (int d = 0; d < a.rank && d < XENT_MAX_RANK; ++d)
    if (a.shape[d] != b.shape[d] || (a.shape[d] > 1 && a.strides[d] != b.strides[d])) return false;  // same addresses
  return true;
}

// The invariants of every call: a status; on failure a message and no buffer changed; on success no input changed.
// in_place: buffers that are outputs' too (an in-place request the call accepted).
bool CheckStatus(const Call& call, xent_status s, const std::vector<const Arg*>& args, bool hostile_sizes) {
  if (s < XENT_OK || s > XENT_INTERNAL) Fail("status %d is not an xent_status", s);
  if (s == XENT_INTERNAL) Fail("XENT_INTERNAL: %s", xent_last_error_message());
  if (s != XENT_OK) {
    if (xent_last_error_message()[0] == '\0') Fail("status %s without a message", xent_status_name(s));
    if (s == XENT_OUT_OF_MEMORY && !hostile_sizes) Fail("out of memory on a small input: %s", xent_last_error_message());
    if (s == XENT_UNSUPPORTED) Fail("XENT_UNSUPPORTED: %s", xent_last_error_message());
    for (size_t i = 0; i < call.buffers.size(); ++i)
      if (call.Changed(static_cast<int>(i))) Fail("failed call (%s) changed a buffer", xent_last_error_message());
    return false;
  }
  for (const Arg* a : args)
    if (a->present && a->overflows) Fail("a descriptor whose byte extent passes 2^63 was accepted: %s", Describe(*a).c_str());
  for (const Arg* a : args) {
    if (a->output || a->buffer < 0) continue;
    if (a->present && Count(a->t) == 0) continue;  // a view of no elements (V = 0) addresses no byte of its buffer
    bool written_in_place = false;
    for (const Arg* o : args)
      if (o->output && o->present && o->buffer == a->buffer && SameView(o->t, a->t)) written_in_place = true;
    if (!written_in_place && call.ViewChanged(*a)) {
      std::string views;
      for (const Arg* o : args) views += (o == a ? "\n  modified input " : "\n  ") + Describe(*o);
      Fail("an input was modified:%s", views.c_str());
    }
  }
  return true;
}

// ---- Designs: a consistent set of arguments, before mutations

struct Design {
  int32_t dtype;
  std::vector<int64_t> logits_shape;
  int axis_dim;  // class dimension of logits
  int special_percent;
  double scale;
};

Design DrawDesign(Draw& d, int max_rank, bool allow_empty) {
  static const int32_t kDtypes[] = {XENT_FLOAT16, XENT_BFLOAT16, XENT_FLOAT32, XENT_FLOAT64};
  Design g;
  g.dtype = d.f().PickValueInArray(kDtypes);
  const int rank = d.Int(1, max_rank);
  g.axis_dim = d.Int(0, rank - 1);
  int64_t total = 1;
  for (int i = 0; i < rank; ++i) {
    int64_t n = d.Int(allow_empty ? 0 : 1, 5);
    if (i == g.axis_dim && d.Chance(30)) n = d.Int(0, 3000);  // long rows reach the blocked and lane kernels
    if (total * std::max<int64_t>(n, 1) > 12000) n = 1;
    total *= std::max<int64_t>(n, 1);
    g.logits_shape.push_back(n);
  }
  g.special_percent = d.Chance(70) ? 0 : d.Int(1, 40);
  g.scale = d.f().PickValueInArray({1.0, 8.0, 30.0, 1000.0});
  return g;
}

Arg MakeArg(Call& call, Draw& d, int32_t dtype, const std::vector<int64_t>& shape, bool input, bool output) {
  Arg a;
  a.present = true;
  a.output = output;
  a.t.dtype = dtype;
  a.t.rank = static_cast<int32_t>(shape.size());
  std::copy(shape.begin(), shape.end(), a.t.shape);
  d.Layout(a.t, input);
  (void)call;
  return a;
}

// Places every argument (after mutations), fills inputs, snapshots. Returns false when the call is skipped.
bool Place(Call& call, std::vector<Arg*> args) {
  for (Arg* a : args) {
    if (!a->present) continue;
    call.Place(*a);
    if (a->null_data) a->t.data = nullptr, a->buffer = -1;
  }
  return !call.skip;
}

void FillFloat(Draw& d, const Arg& a, int special_percent, double scale, bool probabilities) {
  if (a.buffer < 0 || !IsFloat(a.t.dtype)) return;
  for (int64_t i = 0; i < Count(a.t); ++i) {
    double v = d.Value(special_percent, scale);
    if (probabilities && !d.Rng(5)) v = std::fabs(v) / scale;  // labels are mostly in [0, 1], sometimes not
    Set(a.t, i, v, 0);
  }
}

// Makes `out` the very view of `in` (an in-place request), sharing its buffer.
void Alias(Arg& out, const Arg& in) {
  out.t = in.t;
  out.buffer = in.buffer;
  out.present = in.present;
  out.overflows = in.overflows;
  out.null_data = in.null_data;
}

// A hostile alias: out's data inside in's buffer but another view (partial overlap), or the same data with other
// strides.
void Overlap(Call& call, Arg& out, const Arg& in) {
  if (in.buffer < 0 || out.buffer < 0 || call.buffers[in.buffer].size == 0) return;
  out.t.data = call.buffers[in.buffer].bytes.get();
  out.buffer = in.buffer;  // its own exact buffer is left unused; an access through out may run past in's buffer,
                           // which ASan reports: the library must refuse the overlap first
}

const xent_tensor* Ptr(const Arg& a) { return a.present ? &a.t : nullptr; }

// Shape utilities
std::vector<int64_t> Without(const std::vector<int64_t>& shape, size_t dim) {
  std::vector<int64_t> s = shape;
  s.erase(s.begin() + static_cast<std::ptrdiff_t>(dim));
  return s;
}

// Moves dimension `dim` of a row-major Dense to the end (and back with inverse).
Dense MoveToLast(const Dense& x, size_t dim) {
  Dense out{x.shape, std::vector<Real>(x.values.size())};
  const int64_t C = x.shape[dim];
  int64_t inner = 1;
  for (size_t d = dim + 1; d < x.shape.size(); ++d) inner *= x.shape[d];
  const int64_t outer = C && inner ? static_cast<int64_t>(x.values.size()) / (C * inner) : 0;
  out.shape.erase(out.shape.begin() + static_cast<std::ptrdiff_t>(dim));
  out.shape.push_back(C);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < inner; ++i) out.values[(o * inner + i) * C + c] = x.values[(o * C + c) * inner + i];
  return out;
}
std::vector<Real> MoveFromLast(const std::vector<Real>& v, const std::vector<int64_t>& shape, size_t dim) {
  std::vector<Real> out(v.size());
  const int64_t C = shape[dim];
  int64_t inner = 1;
  for (size_t d = dim + 1; d < shape.size(); ++d) inner *= shape[d];
  const int64_t outer = C && inner ? static_cast<int64_t>(v.size()) / (C * inner) : 0;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < inner; ++i) out[(o * C + c) * inner + i] = v[(o * inner + i) * C + c];
  return out;
}

// Axis as passed: the class dimension written as non-negative or negative, or hostile (which may name another
// valid dimension: then the design's reference does not apply, *hostile).
int64_t DrawAxis(Draw& d, int dim, int rank, bool* hostile) {
  if (d.Chance(5)) return *hostile = true, d.HostileInt();
  return d.Chance(50) ? dim : dim - rank;
}

// ---- The dense and sparse ops (xent_softmax_cross_entropy*, xent_sparse_softmax_cross_entropy*, loss_shape)

void FuzzTensorOp(Draw& d, Entry entry) {
  const bool sparse = entry == kSparse || entry == kSparseGrad || (entry == kLossShape && d.Chance(50));
  const bool grad = entry == kDenseGrad || entry == kSparseGrad;
  Design g = DrawDesign(d, 4, true);
  const int rank = static_cast<int>(g.logits_shape.size());
  Call call;
  Arg logits = MakeArg(call, d, g.dtype, g.logits_shape, true, false);
  // Dense labels broadcast against logits (either side may be 1, or labels of lower or higher rank).
  std::vector<int64_t> labels_shape;
  if (sparse) {
    labels_shape = Without(g.logits_shape, g.axis_dim);
  } else {
    labels_shape = g.logits_shape;
    for (auto& n : labels_shape)
      if (d.Chance(15)) n = 1;
    if (d.Chance(10) && !labels_shape.empty()) labels_shape.erase(labels_shape.begin());
    if (d.Chance(10)) labels_shape.insert(labels_shape.begin(), d.Int(0, 3));
    for (int i = 0; i < rank; ++i)  // logits of size 1 broadcast against labels
      if (g.logits_shape[i] == 1 && d.Chance(10)) {
        const size_t at = labels_shape.size() - rank + i;
        if (at < labels_shape.size()) labels_shape[at] = d.Int(0, 4);
      }
  }
  const int32_t index_dtype = d.Chance(50) ? XENT_INT32 : XENT_INT64;
  Arg labels = MakeArg(call, d, sparse ? index_dtype : g.dtype, labels_shape, true, false);
  // The reference's shapes (for the outputs' descriptors): the dense reference broadcasts.
  bool hostile_axis = false;
  const int64_t axis = DrawAxis(d, g.axis_dim, rank, &hostile_axis);
  std::vector<int64_t> loss_shape;
  {
    const size_t brank = std::max(labels_shape.size(), g.logits_shape.size());
    std::vector<int64_t> b(brank);
    for (size_t i = 0; i < brank; ++i) {
      const auto dim = [&](const std::vector<int64_t>& s) {
        const int64_t k = static_cast<int64_t>(i) - static_cast<int64_t>(brank - s.size());
        return k >= 0 ? s[k] : int64_t{1};
      };
      b[i] = dim(g.logits_shape) == 1 ? dim(labels_shape) : dim(g.logits_shape);
    }
    loss_shape = Without(b, brank - rank + g.axis_dim);
  }
  Arg loss = MakeArg(call, d, g.dtype, loss_shape, false, true);
  Arg grad_loss = MakeArg(call, d, g.dtype, loss_shape, true, false);
  Arg grad_logits = MakeArg(call, d, g.dtype, g.logits_shape, false, true);
  Arg grad_labels = MakeArg(call, d, g.dtype, labels_shape, false, true);
  grad_loss.present = grad && d.Chance(50);
  if (grad) {
    loss.present = d.Chance(70);
    grad_logits.present = d.Chance(80);
    grad_labels.present = !sparse && d.Chance(50);
  } else {
    grad_logits.present = grad_labels.present = false;
  }
  std::vector<Arg*> all = {&labels, &logits, &loss, &grad_loss, &grad_logits, &grad_labels};
  bool mutated = hostile_axis;
  if (d.Chance(25)) {
    d.Mutate(*all[d.Int(0, static_cast<int>(all.size()) - 1)]);
    mutated = true;
  }
  if (!Place(call, all)) return;
  const bool in_place_logits = grad && grad_logits.present && d.Chance(20);
  const bool in_place_labels = grad && grad_labels.present && d.Chance(15);
  FillFloat(d, logits, g.special_percent, g.scale, false);
  FillFloat(d, labels, g.special_percent / 2, g.scale, true);
  FillFloat(d, grad_loss, g.special_percent / 4, 2.0, false);
  if (sparse && labels.buffer >= 0 && !IsFloat(labels.t.dtype) && DtypeSize(labels.t.dtype)) {
    const int64_t C = g.logits_shape[g.axis_dim];
    const bool bad = d.Chance(10);
    const int64_t hostile = d.HostileInt();
    for (int64_t i = 0; i < Count(labels.t); ++i)
      Set(labels.t, i, 0, bad && d.Rng(30) ? hostile : C > 0 ? d.Index(0, C - 1) : 0);
  }
  if (in_place_logits) Alias(grad_logits, logits);
  if (in_place_labels) Alias(grad_labels, labels);
  if (d.Chance(5)) Overlap(call, d.Chance(50) ? grad_logits : loss, d.Chance(50) ? logits : labels), mutated = true;
  const bool hostile_sizes = mutated;
  // Inputs as the descriptors address them, read before the call (an in-place call overwrites them).
  const bool readable = logits.buffer >= 0 && labels.buffer >= 0 && logits.present && labels.present;
  Dense x, y;
  std::vector<int64_t> indices;
  if (readable && IsFloat(logits.t.dtype)) {
    x = Read(logits.t);
    if (sparse && !IsFloat(labels.t.dtype) && DtypeSize(labels.t.dtype))
      for (int64_t i = 0; i < Count(labels.t); ++i) indices.push_back(GetIndex(labels.t, i));
    else if (IsFloat(labels.t.dtype)) y = Read(labels.t);
  }
  const std::vector<Real> gl = ValuesOf(grad_loss);
  call.Snapshot();

  xent_status s;
  int32_t shape_rank = -1;
  int64_t shape_out[XENT_MAX_RANK];
  std::vector<const Arg*> args = {&labels, &logits};
  switch (entry) {
    case kDense: s = xent_softmax_cross_entropy(Ptr(labels), Ptr(logits), axis, Ptr(loss)); args.push_back(&loss); break;
    case kSparse:
      s = xent_sparse_softmax_cross_entropy(Ptr(labels), Ptr(logits), axis, Ptr(loss));
      args.push_back(&loss);
      break;
    case kDenseGrad:
      s = xent_softmax_cross_entropy_grad(Ptr(labels), Ptr(logits), axis, Ptr(grad_loss), Ptr(loss), Ptr(grad_logits),
                                          Ptr(grad_labels));
      args.insert(args.end(), {&grad_loss, &loss, &grad_logits, &grad_labels});
      break;
    case kSparseGrad:
      s = xent_sparse_softmax_cross_entropy_grad(Ptr(labels), Ptr(logits), axis, Ptr(grad_loss), Ptr(loss),
                                                 Ptr(grad_logits));
      args.insert(args.end(), {&grad_loss, &loss, &grad_logits});
      break;
    default:
      s = xent_loss_shape(Ptr(labels), Ptr(logits), axis, d.Chance(3) ? nullptr : &shape_rank, shape_out);
      break;
  }
  if (!CheckStatus(call, s, args, hostile_sizes)) return;
  if (!readable || mutated || x.shape.empty()) return;  // the reference below models the design's shapes only

  const int64_t C = g.logits_shape[g.axis_dim];
  if (entry == kLossShape) {  // the query reads no values (labels outside [0, C) included): its shape alone
    Dense y_shape{sparse ? g.logits_shape : labels_shape, {}};
    y_shape.values.assign(static_cast<size_t>(xent::test::count(y_shape.shape)), 0);
    const xent::test::Reference ref = xent::test::reference(y_shape, x, static_cast<int>(g.axis_dim), {});
    if (shape_rank != static_cast<int32_t>(ref.loss_shape.size()) ||
        !std::equal(ref.loss_shape.begin(), ref.loss_shape.end(), shape_out))
      Fail("xent_loss_shape: wrong shape");
    return;
  }
  if (sparse) {  // one-hot labels in logits' shape: the sparse op is the dense op on them
    for (int64_t t : indices)
      if (t < 0 || t >= C) Fail("label %lld outside [0, %lld) accepted", static_cast<long long>(t), static_cast<long long>(C));
    y = Dense{g.logits_shape, std::vector<Real>(x.values.size(), 0)};
    int64_t inner = 1;
    for (int i = g.axis_dim + 1; i < rank; ++i) inner *= g.logits_shape[i];
    for (size_t r = 0; r < indices.size(); ++r) {
      const int64_t o = static_cast<int64_t>(r) / inner, i = static_cast<int64_t>(r) % inner;
      y.values[(o * C + indices[r]) * inner + i] = 1;
    }
  }
  Note("logits", x), Note("labels", y), Note("grad_loss", Dense{{}, gl});
  g_infinite_labels = std::any_of(y.values.begin(), y.values.end(), [](Real v) { return std::isinf(v); }) ||
                      std::any_of(gl.begin(), gl.end(), [](Real v) { return std::isinf(v); });
  g_underflow_scale = std::max<Real>(1, FiniteAbsMax(gl, false)) * std::max<Real>(1, FiniteAbsMax(y.values, true));
  if (g_verbose)
    g_inputs += "entry " + std::string(kEntryNames[entry]) + " axis " + std::to_string(axis) + "\n  logits " +
                Describe(logits) + "\n  labels " + Describe(labels) + "\n  loss " + Describe(loss) + "\n  grad_logits " +
                Describe(grad_logits) + "\n";
  const xent::test::Reference ref = xent::test::reference(y, x, static_cast<int>(g.axis_dim), gl);
  NoteRange(ref, g.dtype);
  if (loss.present) {
    ExpectShape(loss.t, ref.loss_shape, "loss");
    ExpectMatches(loss.t, ref.loss, "loss");
  }
  if (grad_logits.present) ExpectMatches(grad_logits.t, ref.grad_logits, "grad_logits");
  if (grad_labels.present) ExpectMatches(grad_labels.t, ref.grad_labels, "grad_labels");
}

// ---- Options (xent_cross_entropy*, the sharded stages, the fused linear op)

struct Options {
  xent_loss_options o = xent_default_loss_options();
  xent::test::LossOptions ref;
  bool hostile = false;
  bool present = true;
};

Options DrawOptions(Draw& d, int64_t C, bool indices) {
  Options p;
  p.present = !d.Chance(3);
  p.o.reduction = d.Int(0, 2);
  if (d.Chance(2)) p.o.reduction = d.Int(-2, 9), p.hostile = true;
  p.o.ignore_index = d.Chance(50) ? -100 : d.Chance(50) ? (C > 0 ? d.Int(0, static_cast<int>(C) - 1) : 0) : d.HostileInt();
  if (d.Chance(30)) p.o.label_smoothing = d.f().PickValueInArray({0.1, 0.5, 1.0, 0.01});
  if (d.Chance(25)) p.o.z_loss = d.f().PickValueInArray({1e-4, 0.01, 1.0});
  if (d.Chance(25)) p.o.softcap = d.f().PickValueInArray({1.0, 5.0, 30.0, 1e-3});
  if (d.Chance(3)) {
    p.hostile = true;
    const double bad[] = {-0.1, 1.5, NAN, INFINITY, -INFINITY, -1.0};
    switch (d.Int(0, 2)) {
      case 0: p.o.label_smoothing = d.f().PickValueInArray(bad); break;
      case 1: p.o.z_loss = d.f().PickValueInArray(bad); break;
      default: p.o.softcap = d.f().PickValueInArray(bad); break;
    }
  }
  p.ref.ignore_index = p.o.ignore_index;
  p.ref.has_ignore = indices;
  p.ref.reduction = p.o.reduction;
  p.ref.label_smoothing = p.o.label_smoothing;
  p.ref.z_loss = p.o.z_loss;
  p.ref.softcap = p.o.softcap;
  (void)C;
  return p;
}

// Class weights [C] as an argument (placed by the caller) and their values into the reference's options.
void FillWeight(Draw& d, const Arg& weight, Options& p) {
  if (!weight.present || weight.buffer < 0 || !IsFloat(weight.t.dtype)) return;
  for (int64_t i = 0; i < Count(weight.t); ++i) Set(weight.t, i, d.Weight(), 0);
  p.ref.weight = Read(weight.t).values;
}

// Class indices for `rows` rows of C classes: valid, ignore_index, sometimes out of range.
void FillIndices(Draw& d, const Arg& target, int64_t C, const Options& p, bool allow_bad) {
  if (target.buffer < 0 || IsFloat(target.t.dtype) || DtypeSize(target.t.dtype) == 0) return;
  const int64_t hostile = d.HostileInt();
  const int bad_percent = allow_bad && d.Chance(10) ? 30 : 0;
  for (int64_t i = 0; i < Count(target.t); ++i) {
    int64_t t = C > 0 ? d.Index(0, C - 1) : p.o.ignore_index;
    if (d.Rng(10)) t = p.o.ignore_index;
    if (d.Rng(bad_percent)) t = hostile;
    Set(target.t, i, 0, t);
  }
}

std::vector<int64_t> ReadIndices(const xent_tensor& t) {
  std::vector<int64_t> v;
  if (t.dtype != XENT_INT32 && t.dtype != XENT_INT64) return v;  // a mutated dtype: the call must refuse it
  for (int64_t i = 0; i < Count(t); ++i) v.push_back(GetIndex(t, i));
  return v;
}

bool IndicesValid(const std::vector<int64_t>& t, int64_t C, int64_t ignore) {
  for (int64_t v : t)
    if (v != ignore && (v < 0 || v >= C)) return false;
  return true;
}

void FuzzCrossEntropy(Draw& d, Entry entry) {
  const bool grad = entry == kCrossGrad;
  const bool indices = d.Chance(60);
  Design g = DrawDesign(d, 4, true);
  const int rank = static_cast<int>(g.logits_shape.size());
  const int64_t C = g.logits_shape[g.axis_dim];
  Call call;
  Options p = DrawOptions(d, C, indices);
  Arg logits = MakeArg(call, d, g.dtype, g.logits_shape, true, false);
  std::vector<int64_t> target_shape = indices ? Without(g.logits_shape, g.axis_dim) : g.logits_shape;
  if (!indices)
    for (auto& n : target_shape)
      if (d.Chance(10)) n = 1;  // broadcast probabilities
  Arg target = MakeArg(call, d, indices ? (d.Chance(50) ? XENT_INT32 : XENT_INT64) : g.dtype, target_shape, true, false);
  Arg weight = MakeArg(call, d, g.dtype, {C}, true, false);
  weight.present = d.Chance(30);
  const std::vector<int64_t> rows_shape = Without(g.logits_shape, g.axis_dim);
  const std::vector<int64_t> loss_shape = p.o.reduction == XENT_REDUCTION_NONE ? rows_shape : std::vector<int64_t>{};
  Arg loss = MakeArg(call, d, g.dtype, loss_shape, false, true);
  Arg grad_loss = MakeArg(call, d, g.dtype, loss_shape, true, false);
  Arg grad_logits = MakeArg(call, d, g.dtype, g.logits_shape, false, true);
  grad_loss.present = grad && d.Chance(50);
  loss.present = !grad || d.Chance(70);
  grad_logits.present = grad && d.Chance(85);
  bool hostile_axis = false;
  const int64_t axis = DrawAxis(d, g.axis_dim, rank, &hostile_axis);
  std::vector<Arg*> all = {&logits, &target, &weight, &loss, &grad_loss, &grad_logits};
  bool mutated = p.hostile || hostile_axis;
  if (d.Chance(25)) {
    d.Mutate(*all[d.Int(0, static_cast<int>(all.size()) - 1)]);
    mutated = true;
  }
  if (!Place(call, all)) return;
  FillFloat(d, logits, g.special_percent, g.scale, false);
  FillFloat(d, target, g.special_percent / 2, g.scale, true);
  FillFloat(d, grad_loss, g.special_percent / 4, 2.0, false);
  FillIndices(d, target, C, p, true);
  FillWeight(d, weight, p);
  if (grad && grad_logits.present && d.Chance(20)) Alias(grad_logits, logits);
  if (d.Chance(4)) Overlap(call, d.Chance(50) ? grad_logits : loss, d.Chance(50) ? logits : target), mutated = true;
  p.o.weight = Ptr(weight);
  const bool readable = logits.buffer >= 0 && target.buffer >= 0 && IsFloat(logits.t.dtype) &&
                        DtypeSize(target.t.dtype) != 0;
  Dense x, y;
  std::vector<int64_t> t;
  if (readable) {
    x = Read(logits.t);
    if (IsFloat(target.t.dtype)) y = Read(target.t);
    else t = ReadIndices(target.t);
  }
  const std::vector<Real> gl = ValuesOf(grad_loss);
  call.Snapshot();

  xent_status s;
  int32_t shape_rank = -1;
  int64_t shape_out[XENT_MAX_RANK];
  const xent_loss_options* options = p.present ? &p.o : nullptr;
  std::vector<const Arg*> args = {&logits, &target, &weight};
  if (entry == kCross) {
    s = xent_cross_entropy(Ptr(logits), Ptr(target), axis, options, Ptr(loss));
    args.push_back(&loss);
  } else if (entry == kCrossGrad) {
    s = xent_cross_entropy_grad(Ptr(logits), Ptr(target), axis, options, Ptr(grad_loss), Ptr(loss), Ptr(grad_logits));
    args.insert(args.end(), {&grad_loss, &loss, &grad_logits});
  } else {
    s = xent_cross_entropy_loss_shape(Ptr(logits), Ptr(target), axis, options, &shape_rank, shape_out);
  }
  if (!CheckStatus(call, s, args, mutated)) return;
  if (!readable || mutated || !p.present) return;
  if (entry == kCrossLossShape) {  // the query reads no values (targets outside [0, C) included): its shape alone
    if (shape_rank != static_cast<int32_t>(loss_shape.size()) ||
        !std::equal(loss_shape.begin(), loss_shape.end(), shape_out))
      Fail("xent_cross_entropy_loss_shape: wrong shape");
    return;
  }
  if (!indices) {  // probabilities broadcast to logits' shape
    Dense full{g.logits_shape, std::vector<Real>(x.values.size())};
    std::vector<int64_t> index(rank);
    for (size_t i = 0; i < full.values.size(); ++i) {
      for (int64_t r = static_cast<int64_t>(i), k = rank - 1; k >= 0; --k) index[k] = r % g.logits_shape[k], r /= g.logits_shape[k];
      full.values[i] = y.values[xent::test::broadcast_index(y.shape, index)];
    }
    y = MoveToLast(full, g.axis_dim);
  } else if (!IndicesValid(t, C, p.o.ignore_index)) {
    Fail("a target outside [0, %lld) accepted", static_cast<long long>(C));
  }
  const Dense xl = MoveToLast(x, g.axis_dim);
  if (xl.values.empty() && C == 0 && !rows_shape.empty() && xent::test::count(rows_shape) > 0) {
    // C = 0 with rows: the reference has no rows to walk (count/C); the op's rows are all 0 + z-loss terms of
    // empty rows (none): every loss 0, MEAN over their weights.
    return;
  }
  g_infinite_labels = std::any_of(y.values.begin(), y.values.end(), [](Real v) { return std::isinf(v); }) ||
                      std::any_of(gl.begin(), gl.end(), [](Real v) { return std::isinf(v); });
  g_underflow_scale = std::max<Real>(1, FiniteAbsMax(gl, false)) *
                      std::max<Real>(1, indices ? FiniteAbsMax(p.ref.weight, false) : FiniteAbsMax(y.values, true)) *
                      (1 + 4 * p.o.z_loss * 1e4);
  if (g_verbose) {
    Note("logits (class axis last)", xl), Note("probabilities", y), Note("grad_loss", Dense{{}, gl});
    g_inputs += "entry " + std::string(kEntryNames[entry]) + " reduction " + std::to_string(p.o.reduction) +
                " ignore " + std::to_string(p.o.ignore_index) + " smoothing " + std::to_string(p.o.label_smoothing) +
                " z " + std::to_string(p.o.z_loss) + " softcap " + std::to_string(p.o.softcap) + " weights " +
                std::to_string(p.ref.weight.size()) + " targets";
    for (int64_t v : t) g_inputs += " " + std::to_string(v);
    g_inputs += "\n";
  }
  const xent::test::Reference ref =
      xent::test::reference_options(xl, indices ? &t : nullptr, indices ? nullptr : &y, p.ref, gl);
  NoteRange(ref, g.dtype);
  if (loss.present) ExpectMatches(loss.t, ref.loss, "loss", 24);
  if (grad_logits.present) {
    Expected back{MoveFromLast(ref.grad_logits.value, g.logits_shape, g.axis_dim),
                  MoveFromLast(ref.grad_logits.magnitude, g.logits_shape, g.axis_dim)};
    ExpectMatches(grad_logits.t, back, "grad_logits", 24);
  }
}

bool SameBytes(const std::vector<xent_row_statistics>& a, const std::vector<xent_row_statistics>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof a[0]) == 0);
}

// ---- The sharded stages: statistics on each shard, merge (or MAX, rebase, SUM), finish on each shard

void FuzzShards(Draw& d) {
  static const int32_t kDtypes[] = {XENT_FLOAT16, XENT_BFLOAT16, XENT_FLOAT32, XENT_FLOAT64};
  const int32_t dtype = d.f().PickValueInArray(kDtypes);
  const bool indices = d.Chance(60);
  const int64_t rows = d.Int(0, 6), V = d.Chance(20) ? d.Int(0, 2000) : d.Int(0, 12);
  const int shards = d.Int(1, 3);
  std::vector<int64_t> start(shards + 1, 0);
  for (int k = 1; k < shards; ++k) start[k] = d.Index(0, V);
  start[shards] = V;
  std::sort(start.begin(), start.end());
  Options p = DrawOptions(d, V, indices);
  const int special = d.Chance(70) ? 0 : d.Int(1, 30);
  const double scale = d.f().PickValueInArray({1.0, 8.0, 100.0});
  const bool use_rebase = d.Chance(40), grad = d.Chance(80);
  // The whole vocabulary's logits [rows, V] (shards are column ranges of it) and target.
  Call call;
  std::vector<Arg> logits(shards), probs(shards), weight(shards), grad_logits(shards), loss(shards);
  Arg target = MakeArg(call, d, indices ? XENT_INT64 : dtype, {rows}, true, false);
  if (!indices) target.present = false;
  const std::vector<int64_t> loss_shape = p.o.reduction == XENT_REDUCTION_NONE ? std::vector<int64_t>{rows}
                                                                              : std::vector<int64_t>{};
  Arg grad_loss = MakeArg(call, d, dtype, loss_shape, true, false);
  grad_loss.present = grad && d.Chance(40);
  const bool has_weight = d.Chance(30);
  std::vector<Arg*> all = {&target, &grad_loss};
  for (int k = 0; k < shards; ++k) {
    const int64_t Ck = start[k + 1] - start[k];
    logits[k] = MakeArg(call, d, dtype, {rows, Ck}, true, false);
    probs[k] = MakeArg(call, d, dtype, {rows, Ck}, true, false);
    probs[k].present = !indices;
    weight[k] = MakeArg(call, d, dtype, {Ck}, true, false);
    weight[k].present = has_weight;
    grad_logits[k] = MakeArg(call, d, dtype, {rows, Ck}, false, true);
    grad_logits[k].present = grad;
    loss[k] = MakeArg(call, d, dtype, loss_shape, false, true);
    for (Arg* a : {&logits[k], &probs[k], &weight[k], &grad_logits[k], &loss[k]}) all.push_back(a);
  }
  // A hostile change to one call's scalars or descriptors.
  const int hostile_call = d.Chance(25) ? d.Int(0, 3) : -1;  // 0 statistics, 1 combine, 2 finish, 3 a descriptor
  const int hostile_shard = d.Int(0, shards - 1);
  if (hostile_call == 3) d.Mutate(*all[d.Int(0, static_cast<int>(all.size()) - 1)]);
  if (!Place(call, all)) return;
  for (int k = 0; k < shards; ++k) {
    FillFloat(d, logits[k], special, scale, false);
    FillFloat(d, probs[k], special / 2, scale, true);
  }
  FillFloat(d, grad_loss, 0, 2.0, false);
  FillIndices(d, target, V, p, true);
  // A hostile layout (Draw::Layout) may leave a descriptor unaddressable: then the calls must fail.
  const bool mutated = p.hostile || hostile_call >= 0 ||
                       std::any_of(all.begin(), all.end(), [](const Arg* a) { return a->present && a->buffer < 0; });
  // Reference inputs: the gathered logits, probabilities and weights.
  Dense x{{rows, V}, std::vector<Real>(static_cast<size_t>(rows * V))}, y = x;
  std::vector<Real> w;
  for (int k = 0; k < shards; ++k) {
    if (has_weight && weight[k].buffer >= 0 && IsFloat(weight[k].t.dtype))
    {
      // Read after filling: a broadcast view (stride 0) holds one value, the last written.
      for (int64_t j = 0; j < Count(weight[k].t); ++j) Set(weight[k].t, j, d.Weight(), 0);
      for (int64_t j = 0; j < Count(weight[k].t); ++j) w.push_back(Get(weight[k].t, j));
    }
    if (mutated) continue;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = start[k]; j < start[k + 1]; ++j) {
        x.values[i * V + j] = Get(logits[k].t, i * (start[k + 1] - start[k]) + (j - start[k]));
        if (!indices) y.values[i * V + j] = Get(probs[k].t, i * (start[k + 1] - start[k]) + (j - start[k]));
      }
  }
  if (has_weight) p.ref.weight = w;
  std::vector<int64_t> t;
  if (indices && target.buffer >= 0) t = ReadIndices(target.t);
  const std::vector<Real> gl = ValuesOf(grad_loss);

  const xent_loss_options* options = p.present ? &p.o : nullptr;
  std::vector<std::vector<xent_row_statistics>> stats(shards);
  std::vector<double> denominators(shards, 0);
  for (int k = 0; k < shards; ++k) {
    p.o.weight = Ptr(weight[k]);
    int64_t vs = start[k], vsize = V, r = rows;
    bool null_stats = false;
    if (hostile_call == 0 && k == hostile_shard) {
      switch (d.Int(0, 3)) {
        case 0: vs = d.HostileInt(); break;
        case 1: vsize = d.HostileInt(); break;
        case 2: r = d.HostileInt(); break;
        default: null_stats = true; break;
      }
    }
    // Statistics in a buffer of exactly `rows` entries (ASan checks the call writes no more).
    stats[k].assign(static_cast<size_t>(rows), xent_row_statistics{1.5, 2.5, 3.5, 4.5});
    const std::vector<xent_row_statistics> stats_before = stats[k];
    double denominator = -7;
    call.Snapshot();
    const xent_tensor* targ = indices ? Ptr(target) : Ptr(probs[k]);
    if (g_verbose)
      std::fprintf(stderr, "xent_shard_statistics(%s, %s, weight %s, start %lld size %lld rows %lld)\n",
                   Describe(logits[k]).c_str(), Describe(indices ? target : probs[k]).c_str(),
                   Describe(weight[k]).c_str(), static_cast<long long>(vs), static_cast<long long>(vsize),
                   static_cast<long long>(r));
    const xent_status s = xent_shard_statistics(Ptr(logits[k]), targ, -1, options, vs, vsize, r,
                                                null_stats ? nullptr : stats[k].data(), &denominator);
    if (!CheckStatus(call, s, {&logits[k], &probs[k], &weight[k], &target}, mutated)) {
      if (!SameBytes(stats[k], stats_before) ||
          denominator != -7)
        Fail("failed xent_shard_statistics wrote its outputs");
      return;
    }
    denominators[k] = denominator;
  }
  // Combine.
  std::vector<xent_row_statistics> merged = stats[0];
  double denominator = 0;
  for (double v : denominators) denominator += v;
  int64_t combine_rows = rows;
  // A count the statistics do not hold cannot be detected: hostile counts are negative, or a valid prefix.
  if (hostile_call == 1) combine_rows = d.f().PickValueInArray({int64_t{-1}, std::numeric_limits<int64_t>::min(),
                                                                 rows > 0 ? rows - 1 : 0});
  if (use_rebase) {
    std::vector<double> max(static_cast<size_t>(rows), -INFINITY);
    for (int k = 0; k < shards; ++k)
      for (int64_t i = 0; i < rows; ++i) max[i] = std::max(max[i], stats[k][i].max);
    for (int64_t i = 0; i < rows; ++i)
      if (std::any_of(stats.begin(), stats.end(), [&](const auto& s) { return std::isnan(s[i].max); })) max[i] = NAN;
    for (int k = 0; k < shards; ++k) {
      const auto before = stats[k];
      const xent_status s = xent_rebase_row_statistics(stats[k].data(), max.data(), combine_rows);
      if (s != XENT_OK) {
        if (combine_rows >= 0) Fail("xent_rebase_row_statistics failed on valid rows: %s", xent_last_error_message());
        if (!SameBytes(before, stats[k]))
          Fail("failed xent_rebase_row_statistics wrote");
        return;
      }
      if (combine_rows != rows && combine_rows > 0) return;  // rebased a prefix: nothing more to check
    }
    for (int64_t i = 0; i < rows; ++i) {
      xent_row_statistics sum{0, 0, 0, 0};
      for (int k = 0; k < shards; ++k)
        sum.sum += stats[k][i].sum, sum.label_sum += stats[k][i].label_sum, sum.label_dot += stats[k][i].label_dot;
      sum.max = max[i];
      merged[i] = sum;
    }
  } else {
    for (int k = 1; k < shards; ++k) {
      const auto before = merged;
      const xent_status s = xent_merge_row_statistics(merged.data(), stats[k].data(), combine_rows);
      if (s != XENT_OK) {
        if (combine_rows >= 0) Fail("xent_merge_row_statistics failed on valid rows: %s", xent_last_error_message());
        if (!SameBytes(before, merged))
          Fail("failed xent_merge_row_statistics wrote");
        return;
      }
      if (combine_rows != rows) return;
    }
  }
  // Finish on each shard and compare with the reference on the gathered logits.
  xent::test::Reference ref;
  const bool compare = !mutated && p.present && !(V == 0 && rows > 0) && (indices || !y.values.empty() || rows == 0);
  if (compare) {
    if (indices && !IndicesValid(t, V, p.o.ignore_index)) Fail("xent_shard_statistics accepted a target outside [0, V)");
    g_infinite_labels = (!indices && std::any_of(y.values.begin(), y.values.end(), [](Real v) { return std::isinf(v); })) ||
                        std::any_of(gl.begin(), gl.end(), [](Real v) { return std::isinf(v); });
    g_underflow_scale = std::max<Real>(1, FiniteAbsMax(gl, false)) *
                        std::max<Real>(1, indices ? FiniteAbsMax(p.ref.weight, false) : FiniteAbsMax(y.values, true)) *
                        (1 + 4 * p.o.z_loss * 1e4);
    if (g_verbose) {
      Note("logits", x), Note("probabilities", y), Note("grad_loss", Dense{{}, gl});
      Note("weights", Dense{{}, p.ref.weight});
      g_inputs += "shards at";
      for (int64_t v : start) g_inputs += " " + std::to_string(v);
      g_inputs += std::string(use_rebase ? " rebase" : " merge") + " reduction " + std::to_string(p.o.reduction) +
                  " ignore " + std::to_string(p.o.ignore_index) + " smoothing " + std::to_string(p.o.label_smoothing) +
                  " z " + std::to_string(p.o.z_loss) + " softcap " + std::to_string(p.o.softcap) + " targets";
      for (int64_t v : t) g_inputs += " " + std::to_string(v);
      g_inputs += "\n";
    }
    ref = xent::test::reference_options(x, indices ? &t : nullptr, indices ? nullptr : &y, p.ref, gl);
    NoteRange(ref, dtype);
  }
  for (int k = 0; k < shards; ++k) {
    p.o.weight = Ptr(weight[k]);
    int64_t vs = start[k], vsize = V, r = rows;
    const xent_row_statistics* m = merged.data();
    if (hostile_call == 2 && k == hostile_shard) {
      switch (d.Int(0, 3)) {
        case 0: vs = d.HostileInt(); break;
        case 1: vsize = d.HostileInt(); break;
        case 2: r = d.HostileInt(); break;
        default: m = nullptr; break;
      }
    }
    call.Snapshot();
    const xent_tensor* targ = indices ? Ptr(target) : Ptr(probs[k]);
    const xent_status s = xent_shard_finish(Ptr(logits[k]), targ, -1, options, vs, vsize, r, m, denominator,
                                            Ptr(grad_loss), Ptr(loss[k]), Ptr(grad_logits[k]));
    if (!CheckStatus(call, s, {&logits[k], &probs[k], &weight[k], &target, &grad_loss, &loss[k], &grad_logits[k]},
                     mutated))
      return;
    if (!compare) continue;
    ExpectMatches(loss[k].t, ref.loss, "shard loss", 32);
    if (grad) {
      const int64_t Ck = start[k + 1] - start[k];
      Expected part;
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = start[k]; j < start[k + 1]; ++j) {
          part.value.push_back(ref.grad_logits.value[i * V + j]);
          part.magnitude.push_back(ref.grad_logits.magnitude[i * V + j]);
        }
      (void)Ck;
      ExpectMatches(grad_logits[k].t, part, "shard grad_logits", 32);
    }
  }
}

// ---- The fused linear + cross-entropy, whole or sharded over the vocabulary

// Tolerance of the products: each logit is off by up to ~H·eps·Σ_k|h_k·w_k| (+|b|); a loss moves by at most
// (Σ|a| + Σ|a|·p + z-loss) times the largest such error, a gradient of the logits by g·(Σ|a| + z)·2·that error.
struct LinearReference {
  xent::test::Reference ref;
  std::vector<Real> dlogits_error;  // per row: bound on each dlogit's error from the logits' error
  std::vector<Real> loss_extra;     // per loss element
  std::vector<Real> grad_input, grad_input_extra, grad_weight, grad_weight_extra, grad_bias, grad_bias_extra;
  std::vector<Real> grad_input_mag, grad_weight_mag, grad_bias_mag;
  // Some product Σ|h·w| + |b| near the compute type's largest value: the GEMM's accumulation may overflow to inf
  // (an error of the products, within the stated bound), and the loss with it; nothing is compared then.
  bool products_overflow = false;
};

LinearReference LinearRef(const Dense& h, const Dense& W, const std::vector<Real>& b, const std::vector<int64_t>& t,
                          const Options& p, const std::vector<Real>& gl, int32_t dtype) {
  const int64_t N = static_cast<int64_t>(t.size()), V = W.shape[0], H = W.shape[1];
  Dense logits{{N, V}, std::vector<Real>(static_cast<size_t>(N * V))};
  std::vector<Real> row_err(static_cast<size_t>(N), 0);
  bool overflow = false;
  const Real eps = ComputeEps(dtype) * (H + 4);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < V; ++j) {
      Real s = b.empty() ? 0 : b[j], m = b.empty() ? 0 : std::fabs(b[j]);
      for (int64_t k = 0; k < H; ++k) s += h.values[i * H + k] * W.values[j * H + k], m += std::fabs(h.values[i * H + k] * W.values[j * H + k]);
      logits.values[i * V + j] = s;
      row_err[i] = std::max(row_err[i], 4 * eps * m);
      overflow |= m > (dtype == XENT_FLOAT64 ? 1e300L : 1e37L);
    }
  LinearReference out;
  out.products_overflow = overflow;
  out.ref = xent::test::reference_options(logits, &t, nullptr, p.ref, gl);
  NoteRange(out.ref, dtype);
  Real wmax = 1;
  for (Real w : p.ref.weight) wmax = std::max(wmax, std::fabs(w));
  const Real z = 2 * p.ref.z_loss;
  std::vector<Real> g(static_cast<size_t>(N), 1);
  Real lmax = 0;
  for (Real v : logits.values) lmax = std::isfinite(v) ? std::max(lmax, std::fabs(v)) : lmax;
  const Real factor = 4 * wmax + z * (lmax + std::log(static_cast<Real>(V) + 1) + 1) * 4;
  Real denom = 0;
  for (int64_t i = 0; i < N; ++i)
    if (!(p.ref.has_ignore && t[i] == p.ref.ignore_index)) denom += p.ref.weight.empty() ? 1 : p.ref.weight[t[i]];
  for (int64_t i = 0; i < N; ++i) {
    if (p.ref.reduction == 0) g[i] = gl.empty() ? 1 : std::fabs(gl[i]);
    else g[i] = (gl.empty() ? 1 : std::fabs(gl[0])) / (p.ref.reduction == 2 ? (denom == 0 ? 1 : std::fabs(denom)) : 1);
  }
  out.dlogits_error.resize(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) out.dlogits_error[i] = g[i] * factor * 2 * row_err[i];
  if (p.ref.reduction == 0) {
    for (int64_t i = 0; i < N; ++i) out.loss_extra.push_back(factor * row_err[i]);
  } else {
    Real e = 0;
    for (int64_t i = 0; i < N; ++i) e += factor * row_err[i];
    out.loss_extra.push_back(p.ref.reduction == 2 && denom != 0 ? e / std::fabs(denom) : e);
  }
  const auto& dl = out.ref.grad_logits;
  const Real ce = 16 * ComputeEps(dtype);
  out.grad_input.assign(static_cast<size_t>(N * H), 0), out.grad_input_mag = out.grad_input_extra = out.grad_input;
  out.grad_weight.assign(static_cast<size_t>(V * H), 0), out.grad_weight_mag = out.grad_weight_extra = out.grad_weight;
  out.grad_bias.assign(static_cast<size_t>(V), 0), out.grad_bias_mag = out.grad_bias_extra = out.grad_bias;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < V; ++j) {
      // float16/bfloat16: the gradient products take dlogits rounded to the dtype (the GEMM's operand type).
      const Real operand_eps = dtype == XENT_FLOAT16 || dtype == XENT_BFLOAT16 ? StorageEps(dtype) : 0;
      const Real d = dl.value[i * V + j],
                 dm = dl.magnitude[i * V + j] * ce + out.dlogits_error[i] + std::fabs(d) * (eps + operand_eps);
      for (int64_t k = 0; k < H; ++k) {
        out.grad_input[i * H + k] += d * W.values[j * H + k];
        out.grad_input_extra[i * H + k] += dm * std::fabs(W.values[j * H + k]) + std::fabs(d * W.values[j * H + k]) * eps;
        out.grad_weight[j * H + k] += d * h.values[i * H + k];
        out.grad_weight_extra[j * H + k] += dm * std::fabs(h.values[i * H + k]) + std::fabs(d * h.values[i * H + k]) * eps;
      }
      out.grad_bias[j] += d;
      out.grad_bias_extra[j] += dm + std::fabs(d) * eps;
    }
  return out;
}

// Whether the fused op would compute more logits (input's rows × W's rows) than kMaxElements: a mutated W or input
// of no elements (H = 0) may have 2^40 rows, a valid call that runs for hours, too slow to fuzz.
bool TooMuchWork(const Arg& input, const Arg& W) {
  if (!input.present || !W.present || W.t.rank != 2 || input.t.rank < 1 || input.t.rank > XENT_MAX_RANK) return false;
  if (W.t.shape[0] <= 0) return false;
  for (int d = 0; d + 1 < input.t.rank; ++d)
    if (input.t.shape[d] <= 0) return false;  // no rows (or an invalid shape): no logits
  __int128 logits = W.t.shape[0];
  for (int d = 0; d + 1 < input.t.rank && logits <= kMaxElements; ++d) logits *= input.t.shape[d];
  return logits > kMaxElements;
}

void FuzzLinear(Draw& d, Entry entry) {
  static const int32_t kDtypes[] = {XENT_FLOAT16, XENT_BFLOAT16, XENT_FLOAT32, XENT_FLOAT64};
  const int32_t dtype = d.f().PickValueInArray(kDtypes);
  const bool grad = entry != kLinear;
  const bool sharded = entry == kLinearShards;
  std::vector<int64_t> lead;
  for (int i = d.Int(0, 2); i > 0; --i) lead.push_back(d.Int(0, 4));
  const int64_t H = d.Int(0, 9), V = d.Chance(15) ? d.Int(0, 600) : d.Int(0, 12);
  int64_t N = 1;
  for (int64_t n : lead) N *= n;
  std::vector<int64_t> input_shape = lead;
  input_shape.push_back(H);
  Options p = DrawOptions(d, V, true);
  if (d.Chance(20)) xent_set_linear_chunk_bytes(d.f().PickValueInArray({int64_t{1}, int64_t{256}, int64_t{4096}}));
  else xent_set_linear_chunk_bytes(0);
  Call call;
  Arg input = MakeArg(call, d, dtype, input_shape, true, false);
  Arg W = MakeArg(call, d, dtype, {V, H}, true, false);
  Arg bias = MakeArg(call, d, dtype, {V}, true, false);
  bias.present = d.Chance(50);
  Arg target = MakeArg(call, d, d.Chance(50) ? XENT_INT32 : XENT_INT64, lead, true, false);
  Arg weight = MakeArg(call, d, dtype, {V}, true, false);
  weight.present = d.Chance(25);
  const std::vector<int64_t> loss_shape = p.o.reduction == XENT_REDUCTION_NONE ? lead : std::vector<int64_t>{};
  Arg loss = MakeArg(call, d, dtype, loss_shape, false, true);
  Arg grad_loss = MakeArg(call, d, dtype, loss_shape, true, false);
  Arg grad_input = MakeArg(call, d, dtype, input_shape, false, true);
  Arg grad_W = MakeArg(call, d, dtype, {V, H}, false, true);
  Arg grad_bias = MakeArg(call, d, dtype, {V}, false, true);
  grad_loss.present = grad && d.Chance(40);
  loss.present = !grad || d.Chance(70);
  grad_input.present = grad && d.Chance(70);
  grad_W.present = grad && d.Chance(70);
  grad_bias.present = grad && bias.present && d.Chance(70);
  std::vector<Arg*> all = {&input, &W, &bias, &target, &weight, &loss, &grad_loss, &grad_input, &grad_W, &grad_bias};
  bool mutated = p.hostile;
  if (d.Chance(20)) {
    d.Mutate(*all[d.Int(0, static_cast<int>(all.size()) - 1)]);
    mutated = true;
  }
  if (!Place(call, all) || TooMuchWork(input, W)) return;
  FillFloat(d, input, d.Chance(80) ? 0 : 10, 2.0, false);
  FillFloat(d, W, d.Chance(80) ? 0 : 10, 2.0, false);
  FillFloat(d, bias, 0, 2.0, false);
  FillFloat(d, grad_loss, 0, 2.0, false);
  FillIndices(d, target, V, p, true);
  FillWeight(d, weight, p);
  if (d.Chance(4)) {
    Arg& out = d.Chance(50) ? grad_input : grad_W;
    const Arg& in = d.Chance(50) ? input : W;
    // A shard's call sees its rows of W and grad_linear_weight only: an overlap with them can be invisible to it
    // (a shard of no rows of W addresses nothing), and the output's accesses then run past the input's buffer
    // although the call was right to accept it. Every shard sees input and grad_input whole.
    if (!sharded || (&out == &grad_input && &in == &input)) Overlap(call, out, in), mutated = true;
  }
  p.o.weight = Ptr(weight);
  const xent_loss_options* options = p.present ? &p.o : nullptr;
  const bool readable = !mutated && p.present &&
                        std::none_of(all.begin(), all.end(), [](const Arg* a) { return a->present && a->buffer < 0; });
  Dense h, w;
  std::vector<Real> b, gl;
  std::vector<int64_t> t;
  if (readable) {
    h = Read(input.t), w = Read(W.t), t = ReadIndices(target.t);
    h.shape = {N, H};
    if (bias.present) b = Read(bias.t).values;
    gl = ValuesOf(grad_loss);
    Note("input", h), Note("linear_weight", w), Note("linear_bias", Dense{{static_cast<int64_t>(b.size())}, b}),
        Note("grad_loss", Dense{{}, gl});
    if (g_verbose) {
      g_inputs += "target";
      for (int64_t v : t) g_inputs += " " + std::to_string(v);
      g_inputs += "\n";
    }
  }
  call.Snapshot();
  std::vector<const Arg*> args = {&input, &W, &bias, &target, &weight, &loss, &grad_loss, &grad_input, &grad_W,
                                  &grad_bias};
  if (!sharded) {
    const xent_status s =
        grad ? xent_linear_cross_entropy_grad(Ptr(input), Ptr(W), Ptr(bias), Ptr(target), options, Ptr(grad_loss),
                                              Ptr(loss), Ptr(grad_input), Ptr(grad_W), Ptr(grad_bias))
             : xent_linear_cross_entropy(Ptr(input), Ptr(W), Ptr(bias), Ptr(target), options, Ptr(loss));
    if (!CheckStatus(call, s, args, mutated) || !readable) return;
  } else {
    // The vocabulary split in two shards: views of rows of W, bias and weight; grad_input summed here.
    const int64_t split = d.Index(0, V);
    std::vector<xent_row_statistics> stats[2];
    double denominator = 0;
    const auto rows_of = [&](const Arg& a, int k) {
      Arg v = a;
      if (!a.present || a.buffer < 0 || a.t.rank < 1 || a.t.shape[0] != V) return v;  // a mutated one stays as is
      const int64_t lo = k == 0 ? 0 : split, n = k == 0 ? split : V - split;
      v.t.shape[0] = n;
      // (A tensor of no elements, e.g. W [V, 0], may have any strides: its view's data stays where it is.)
      if (lo < a.t.shape[0] && Count(a.t) > 0)
        v.t.data = static_cast<unsigned char*>(a.t.data) + lo * a.t.strides[0] * DtypeSize(a.t.dtype);
      int64_t low = 0, count = 0;
      v.overflows = ExtentOf(v.t, &low, &count) == Extent::kOverflows;  // of the view (fewer rows), not of a
      return v;
    };
    for (int k = 0; k < 2; ++k) {
      stats[k].assign(static_cast<size_t>(N), xent_row_statistics{1, 2, 3, 4});
      Arg Wk = rows_of(W, k), bk = rows_of(bias, k), wk = rows_of(weight, k);
      xent_loss_options o = p.o;
      o.weight = Ptr(wk);
      double part = 0;
      if (g_verbose) {
        std::fprintf(stderr, "xent_linear_shard_statistics(input %s, W %s, bias %s, target %s, weight %s, start %lld, V %lld)\n"
                     "  options %s reduction %d ignore_index %lld smoothing %g z_loss %g softcap %g; chunk bytes %lld\n",
                     Describe(input).c_str(), Describe(Wk).c_str(), Describe(bk).c_str(), Describe(target).c_str(),
                     Describe(wk).c_str(), static_cast<long long>(k == 0 ? 0 : split), static_cast<long long>(V),
                     p.present ? "present" : "NULL", p.o.reduction, static_cast<long long>(p.o.ignore_index),
                     p.o.label_smoothing, p.o.z_loss, p.o.softcap, static_cast<long long>(xent_get_linear_chunk_bytes()));
        for (size_t b = 0; b < call.buffers.size(); ++b)
          std::fprintf(stderr, "  buffer %zu at %p, %zu bytes\n", b, static_cast<void*>(call.buffers[b].bytes.get()),
                       call.buffers[b].size);
      }
      const xent_status s = xent_linear_shard_statistics(Ptr(input), Ptr(Wk), Ptr(bk), Ptr(target), p.present ? &o : nullptr,
                                                         k == 0 ? 0 : split, V, N, stats[k].data(), &part);
      if (!CheckStatus(call, s, {&input, &Wk, &bk, &target, &wk}, mutated)) return;
      denominator += part;
    }
    if (xent_merge_row_statistics(stats[0].data(), stats[1].data(), N) != XENT_OK)
      Fail("xent_merge_row_statistics failed: %s", xent_last_error_message());
    std::vector<Real> gi_sum(static_cast<size_t>(N * H), 0);
    for (int k = 0; k < 2; ++k) {
      Arg Wk = rows_of(W, k), bk = rows_of(bias, k), wk = rows_of(weight, k), gWk = rows_of(grad_W, k),
          gbk = rows_of(grad_bias, k);
      xent_loss_options o = p.o;
      o.weight = Ptr(wk);
      if (g_verbose)
        std::fprintf(stderr, "xent_linear_shard_finish(shard %d: W %s, bias %s, weight %s; grad_loss %s, loss %s, grad_input %s, "
                     "grad_linear_weight %s, grad_linear_bias %s)\n", k, Describe(Wk).c_str(), Describe(bk).c_str(),
                     Describe(wk).c_str(), Describe(grad_loss).c_str(), Describe(loss).c_str(), Describe(grad_input).c_str(),
                     Describe(gWk).c_str(), Describe(gbk).c_str());
      const xent_status s = xent_linear_shard_finish(Ptr(input), Ptr(Wk), Ptr(bk), Ptr(target), p.present ? &o : nullptr,
                                                     k == 0 ? 0 : split, V, N, stats[0].data(), denominator,
                                                     Ptr(grad_loss), Ptr(loss), Ptr(grad_input), Ptr(gWk), Ptr(gbk));
      if (!CheckStatus(call, s, {&input, &Wk, &bk, &target, &wk, &grad_loss, &loss, &grad_input, &gWk, &gbk}, mutated))
        return;
      if (grad_input.present && readable)
        for (int64_t i = 0; i < N * H; ++i) gi_sum[i] += Get(grad_input.t, i);
      call.Snapshot();  // the next shard overwrites loss and grad_input
    }
    if (!readable) return;
    if (!IndicesValid(t, V, p.o.ignore_index)) Fail("a target outside [0, V) accepted");
    if (V == 0 && N > 0) return;
    const LinearReference r = LinearRef(h, w, b, t, p, gl, dtype);
    if (r.products_overflow) return;
    if (loss.present) ExpectMatches(loss.t, r.ref.loss, "sharded linear loss", 32, &r.loss_extra);
    if (grad_input.present)
      for (int64_t i = 0; i < N * H; ++i) {
        const Real tol = r.grad_input_extra[i] * 4 + StorageEps(dtype) * 4 * (std::fabs(r.grad_input[i]) + r.grad_input_extra[i]) + 1e-30;
        // Each shard's part is stored in the dtype: a part whose magnitude may pass the dtype's largest value is
        // ±inf, and so is the parts' sum, whatever the whole sum (and results beyond the compute type's range may
        // be non-finite, as ExpectMatches accepts of the whole op's).
        Real part_bound = r.grad_input_extra[i];
        for (int64_t j = 0; j < V; ++j)
          part_bound += std::fabs(r.ref.grad_logits.value[(i / H) * V + j] * w.values[j * H + i % H]);
        const bool beyond_range = std::fabs(r.grad_input[i]) + r.grad_input_extra[i] > RangeOf(dtype) / 64 ||
                                  !std::isfinite(RoundTo(dtype, part_bound));
        if (!(std::fabs(gi_sum[i] - r.grad_input[i]) <= tol) && !(std::isnan(r.grad_input[i]) && std::isnan(gi_sum[i])) &&
            !((g_beyond_range || beyond_range) && !std::isfinite(gi_sum[i])))
          Fail("sharded grad_input[%lld] = %.9g, reference %.9g", static_cast<long long>(i), static_cast<double>(gi_sum[i]),
               static_cast<double>(r.grad_input[i]));
      }
    // Each shard's view of grad_W and grad_bias is its own; where the whole views' elements alias one another
    // (stride 0, or strides that meet across the split: a descriptor the whole op refuses), later shards overwrite
    // earlier ones' values and the whole view is not compared.
    if (grad_W.present && !SelfOverlaps(grad_W.t))
      ExpectMatches(grad_W.t, Expected{r.grad_weight, r.grad_weight_mag}, "sharded grad_linear_weight", 0, &r.grad_weight_extra);
    if (grad_bias.present && !SelfOverlaps(grad_bias.t))
      ExpectMatches(grad_bias.t, Expected{r.grad_bias, r.grad_bias_mag}, "sharded grad_linear_bias", 0, &r.grad_bias_extra);
    return;
  }
  if (!IndicesValid(t, V, p.o.ignore_index)) Fail("a target outside [0, V) accepted");
  if (V == 0 && N > 0) return;  // no classes: every target is ignore_index (checked above); rows of loss 0
  const LinearReference r = LinearRef(h, w, b, t, p, gl, dtype);
  if (r.products_overflow) return;
  if (loss.present) ExpectMatches(loss.t, r.ref.loss, "linear loss", 32, &r.loss_extra);
  if (grad_input.present) ExpectMatches(grad_input.t, Expected{r.grad_input, r.grad_input_mag}, "grad_input", 0, &r.grad_input_extra);
  if (grad_W.present) ExpectMatches(grad_W.t, Expected{r.grad_weight, r.grad_weight_mag}, "grad_linear_weight", 0, &r.grad_weight_extra);
  if (grad_bias.present) ExpectMatches(grad_bias.t, Expected{r.grad_bias, r.grad_bias_mag}, "grad_linear_bias", 0, &r.grad_bias_extra);
}

}  // namespace

// The SIMD targets compiled into xent (HWY_TARGETS), best first, and for each the one this CPU runs instead: itself,
// or the best supported target below it. Read once, before any input mocks the supported set.
struct Targets {
  std::vector<int64_t> compiled, run;
};
const Targets& CompiledTargets() {
  static const Targets targets = [] {
    Targets t;
    const int64_t supported = hwy::SupportedTargets() & HWY_TARGETS;
    for (int64_t rest = HWY_TARGETS; rest != 0; rest &= rest - 1) {
      const int64_t target = rest & -rest;  // lowest bit: the best target left
      int64_t fallback = supported & ~(target - 1);  // this one and every worse one the CPU has
      t.compiled.push_back(target);
      t.run.push_back(fallback & -fallback);
    }
    return t;
  }();
  return targets;
}

// The target an input runs on, from a hash of its bytes rather than decoded from them, so that the decoding of an
// input is the same on every machine and in every execution (a target decoded from a list of the CPU's targets
// made inputs decode differently on Zen 3 and Zen 4; and hwy::SupportedAndGeneratedTargets() under an earlier
// input's mock shrank that list to one, so that a replayed input decoded differently in its first execution than in
// a fuzzing run). On a CPU without the chosen target, the best one it has below it runs.
int64_t TargetFor(const uint8_t* data, size_t size) {
  uint64_t hash = 1469598103934665603u;  // FNV-1a
  for (size_t i = 0; i < size; ++i) hash = (hash ^ data[i]) * 1099511628211u;
  const Targets& t = CompiledTargets();
  return t.run[hash % t.run.size()];
}

// An allocation past what ASan's allocator serves (a temporary for a hostile shape: 4 TiB) returns null, so that
// the library's std::bad_alloc path (XENT_OUT_OF_MEMORY) runs as it would under the system allocator, rather than
// ASan aborting the process.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* name = std::getenv("XENT_FUZZ_ENTRY")) {
    for (int e = 0; e < kEntries; ++e)
      if (std::strcmp(name, kEntryNames[e]) == 0) g_entry = e;
    if (g_entry < 0) Fail("XENT_FUZZ_ENTRY=%s is not an entry point", name);
  }
  if (const char* name = std::getenv("XENT_FUZZ_SKIP")) {
    for (int e = 0; e < kEntries; ++e)
      if (std::strcmp(name, kEntryNames[e]) == 0) g_skip = e;
    if (g_skip < 0) Fail("XENT_FUZZ_SKIP=%s is not an entry point", name);
  }
  g_verbose = std::getenv("XENT_FUZZ_VERBOSE") != nullptr;
  xent_set_num_threads(1);  // the same input, the same path (threads are exercised by tests/concurrency_test.cc)
  (void)CompiledTargets();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider f(data, size);
  g_inputs.clear();
  g_infinite_labels = false;
  g_underflow_scale = 1;
  g_beyond_range = false;
  const int entry = g_entry >= 0 ? g_entry : f.ConsumeIntegralInRange<int>(0, kEntries - 1);
  if (entry == g_skip) return 0;
  hwy::SetSupportedTargetsForTest(TargetFor(data, size));
  Draw d(f);
  switch (entry) {
    case kDense: case kDenseGrad: case kSparse: case kSparseGrad: case kLossShape:
      FuzzTensorOp(d, static_cast<Entry>(entry));
      break;
    case kCross: case kCrossGrad: case kCrossLossShape: FuzzCrossEntropy(d, static_cast<Entry>(entry)); break;
    case kShards: FuzzShards(d); break;
    default: FuzzLinear(d, static_cast<Entry>(entry)); break;
  }
  return 0;
}
