// xent_peers — the systems xent is compared with in bench/compare.py, built as a Python module so that one process
// and one run measures all of them on the same inputs:
//   - oneDNN: softmax_v2 with softmax_log (log-softmax into a full-size buffer), then a dot with the labels;
//   - TensorFlow's CPU algorithm as its XentEigenImpl does it, written here from the math with Eigen: max,
//     subtract (materialised), exp and sum, log, dot — several passes over memory;
//   - a streaming read of memory with every thread: the read bandwidth all results are compared to;
//   - for bench/linear.py, the three matrix products of a linear layer's forward and backward, whole, with oneDNN's
//     matmul (the library xent's fused linear + cross-entropy uses): what the fused op's time is compared to.
#include <omp.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <Eigen/Core>
#include <algorithm>
#include <utility>
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

// The three products of a linear layer h [N, H] · Wᵀ [H, V] and its backward, whole (logits [N, V] in memory), in
// float32 or bfloat16 (float32 accumulation and outputs), with oneDNN's matmul and every thread: logits = h · Wᵀ,
// grad_h = dlogits · W, grad_W = dlogitsᵀ · h. Returns the fastest of `repeats` runs of the three, in seconds.
double bare_gemms_seconds(int64_t N, int64_t H, int64_t V, bool bf16, int repeats) {
  using namespace dnnl;
  const engine cpu(engine::kind::cpu, 0);
  stream s(cpu);
  const memory::data_type in = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const size_t in_size = bf16 ? 2 : 4;
  std::vector<char> h(N * H * in_size, 0), W(V * H * in_size, 0), dlogits(N * V * in_size, 0);
  for (size_t i = 0; i < h.size(); i += 2) h[i + 1] = 0x3c;  // nonzero values (0x3c.. : about 0.01 in bf16)
  for (size_t i = 0; i < W.size(); i += 2) W[i + 1] = 0x3c;
  for (size_t i = 0; i < dlogits.size(); i += 2) dlogits[i + 1] = 0x3c;
  std::vector<float> logits(N * V), grad_h(N * H), grad_W(V * H);
  const auto product = [&](memory::dims a_dims, memory::dims a_strides, memory::dims b_dims, memory::dims b_strides,
                           void* a, void* b, float* c) {
    const memory::desc ad(a_dims, in, a_strides), bd(b_dims, in, b_strides);
    const memory::desc cd({a_dims[0], b_dims[1]}, memory::data_type::f32, memory::dims{b_dims[1], 1});
    const matmul::primitive_desc pd(matmul::desc(ad, bd, cd), cpu);
    return std::make_pair(matmul(pd), std::vector<memory>{memory(ad, cpu, a), memory(bd, cpu, b), memory(cd, cpu, c)});
  };
  auto forward = product({N, H}, {H, 1}, {H, V}, {1, H}, h.data(), W.data(), logits.data());
  auto grad_input = product({N, V}, {V, 1}, {V, H}, {H, 1}, dlogits.data(), W.data(), grad_h.data());
  auto grad_weight = product({V, N}, {1, V}, {N, H}, {H, 1}, dlogits.data(), h.data(), grad_W.data());
  double best = 1e30;
  py::gil_scoped_release release;
  for (int k = 0; k < repeats + 1; ++k) {  // the first run warms up
    const double start = omp_get_wtime();
    for (auto* p : {&forward, &grad_input, &grad_weight}) {
      p->first.execute(s, {{DNNL_ARG_SRC, p->second[0]}, {DNNL_ARG_WEIGHTS, p->second[1]}, {DNNL_ARG_DST, p->second[2]}});
      s.wait();
    }
    if (k > 0) best = std::min(best, omp_get_wtime() - start);
  }
  return best;
}

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
  m.def("bare_gemms_seconds", &bare_gemms_seconds, py::arg("N"), py::arg("H"), py::arg("V"), py::arg("bf16"),
        py::arg("repeats"));
}
