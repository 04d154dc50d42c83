// validate.cc — the one place where user input is checked and turned into a Plan.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "src/checks.h"
#include "src/plan.h"
#include "src/scalar.h"

namespace xent::internal {
namespace {

// A tensor of no elements addresses no memory, so its strides may be anything (INT64_MIN included); the kernels
// still step their row pointers over its batch dimensions (a row of 0 classes has a loss), and the pointer
// arithmetic of such strides overflows (undefined behaviour, found by the fuzzer). Its strides become 0.
bool has_no_elements(const xent_tensor& t) {
  for (int d = 0; d < t.rank; ++d)
    if (t.shape[d] == 0) return true;
  return false;
}

// Strides of t over the broadcast shape (right-aligned); 0 where t has size 1.
std::array<int64_t, XENT_MAX_RANK> broadcast_strides(const xent_tensor& t, int rank) {
  std::array<int64_t, XENT_MAX_RANK> s{};
  if (has_no_elements(t)) return s;
  const int offset = rank - t.rank;
  for (int d = 0; d < t.rank; ++d) s[offset + d] = t.shape[d] == 1 ? 0 : t.strides[d];
  return s;
}

// The broadcast shape without the class axis (rank − 1 entries): the unreduced loss's shape.
std::array<int64_t, XENT_MAX_RANK> shape_without_axis(const Plan& p) {
  std::array<int64_t, XENT_MAX_RANK> shape{};
  for (int d = 0, k = 0; d < p.rank; ++d)
    if (d != p.axis) shape[k++] = p.shape[d];
  return shape;
}

// Strides over the broadcast shape of a tensor that has it without the class axis (loss-shaped operands, class
// indices): 0 on the axis and on size-1 dimensions.
std::array<int64_t, XENT_MAX_RANK> strides_without_axis(const xent_tensor& t, const Plan& p) {
  std::array<int64_t, XENT_MAX_RANK> s{};
  if (has_no_elements(t)) return s;
  for (int d = 0, k = 0; d < p.rank; ++d) {
    if (d == p.axis) continue;
    s[d] = p.shape[d] == 1 ? 0 : t.strides[k];
    ++k;
  }
  return s;
}

// vocab_size: the classes label smoothing spreads over (C, or a sharded vocabulary's size).
void resolve_options(const xent_loss_options& o, int64_t vocab_size, Plan& p) {
  const int64_t C = p.shape[p.axis];
  Options& out = p.layout.options;
  check_option_values(o);
  if (o.weight) {
    const xent_tensor& w = *o.weight;
    if (w.rank != 1 || w.shape[0] != C)
      throw fail(XENT_INVALID_ARGUMENT, "weight must have shape [", C, "] (one weight per class), received ",
                 shape_string(w.shape, w.rank));
    out.weight = w.data;
    out.weight_stride = C == 0 ? 0 : w.strides[0];
  }
  out.reduction = static_cast<xent_reduction>(o.reduction);
  out.alpha = 1 - o.label_smoothing;
  out.beta = vocab_size > 0 ? o.label_smoothing / static_cast<double>(vocab_size) : 0;
  out.z_loss = o.z_loss;
  out.softcap = o.softcap;
  out.has_ignore = p.layout.sparse;
  out.ignore_index = o.ignore_index;
}

// Where each operand is: its data and its strides over the broadcast shape.
struct Operands {
  std::array<void*, kNumOperands> data{};
  std::array<bool, kNumOperands> present{};  // data, or a temporary the caller supplies
  std::array<std::array<int64_t, XENT_MAX_RANK>, kNumOperands> strides{};
  void set(Operand k, void* at, const std::array<int64_t, XENT_MAX_RANK>& over_shape) {
    data[k] = at, present[k] = true, strides[k] = over_shape;
  }
};

// The rows × classes view: batch dimensions in order, size-1 dimensions dropped, neighbours merged when every
// operand present is linear across them.
Layout make_layout(const Plan& p, const Operands& ops, Layout l) {
  l.classes = p.shape[p.axis];
  l.vocab_start = 0;
  l.vocab_size = l.classes;
  l.data = ops.data;
  for (int k = 0; k < kNumOperands; ++k) l.class_stride[k] = ops.strides[k][p.axis];
  l.rows = 1;
  for (int d = 0; d < p.rank; ++d) {
    if (d == p.axis) continue;
    l.rows *= p.shape[d];
    if (p.shape[d] == 1) continue;
    const int n = l.batch_rank;
    bool merge = n > 0;
    for (int k = 0; merge && k < kNumOperands; ++k)
      if (ops.present[k] && l.batch_strides[k][n - 1] != ops.strides[k][d] * p.shape[d]) merge = false;
    if (merge) {
      l.batch_shape[n - 1] *= p.shape[d];
      for (int k = 0; k < kNumOperands; ++k) l.batch_strides[k][n - 1] = ops.strides[k][d];
    } else {
      l.batch_shape[n] = p.shape[d];
      for (int k = 0; k < kNumOperands; ++k) l.batch_strides[k][n] = ops.strides[k][d];
      ++l.batch_rank;
    }
  }
  return l;
}

void plan_or_throw(const Request& r, Plan* plan) {
  check_tensor(r.logits, "logits", true, XENT_FLOAT32, nullptr);
  const auto dtype = static_cast<xent_dtype>(r.logits->dtype);
  check_tensor(r.labels, "labels", true, dtype, "logits", r.sparse);
  check_tensor(r.grad_loss, "grad_loss", false, dtype, "logits");
  check_tensor(r.loss, "loss", false, dtype, "logits");
  check_tensor(r.grad_logits, "grad_logits", false, dtype, "logits");
  check_tensor(r.grad_labels, "grad_labels", false, dtype, "logits");
  const xent_tensor& logits = *r.logits;
  const xent_tensor& labels = *r.labels;
  if (logits.rank < 1)
    throw fail(XENT_INVALID_ARGUMENT, "logits must have rank >= 1 (a class axis), received rank 0 (a scalar)");

  // Broadcast shape, right-aligned (sparse: logits' shape; labels have it without the class axis).
  Plan& p = *plan;
  p = Plan{};
  p.dtype = dtype;
  p.layout.sparse = r.sparse;  // resolve_options reads it
  p.rank = r.sparse ? logits.rank : std::max(logits.rank, labels.rank);
  for (int d = 0; d < p.rank && !r.sparse; ++d) {
    const int li = d - (p.rank - logits.rank), bi = d - (p.rank - labels.rank);
    const int64_t a = li >= 0 ? logits.shape[li] : 1, b = bi >= 0 ? labels.shape[bi] : 1;
    if (a != b && a != 1 && b != 1)
      throw fail(XENT_INVALID_ARGUMENT, "logits and labels must be broadcastable: logits_size=",
                 shape_string(logits.shape, logits.rank), " labels_size=", shape_string(labels.shape, labels.rank));
    p.shape[d] = a == 1 ? b : a;
  }
  if (r.axis < -logits.rank || r.axis >= logits.rank)
    throw fail(XENT_INVALID_ARGUMENT, "axis ", r.axis, " is out of range for logits of rank ", logits.rank,
               "; expected an axis in [", -logits.rank, ", ", logits.rank, ")");
  p.axis = static_cast<int>(r.axis < 0 ? p.rank + r.axis : p.rank - logits.rank + r.axis);
  if (r.sparse) {
    std::copy(logits.shape, logits.shape + logits.rank, p.shape.begin());
    require_shape(labels, "labels", shape_without_axis(p).data(), p.rank - 1, "logits' shape without the class axis");
  }

  int64_t elements = 1, rows = 1;
  for (int d = 0; d < p.rank; ++d) {
    if (__builtin_mul_overflow(elements, p.shape[d], &elements))
      throw fail(XENT_INVALID_ARGUMENT, "the broadcast shape ", shape_string(p.shape.data(), p.rank),
                 " has too many elements to count in int64");
    if (d != p.axis && __builtin_mul_overflow(rows, p.shape[d], &rows))  // beside a class axis of 0
      throw fail(XENT_INVALID_ARGUMENT, "the broadcast shape ", shape_string(p.shape.data(), p.rank),
                 " has too many rows to count in int64");
  }
  p.elements = elements;
  // (A shard of a vocabulary may hold no classes: its statistics are empty.)
  if (p.shape[p.axis] == 0 && rows > 0 && r.vocab_size < 0)
    throw fail(XENT_INVALID_ARGUMENT, "logits must have at least one class: the class axis (axis ", r.axis,
               ") has size 0 in the broadcast shape ", shape_string(p.shape.data(), p.rank));

  // A shard of a vocabulary: its classes must lie inside it.
  const int64_t C = p.shape[p.axis];
  const bool shard = r.vocab_size >= 0;
  if (shard && (r.vocab_start < 0 || r.vocab_start > r.vocab_size || C > r.vocab_size - r.vocab_start))
    throw fail(XENT_INVALID_ARGUMENT, "the shard's classes [vocab_start, vocab_start + C) = [", r.vocab_start, ", ",
               r.vocab_start, " + ", C, ") must lie in the vocabulary [0, vocab_size) = [0, ", r.vocab_size, ")");

  // Options.
  check_tensor(r.options ? r.options->weight : nullptr, "weight", false, dtype, "logits");
  if (r.options) resolve_options(*r.options, shard ? r.vocab_size : C, p);

  // Output shapes.
  const std::array<int64_t, XENT_MAX_RANK> loss_shape = shape_without_axis(p);
  const bool reduced = p.layout.options.reduction != XENT_REDUCTION_NONE;
  const int loss_rank = reduced ? 0 : p.rank - 1;
  const char* loss_what = reduced ? "a scalar: the loss is reduced"
                                  : "the broadcast shape of labels and logits without the class axis";
  if (r.loss) require_shape(*r.loss, "loss", loss_shape.data(), loss_rank, loss_what);
  if (r.grad_loss) require_shape(*r.grad_loss, "grad_loss", loss_shape.data(), loss_rank, loss_what);
  if (r.grad_logits) require_shape(*r.grad_logits, "grad_logits", logits.shape, logits.rank, "logits' shape");
  if (r.grad_labels) {
    if (r.sparse) throw fail(XENT_INVALID_ARGUMENT, "grad_labels must be NULL: class-index labels have no gradient");
    require_shape(*r.grad_labels, "grad_labels", labels.shape, labels.rank, "labels' shape");
  }

  // Outputs: each element written once, no sharing with inputs or other outputs.
  const std::pair<const xent_tensor*, const char*> outputs[] = {
      {r.loss, "loss"}, {r.grad_logits, "grad_logits"}, {r.grad_labels, "grad_labels"}};
  const std::pair<const xent_tensor*, const char*> inputs[] = {{r.logits, "logits"},
                                                               {r.labels, "labels"},
                                                               {r.grad_loss, "grad_loss"},
                                                               {r.options ? r.options->weight : nullptr, "weight"}};
  // The one sharing allowed: a gradient written in place over its own input, given as the very same view (opt-in,
  // as llm.c's fused classifier does: the backward then needs no second logits-sized buffer).
  const auto in_place = [&](const xent_tensor* out, const xent_tensor* in) {
    return (out == r.grad_logits && in == r.logits) || (out == r.grad_labels && in == r.labels && !r.sparse)
               ? same_view(*out, *in)
               : false;
  };
  for (int i = 0; i < 3; ++i) {
    if (outputs[i].first == nullptr) continue;
    check_no_self_overlap(*outputs[i].first, outputs[i].second);
    for (const auto& in : inputs)
      if (!in_place(outputs[i].first, in.first)) check_disjoint(outputs[i].first, outputs[i].second, in.first, in.second);
    for (int j = i + 1; j < 3; ++j)
      check_disjoint(outputs[i].first, outputs[i].second, outputs[j].first, outputs[j].second);
  }

  // Where every operand is, with its strides over the broadcast shape.
  Operands ops;
  ops.set(kLogits, logits.data, broadcast_strides(logits, p.rank));
  ops.set(kLabels, labels.data, r.sparse ? strides_without_axis(labels, p) : broadcast_strides(labels, p.rank));
  if (reduced) {  // scalars: the C API folds them in (Layout::row_loss, Layout::grad_scale)
    p.scalar_loss = r.loss;
    p.scalar_grad_loss = r.grad_loss;
  } else {
    if (r.loss) ops.set(kLoss, r.loss->data, strides_without_axis(*r.loss, p));
    if (r.grad_loss) ops.set(kGradLoss, r.grad_loss->data, strides_without_axis(*r.grad_loss, p));
  }
  // Gradients of broadcast inputs go through full-shape temporaries (row-major over the broadcast shape), and then
  // both do: the kernels write both gradients in one type.
  const auto broadcast = [&](const xent_tensor& t) {
    return t.rank != p.rank || !std::equal(t.shape, t.shape + t.rank, p.shape.begin());
  };
  const bool temporaries = (r.grad_logits && broadcast(logits)) || (r.grad_labels && !r.sparse && broadcast(labels));
  // (A shape of no elements may hold any dimension, INT64_MAX included: its product of dimensions is not formed.)
  std::array<int64_t, XENT_MAX_RANK> row_major{};
  int64_t stride = 1;
  if (p.elements > 0)
    for (int d = p.rank - 1; d >= 0; --d) row_major[d] = stride, stride *= p.shape[d];
  const auto gradient = [&](Operand k, const xent_tensor* t, const xent_tensor** reduced_into) {
    if (t == nullptr) return;
    if (!temporaries) return ops.set(k, t->data, broadcast_strides(*t, p.rank));
    ops.set(k, nullptr, row_major);
    *reduced_into = t;
  };
  gradient(kGradLogits, r.grad_logits, &p.reduced_grad_logits);
  gradient(kGradLabels, r.grad_labels, &p.reduced_grad_labels);

  Layout l;
  l.sparse = r.sparse;
  l.label_dtype = static_cast<xent_dtype>(labels.dtype);
  const Options& o = l.options = p.layout.options;
  l.general = r.sparse || o.weight || o.alpha != 1 || o.z_loss != 0 || o.softcap != 0;
  p.layout = make_layout(p, ops, l);
  if (shard) p.layout.vocab_start = r.vocab_start, p.layout.vocab_size = r.vocab_size;
}

}  // namespace

xent_status make_plan(const Request& request, Plan* plan, std::string* error) {
  try {
    plan_or_throw(request, plan);
    return XENT_OK;
  } catch (const Failure& f) {
    *error = f.message;
    return f.status;
  }
}

int loss_shape(const Plan& p, int64_t shape[XENT_MAX_RANK]) {
  if (p.layout.options.reduction != XENT_REDUCTION_NONE) return 0;
  const std::array<int64_t, XENT_MAX_RANK> without_axis = shape_without_axis(p);
  std::copy(without_axis.begin(), without_axis.begin() + p.rank - 1, shape);
  return p.rank - 1;
}

}  // namespace xent::internal
