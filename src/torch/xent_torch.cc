// xent_torch.cc — xent's ops registered with PyTorch's dispatcher (xent_torch.h): argument conversion, the C API
// call, and the autograd formulas as torch::autograd::Functions (one graph node per op). The operators are
// CompositeImplicitAutograd kernels: the dispatcher sends every call here, and Function::apply records the node only
// when an input needs a gradient.
#include "xent/xent_torch.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <sys/mman.h>

#include <array>
#include <cstdlib>
#include <string>
#include <vector>

#include "xent/xent.h"

namespace xent::torch {
namespace {

using at::Tensor;
using ::torch::autograd::AutogradContext;
using ::torch::autograd::variable_list;

// ---- Tensors and statuses across the C API

// A dtype as Python spells it (torch.float32), for messages.
std::string DtypeName(at::ScalarType type) {
  switch (type) {
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kInt: return "torch.int32";
    case at::kLong: return "torch.int64";
    default: return std::string("torch.") + c10::toString(type);
  }
}

xent_dtype DtypeOf(const Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kHalf: return XENT_FLOAT16;
    case at::kBFloat16: return XENT_BFLOAT16;
    case at::kFloat: return XENT_FLOAT32;
    case at::kDouble: return XENT_FLOAT64;
    case at::kInt: return XENT_INT32;
    case at::kLong: return XENT_INT64;
    default:
      TORCH_CHECK_TYPE(false, name, " has dtype ", DtypeName(t.scalar_type()),
                       "; xent takes float16, bfloat16, float32, float64 (and int32/int64 class indices)");
  }
}

// A view of t for the C API: its data, shape and strides as they are (no copy).
xent_tensor View(const Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.defined(), name, " is an undefined tensor");
  TORCH_CHECK_VALUE(t.device().is_cpu(), name, " must be a CPU tensor, received one on ", t.device());
  TORCH_CHECK_VALUE(t.layout() == at::kStrided, name, " must be a dense (strided) tensor, received layout ",
                    t.layout());
  TORCH_CHECK_VALUE(t.dim() <= XENT_MAX_RANK, name, " has rank ", t.dim(), "; xent takes at most ", XENT_MAX_RANK);
  xent_tensor v{};
  v.data = t.data_ptr();
  v.dtype = DtypeOf(t, name);
  v.rank = static_cast<int32_t>(t.dim());
  for (int64_t d = 0; d < t.dim(); ++d) v.shape[d] = t.size(d), v.strides[d] = t.stride(d);
  return v;
}

// A failed C API call as the exception PyTorch maps to the matching Python type.
void Check(xent_status status) {
  if (status == XENT_OK) return;
  const char* message = xent_last_error_message();
  switch (status) {
    case XENT_INVALID_ARGUMENT: TORCH_CHECK_VALUE(false, message);
    case XENT_INVALID_DTYPE: TORCH_CHECK_TYPE(false, message);
    case XENT_OUT_OF_MEMORY: TORCH_CHECK_WITH(OutOfMemoryError, false, "xent: out of memory: ", message);
    default: TORCH_CHECK(false, "xent: ", message);
  }
}

xent_reduction ReductionOf(c10::string_view reduction) {
  if (reduction == "mean") return XENT_REDUCTION_MEAN;
  if (reduction == "sum") return XENT_REDUCTION_SUM;
  if (reduction == "none") return XENT_REDUCTION_NONE;
  TORCH_CHECK_VALUE(false, "reduction must be 'none', 'sum' or 'mean', received '", reduction, "'");
}

// The loss options that travel from the forward to the backward (AutogradContext::saved_data holds IValues).
struct Settings {
  int64_t axis = 1;
  int64_t ignore_index = -100;
  xent_reduction reduction = XENT_REDUCTION_MEAN;
  bool inplace_backward = false;
  double label_smoothing = 0, z_loss = 0, softcap = 0;  // softcap 0: none

  void Save(AutogradContext* ctx) const {
    ctx->saved_data["i"] = std::vector<int64_t>{axis, ignore_index, reduction, inplace_backward};
    ctx->saved_data["f"] = std::vector<double>{label_smoothing, z_loss, softcap};
  }
  static Settings Load(AutogradContext* ctx) {
    const auto i = ctx->saved_data["i"].toIntVector();
    const auto f = ctx->saved_data["f"].toDoubleVector();
    return Settings{i[0], i[1], static_cast<xent_reduction>(i[2]), i[3] != 0, f[0], f[1], f[2]};
  }
};

