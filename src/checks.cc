// checks.cc — the descriptor checks of checks.h.
#include "src/checks.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "src/scalar.h"

namespace xent::internal {
namespace {

bool valid_dtype(int32_t d) {
  return d == XENT_FLOAT16 || d == XENT_BFLOAT16 || d == XENT_FLOAT32 || d == XENT_FLOAT64;
}

}  // namespace

std::string dtype_text(int32_t d) {
  return d >= XENT_FLOAT16 && d <= XENT_INT64 ? xent_dtype_name(static_cast<xent_dtype>(d))
                                              : std::to_string(d) + " (not an xent_dtype)";
}

void check_tensor(const xent_tensor* t, const char* name, bool required, xent_dtype dtype, const char* like,
                  bool integer) {
  if (t == nullptr) {
    if (required) throw fail(XENT_INVALID_ARGUMENT, name, " must not be NULL");
    return;
  }
  if (t->rank < 0 || t->rank > XENT_MAX_RANK)
    throw fail(XENT_INVALID_ARGUMENT, name, " has rank ", t->rank, "; expected a rank in [0, ", XENT_MAX_RANK, "]");
  if (integer) {
    if (t->dtype != XENT_INT32 && t->dtype != XENT_INT64)
      throw fail(XENT_INVALID_DTYPE, name, " must hold class indices of dtype int32 or int64, received ",
                 dtype_text(t->dtype));
  } else if (!valid_dtype(t->dtype)) {
    throw fail(XENT_INVALID_DTYPE, name, " has unsupported dtype ", dtype_text(t->dtype),
               "; expected float16, bfloat16, float32 or float64");
  }
  if (!integer && like && t->dtype != dtype)
    throw fail(XENT_INVALID_DTYPE, name, " must have the same dtype as ", like, ": ", name, " is ",
               xent_dtype_name(static_cast<xent_dtype>(t->dtype)), ", ", like, " is ", xent_dtype_name(dtype), " (cast ",
               name, " to ", xent_dtype_name(dtype), ")");
  int64_t elements = 1;
  for (int d = 0; d < t->rank; ++d) {
    if (t->shape[d] < 0)
      throw fail(XENT_INVALID_ARGUMENT, name, " has a negative size ", t->shape[d], " in dimension ", d,
                 " (shape ", shape_string(t->shape, t->rank), ")");
    if (__builtin_mul_overflow(elements, t->shape[d], &elements))
      throw fail(XENT_INVALID_ARGUMENT, name, " has too many elements to count in int64 (shape ",
                 shape_string(t->shape, t->rank), ")");
  }
  // Views of stride 0 can describe more elements than memory holds; beyond 2^59 (4 EiB of float64) the sizes in
  // bytes that the op forms from its counts (a row's classes times 8, a temporary of the broadcast shape) would
  // pass int64 (found by the fuzzer: a class axis of 2^62 + 4 broadcast from one value). No computation over so many
  // elements could finish either.
  if (elements > (int64_t{1} << 59))
    throw fail(XENT_INVALID_ARGUMENT, name, " has ", elements, " elements (shape ", shape_string(t->shape, t->rank),
               "), more than the 2^59 xent can count in bytes");
  if (elements == 0) return;
  // The farthest element must be addressable: Σ (n-1)·|stride| · size fits in int64. A stride of a dimension longer
  // than 1 whose byte offset alone overflows (INT64_MIN among them, whose magnitude no int64 holds) is refused
  // first, so that every |stride| below is defined.
  int64_t reach = 0;
  for (int d = 0; d < t->rank; ++d) {
    if (t->shape[d] <= 1) continue;
    if (t->strides[d] < -(INT64_MAX / 8) || t->strides[d] > INT64_MAX / 8)
      throw fail(XENT_INVALID_ARGUMENT, name, " has a stride of ", t->strides[d], " in dimension ", d,
                 ", whose offset in bytes overflows int64");
    int64_t step;
    if (__builtin_mul_overflow(t->shape[d] - 1, std::llabs(t->strides[d]), &step) ||
        __builtin_add_overflow(reach, step, &reach))
      throw fail(XENT_INVALID_ARGUMENT, name, " has strides that overflow int64");
  }
  if (reach > INT64_MAX / 8) throw fail(XENT_INVALID_ARGUMENT, name, " has strides that overflow int64");
  if (t->data == nullptr)
    throw fail(XENT_INVALID_ARGUMENT, name, ".data is NULL but ", name, " has ", elements, " elements");
}

int64_t element_count(const xent_tensor& t) {
  int64_t n = 1;
  for (int d = 0; d < t.rank; ++d) n *= t.shape[d];
  return n;
}

namespace {
// Byte range [first, last) the tensor's elements can touch.
struct Extent {
  uintptr_t first, last;
};
Extent extent(const xent_tensor& t) {
  int64_t lo = 0, hi = 0;
  for (int d = 0; d < t.rank; ++d) {
    const int64_t step = (t.shape[d] - 1) * t.strides[d];
    (step < 0 ? lo : hi) += step;
  }
  const auto base = reinterpret_cast<uintptr_t>(t.data);
  const int64_t size = dtype_size(t.dtype);
  return {base + static_cast<uintptr_t>(lo * size), base + static_cast<uintptr_t>((hi + 1) * size)};
}
}  // namespace

// An output must not write one memory location twice: with its dimensions sorted by |stride|, each stride must
// step over everything the smaller dimensions reach. (Conservative: a few exotic interleavings are refused.)
void check_no_self_overlap(const xent_tensor& t, const char* name) {
  if (element_count(t) == 0) return;
  std::array<std::pair<int64_t, int64_t>, XENT_MAX_RANK> dims{};  // (|stride|, size)
  int n = 0;
  for (int d = 0; d < t.rank; ++d)
    if (t.shape[d] > 1) dims[n++] = {std::llabs(t.strides[d]), t.shape[d]};
  std::sort(dims.begin(), dims.begin() + n);
  int64_t reach = 0;
  for (int i = 0; i < n; ++i) {
    if (dims[i].first <= reach)
      throw fail(XENT_INVALID_ARGUMENT, name, " has strides that make several elements share memory (shape ",
                 shape_string(t.shape, t.rank), ", strides ", shape_string(t.strides, t.rank),
                 "); an output needs one location per element");
    reach += (dims[i].second - 1) * dims[i].first;
  }
}

void check_disjoint(const xent_tensor* out, const char* out_name, const xent_tensor* other, const char* other_name) {
  if (out == nullptr || other == nullptr || element_count(*out) == 0 || element_count(*other) == 0) return;
  const Extent a = extent(*out), b = extent(*other);
  if (a.first < b.last && b.first < a.last)
    throw fail(XENT_INVALID_ARGUMENT, out_name, " overlaps ", other_name,
               " in memory; outputs must not share memory with inputs or other outputs");
}

// Identical descriptors: same memory, dtype, shape and strides.
bool same_view(const xent_tensor& a, const xent_tensor& b) {
  if (a.data != b.data || a.dtype != b.dtype || a.rank != b.rank) return false;
  for (int d = 0; d < a.rank; ++d)
    if (a.shape[d] != b.shape[d] || (a.shape[d] > 1 && a.strides[d] != b.strides[d])) return false;
  return true;
}

void check_option_values(const xent_loss_options& o) {
  if (o.reduction != XENT_REDUCTION_NONE && o.reduction != XENT_REDUCTION_SUM && o.reduction != XENT_REDUCTION_MEAN)
    throw fail(XENT_INVALID_ARGUMENT, "reduction must be XENT_REDUCTION_NONE (0), SUM (1) or MEAN (2), received ",
               o.reduction);
  if (!(o.label_smoothing >= 0 && o.label_smoothing <= 1))
    throw fail(XENT_INVALID_ARGUMENT, "label_smoothing must be in [0, 1], received ", o.label_smoothing);
  if (!(o.z_loss >= 0 && o.z_loss < INFINITY))
    throw fail(XENT_INVALID_ARGUMENT, "z_loss must be finite and >= 0, received ", o.z_loss);
  if (!(o.softcap >= 0 && o.softcap < INFINITY))
    throw fail(XENT_INVALID_ARGUMENT, "softcap must be finite and > 0 (or 0 for none), received ", o.softcap);
}

void require_shape(const xent_tensor& t, const char* name, const int64_t* shape, int rank, const char* what) {
  const bool same = t.rank == rank && std::equal(shape, shape + rank, t.shape);
  if (!same)
    throw fail(XENT_INVALID_ARGUMENT, name, " must have shape ", shape_string(shape, rank), " (", what,
               "), received ", shape_string(t.shape, t.rank));
}

std::string shape_string(const int64_t* shape, int rank) {
  std::string s = "[";
  for (int d = 0; d < rank; ++d) {
    if (d) s += ',';
    s += std::to_string(shape[d]);
  }
  return s + "]";
}

}  // namespace xent::internal
