// test_util.h — tensors of any dtype and memory layout for tests, and dtype-derived tolerances.
#pragma once

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/reference.h"
#include "xent/half.h"
#include "xent/xent.h"

namespace xent::test {

inline std::string shape_of(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t d = 0; d < shape.size(); ++d) s += (d ? "," : "") + std::to_string(shape[d]);
  return s + "]";
}

inline int64_t dtype_size(xent_dtype d) { return d == XENT_FLOAT64 ? 8 : d == XENT_FLOAT32 ? 4 : 2; }

// Unit roundoff of the stored type and of the type xent computes in for it.
inline Real storage_eps(xent_dtype d) {
  switch (d) {
    case XENT_FLOAT16: return std::ldexp(Real{1}, -11);
    case XENT_BFLOAT16: return std::ldexp(Real{1}, -8);
    case XENT_FLOAT32: return std::ldexp(Real{1}, -24);
    default: return std::ldexp(Real{1}, -53);
  }
}
// Spacing of the smallest subnormals: rounding to the dtype can move a tiny result by this much.
inline Real storage_tiny(xent_dtype d) {
  switch (d) {
    case XENT_FLOAT16: return std::ldexp(Real{1}, -24);
    case XENT_BFLOAT16: return std::ldexp(Real{1}, -133);
    case XENT_FLOAT32: return std::ldexp(Real{1}, -149);
    default: return std::ldexp(Real{1}, -1074);
  }
}
inline Real compute_eps(xent_dtype d) { return storage_eps(d == XENT_FLOAT64 ? d : XENT_FLOAT32); }

// How elements are laid out in memory.
enum class Layout {
  kContiguous,   // row-major
  kTransposed,   // column-major (every dimension strided, the last one slowest)
  kPadded,       // row-major with gaps: every stride 2x + 1
  kReversed,     // row-major, last dimension with a negative stride
  kMisaligned,   // row-major, data one element past an aligned address
};
inline const char* layout_name(Layout l) {
  static const char* names[] = {"contiguous", "transposed", "padded", "reversed", "misaligned"};
  return names[static_cast<int>(l)];
}
inline constexpr Layout kAllLayouts[] = {Layout::kContiguous, Layout::kTransposed, Layout::kPadded, Layout::kReversed,
                                         Layout::kMisaligned};

// A tensor that owns its memory; element values are read and written as Real by row-major flat index.
class Tensor {
 public:
  Tensor(xent_dtype dtype, std::vector<int64_t> shape, Layout layout = Layout::kContiguous)
      : dtype_(dtype), shape_(std::move(shape)), strides_(shape_.size()) {
    const size_t rank = shape_.size();
    int64_t stride = 1;
    if (layout == Layout::kTransposed) {
      for (size_t d = 0; d < rank; ++d) strides_[d] = stride, stride *= std::max<int64_t>(shape_[d], 1);
    } else {
      for (size_t d = rank; d-- > 0;) {
        strides_[d] = stride;
        stride = layout == Layout::kPadded ? stride * std::max<int64_t>(shape_[d], 1) * 2 + 1
                                           : stride * std::max<int64_t>(shape_[d], 1);
      }
    }
    const int64_t span = stride + 2;  // elements spanned, plus room for the misaligned start
    bytes_.assign(static_cast<size_t>(span * dtype_size(dtype)) + 64, 0xCD);
    base_ = layout == Layout::kMisaligned ? 1 : 0;
    if (layout == Layout::kReversed && rank > 0) {
      base_ += (shape_[rank - 1] - 1) * strides_[rank - 1];
      strides_[rank - 1] = -strides_[rank - 1];
    }
  }

  int64_t size() const { return count(shape_); }
  const std::vector<int64_t>& shape() const { return shape_; }
  xent_dtype dtype() const { return dtype_; }
  void* data() { return bytes_.data() + base_ * dtype_size(dtype_); }

  int64_t offset(int64_t flat) const {
    int64_t at = 0;
    for (size_t d = shape_.size(); d-- > 0;) {
      at += (flat % shape_[d]) * strides_[d];
      flat /= shape_[d];
    }
    return at;
  }
  Real get(int64_t flat) const {
    const unsigned char* p = bytes_.data() + (base_ + offset(flat)) * dtype_size(dtype_);
    switch (dtype_) {
      case XENT_FLOAT16: { float16 h; std::memcpy(&h, p, 2); return to_float(h); }
      case XENT_BFLOAT16: { bfloat16 h; std::memcpy(&h, p, 2); return to_float(h); }
      case XENT_FLOAT32: { float f; std::memcpy(&f, p, 4); return f; }
      default: { double f; std::memcpy(&f, p, 8); return f; }
    }
  }
  // Stores v rounded to the dtype.
  void set(int64_t flat, Real v) {
    unsigned char* p = bytes_.data() + (base_ + offset(flat)) * dtype_size(dtype_);
    switch (dtype_) {
      case XENT_FLOAT16: { float16 h = to_float16(static_cast<double>(v)); std::memcpy(p, &h, 2); break; }
      case XENT_BFLOAT16: { bfloat16 h = to_bfloat16(static_cast<double>(v)); std::memcpy(p, &h, 2); break; }
      case XENT_FLOAT32: { float f = static_cast<float>(v); std::memcpy(p, &f, 4); break; }
      default: { double f = static_cast<double>(v); std::memcpy(p, &f, 8); break; }
    }
  }
  Dense dense() const {
    Dense d{shape_, std::vector<Real>(static_cast<size_t>(size()))};
    for (int64_t i = 0; i < size(); ++i) d.values[i] = get(i);
    return d;
  }
  xent_tensor view() {
    return xent_make_tensor(data(), dtype_, static_cast<int32_t>(shape_.size()), shape_.data(), strides_.data());
  }
  const std::vector<unsigned char>& bytes() const { return bytes_; }