// The C API's options for these settings; `weight` must outlive the result's use (it points at it).
xent_loss_options OptionsOf(const Settings& s, const xent_tensor* weight) {
  xent_loss_options o = xent_default_loss_options();
  o.weight = weight;
  o.ignore_index = s.ignore_index;
  o.reduction = s.reduction;
  o.label_smoothing = s.label_smoothing;
  o.z_loss = s.z_loss;
  o.softcap = s.softcap;
  return o;
}

double SoftcapOf(c10::optional<double> softcap) {
  TORCH_CHECK_VALUE(!softcap || *softcap > 0, "softcap must be > 0 (or None for no soft-capping), received ",
                    *softcap);
  return softcap ? *softcap : 0.0;
}

// A new contiguous tensor for a gradient. Large ones (from 64 MiB) are mapped with transparent huge pages where
// the kernel offers them (its madvise mode): a fresh logits-sized gradient is otherwise first touched 4 KiB at a
// time, and those page faults cost a training step more than the kernel that writes the gradient (8192 x 32 000
// float32: docs/performance.md). The memory is freed when the tensor is.
Tensor NewGradient(at::IntArrayRef sizes, const at::TensorOptions& options) {
  constexpr size_t kHuge = size_t{2} << 20, kFrom = size_t{64} << 20;
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) * options.dtype().itemsize();
  if (bytes < kFrom) return at::empty(sizes, options);
  const size_t mapped = (bytes + kHuge - 1) / kHuge * kHuge;
  void* memory = std::aligned_alloc(kHuge, mapped);
  if (memory == nullptr) return at::empty(sizes, options);  // PyTorch's allocator then reports the failure
  madvise(memory, mapped, MADV_HUGEPAGE);  // advice only: without huge pages it is ordinary memory
  return at::from_blob(memory, sizes, [](void* p) { std::free(p); }, options);
}

// ---- cross_entropy

// The loss, and the gradient of the logits into `grad_input` when it is defined (grad_loss undefined: 1).
Tensor RunCrossEntropy(const Tensor& input, const Tensor& target, const Tensor& weight, const Settings& s,
                       const Tensor& grad_loss, const Tensor& grad_input, bool want_loss) {
  const xent_tensor x = View(input, "input"), t = View(target, "target");
  xent_tensor w{};
  if (weight.defined()) w = View(weight, "weight");
  const xent_loss_options o = OptionsOf(s, weight.defined() ? &w : nullptr);
  Tensor loss;
  xent_tensor l{};
  if (want_loss) {
    if (s.reduction == XENT_REDUCTION_NONE) {
      int32_t rank = 0;
      std::array<int64_t, XENT_MAX_RANK> shape{};
      Check(xent_cross_entropy_loss_shape(&x, &t, s.axis, &o, &rank, shape.data()));
      loss = at::empty(c10::IntArrayRef(shape.data(), rank), input.options());
    } else {
      loss = at::empty({}, input.options());
    }
    l = View(loss, "loss");
  }
  if (!grad_input.defined()) {
    Check(xent_cross_entropy(&x, &t, s.axis, &o, &l));
    return loss;
  }
  xent_tensor g{};
  if (grad_loss.defined()) g = View(grad_loss, "grad_loss");
  const xent_tensor gx = View(grad_input, "grad_input");
  Check(xent_cross_entropy_grad(&x, &t, s.axis, &o, grad_loss.defined() ? &g : nullptr, want_loss ? &l : nullptr,
                                &gx));
  return loss;
}

