// _xent: the Python binding of the C API. Arrays are read in place with their strides; outputs are new arrays, or
// the caller's (out=), written in place. Argument conversion and the keyword-only signatures live in xent/__init__.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "xent/xent.h"

namespace py = pybind11;

namespace {

xent_dtype dtype_of(const py::array& a, const char* name) {
  const py::dtype dt = a.dtype();
  if (dt.kind() == 'i' && (dt.itemsize() == 4 || dt.itemsize() == 8)) return dt.itemsize() == 4 ? XENT_INT32 : XENT_INT64;
  if (dt.kind() == 'f') {
    switch (dt.itemsize()) {
      case 2: return XENT_FLOAT16;
      case 4: return XENT_FLOAT32;
      case 8: return XENT_FLOAT64;
    }
  }
  throw py::type_error(std::string(name) + " must be float16, float32, float64, int32 or int64, received " +
                       py::str(static_cast<const py::handle&>(dt)).cast<std::string>());
}

// A view of the array; an array whose strides are not whole elements is replaced by a contiguous copy first.
xent_tensor view(py::array& a, const char* name) {
  const xent_dtype dtype = dtype_of(a, name);
  if (a.ndim() > XENT_MAX_RANK)
    throw py::value_error(std::string(name) + " has " + std::to_string(a.ndim()) + " dimensions; xent supports up to " +
                          std::to_string(XENT_MAX_RANK));
  const auto itemsize = a.itemsize();
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.strides(d) % itemsize != 0) {
      a = py::module_::import("numpy").attr("ascontiguousarray")(a);
      break;
    }
  int64_t shape[XENT_MAX_RANK], strides[XENT_MAX_RANK];
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    shape[d] = a.shape(d);
    strides[d] = a.strides(d) / itemsize;
  }
  return xent_make_tensor(const_cast<void*>(a.data()), dtype, static_cast<int32_t>(a.ndim()), shape, strides);
}

[[noreturn]] void raise(xent_status status) {
  const std::string message = xent_last_error_message();
  if (status == XENT_INVALID_DTYPE) throw py::type_error(message);
  if (status == XENT_OUT_OF_MEMORY) throw std::bad_alloc();
  throw py::value_error(message);
}

// Runs a C API call without the GIL and turns its failure into the Python exception.
template <typename Call>
void call_released(const Call& call) {
  xent_status status;
  {
    py::gil_scoped_release release;
    status = call();
  }
  if (status != XENT_OK) raise(status);
}

// The same for the ops on logits: small calls (under 16 K logits, a few microseconds) keep the GIL, whose release and
// reacquisition would be a tenth of their cost; larger ones let other Python threads run.
template <typename Call>
void call_on(const xent_tensor& logits, const Call& call) {
  int64_t elements = 1;
  for (int d = 0; d < logits.rank && d < XENT_MAX_RANK; ++d) elements *= logits.shape[d];
  if (elements >= (int64_t{1} << 14)) return call_released(call);
  const xent_status status = call();
  if (status != XENT_OK) raise(status);
}

// The arguments that are not arrays, checked here rather than in Python (a call's fixed cost): an int (a Python or
// numpy integer, not a bool), the reduction by name, the soft-cap (None, or a number > 0).
int64_t integer_argument(py::handle value, const char* name) {
  if (PyBool_Check(value.ptr()) || !PyIndex_Check(value.ptr()))
    throw py::type_error(std::string(name) + " must be an int, received " +
                         py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>());
  return value.cast<int64_t>();
}

int reduction_argument(py::handle value) {
  if (PyUnicode_Check(value.ptr())) {
    const std::string name = value.cast<std::string>();
    if (name == "none") return XENT_REDUCTION_NONE;
    if (name == "sum") return XENT_REDUCTION_SUM;
    if (name == "mean") return XENT_REDUCTION_MEAN;
  }
  throw py::value_error("reduction must be 'none', 'sum' or 'mean', received " + py::repr(value).cast<std::string>());
}