 private:
  xent_dtype dtype_;
  std::vector<int64_t> shape_, strides_;
  std::vector<unsigned char> bytes_;
  int64_t base_ = 0;
};

// A copy of a tensor's elements placed so that the highest-addressed one ends a page and the page after it is
// inaccessible: a kernel that reads or writes past the tensor's end faults. (A Tensor's own buffer has slack after
// its last element, where such a read goes unnoticed, even by ASan.) view() is the tensor's view moved to the
// copy; copy_back() copies the elements' span, gaps included, back into the tensor.
class PageEndCopy {
 public:
  explicit PageEndCopy(Tensor& t) : tensor_(t) {
    const int64_t size = dtype_size(t.dtype());
    int64_t high = 0;  // element offsets from t.data()
    for (int64_t i = 0; i < t.size(); ++i) low_ = std::min(low_, t.offset(i)), high = std::max(high, t.offset(i));
    bytes_ = t.size() == 0 ? 0 : static_cast<size_t>((high - low_ + 1) * size);
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    length_ = (bytes_ + page - 1) / page * page + page;
    void* region = mmap(nullptr, length_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) throw std::bad_alloc();
    region_ = static_cast<unsigned char*>(region);
    if (mprotect(region_ + length_ - page, page, PROT_NONE) != 0) throw std::runtime_error("mprotect failed");
    span_ = region_ + length_ - page - bytes_;
    std::memcpy(span_, element(t.data(), low_), bytes_);
  }
  PageEndCopy(const PageEndCopy&) = delete;
  PageEndCopy& operator=(const PageEndCopy&) = delete;
  ~PageEndCopy() { munmap(region_, length_); }

  xent_tensor view() const {
    xent_tensor v = tensor_.view();
    v.data = element(span_, -low_);
    return v;
  }
  void copy_back() { std::memcpy(element(tensor_.data(), low_), span_, bytes_); }

 private:
  unsigned char* element(void* p, int64_t offset) const {
    return static_cast<unsigned char*>(p) + offset * dtype_size(tensor_.dtype());
  }
  Tensor& tensor_;
  int64_t low_ = 0;
  size_t bytes_ = 0, length_ = 0;
  unsigned char* region_ = nullptr;
  unsigned char* span_ = nullptr;
};

// v rounded to the dtype (to see whether a reference value overflows it).
inline Real round_to(xent_dtype d, Real v) {
  switch (d) {
    case XENT_FLOAT16: return to_float(to_float16(static_cast<double>(v)));
    case XENT_BFLOAT16: return to_float(to_bfloat16(static_cast<double>(v)));
    case XENT_FLOAT32: return static_cast<float>(v);
    default: return static_cast<double>(v);
  }
}

// Checks every element of `got` against the reference with a tolerance from the dtype:
//   |got − ref| ≤ k · compute_eps · magnitude + storage_eps · |ref| + storage_tiny  (NaN must be NaN, ±inf exact)
// k = 16: a lane adds at most 64 terms serially (32 per accumulator lane in the row kernel, 64 per lane block in
// the lane kernel) and such sums drift by ~√64 eps; an algorithmic mistake is off by far more.
inline void expect_matches(const Tensor& got, const Expected& ref, const char* what, Real k = 16) {
  ASSERT_EQ(static_cast<size_t>(got.size()), ref.value.size()) << what;
  int failures = 0;
  for (int64_t i = 0; i < got.size() && failures < 5; ++i) {
    const Real g = got.get(i), r = ref.value[i];
    bool ok;
    if (std::isnan(r)) ok = std::isnan(g);
    else if (std::isinf(round_to(got.dtype(), r))) ok = g == round_to(got.dtype(), r);
    else
      ok = std::fabs(g - r) <= k * compute_eps(got.dtype()) * ref.magnitude[i] + storage_eps(got.dtype()) * std::fabs(r) +
                                   storage_tiny(got.dtype());
    if (!ok) {
      ++failures;
      ADD_FAILURE() << what << "[" << i << "] = " << static_cast<double>(g) << ", expected "
                    << static_cast<double>(r) << " (magnitude " << static_cast<double>(ref.magnitude[i]) << ", "
                    << xent_dtype_name(got.dtype()) << ")";
    }
  }
}

inline void expect_ok(xent_status s) { ASSERT_EQ(s, XENT_OK) << xent_last_error_message(); }

}  // namespace xent::test