// The gradient of the logits as an ATen expression, differentiable again (double backward, create_graph=True):
//   g * ((Σa + 2·z·lse) · softmax(x') − a) · dx'/dx   (xent.h's formula, with the reduction's scale in g).
Tensor GradientExpression(const Tensor& input, const Tensor& target, const Tensor& weight, const Settings& s,
                          const Tensor& grad_loss) {
  const Tensor x = input.movedim(s.axis, -1);
  const int64_t classes = x.size(-1);
  const Tensor xp = s.softcap > 0 ? s.softcap * at::tanh(x / s.softcap) : x;
  const Tensor w = weight.defined() ? weight : at::ones({classes}, x.options());
  const double eps = s.label_smoothing;
  Tensor a, keep, denominator;
  if (target.is_floating_point()) {
    a = w * ((1 - eps) * target.movedim(s.axis, -1) + eps / classes);
    keep = at::ones(a.sizes().slice(0, a.dim() - 1), x.options());
    denominator = at::scalar_tensor(static_cast<double>(keep.numel()), x.options());
  } else {
    const Tensor kept = target != s.ignore_index;
    const Tensor safe = at::where(kept, target, at::zeros_like(target));
    const Tensor onehot = at::one_hot(safe.to(at::kLong), classes).to(x.scalar_type());
    const Tensor w_target = w.index_select(0, safe.reshape({-1}).to(at::kLong)).reshape(safe.sizes());
    keep = kept.to(x.scalar_type());
    a = ((1 - eps) * w_target.unsqueeze(-1) * onehot + eps / classes * w) * keep.unsqueeze(-1);
    denominator = (w_target * keep).sum();
  }
  const Tensor lse = at::logsumexp(xp, {-1}, true);
  const Tensor p = at::softmax(xp, -1);
  Tensor g = grad_loss;
  if (s.reduction == XENT_REDUCTION_MEAN) g = at::where(denominator > 0, g / denominator, at::zeros_like(g));
  g = (g * keep).unsqueeze(-1);
  Tensor grad = g * ((a.sum(-1, true) + 2 * s.z_loss * lse) * p - a);
  if (s.softcap > 0) grad = grad * (1 - (xp / s.softcap).pow(2));
  return grad.movedim(-1, s.axis);
}

// The gradient of probability targets: d loss / d y_j = g · (1 − ε) · w_j · (lse − x'_j) (z-loss does not depend
// on y, MEAN's denominator, the row count, neither).
Tensor TargetGradient(const Tensor& input, const Tensor& target, const Tensor& weight, const Settings& s,
                      const Tensor& grad_loss) {
  const Tensor x = input.movedim(s.axis, -1);
  const Tensor xp = s.softcap > 0 ? s.softcap * at::tanh(x / s.softcap) : x;
  Tensor g = grad_loss;
  if (s.reduction == XENT_REDUCTION_MEAN) {
    const int64_t rows = x.numel() / std::max<int64_t>(x.size(-1), 1);
    g = rows > 0 ? g / static_cast<double>(rows) : at::zeros_like(g);
  }
  Tensor grad = -(1 - s.label_smoothing) * g.unsqueeze(-1) * at::log_softmax(xp, -1);
  if (weight.defined()) grad = grad * weight;
  return grad.movedim(-1, s.axis).expand(target.sizes()).to(target.scalar_type());
}

class CrossEntropyFunction : public ::torch::autograd::Function<CrossEntropyFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& input, const Tensor& target,
                        const c10::optional<Tensor>& weight, const Settings& s) {
    const Tensor w = weight.value_or(Tensor());
    ctx->save_for_backward({input, target, w});
    s.Save(ctx);
    return RunCrossEntropy(input, target, w, s, Tensor(), Tensor(), true);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &input = saved[0], &target = saved[1], &weight = saved[2];
    const Settings s = Settings::Load(ctx);
    const Tensor& grad_loss = grads[0];
    Tensor grad_input, grad_target;
    if (ctx->needs_input_grad(1)) {
      TORCH_CHECK_VALUE(target.is_floating_point(), "class-index targets have no gradient");
      grad_target = TargetGradient(input, target, weight, s, grad_loss);
    }
    if (ctx->needs_input_grad(0)) {
      if (at::GradMode::is_enabled()) {  // create_graph=True: a differentiable expression of the same gradient
        grad_input = GradientExpression(input, target, weight, s, grad_loss);
      } else {
        const Tensor g = grad_loss.to(input.scalar_type());
        if (s.inplace_backward) {
          // The gradient overwrites the logits (the C API's in-place request: the very same view).
          RunCrossEntropy(input, target, weight, s, g, input, false);
          input.unsafeGetTensorImpl()->bump_version();
          grad_input = input.detach();
        } else {
          grad_input = NewGradient(input.sizes(), input.options());
          RunCrossEntropy(input, target, weight, s, g, grad_input, false);
        }
      }
    }
    return {grad_input, grad_target, Tensor(), Tensor()};
  }
};