double softcap_argument(py::handle value) {
  if (value.is_none()) return 0.0;
  const double c = PyFloat_AsDouble(value.ptr());
  if (c == -1.0 && PyErr_Occurred()) throw py::error_already_set();  // not a number: Python's TypeError
  if (!(c > 0))
    throw py::value_error("softcap must be > 0 (or None for no soft-capping), received " +
                          py::str(value).cast<std::string>());
  return c;
}

// The view of an output the caller gave (out=): written in place, so never replaced by a copy. Its dtype, shape and
// overlap with the inputs and other outputs are checked by the library (xent_softmax_cross_entropy_grad).
xent_tensor output_view(py::array& a, const char* name) {
  if (!a.writeable()) throw py::value_error(std::string(name) + " (out=) is read-only");
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.strides(d) % a.itemsize() != 0)
      throw py::value_error(std::string(name) + " (out=) has strides that are not whole elements");
  return view(a, name);
}

// The caller's array, or a new one of the given shape and dtype.
py::array given_or_new(const std::optional<py::array>& given, const py::dtype& dtype,
                       const std::vector<py::ssize_t>& shape) {
  return given ? *given : py::array(dtype, shape);
}

// The loss's shape, as the library computes it (xent_loss_shape, xent_cross_entropy_loss_shape): the library
// reports a bad input here with the same message the op would give.
std::vector<py::ssize_t> loss_shape(const xent_tensor& labels, const xent_tensor& logits, int64_t axis,
                                    const xent_loss_options* options = nullptr) {
  int32_t rank = 0;
  int64_t shape[XENT_MAX_RANK];
  const xent_status status = options ? xent_cross_entropy_loss_shape(&logits, &labels, axis, options, &rank, shape)
                                     : xent_loss_shape(&labels, &logits, axis, &rank, shape);
  if (status != XENT_OK) raise(status);
  return std::vector<py::ssize_t>(shape, shape + rank);
}

py::array loss_array(const xent_tensor& labels, const xent_tensor& logits, int64_t axis, const py::array& like) {
  return py::array(like.dtype(), loss_shape(labels, logits, axis));
}

std::vector<py::ssize_t> shape_of(const xent_tensor& t) { return {t.shape, t.shape + t.rank}; }

py::array forward(py::array labels, py::array logits, py::handle axis_argument) {
  const int64_t axis = integer_argument(axis_argument, "axis");
  xent_tensor y = view(labels, "labels"), x = view(logits, "logits");
  py::array loss = loss_array(y, x, axis, logits);
  xent_tensor l = view(loss, "loss");
  call_on(x, [&] { return xent_softmax_cross_entropy(&y, &x, axis, &l); });
  return loss;
}

py::tuple grad(py::array labels, py::array logits, py::handle axis_argument, std::optional<py::array> grad_loss,
               std::optional<py::array> out_loss, std::optional<py::array> out_grad_logits,
               std::optional<py::array> out_grad_labels) {
  const int64_t axis = integer_argument(axis_argument, "axis");
  xent_tensor y = view(labels, "labels"), x = view(logits, "logits");
  py::array loss = out_loss ? *out_loss : loss_array(y, x, axis, logits);
  py::array grad_logits = given_or_new(out_grad_logits, logits.dtype(), shape_of(x));
  py::array grad_labels = given_or_new(out_grad_labels, logits.dtype(), shape_of(y));
  xent_tensor l = output_view(loss, "loss"), gx = output_view(grad_logits, "grad_logits"),
              gy = output_view(grad_labels, "grad_labels");
  std::optional<xent_tensor> g;
  if (grad_loss) g = view(*grad_loss, "grad_loss");
  call_on(x, [&] { return xent_softmax_cross_entropy_grad(&y, &x, axis, g ? &*g : nullptr, &l, &gx, &gy); });
  return py::make_tuple(loss, grad_logits, grad_labels);
}

// The outputs of the sparse and options entry points: the loss array of the given shape and, when asked for,
// grad_logits in logits' shape (each the caller's if given: out=); with their views and the optional upstream
// gradient's.
struct LogitOutputs {
  bool gradients;
  py::array loss, grad_logits;  // grad_logits: only with gradients
  xent_tensor l{}, gx{};
  std::optional<xent_tensor> g;

