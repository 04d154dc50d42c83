// _xent: the Python binding of the C API. Arrays are read in place with their strides; outputs are new arrays.
// Argument conversion and the keyword-only signatures live in xent/__init__.py.
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
  if (dt.kind() == 'f') {
    switch (dt.itemsize()) {
      case 2: return XENT_FLOAT16;
      case 4: return XENT_FLOAT32;
      case 8: return XENT_FLOAT64;
    }
  }
  throw py::type_error(std::string(name) + " must be float16, float32 or float64, received " +
                       py::str(static_cast<const py::handle&>(dt)).cast<std::string>());
}

// A view of the array; arrays whose strides are not whole elements are copied first (kept alive in `keep`).
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

py::array new_like(const py::array& logits, const xent_tensor& shape_of) {
  std::vector<py::ssize_t> shape(shape_of.shape, shape_of.shape + shape_of.rank);
  return py::array(logits.dtype(), shape);
}

py::array loss_array(const xent_tensor& labels, const xent_tensor& logits, int64_t axis, const py::array& like) {
  int32_t rank = 0;
  int64_t shape[XENT_MAX_RANK];
  const xent_status status = xent_loss_shape(&labels, &logits, axis, &rank, shape);
  if (status != XENT_OK) raise(status);
  return py::array(like.dtype(), std::vector<py::ssize_t>(shape, shape + rank));
}

py::array forward(py::array labels, py::array logits, int64_t axis) {
  xent_tensor y = view(labels, "labels"), x = view(logits, "logits");
  py::array loss = loss_array(y, x, axis, logits);
  xent_tensor l = view(loss, "loss");
  xent_status status;
  {
    py::gil_scoped_release release;
    status = xent_softmax_cross_entropy(&y, &x, axis, &l);
  }
  if (status != XENT_OK) raise(status);
  return loss;
}

py::tuple grad(py::array labels, py::array logits, int64_t axis, std::optional<py::array> grad_loss) {
  xent_tensor y = view(labels, "labels"), x = view(logits, "logits");
  py::array loss = loss_array(y, x, axis, logits);
  py::array grad_logits = new_like(logits, x), grad_labels = new_like(logits, y);
  xent_tensor l = view(loss, "loss"), gx = view(grad_logits, "grad_logits"), gy = view(grad_labels, "grad_labels");
  std::optional<xent_tensor> g;
  if (grad_loss) g = view(*grad_loss, "grad_loss");
  xent_status status;
  {
    py::gil_scoped_release release;
    status = xent_softmax_cross_entropy_grad(&y, &x, axis, g ? &*g : nullptr, &l, &gx, &gy);
  }
  if (status != XENT_OK) raise(status);
  return py::make_tuple(loss, grad_logits, grad_labels);
}

}  // namespace

PYBIND11_MODULE(_xent, m) {
  m.doc() = "xent: softmax cross-entropy (binding of the C API; use the functions of the xent package)";
  m.def("forward", &forward, py::arg("labels"), py::arg("logits"), py::arg("axis"));
  m.def("grad", &grad, py::arg("labels"), py::arg("logits"), py::arg("axis"), py::arg("grad_loss"));
  m.def("set_num_threads", &xent_set_num_threads, py::arg("n"));
  m.def("get_num_threads", &xent_get_num_threads);
}