Tensor CrossEntropyOp(const Tensor& input, const Tensor& target, const c10::optional<Tensor>& weight,
                      int64_t ignore_index, c10::string_view reduction, double label_smoothing, double z_loss,
                      c10::optional<double> softcap, c10::optional<int64_t> axis, bool inplace_backward) {
  Settings s;
  s.axis = axis ? *axis : (input.dim() >= 2 ? 1 : 0);  // F.cross_entropy's class dimension
  s.ignore_index = ignore_index;
  s.reduction = ReductionOf(reduction);
  s.label_smoothing = label_smoothing;
  s.z_loss = z_loss;
  s.softcap = SoftcapOf(softcap);
  s.inplace_backward = inplace_backward;
  if (inplace_backward && input.requires_grad() && at::GradMode::is_enabled())
    TORCH_CHECK_VALUE(!input.is_leaf(),
                      "inplace_backward writes the gradient over the logits, but input is a leaf tensor (a parameter "
                      "or a tensor you created): its values are needed. Use it for logits computed by an operation, "
                      "e.g. a linear layer's output, or pass inplace_backward=False");
  if (target.is_floating_point() && target.scalar_type() != input.scalar_type())
    TORCH_CHECK_TYPE(false, "target probabilities must have input's dtype ", DtypeName(input.scalar_type()),
                     ", received ", DtypeName(target.scalar_type()));
  if (weight && weight->defined() && weight->scalar_type() != input.scalar_type())
    TORCH_CHECK_TYPE(false, "weight must have input's dtype ", DtypeName(input.scalar_type()), ", received ",
                     DtypeName(weight->scalar_type()));
  const bool differentiable = at::GradMode::is_enabled() &&
                              (input.requires_grad() || target.requires_grad() || (weight && weight->requires_grad()));
  if (!differentiable)  // no graph node: the forward alone, at the C API's own cost
    return RunCrossEntropy(input, target, weight.value_or(Tensor()), s, Tensor(), Tensor(), true);
  return CrossEntropyFunction::apply(input, target, weight, s);
}

// ---- TensorFlow's ops: softmax_cross_entropy_with_logits (dense labels, both gradients, numpy broadcasting) and
// sparse_softmax_cross_entropy_with_logits (class indices): one loss per row along `axis`, no options.

// The loss's shape for labels and logits (the broadcast shape without the class axis).
std::vector<int64_t> TfLossShape(const xent_tensor& labels, const xent_tensor& logits, int64_t axis) {
  int32_t rank = 0;
  std::array<int64_t, XENT_MAX_RANK> shape{};
  Check(xent_loss_shape(&labels, &logits, axis, &rank, shape.data()));
  return std::vector<int64_t>(shape.begin(), shape.begin() + rank);
}

// Forward of either op; with grad_logits/grad_labels defined, their gradients in the same pass (grad_loss: g).
Tensor RunTf(const Tensor& labels, const Tensor& logits, int64_t axis, const Tensor& grad_loss,
             const Tensor& grad_logits, const Tensor& grad_labels) {
  const xent_tensor y = View(labels, "labels"), x = View(logits, "logits");
  const bool sparse = !labels.is_floating_point();
  const Tensor loss = at::empty(TfLossShape(y, x, axis), logits.options());
  const xent_tensor l = View(loss, "loss");
  if (!grad_logits.defined() && !grad_labels.defined()) {
    Check(sparse ? xent_sparse_softmax_cross_entropy(&y, &x, axis, &l) : xent_softmax_cross_entropy(&y, &x, axis, &l));
    return loss;
  }
  xent_tensor g{}, gx{}, gy{};
  if (grad_loss.defined()) g = View(grad_loss, "grad_loss");
  if (grad_logits.defined()) gx = View(grad_logits, "grad_logits");
  if (grad_labels.defined()) gy = View(grad_labels, "grad_labels");
  const xent_tensor* gl = grad_loss.defined() ? &g : nullptr;
  if (sparse)
    Check(xent_sparse_softmax_cross_entropy_grad(&y, &x, axis, gl, &l, grad_logits.defined() ? &gx : nullptr));
  else
    Check(xent_softmax_cross_entropy_grad(&y, &x, axis, gl, &l, grad_logits.defined() ? &gx : nullptr,
                                          grad_labels.defined() ? &gy : nullptr));
  return loss;
}