  LogitOutputs(const py::array& logits, const xent_tensor& x, const std::vector<py::ssize_t>& loss_shape,
               bool gradients, std::optional<py::array>& grad_loss, const std::optional<py::array>& out_loss,
               const std::optional<py::array>& out_grad_logits)
      : gradients(gradients), loss(given_or_new(out_loss, logits.dtype(), loss_shape)) {
    l = output_view(loss, "loss");
    if (gradients) {
      grad_logits = given_or_new(out_grad_logits, logits.dtype(), shape_of(x));
      gx = output_view(grad_logits, "grad_logits");
    }
    if (grad_loss) g = view(*grad_loss, "grad_loss");
  }
  const xent_tensor* grad_loss_view() const { return g ? &*g : nullptr; }
  const xent_tensor* grad_logits_view() const { return gradients ? &gx : nullptr; }
  py::tuple result() const { return py::make_tuple(loss, gradients ? py::object(grad_logits) : py::none()); }
};

// xent_loss_options from the binding's arguments.
xent_loss_options loss_options(const xent_tensor* weight, int64_t ignore_index, int reduction, double label_smoothing,
                               double z_loss, double softcap) {
  xent_loss_options o = xent_default_loss_options();
  o.weight = weight;
  o.ignore_index = ignore_index;
  o.reduction = reduction;
  o.label_smoothing = label_smoothing;
  o.z_loss = z_loss;
  o.softcap = softcap;
  return o;
}

py::tuple sparse(py::array labels, py::array logits, py::handle axis_argument, std::optional<py::array> grad_loss,
                 bool gradients, std::optional<py::array> out_loss, std::optional<py::array> out_grad_logits) {
  const int64_t axis = integer_argument(axis_argument, "axis");
  xent_tensor y = view(labels, "labels"), x = view(logits, "logits");
  const LogitOutputs out(logits, x, loss_shape(y, x, axis), gradients, grad_loss, out_loss, out_grad_logits);
  call_on(x, [&] {
    return xent_sparse_softmax_cross_entropy_grad(&y, &x, axis, out.grad_loss_view(), &out.l, out.grad_logits_view());
  });
  return out.result();
}

py::tuple cross_entropy(py::array logits, py::array target, py::handle axis_argument,
                        std::optional<py::array> weight, py::handle ignore_index, py::handle reduction,
                        double label_smoothing, double z_loss, py::handle softcap, std::optional<py::array> grad_loss,
                        bool gradients, std::optional<py::array> out_loss, std::optional<py::array> out_grad_logits) {
  const int reduction_value = reduction_argument(reduction);
  const int64_t ignore = integer_argument(ignore_index, "ignore_index");
  const double cap = softcap_argument(softcap);
  const int64_t axis = integer_argument(axis_argument, "axis");
  xent_tensor x = view(logits, "logits"), t = view(target, "target");
  std::optional<xent_tensor> w;
  if (weight) w = view(*weight, "weight");
  const xent_loss_options o = loss_options(w ? &*w : nullptr, ignore, reduction_value, label_smoothing, z_loss, cap);
  // A reduced loss is a scalar: its shape needs no second pass over the checks (the call makes them).
  const std::vector<py::ssize_t> shape =
      reduction_value == XENT_REDUCTION_NONE ? loss_shape(t, x, axis, &o) : std::vector<py::ssize_t>{};
  const LogitOutputs out(logits, x, shape, gradients, grad_loss, out_loss, out_grad_logits);
  call_on(x, [&] {
    return xent_cross_entropy_grad(&x, &t, axis, &o, out.grad_loss_view(), &out.l, out.grad_logits_view());
  });
  return out.result();
}

// A tensor described by (data pointer, xent_dtype, shape, strides in elements): how the PyTorch layer passes
// torch tensors (bfloat16 included) without copying them.
xent_tensor from_descriptor(const py::tuple& d, const char* name) {
  const auto shape = d[2].cast<std::vector<int64_t>>();
  const auto strides = d[3].cast<std::vector<int64_t>>();
  if (shape.size() > XENT_MAX_RANK || strides.size() != shape.size())
    throw py::value_error(std::string(name) + " has too many dimensions (xent supports " + std::to_string(XENT_MAX_RANK) + ")");
  return xent_make_tensor(reinterpret_cast<void*>(d[0].cast<uintptr_t>()), static_cast<xent_dtype>(d[1].cast<int>()),
                          static_cast<int32_t>(shape.size()), shape.data(), strides.data());
}

