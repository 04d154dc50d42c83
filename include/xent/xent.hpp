/// @file xent/xent.hpp
/// C++ API: a thin header over the C API (xent.h, which documents the math, dtypes, error bound
/// and special values). Views describe memory without owning it; failures throw xent::Error with the message.
///
///   float logits[] = {4, 2, 1, 0, 5, 1}, labels[] = {1, 0, 0, 0, 0.8f, 0.2f}, loss[2];
///   xent::softmax_cross_entropy({labels, {2, 3}}, {logits, {2, 3}}, {loss, {2}});   // loss = {0.169846, 0.824745}
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "xent/half.h"
#include "xent/xent.h"

namespace xent {

/// What every function here throws on failure: the C API's status and its message (what() names the argument).
class Error : public std::runtime_error {
 public:
  /// An error of the given status and message.
  Error(xent_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  /// The C API's status (never XENT_OK).
  xent_status status() const { return status_; }

 private:
  xent_status status_;
};

/// Throws Error with this thread's last error message unless status is XENT_OK.
inline void check(xent_status status) {
  if (status != XENT_OK) throw Error(status, xent_last_error_message());
}

/// The xent_dtype of a C++ element type (float16, bfloat16, float, double; int32_t, int64_t for class indices).
template <typename T>
constexpr xent_dtype dtype_of() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float16>) return XENT_FLOAT16;
  else if constexpr (std::is_same_v<U, bfloat16>) return XENT_BFLOAT16;
  else if constexpr (std::is_same_v<U, float>) return XENT_FLOAT32;
  else if constexpr (std::is_same_v<U, double>) return XENT_FLOAT64;
  else if constexpr (std::is_same_v<U, int32_t>) return XENT_INT32;  // class indices
  else if constexpr (std::is_same_v<U, int64_t>) return XENT_INT64;
  else static_assert(sizeof(U) == 0, "xent supports xent::float16, xent::bfloat16, float, double (and int32/int64 class indices)");
}

/// Sizes or strides: {2, 3} or any span of int64_t.
struct Dims {
  Dims() = default;  ///< none: a scalar's shape, or row-major strides
  Dims(std::initializer_list<int64_t> list) : values(list) {}              ///< {2, 3}
  Dims(std::span<const int64_t> span) : values(span.begin(), span.end()) {}  ///< any span
  Dims(const std::vector<int64_t>& vector) : values(vector) {}             ///< a vector
  std::vector<int64_t> values;  ///< one per dimension
};

/// A read-only view: data, shape, and strides in elements (empty: row-major contiguous).
class ConstView {
 public:
  /// A view of data (element [0, ..., 0]) with this shape and strides in elements (none: row-major).
  template <typename T>
  ConstView(const T* data, const Dims& shape, const Dims& strides = {}) {
    init(const_cast<T*>(data), dtype_of<T>(), shape, strides);
  }
  /// The C API's descriptor of this view.
  const xent_tensor* get() const { return &desc_; }

 protected:
  /// @cond internal
  ConstView() = default;
  void init(void* data, xent_dtype dtype, const Dims& shape, const Dims& strides) {
    if (shape.values.size() > XENT_MAX_RANK || (!strides.values.empty() && strides.values.size() != shape.values.size()))
      throw Error(XENT_INVALID_ARGUMENT, "a view needs at most " + std::to_string(XENT_MAX_RANK) +
                                             " dimensions and one stride per dimension");
    desc_ = xent_make_tensor(data, dtype, static_cast<int32_t>(shape.values.size()), shape.values.data(),
                             strides.values.empty() ? nullptr : strides.values.data());
  }
  xent_tensor desc_{};
  /// @endcond
};

/// A writable view, for outputs.
class View : public ConstView {
 public:
  /// As ConstView's, for writable data.
  template <typename T, typename = std::enable_if_t<!std::is_const_v<T>>>
  View(T* data, const Dims& shape, const Dims& strides = {}) {
    init(data, dtype_of<T>(), shape, strides);
  }
};