class TfFunction : public ::torch::autograd::Function<TfFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& labels, const Tensor& logits, int64_t axis) {
    ctx->save_for_backward({labels, logits});
    ctx->saved_data["axis"] = axis;
    return RunTf(labels, logits, axis, Tensor(), Tensor(), Tensor());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &labels = saved[0], &logits = saved[1];
    const int64_t axis = ctx->saved_data["axis"].toInt();
    const bool sparse = !labels.is_floating_point();
    const bool want_labels = !sparse && ctx->needs_input_grad(0), want_logits = ctx->needs_input_grad(1);
    Tensor grad_labels, grad_logits;
    if (at::GradMode::is_enabled()) {  // create_graph=True: ATen expressions of the same gradients
      // In the broadcast shape with the class axis last: g·(Σy·softmax(x) − y) and g·(lse − x), then summed back
      // to each input's shape (the dense op's broadcasting).
      const std::vector<int64_t> shape =
          sparse ? logits.sizes().vec() : at::infer_size(labels.sizes(), logits.sizes());
      const int64_t a = axis < 0 ? axis + static_cast<int64_t>(shape.size()) : axis;
      const Tensor g = grads[0].unsqueeze(a);
      const Tensor log_p = at::log_softmax(logits.expand(shape), a);
      if (sparse) {
        const Tensor onehot = at::one_hot(labels.to(at::kLong), shape[a]).movedim(-1, a).to(logits.scalar_type());
        grad_logits = g * (log_p.exp() - onehot);
      } else {
        const Tensor y = labels.expand(shape);
        if (want_logits) grad_logits = at::sum_to(g * (y.sum(a, true) * log_p.exp() - y), logits.sizes());
        if (want_labels) grad_labels = at::sum_to(-g * log_p, labels.sizes());
      }
    } else {
      const Tensor g = grads[0].to(logits.scalar_type());
      if (want_logits) grad_logits = at::empty_like(logits, at::MemoryFormat::Contiguous);
      if (want_labels) grad_labels = at::empty_like(labels, at::MemoryFormat::Contiguous);
      if (want_logits || want_labels) RunTf(labels, logits, axis, g, grad_logits, grad_labels);
    }
    return {grad_labels, grad_logits, Tensor()};
  }
};

Tensor TfOp(const Tensor& labels, const Tensor& logits, int64_t axis, bool sparse) {
  if (sparse) {
    TORCH_CHECK_TYPE(!labels.is_floating_point(), "labels must hold class indices (torch.int64 or torch.int32), "
                     "received ", DtypeName(labels.scalar_type()));
  } else {
    TORCH_CHECK_TYPE(labels.scalar_type() == logits.scalar_type(), "labels must have logits' dtype ",
                     DtypeName(logits.scalar_type()), ", received ", DtypeName(labels.scalar_type()));
  }
  const bool differentiable = at::GradMode::is_enabled() && (labels.requires_grad() || logits.requires_grad());
  if (!differentiable) return RunTf(labels, logits, axis, Tensor(), Tensor(), Tensor());
  return TfFunction::apply(labels, logits, axis);
}

Tensor SoftmaxCrossEntropyWithLogitsOp(const Tensor& labels, const Tensor& logits, int64_t axis) {
  return TfOp(labels, logits, axis, false);
}

Tensor SparseSoftmaxCrossEntropyWithLogitsOp(const Tensor& labels, const Tensor& logits, int64_t axis) {
  return TfOp(labels, logits, axis, true);
}

// ---- linear_cross_entropy

struct LinearGradients {
  Tensor input, linear_weight, linear_bias;
};

// The fused op: the loss (when want_loss) and the gradients that are defined in `grads`.
Tensor RunLinear(const Tensor& input, const Tensor& linear_weight, const Tensor& linear_bias, const Tensor& target,
                 const Tensor& weight, const Settings& s, const Tensor& grad_loss, const LinearGradients& grads,
                 bool want_loss) {
  const xent_tensor h = View(input, "input"), W = View(linear_weight, "linear_weight"),
                    t = View(target, "target");
  xent_tensor b{}, w{}, g{}, l{}, gh{}, gW{}, gb{};
  if (linear_bias.defined()) b = View(linear_bias, "linear_bias");
  if (weight.defined()) w = View(weight, "weight");
  const xent_loss_options o = OptionsOf(s, weight.defined() ? &w : nullptr);
  Tensor loss;
  if (want_loss) {
    loss = s.reduction == XENT_REDUCTION_NONE ? at::empty(target.sizes(), input.options())
                                              : at::empty({}, input.options());
    l = View(loss, "loss");
  }
  const auto maybe = [](const Tensor& t, xent_tensor* v, const char* name) -> const xent_tensor* {
    if (!t.defined()) return nullptr;
    *v = View(t, name);
    return v;
  };
  const xent_tensor* bias = linear_bias.defined() ? &b : nullptr;
  if (!grads.input.defined() && !grads.linear_weight.defined() && !grads.linear_bias.defined()) {
    Check(xent_linear_cross_entropy(&h, &W, bias, &t, &o, &l));
    return loss;
  }
  Check(xent_linear_cross_entropy_grad(&h, &W, bias, &t, &o, maybe(grad_loss, &g, "grad_loss"),
                                       want_loss ? &l : nullptr, maybe(grads.input, &gh, "grad_input"),
                                       maybe(grads.linear_weight, &gW, "grad_linear_weight"),
                                       maybe(grads.linear_bias, &gb, "grad_linear_bias")));
  return loss;
}