// An optional descriptor's tensor, and a pointer to an optional tensor (NULL when absent) for the C API.
std::optional<xent_tensor> from(const std::optional<py::tuple>& d, const char* name) {
  return d ? std::optional<xent_tensor>(from_descriptor(*d, name)) : std::nullopt;
}
const xent_tensor* ptr(const std::optional<xent_tensor>& v) { return v ? &*v : nullptr; }

// The op on descriptors (data pointer, dtype, shape, strides) of any dtype, bfloat16 included: bench/torch_step.py
// times xent's kernel alone with it on PyTorch tensors.
void cross_entropy_raw(const py::tuple& logits, const py::tuple& target, int64_t axis, std::optional<py::tuple> weight,
                       int64_t ignore_index, int reduction, double label_smoothing, double z_loss, double softcap,
                       std::optional<py::tuple> grad_loss, const py::tuple& loss, std::optional<py::tuple> grad_logits) {
  const xent_tensor x = from_descriptor(logits, "logits"), t = from_descriptor(target, "target"),
                    l = from_descriptor(loss, "loss");
  std::optional<xent_tensor> w, g, gx;
  if (weight) w = from_descriptor(*weight, "weight");
  if (grad_loss) g = from_descriptor(*grad_loss, "grad_loss");
  if (grad_logits) gx = from_descriptor(*grad_logits, "grad_logits");
  const xent_loss_options o = loss_options(w ? &*w : nullptr, ignore_index, reduction, label_smoothing, z_loss, softcap);
  call_released([&] { return xent_cross_entropy_grad(&x, &t, axis, &o, g ? &*g : nullptr, &l, gx ? &*gx : nullptr); });
}

// The fused linear + cross-entropy on numpy arrays: (loss, grad_input, grad_linear_weight, grad_linear_bias), the
// gradients only when asked for (grad_linear_bias None without a bias); outputs new arrays or the caller's (out=).
// The options as the C API takes them, checked as every function's are: (reduction's value, ignore_index, softcap:
// 0 for None). For the Python layers that pass them on to a protocol of several calls (xent.mpi, the torch
// vocab-parallel functions), which must refuse them before the first collective.
py::tuple options(py::handle reduction, py::handle ignore_index, py::handle softcap) {
  const int r = reduction_argument(reduction);
  const int64_t ignore = integer_argument(ignore_index, "ignore_index");
  return py::make_tuple(r, ignore, softcap_argument(softcap));
}

py::tuple linear(py::array input, py::array linear_weight, py::array target, std::optional<py::array> linear_bias,
                 std::optional<py::array> weight, py::handle ignore_index_argument, py::handle reduction_argument_,
                 double label_smoothing, double z_loss, py::handle softcap_argument_,
                 std::optional<py::array> grad_loss, bool gradients,
                 std::optional<py::array> out_loss, std::optional<py::array> out_grad_input,
                 std::optional<py::array> out_grad_linear_weight, std::optional<py::array> out_grad_linear_bias) {
  const int reduction = reduction_argument(reduction_argument_);
  const int64_t ignore_index = integer_argument(ignore_index_argument, "ignore_index");
  const double softcap = softcap_argument(softcap_argument_);
  xent_tensor x = view(input, "input"), w = view(linear_weight, "linear_weight"), t = view(target, "target");
  std::optional<xent_tensor> b, cw, g;
  if (linear_bias) b = view(*linear_bias, "linear_bias");
  if (weight) cw = view(*weight, "weight");
  if (grad_loss) g = view(*grad_loss, "grad_loss");
  const xent_loss_options o = loss_options(cw ? &*cw : nullptr, ignore_index, reduction, label_smoothing, z_loss, softcap);
  const std::vector<py::ssize_t> loss_shape =
      reduction == XENT_REDUCTION_NONE ? shape_of(t) : std::vector<py::ssize_t>{};
  py::array loss = given_or_new(out_loss, input.dtype(), loss_shape);
  xent_tensor l = output_view(loss, "loss");
  py::object grad_input = py::none(), grad_w = py::none(), grad_b = py::none();
  std::optional<xent_tensor> gx, gw, gb;
  if (gradients) {
    py::array a = given_or_new(out_grad_input, input.dtype(), shape_of(x));
    gx = output_view(a, "grad_input"), grad_input = a;
    py::array c = given_or_new(out_grad_linear_weight, input.dtype(), shape_of(w));
    gw = output_view(c, "grad_linear_weight"), grad_w = c;
    if (b) {
      py::array d = given_or_new(out_grad_linear_bias, input.dtype(), shape_of(*b));
      gb = output_view(d, "grad_linear_bias"), grad_b = d;
    }
  }
  call_released([&] {
    return xent_linear_cross_entropy_grad(&x, &w, ptr(b), &t, &o, ptr(g), &l, ptr(gx), ptr(gw), ptr(gb));
  });
  return py::make_tuple(loss, grad_input, grad_w, grad_b);
}

