// plan.h — a validated softmax cross-entropy call, described as rows × classes over strided operands.
//
// Validation (validate.cc) is the only place that checks user input. It resolves broadcasting and the class axis
// into a Plan that the kernels trust, with the execution Layout already in it: every operand's strides are given
// over the broadcast shape, with 0 on the dimensions it is broadcast along, so a kernel never needs to know about
// broadcasting. Nothing changes a Plan after validation; the caller only supplies the memory of the temporaries
// the plan asks for (gradients of broadcast inputs).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "xent/xent.h"

namespace xent::internal {

enum Operand { kLogits, kLabels, kLoss, kGradLoss, kGradLogits, kGradLabels, kNumOperands };

// The loss options (xent_loss_options), resolved: effective labels a_j = w_j · (alpha · y_j + beta), plus for
// class-index targets (1 − eps) · w_t at the target, which the kernels add per row.
struct Options {
  const void* weight = nullptr;  // [C] in the plan's dtype, or null (w = 1)
  int64_t weight_stride = 0;
  double alpha = 1, beta = 0;    // 1 − label_smoothing, label_smoothing / vocab_size
  double z_loss = 0;
  double softcap = 0;            // 0: none
  bool has_ignore = false;
  int64_t ignore_index = 0;
  xent_reduction reduction = XENT_REDUCTION_NONE;
};

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
  // Sparse: labels are class indices of label_dtype (int32/int64), one per row, at batch_strides[kLabels].
  bool sparse = false;
  xent_dtype label_dtype = XENT_FLOAT32;
  // The classes as a shard of a vocabulary (stages.h): classes [vocab_start, vocab_start + classes) of
  // vocab_size; class-index targets index the vocabulary. The single-process op: 0 and classes.
  int64_t vocab_start = 0, vocab_size = 0;
  Options options;
  bool general = false;        // any option or sparse: the kernels take their general path
  double grad_scale = 1;       // multiplies every row's upstream gradient (reductions)
  double* row_loss = nullptr;  // reductions: per-row losses in double, by row index, instead of kLoss
};

struct Plan {
  xent_dtype dtype = XENT_FLOAT32;
  int rank = 0;                                          // rank of the broadcast shape
  std::array<int64_t, XENT_MAX_RANK> shape{};            // broadcast shape
  int axis = 0;                                          // class axis in the broadcast shape
  int64_t elements = 0;                                  // product of the broadcast shape
  // Gradients written to a full-shape temporary in the compute type (float, double for float64) and then summed
  // into the user's tensor: both gradients once either input is broadcast (the kernels write both in one type).
  // The layout has their row-major strides over the broadcast shape and data null: the caller supplies it.
  const xent_tensor* reduced_grad_logits = nullptr;
  const xent_tensor* reduced_grad_labels = nullptr;
  bool gradients_in_compute_type() const { return reduced_grad_logits || reduced_grad_labels; }
  // Reductions: the loss and its upstream gradient are scalars (shape []), folded into Layout::row_loss and
  // Layout::grad_scale by the caller.
  const xent_tensor* scalar_grad_loss = nullptr;
  const xent_tensor* scalar_loss = nullptr;
  Layout layout;
};

struct Request {
  const xent_tensor* labels = nullptr;
  const xent_tensor* logits = nullptr;
  int64_t axis = -1;
  const xent_tensor* grad_loss = nullptr;
  const xent_tensor* loss = nullptr;
  const xent_tensor* grad_logits = nullptr;
  const xent_tensor* grad_labels = nullptr;
  bool sparse = false;                          // labels are class indices
  const xent_loss_options* options = nullptr;   // cross_entropy: options (ignore_index active)
  // The logits' classes as a shard of a vocabulary (stages.h, xent_shard_statistics): classes
  // [vocab_start, vocab_start + C) of vocab_size. vocab_size -1: the whole vocabulary (the single-process op).
  int64_t vocab_start = 0, vocab_size = -1;
};

// Checks everything about the request; on failure returns the status and sets *error to a message that names
// the argument, the expected and the received value.
xent_status make_plan(const Request& request, Plan* plan, std::string* error);

// The loss's shape for a plan: the broadcast shape without the class axis (rank − 1 entries), or [] when reduced.
int loss_shape(const Plan& plan, int64_t shape[XENT_MAX_RANK]);

// "[2,4]" for messages.
std::string shape_string(const int64_t* shape, int rank);

}  // namespace xent::internal
