// checks.h — the rules every tensor descriptor of the C API is checked against, shared by the ops' validations
// (validate.cc, linear.cc): a failed check throws a Failure carrying the status and a message that names the
// argument, what was expected and what was received; the validation turns it into the call's status.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

#include "xent/xent.h"

namespace xent::internal {

struct Failure {
  xent_status status;
  std::string message;
};

// A Failure whose message is the parts written one after the other.
template <typename... Parts>
Failure fail(xent_status status, const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return {status, out.str()};
}

// "float32", or "42 (not an xent_dtype)".
std::string dtype_text(int32_t dtype);

// Checks a descriptor on its own: present (if required), rank in [0, XENT_MAX_RANK], dtype, sizes ≥ 0, an element
// count and a byte extent that fit int64, a data pointer when it has elements. integer: it holds class indices
// (int32/int64); else a float dtype, equal to `dtype` when `like` names the tensor whose dtype that is.
void check_tensor(const xent_tensor* t, const char* name, bool required, xent_dtype dtype, const char* like,
                  bool integer = false);

int64_t element_count(const xent_tensor& t);

// An output must not write one memory location twice.
void check_no_self_overlap(const xent_tensor& t, const char* name);

// An output must not share memory with `other` (an input or another output).
void check_disjoint(const xent_tensor* out, const char* out_name, const xent_tensor* other, const char* other_name);

// Identical descriptors: same memory, dtype, shape and strides (of the dimensions longer than 1).
bool same_view(const xent_tensor& a, const xent_tensor& b);

// t must have this shape; `what` says where the shape comes from.
void require_shape(const xent_tensor& t, const char* name, const int64_t* shape, int rank, const char* what);

// The scalar options (reduction, label_smoothing, z_loss, softcap) are in their ranges.
void check_option_values(const xent_loss_options& o);

// "[2,4]" for messages.
std::string shape_string(const int64_t* shape, int rank);

}  // namespace xent::internal