// ---- The vocabulary-parallel stages (xent_shard_statistics ... xent_shard_finish) for the Python drivers of
// xent.mpi and xent.torch. Row statistics travel as float64 arrays [rows, 4] (max, sum, label_sum, label_dot),
// written in place: so they must be C-contiguous, writeable float64 (never a silent copy).
xent_row_statistics* statistics_of(py::array& a, const char* name) {
  if (a.dtype().kind() != 'f' || a.itemsize() != 8 || a.ndim() != 2 || a.shape(1) != 4 ||
      !(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error(std::string(name) + " must be a writeable C-contiguous float64 array of shape [rows, 4]");
  return static_cast<xent_row_statistics*>(a.mutable_data());
}

// The options of a shard call (weight: the shard's class weights).
struct ShardOptions {
  std::optional<xent_tensor> weight;
  xent_loss_options options;
  ShardOptions(const std::optional<py::tuple>& w, int64_t ignore_index, int reduction, double label_smoothing,
               double z_loss, double softcap) {
    weight = from(w, "weight");
    options = loss_options(ptr(weight), ignore_index, reduction, label_smoothing, z_loss, softcap);
  }
};

double shard_statistics_raw(const py::tuple& logits, const py::tuple& target, int64_t axis,
                            std::optional<py::tuple> weight, int64_t ignore_index, int reduction,
                            double label_smoothing, double z_loss, double softcap, int64_t vocab_start,
                            int64_t vocab_size, py::array statistics) {
  const xent_tensor x = from_descriptor(logits, "logits"), t = from_descriptor(target, "target");
  const ShardOptions o(weight, ignore_index, reduction, label_smoothing, z_loss, softcap);
  xent_row_statistics* s = statistics_of(statistics, "statistics");
  const int64_t rows = statistics.shape(0);
  double denominator = 0;
  call_released([&] {
    return xent_shard_statistics(&x, &t, axis, &o.options, vocab_start, vocab_size, rows, s, &denominator);
  });
  return denominator;
}

void shard_finish_raw(const py::tuple& logits, const py::tuple& target, int64_t axis, std::optional<py::tuple> weight,
                      int64_t ignore_index, int reduction, double label_smoothing, double z_loss, double softcap,
                      int64_t vocab_start, int64_t vocab_size, py::array merged, double denominator,
                      std::optional<py::tuple> grad_loss, std::optional<py::tuple> loss,
                      std::optional<py::tuple> grad_logits) {
  const xent_tensor x = from_descriptor(logits, "logits"), t = from_descriptor(target, "target");
  const std::optional<xent_tensor> g = from(grad_loss, "grad_loss"), l = from(loss, "loss"),
                                   gx = from(grad_logits, "grad_logits");
  const ShardOptions o(weight, ignore_index, reduction, label_smoothing, z_loss, softcap);
  const xent_row_statistics* m = statistics_of(merged, "merged");
  const int64_t rows = merged.shape(0);
  call_released([&] {
    return xent_shard_finish(&x, &t, axis, &o.options, vocab_start, vocab_size, rows, m, denominator, ptr(g), ptr(l),
                             ptr(gx));
  });
}

double linear_shard_statistics_raw(const py::tuple& input, const py::tuple& linear_weight,
                                   std::optional<py::tuple> linear_bias, const py::tuple& target,
                                   std::optional<py::tuple> weight, int64_t ignore_index, int reduction,
                                   double label_smoothing, double z_loss, double softcap, int64_t vocab_start,
                                   int64_t vocab_size, py::array statistics) {
  const xent_tensor x = from_descriptor(input, "input"), w = from_descriptor(linear_weight, "linear_weight"),
                    t = from_descriptor(target, "target");
  const std::optional<xent_tensor> b = from(linear_bias, "linear_bias");
  const ShardOptions o(weight, ignore_index, reduction, label_smoothing, z_loss, softcap);
  xent_row_statistics* s = statistics_of(statistics, "statistics");
  const int64_t rows = statistics.shape(0);
  double denominator = 0;
  call_released([&] {
    return xent_linear_shard_statistics(&x, &w, ptr(b), &t, &o.options, vocab_start, vocab_size, rows, s,
                                        &denominator);
  });
  return denominator;
}

void linear_shard_finish_raw(const py::tuple& input, const py::tuple& linear_weight,
                             std::optional<py::tuple> linear_bias, const py::tuple& target,
                             std::optional<py::tuple> weight, int64_t ignore_index, int reduction,
                             double label_smoothing, double z_loss, double softcap, int64_t vocab_start,
                             int64_t vocab_size, py::array merged, double denominator,
                             std::optional<py::tuple> grad_loss, std::optional<py::tuple> loss,
                             std::optional<py::tuple> grad_input, std::optional<py::tuple> grad_linear_weight,
                             std::optional<py::tuple> grad_linear_bias) {
  const xent_tensor x = from_descriptor(input, "input"), w = from_descriptor(linear_weight, "linear_weight"),
                    t = from_descriptor(target, "target");
  const std::optional<xent_tensor> b = from(linear_bias, "linear_bias"), g = from(grad_loss, "grad_loss"),
                                   l = from(loss, "loss"), gx = from(grad_input, "grad_input"),
                                   gw = from(grad_linear_weight, "grad_linear_weight"),
                                   gb = from(grad_linear_bias, "grad_linear_bias");
  const ShardOptions o(weight, ignore_index, reduction, label_smoothing, z_loss, softcap);
  const xent_row_statistics* m = statistics_of(merged, "merged");
  const int64_t rows = merged.shape(0);
  call_released([&] {
    return xent_linear_shard_finish(&x, &w, ptr(b), &t, &o.options, vocab_start, vocab_size, rows, m, denominator,
                                    ptr(g), ptr(l), ptr(gx), ptr(gw), ptr(gb));
  });
}

void rebase_row_statistics(py::array statistics, py::array max) {
  xent_row_statistics* s = statistics_of(statistics, "statistics");
  if (max.dtype().kind() != 'f' || max.itemsize() != 8 || max.ndim() != 1 || max.shape(0) != statistics.shape(0) ||
      !(max.flags() & py::array::c_style))
    throw py::value_error("max must be a C-contiguous float64 array of shape [rows]");
  const double* m = static_cast<const double*>(max.data());
  const int64_t rows = statistics.shape(0);
  call_released([&] { return xent_rebase_row_statistics(s, m, rows); });
}

}  // namespace

PYBIND11_MODULE(_xent, m) {
  m.doc() = "xent: softmax cross-entropy (binding of the C API; use the functions of the xent package)";
  // The C API's enums, so that the Python layers do not write their numbers again.
  py::enum_<xent_dtype>(m, "dtype")
      .value("float16", XENT_FLOAT16)
      .value("bfloat16", XENT_BFLOAT16)
      .value("float32", XENT_FLOAT32)
      .value("float64", XENT_FLOAT64)
      .value("int32", XENT_INT32)
      .value("int64", XENT_INT64);
  py::enum_<xent_reduction>(m, "reduction")
      .value("none", XENT_REDUCTION_NONE)
      .value("sum", XENT_REDUCTION_SUM)
      .value("mean", XENT_REDUCTION_MEAN);
  m.def("forward", &forward, py::arg("labels"), py::arg("logits"), py::arg("axis"));
  m.def("grad", &grad, py::arg("labels"), py::arg("logits"), py::arg("axis"), py::arg("grad_loss"),
        py::arg("out_loss") = py::none(), py::arg("out_grad_logits") = py::none(), py::arg("out_grad_labels") = py::none());
  m.def("sparse", &sparse, py::arg("labels"), py::arg("logits"), py::arg("axis"), py::arg("grad_loss"),
        py::arg("gradients"), py::arg("out_loss") = py::none(), py::arg("out_grad_logits") = py::none());
  m.def("cross_entropy", &cross_entropy, py::arg("logits"), py::arg("target"), py::arg("axis"), py::arg("weight"),
        py::arg("ignore_index"), py::arg("reduction"), py::arg("label_smoothing"), py::arg("z_loss"),
        py::arg("softcap"), py::arg("grad_loss"), py::arg("gradients"), py::arg("out_loss") = py::none(),
        py::arg("out_grad_logits") = py::none());
  m.def("cross_entropy_raw", &cross_entropy_raw, py::arg("logits"), py::arg("target"), py::arg("axis"),
        py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"), py::arg("label_smoothing"),
        py::arg("z_loss"), py::arg("softcap"), py::arg("grad_loss"), py::arg("loss"), py::arg("grad_logits"));
  m.def("linear", &linear, py::arg("input"), py::arg("linear_weight"), py::arg("target"), py::arg("linear_bias"),
        py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"), py::arg("label_smoothing"), py::arg("z_loss"),
        py::arg("softcap"), py::arg("grad_loss"), py::arg("gradients"), py::arg("out_loss") = py::none(),
        py::arg("out_grad_input") = py::none(), py::arg("out_grad_linear_weight") = py::none(),
        py::arg("out_grad_linear_bias") = py::none());
  m.def("options", &options, py::arg("reduction"), py::arg("ignore_index"), py::arg("softcap"));
  m.def("set_linear_chunk_bytes", &xent_set_linear_chunk_bytes, py::arg("bytes"));
  m.def("get_linear_chunk_bytes", &xent_get_linear_chunk_bytes);
  m.def("shard_statistics_raw", &shard_statistics_raw, py::arg("logits"), py::arg("target"), py::arg("axis"),
        py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"), py::arg("label_smoothing"), py::arg("z_loss"),
        py::arg("softcap"), py::arg("vocab_start"), py::arg("vocab_size"), py::arg("statistics"));
  m.def("shard_finish_raw", &shard_finish_raw, py::arg("logits"), py::arg("target"), py::arg("axis"), py::arg("weight"),
        py::arg("ignore_index"), py::arg("reduction"), py::arg("label_smoothing"), py::arg("z_loss"), py::arg("softcap"),
        py::arg("vocab_start"), py::arg("vocab_size"), py::arg("merged"), py::arg("denominator"), py::arg("grad_loss"),
        py::arg("loss"), py::arg("grad_logits"));
  m.def("linear_shard_statistics_raw", &linear_shard_statistics_raw, py::arg("input"), py::arg("linear_weight"),
        py::arg("linear_bias"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"),
        py::arg("label_smoothing"), py::arg("z_loss"), py::arg("softcap"), py::arg("vocab_start"),
        py::arg("vocab_size"), py::arg("statistics"));
  m.def("linear_shard_finish_raw", &linear_shard_finish_raw, py::arg("input"), py::arg("linear_weight"),
        py::arg("linear_bias"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"),
        py::arg("label_smoothing"), py::arg("z_loss"), py::arg("softcap"), py::arg("vocab_start"),
        py::arg("vocab_size"), py::arg("merged"), py::arg("denominator"), py::arg("grad_loss"), py::arg("loss"),
        py::arg("grad_input"), py::arg("grad_linear_weight"), py::arg("grad_linear_bias"));
  m.def("rebase_row_statistics", &rebase_row_statistics, py::arg("statistics"), py::arg("max"));
  m.def("set_num_threads", &xent_set_num_threads, py::arg("n"));
  m.def("get_num_threads", &xent_get_num_threads);
}
