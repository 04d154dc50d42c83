// xent_peers — the systems xent is compared with in bench/compare.py, built as a Python module so that one process
// and one run measures all of them on the same inputs:
//   - oneDNN: softmax_v2 with softmax_log (log-softmax into a full-size buffer), then a dot with the labels;
//   - TensorFlow's CPU algorithm as its XentEigenImpl does it, written here from the math with Eigen: max,
//     subtract (materialised), exp and sum, log, dot — several passes over memory;
//   - a streaming read of memory with every thread: the read bandwidth all results are compared to.
#include <omp.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <Eigen/Core>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "bench/read_bandwidth.h"

namespace py = pybind11;
using Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

namespace {

// Log-softmax over `axis` of a dense float tensor with oneDNN, then loss = −Σ labels · log_softmax.
class OneDnn {
 public:
  OneDnn(std::vector<int64_t> dims, int axis)
      : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_), dims_(dims), axis_(axis) {
    const dnnl::memory::desc md(dims, dnnl::memory::data_type::f32, strides_of(dims));
    const dnnl::softmax_v2_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::softmax_log, md, md,
                                           axis);
    pd_ = dnnl::softmax_v2_forward::primitive_desc(d, engine_);
    primitive_ = dnnl::softmax_v2_forward(pd_);
    md_ = md;
    size_t n = 1;
    for (int64_t x : dims) n *= x;
    log_softmax_.reset(new float[n]);
    std::fill(log_softmax_.get(), log_softmax_.get() + n, 0.0f);  // touched once, not timed
  }

  void forward(Array logits, Array labels, Array loss) {
    dnnl::memory src(md_, engine_, logits.mutable_data()), dst(md_, engine_, log_softmax_.get());
    {
      py::gil_scoped_release release;
      primitive_.execute(stream_, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
      stream_.wait();
      // loss[o, i] = −Σ_c labels[o, c, i] · log_softmax[o, c, i]  (outer × classes × inner)
      int64_t outer = 1, inner = 1;
      for (int d = 0; d < axis_; ++d) outer *= dims_[d];
      for (size_t d = axis_ + 1; d < dims_.size(); ++d) inner *= dims_[d];
      const int64_t C = dims_[axis_];
      const float* y = labels.data();
      const float* l = log_softmax_.get();
      float* out = loss.mutable_data();
#pragma omp parallel for
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t i = 0; i < inner; ++i) out[o * inner + i] = 0;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t i = 0; i < inner; ++i) {
            const int64_t k = (o * C + c) * inner + i;
            out[o * inner + i] -= y[k] * l[k];
          }
      }
    }
  }

 private:
  static dnnl::memory::dims strides_of(const std::vector<int64_t>& dims) {
    dnnl::memory::dims s(dims.size());
    int64_t stride = 1;
    for (size_t d = dims.size(); d-- > 0;) s[d] = stride, stride *= dims[d];
    return s;
  }
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::vector<int64_t> dims_;
  int axis_;
  dnnl::memory::desc md_;
  dnnl::softmax_v2_forward::primitive_desc pd_;
  dnnl::softmax_v2_forward primitive_;
  std::unique_ptr<float[]> log_softmax_;
};

// TensorFlow's CPU forward, pass by pass over [rows, C] with Eigen, rows split over threads:
//   max_j x, shifted = x − max (materialised), sum_j exp(shifted), loss = Σ_j y · (log(sum) − shifted).
class EigenTf {
 public:
  EigenTf(int64_t rows, int64_t classes) : rows_(rows), classes_(classes), shifted_(new float[rows * classes]) {
    std::fill(shifted_.get(), shifted_.get() + rows * classes, 0.0f);
  }

  void forward(Array logits, Array labels, Array loss) {
    using Matrix = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const float* x = logits.data();
    const float* y = labels.data();
    float* out = loss.mutable_data();
    py::gil_scoped_release release;
    const int threads = omp_get_max_threads();
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      const int64_t begin = rows_ * t / threads, end = rows_ * (t + 1) / threads, n = end - begin;
      Eigen::Map<const Matrix> X(x + begin * classes_, n, classes_), Y(y + begin * classes_, n, classes_);
      Eigen::Map<Matrix> S(shifted_.get() + begin * classes_, n, classes_);
      Eigen::Map<Eigen::ArrayXf> L(out + begin, n);
      const Eigen::ArrayXf max = X.rowwise().maxCoeff();
      S = X.colwise() - max;
      const Eigen::ArrayXf log_sum = S.exp().rowwise().sum().log();
      L = (Y * ((-S).colwise() + log_sum)).rowwise().sum();
    }
  }

 private:
  int64_t rows_, classes_;
  std::unique_ptr<float[]> shifted_;
};

}  // namespace

PYBIND11_MODULE(xent_peers, m) {
  m.doc() = "Peers of xent for bench/compare.py: oneDNN, TensorFlow's algorithm in Eigen, read and copy bandwidth";
  py::class_<xent::bench::ReadBandwidth>(m, "ReadBandwidth")
      .def(py::init<>())
      .def("read", [](const xent::bench::ReadBandwidth& r) { return r.read_once() / 1e9; },
           "GB/s of one streaming read of 1 GiB with every thread")
      .def("copy", [](xent::bench::ReadBandwidth& r) { return r.copy_once() / 1e9; },
           "GB/s, read plus written, of one copy of half the buffer onto its other half with every thread "
           "(non-temporal stores); it moves `bytes` bytes, as a read covers")
      .def_property_readonly("bytes", &xent::bench::ReadBandwidth::bytes, "bytes one read covers");
  py::class_<OneDnn>(m, "OneDnn").def(py::init<std::vector<int64_t>, int>()).def("forward", &OneDnn::forward);
  py::class_<EigenTf>(m, "EigenTf").def(py::init<int64_t, int64_t>()).def("forward", &EigenTf::forward);
}
