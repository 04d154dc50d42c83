// plan.h — a validated softmax cross-entropy call, described as rows × classes over strided operands.
//
// Validation (validate.cc) is the only place that checks user input. It resolves broadcasting and the class
// axis into a Plan that the kernels trust: every operand's strides are given over the broadcast shape, with 0 on
// the dimensions it is broadcast along, so a kernel never needs to know about broadcasting.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "xent/xent.h"

namespace xent::internal {

enum Operand { kLogits, kLabels, kLoss, kGradLoss, kGradLogits, kGradLabels, kNumOperands };
const char* operand_name(Operand op);

// Rows × classes: the class axis is pulled out, the other dimensions ("batch" dimensions) are coalesced where
// every operand allows it. Element (row index i_0..i_{n-1}, class c) of operand k lives at
// data[k] + Σ i_d · batch_strides[k][d] + c · class_stride[k]   (elements of the plan's dtype).
struct Layout {
  int64_t classes = 0;                                  // C
  int64_t rows = 0;                                     // product of batch_shape
  int batch_rank = 0;                                   // number of (coalesced) batch dimensions
  std::array<int64_t, XENT_MAX_RANK> batch_shape{};
  std::array<void*, kNumOperands> data{};               // nullptr: operand absent
  std::array<int64_t, kNumOperands> class_stride{};
  std::array<std::array<int64_t, XENT_MAX_RANK>, kNumOperands> batch_strides{};
};

struct Plan {
  xent_dtype dtype = XENT_FLOAT32;
  int rank = 0;                                          // rank of the broadcast shape
  std::array<int64_t, XENT_MAX_RANK> shape{};            // broadcast shape
  int axis = 0;                                          // class axis in the broadcast shape
  // Strides of each operand over the broadcast shape (0 where broadcast; loss-shaped operands: 0 on the axis).
  std::array<std::array<int64_t, XENT_MAX_RANK>, kNumOperands> strides{};
  std::array<void*, kNumOperands> data{};
  // The user's gradient outputs when the matching input is broadcast: the kernel then writes a full-shape
  // temporary and the sum over broadcast dimensions lands here.
  const xent_tensor* reduced_grad_logits = nullptr;
  const xent_tensor* reduced_grad_labels = nullptr;
  int64_t elements = 0;                                  // product of the broadcast shape
};

struct Request {
  const xent_tensor* labels = nullptr;
  const xent_tensor* logits = nullptr;
  int64_t axis = -1;
  const xent_tensor* grad_loss = nullptr;
  const xent_tensor* loss = nullptr;
  const xent_tensor* grad_logits = nullptr;
  const xent_tensor* grad_labels = nullptr;
};

// Checks everything about the request; on failure returns the status and sets *error to a message that names
// the argument, the expected and the received value.
xent_status make_plan(const Request& request, Plan* plan, std::string* error);

// Rows × classes view of a plan (with data/strides possibly redirected to temporaries by the caller).
Layout make_layout(const Plan& plan);

// "[2,4]" for messages.
std::string shape_string(const int64_t* shape, int rank);

}  // namespace xent::internal