/// loss = Σ_j labels_j · (logsumexp(logits) − logits_j) along `axis`. See xent.h.
inline void softmax_cross_entropy(const ConstView& labels, const ConstView& logits, const View& loss,
                                  int64_t axis = -1) {
  check(xent_softmax_cross_entropy(labels.get(), logits.get(), axis, loss.get()));
}

/// What softmax_cross_entropy_grad reads and writes besides the inputs; every member is optional.
struct GradientOutputs {
  std::optional<ConstView> grad_loss;  ///< upstream gradient, loss's shape; absent: 1
  std::optional<View> loss;            ///< loss's shape
  std::optional<View> grad_logits;  ///< logits' shape
  std::optional<View> grad_labels;  ///< labels' shape
};

/// Loss and gradients in one pass. See xent.h.
inline void softmax_cross_entropy_grad(const ConstView& labels, const ConstView& logits, const GradientOutputs& out,
                                       int64_t axis = -1) {
  const auto ptr = [](const auto& v) { return v ? v->get() : nullptr; };
  check(xent_softmax_cross_entropy_grad(labels.get(), logits.get(), axis, ptr(out.grad_loss), ptr(out.loss),
                                        ptr(out.grad_logits), ptr(out.grad_labels)));
}

/// Class-index labels (int32/int64, logits' shape without the class axis). See xent.h.
inline void sparse_softmax_cross_entropy(const ConstView& labels, const ConstView& logits, const View& loss,
                                         int64_t axis = -1) {
  check(xent_sparse_softmax_cross_entropy(labels.get(), logits.get(), axis, loss.get()));
}

/// Outputs of the sparse and options entry points (no gradient wrt class indices); every member is optional.
struct LogitGradientOutputs {
  std::optional<ConstView> grad_loss;  ///< loss's shape; absent: 1
  std::optional<View> loss;            ///< the loss
  std::optional<View> grad_logits;     ///< logits' shape
};

/// Class-index labels' loss and gradient in one pass. See xent.h.
inline void sparse_softmax_cross_entropy_grad(const ConstView& labels, const ConstView& logits,
                                              const LogitGradientOutputs& out, int64_t axis = -1) {
  const auto ptr = [](const auto& v) { return v ? v->get() : nullptr; };
  check(xent_sparse_softmax_cross_entropy_grad(labels.get(), logits.get(), axis, ptr(out.grad_loss), ptr(out.loss),
                                               ptr(out.grad_logits)));
}

/// xent_loss_options with PyTorch's defaults.
struct LossOptions {
  std::optional<ConstView> weight;  ///< [C]
  int64_t ignore_index = -100;                     ///< class-index targets equal to this are ignored
  xent_reduction reduction = XENT_REDUCTION_MEAN;  ///< NONE, SUM or MEAN
  double label_smoothing = 0;                      ///< in [0, 1]
  double z_loss = 0;                               ///< >= 0
  double softcap = 0;                              ///< > 0, or 0 for none

  /// The C API's options (weight points into this object's view).
  xent_loss_options c() const {
    xent_loss_options o = xent_default_loss_options();
    o.weight = weight ? weight->get() : nullptr;
    o.ignore_index = ignore_index;
    o.reduction = reduction;
    o.label_smoothing = label_smoothing;
    o.z_loss = z_loss;
    o.softcap = softcap;
    return o;
  }
};

/// Cross-entropy with options; target: class indices or probabilities. See xent.h.
inline void cross_entropy(const ConstView& logits, const ConstView& target, const View& loss,
                          const LossOptions& options = {}, int64_t axis = -1) {
  const xent_loss_options o = options.c();
  check(xent_cross_entropy(logits.get(), target.get(), axis, &o, loss.get()));
}