// Which of input, linear_weight, linear_bias need a gradient.
using Wanted = std::array<bool, 3>;

LinearGradients NewGradients(const Wanted& wanted, const Tensor& input, const Tensor& linear_weight,
                             const Tensor& linear_bias) {
  LinearGradients g;
  if (wanted[0]) g.input = NewGradient(input.sizes(), input.options());
  if (wanted[1]) g.linear_weight = NewGradient(linear_weight.sizes(), linear_weight.options());
  if (wanted[2] && linear_bias.defined()) g.linear_bias = NewGradient(linear_bias.sizes(), linear_bias.options());
  return g;
}

class LinearCrossEntropyFunction : public ::torch::autograd::Function<LinearCrossEntropyFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& input, const Tensor& linear_weight,
                        const c10::optional<Tensor>& linear_bias, const Tensor& target,
                        const c10::optional<Tensor>& weight, const Settings& s, const Wanted& wanted) {
    const Tensor b = linear_bias.value_or(Tensor()), w = weight.value_or(Tensor());
    s.Save(ctx);
    if ((wanted[0] || wanted[1] || wanted[2]) && s.reduction != XENT_REDUCTION_NONE) {
      // A reduced loss has one upstream gradient: the gradients for 1 come from this same pass over the chunks,
      // and the backward only scales them (no second pass over the vocabulary).
      const LinearGradients g = NewGradients(wanted, input, linear_weight, b);
      ctx->saved_data["scaled"] = true;
      ctx->save_for_backward({g.input, g.linear_weight, g.linear_bias});
      return RunLinear(input, linear_weight, b, target, w, s, Tensor(), g, true);
    }
    // Per-row upstream gradients are known in the backward only, which runs the fused op with them.
    ctx->saved_data["scaled"] = false;
    ctx->save_for_backward({input, linear_weight, b, target, w});
    return RunLinear(input, linear_weight, b, target, w, s, Tensor(), LinearGradients{}, true);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "xent linear_cross_entropy has first derivatives only (create_graph=True is not supported)");
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& grad_loss = grads[0];
    LinearGradients g;
    if (ctx->saved_data["scaled"].toBool()) {
      g = {saved[0], saved[1], saved[2]};
      if (!(grad_loss == 1).all().item<bool>()) {
        const auto scale = [&](const Tensor& t) { return t.defined() ? t * grad_loss.to(t.scalar_type()) : t; };
        g = {scale(g.input), scale(g.linear_weight), scale(g.linear_bias)};
      }
    } else {
      const Tensor &input = saved[0], &linear_weight = saved[1], &linear_bias = saved[2];
      // The graph's edges are the tensor arguments present: the bias's is 2 only when there is a bias.
      const Wanted wanted{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                          linear_bias.defined() && ctx->needs_input_grad(2)};
      g = NewGradients(wanted, input, linear_weight, linear_bias);
      RunLinear(input, linear_weight, linear_bias, saved[3], saved[4], Settings::Load(ctx),
                grad_loss.to(input.scalar_type()).contiguous(), g, false);
    }
    return {g.input, g.linear_weight, g.linear_bias, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor LinearCrossEntropyOp(const Tensor& input, const Tensor& linear_weight, const Tensor& target,
                            const c10::optional<Tensor>& linear_bias, const c10::optional<Tensor>& weight,
                            int64_t ignore_index, c10::string_view reduction, double label_smoothing, double z_loss,
                            c10::optional<double> softcap) {
  Settings s;
  s.axis = -1;
  s.ignore_index = ignore_index;
  s.reduction = ReductionOf(reduction);
  s.label_smoothing = label_smoothing;
  s.z_loss = z_loss;
  s.softcap = SoftcapOf(softcap);
  const auto same_dtype = [&](const c10::optional<Tensor>& t, const char* name) {
    if (t && t->defined() && t->scalar_type() != input.scalar_type())
      TORCH_CHECK_TYPE(false, name, " must have input's dtype ", DtypeName(input.scalar_type()), ", received ",
                       DtypeName(t->scalar_type()));
  };
  same_dtype(linear_weight, "linear_weight");
  same_dtype(linear_bias, "linear_bias");
  same_dtype(weight, "weight");
  const bool grad_mode = at::GradMode::is_enabled();
  const Wanted wanted{grad_mode && input.requires_grad(), grad_mode && linear_weight.requires_grad(),
                      grad_mode && linear_bias && linear_bias->defined() && linear_bias->requires_grad()};
  if (!wanted[0] && !wanted[1] && !wanted[2] && !(weight && weight->requires_grad()))
    return RunLinear(input, linear_weight, linear_bias.value_or(Tensor()), target, weight.value_or(Tensor()), s,
                     Tensor(), LinearGradients{}, true);
  return LinearCrossEntropyFunction::apply(input, linear_weight, linear_bias, target, weight, s, wanted);
}

}  // namespace