/// Loss and grad_logits in one pass. See xent.h.
inline void cross_entropy_grad(const ConstView& logits, const ConstView& target, const LogitGradientOutputs& out,
                               const LossOptions& options = {}, int64_t axis = -1) {
  const xent_loss_options o = options.c();
  const auto ptr = [](const auto& v) { return v ? v->get() : nullptr; };
  check(xent_cross_entropy_grad(logits.get(), target.get(), axis, &o, ptr(out.grad_loss), ptr(out.loss),
                                ptr(out.grad_logits)));
}

/// The loss's shape: the broadcast shape of labels and logits without the class axis (labels: probabilities, or class
/// indices of logits' shape without the class axis).
inline std::vector<int64_t> loss_shape(const ConstView& labels, const ConstView& logits, int64_t axis = -1) {
  int32_t rank = 0;
  int64_t shape[XENT_MAX_RANK];
  check(xent_loss_shape(labels.get(), logits.get(), axis, &rank, shape));
  return std::vector<int64_t>(shape, shape + rank);
}

/// Outputs of linear_cross_entropy_grad; every member is optional (grad_linear_bias needs a linear_bias).
struct LinearGradientOutputs {
  std::optional<ConstView> grad_loss;  ///< the loss's shape; absent: 1
  std::optional<View> loss;            ///< target's shape for NONE, [] otherwise
  std::optional<View> grad_input;          ///< input's shape [..., H]
  std::optional<View> grad_linear_weight;  ///< [V, H]
  std::optional<View> grad_linear_bias;    ///< [V]
};

/// The fused linear + cross-entropy: the loss of cross_entropy(input · linear_weightᵀ + linear_bias, target) along
/// the last axis, without holding the logits. See xent.h.
inline void linear_cross_entropy(const ConstView& input, const ConstView& linear_weight, const ConstView& target,
                                 const View& loss, const LossOptions& options = {},
                                 const std::optional<ConstView>& linear_bias = std::nullopt) {
  const xent_loss_options o = options.c();
  check(xent_linear_cross_entropy(input.get(), linear_weight.get(), linear_bias ? linear_bias->get() : nullptr,
                                  target.get(), &o, loss.get()));
}

/// The fused op's loss and gradients in one pass over the chunks. See xent.h.
inline void linear_cross_entropy_grad(const ConstView& input, const ConstView& linear_weight,
                                      const ConstView& target, const LinearGradientOutputs& out,
                                      const LossOptions& options = {},
                                      const std::optional<ConstView>& linear_bias = std::nullopt) {
  const xent_loss_options o = options.c();
  const auto ptr = [](const auto& v) { return v ? v->get() : nullptr; };
  check(xent_linear_cross_entropy_grad(input.get(), linear_weight.get(), ptr(linear_bias), target.get(), &o,
                                       ptr(out.grad_loss), ptr(out.loss), ptr(out.grad_input),
                                       ptr(out.grad_linear_weight), ptr(out.grad_linear_bias)));
}

/// The fused op's working memory for a chunk's logits, in bytes (<= 0: the default). See xent.h.
inline void set_linear_chunk_bytes(int64_t bytes) { xent_set_linear_chunk_bytes(bytes); }

/// The loss's shape of cross_entropy: [] (a scalar) for SUM and MEAN.
inline std::vector<int64_t> cross_entropy_loss_shape(const ConstView& logits, const ConstView& target,
                                                     const LossOptions& options = {}, int64_t axis = -1) {
  const xent_loss_options o = options.c();
  int32_t rank = 0;
  int64_t shape[XENT_MAX_RANK];
  check(xent_cross_entropy_loss_shape(logits.get(), target.get(), axis, &o, &rank, shape));
  return std::vector<int64_t>(shape, shape + rank);
}

/// Caps the threads xent uses; n <= 0: all available. Process-wide.
inline void set_num_threads(int n) { xent_set_num_threads(n); }
/// The threads xent's next call may use.
inline int num_threads() { return xent_get_num_threads(); }

}  // namespace xent