// ---- The C++ API: calls through the dispatcher, as at:: functions do.

at::Tensor cross_entropy(const at::Tensor& input, const at::Tensor& target, const c10::optional<at::Tensor>& weight,
                         int64_t ignore_index, c10::string_view reduction, double label_smoothing, double z_loss,
                         c10::optional<double> softcap, c10::optional<int64_t> axis, bool inplace_backward) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("xent::cross_entropy", "")
                             .typed<decltype(CrossEntropyOp)>();
  return op.call(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, axis,
                 inplace_backward);
}

at::Tensor softmax_cross_entropy_with_logits(const at::Tensor& labels, const at::Tensor& logits, int64_t axis) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("xent::softmax_cross_entropy_with_logits", "")
                             .typed<decltype(SoftmaxCrossEntropyWithLogitsOp)>();
  return op.call(labels, logits, axis);
}

at::Tensor sparse_softmax_cross_entropy_with_logits(const at::Tensor& labels, const at::Tensor& logits,
                                                    int64_t axis) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("xent::sparse_softmax_cross_entropy_with_logits", "")
                             .typed<decltype(SparseSoftmaxCrossEntropyWithLogitsOp)>();
  return op.call(labels, logits, axis);
}

at::Tensor linear_cross_entropy(const at::Tensor& input, const at::Tensor& linear_weight, const at::Tensor& target,
                                const c10::optional<at::Tensor>& linear_bias, const c10::optional<at::Tensor>& weight,
                                int64_t ignore_index, c10::string_view reduction, double label_smoothing,
                                double z_loss, c10::optional<double> softcap) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("xent::linear_cross_entropy", "")
                             .typed<decltype(LinearCrossEntropyOp)>();
  return op.call(input, linear_weight, target, linear_bias, weight, ignore_index, reduction, label_smoothing, z_loss,
                 softcap);
}

}  // namespace xent::torch

TORCH_LIBRARY(xent, m) {
  m.def("cross_entropy(Tensor input, Tensor target, Tensor? weight=None, int ignore_index=-100, "
        "str reduction=\"mean\", float label_smoothing=0.0, float z_loss=0.0, float? softcap=None, int? axis=None, "
        "bool inplace_backward=False) -> Tensor",
        &xent::torch::CrossEntropyOp);
  m.def("linear_cross_entropy(Tensor input, Tensor linear_weight, Tensor target, Tensor? linear_bias=None, "
        "Tensor? weight=None, int ignore_index=-100, str reduction=\"mean\", float label_smoothing=0.0, "
        "float z_loss=0.0, float? softcap=None) -> Tensor",
        &xent::torch::LinearCrossEntropyOp);
  m.def("softmax_cross_entropy_with_logits(Tensor labels, Tensor logits, int axis=-1) -> Tensor",
        &xent::torch::SoftmaxCrossEntropyWithLogitsOp);
  m.def("sparse_softmax_cross_entropy_with_logits(Tensor labels, Tensor logits, int axis=-1) -> Tensor",
        &xent::torch::SparseSoftmaxCrossEntropyWithLogitsOp);
}
