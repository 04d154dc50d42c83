// xent_bench — throughput of the dense op (forward, and forward with both gradients) on the shapes, as
// bytes/s and as a fraction of the read bandwidth measured by a streaming read kernel in the same run.
//
//   build/xent_bench [--benchmark_filter=...]
//   XENT_BENCH_TARGET=AVX2 build/xent_bench     # every row on that SIMD target instead of the CPU's best
//
// Bytes counted: forward reads logits and labels; forward+gradients also writes grad_logits and grad_labels
// (and the loss, negligible). Inputs are rotated across copies totalling ≥ 512 MiB so no run is served from cache.
// Each row reports its fastest call (best_GB/s, best_elements/s) against the fastest of two reads of memory, one
// just before and one just after its calls (read_GB/s; of_read_bw is their ratio), as bench/compare.py does;
// Google Benchmark's own bytes_per_second is the mean over the row's calls. Rows that write gradients move as many
// bytes out as in, and a bus that only reads is not their bound: they are also measured against the faster of two
// copies of memory with non-temporal stores around them (copy_GB/s, read plus written; of_copy_bw).
//
// Every row whose rows fit has an in-cache twin, NAME/in_cache: the same op, dtype, class count and layout on the
// first rows only (inputs of about 1 MiB, one copy reused, so they stay in cache). It measures what the cores alone
// allow on that shape, the compute ceiling; where it is below the row's bus (the read, or the copy), the shape is
// compute-bound on this machine and the bus cannot be reached by feeding the cores better (bench/table.py puts the
// two side by side).
#include <benchmark/benchmark.h>
#include <hwy/targets.h>
#include <omp.h>

#include <strings.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/read_bandwidth.h"
#include "bench/traffic_twin.h"
#include "xent/xent.hpp"

namespace {

constexpr size_t kRotationBytes = size_t{512} << 20;
// The read (and copy) of memory every row is measured against (bench/read_bandwidth.h).
xent::bench::ReadBandwidth* g_reader = nullptr;

// Runs a row: Google Benchmark's loop over call(), each call also timed alone, between two reads of memory, and
// for a row that writes as many bytes as it reads (gradients) also between two copies of memory, its bus, and
// where it has one between runs of its traffic twin. bytes and elements: those of one call. twin: one run of the
// row's traffic twin (bench/traffic_twin.h) on the next copy of its inputs, returning its seconds; empty if none.
template <typename Call>
void measure(benchmark::State& state, double bytes, double elements, bool writes, const Call& call,
             const std::function<double()>& twin = {}) {
  constexpr int kTwinRuns = 3;  // before the row's calls, and as many after
  double read = g_reader->read_once(), copy = writes ? g_reader->copy_once() : 0.0;
  double twin_time = std::numeric_limits<double>::infinity();
  for (int k = 0; twin && k < kTwinRuns; ++k) twin_time = std::min(twin_time, twin());
  double fastest = std::numeric_limits<double>::infinity();
  for (auto _ : state) {
    const double start = omp_get_wtime();
    call();
    fastest = std::min(fastest, omp_get_wtime() - start);
  }
  read = std::max(read, g_reader->read_once());
  state.SetBytesProcessed(static_cast<int64_t>(bytes * static_cast<double>(state.iterations())));
  state.counters["best_GB/s"] = bytes / fastest / 1e9;
  state.counters["best_elements/s"] = elements / fastest;
  state.counters["read_GB/s"] = read / 1e9;
  state.counters["of_read_bw"] = bytes / fastest / read;
  if (writes) {
    copy = std::max(copy, g_reader->copy_once());
    state.counters["copy_GB/s"] = copy / 1e9;
    state.counters["of_copy_bw"] = bytes / fastest / copy;
  }
  if (twin) {
    for (int k = 0; k < kTwinRuns; ++k) twin_time = std::min(twin_time, twin());
    state.counters["traffic_GB/s"] = bytes / twin_time / 1e9;
    state.counters["of_traffic"] = twin_time / fastest;
  }
}

template <typename T>
T from_float(float v) {
  if constexpr (std::is_same_v<T, xent::float16>) return xent::to_float16(v);
  else if constexpr (std::is_same_v<T, xent::bfloat16>) return xent::to_bfloat16(v);
  else return static_cast<T>(v);
}

struct Shape {
  const char* name;
  std::vector<int64_t> dims;
  int axis;
  bool in_cache = false;  // one small copy, reused: the compute ceiling of the shape, without DRAM

  int class_axis() const { return axis < 0 ? static_cast<int>(dims.size()) + axis : axis; }
  int64_t classes() const { return dims[class_axis()]; }
  // Whether its gradient rows have a traffic twin (bench/traffic_twin.h): contiguous rows, read from DRAM.
  bool has_traffic_twin() const { return class_axis() + 1 == static_cast<int>(dims.size()) && !in_cache; }
  // The in-cache twin (see the top): the leading dimension cut to about kInCacheElements elements in all, the rest
  // as they are (a multiple of 64 rows where there are more); none if one slice of it is over 1M elements (1x16M).
  std::optional<Shape> in_cache_twin() const {
    constexpr int64_t kInCacheElements = int64_t{1} << 17, kMaxSlice = int64_t{1} << 20;
    int64_t slice = 1;
    for (size_t d = 1; d < dims.size(); ++d) slice *= dims[d];
    if (slice > kMaxSlice || class_axis() == 0) return std::nullopt;
    int64_t lead = std::max<int64_t>(1, kInCacheElements / slice);
    if (lead >= 64) lead -= lead % 64;
    Shape twin = *this;
    twin.dims[0] = std::min(lead, dims[0]);
    twin.in_cache = true;
    return twin;
  }
  std::string dims_text() const {
    std::string text;
    for (int64_t d : dims) text += (text.empty() ? "" : "x") + std::to_string(d);
    return text;
  }
  // The loss's shape, and that of class-index labels: dims without the class axis.
  std::vector<int64_t> row_dims() const {
    std::vector<int64_t> out;
    for (int d = 0; d < static_cast<int>(dims.size()); ++d)
      if (d != class_axis()) out.push_back(dims[d]);
    return out;
  }
};

template <typename T>
struct Buffers {
  int64_t elements, copies;
  std::vector<std::unique_ptr<T[]>> logits, labels;
  std::unique_ptr<T[]> grad_logits, grad_labels, loss;

  explicit Buffers(const Shape& s) {
    elements = 1;
    for (int64_t d : s.dims) elements *= d;
    const size_t bytes = 2 * elements * sizeof(T);
    copies = s.in_cache ? 1 : std::max<int64_t>(1, static_cast<int64_t>((kRotationBytes + bytes - 1) / bytes));
    for (int64_t c = 0; c < copies; ++c) {
      logits.emplace_back(new T[elements]);
      labels.emplace_back(new T[elements]);
      T* x = logits.back().get();
      T* y = labels.back().get();
#pragma omp parallel for
      for (int64_t i = 0; i < elements; ++i) {
        uint32_t h = static_cast<uint32_t>(i * 2654435761u + c * 40503u);
        h ^= h >> 13;
        h *= 0x5bd1e995u;
        h ^= h >> 15;
        x[i] = from_float<T>((static_cast<float>(h & 0xFFFF) / 65536.0f - 0.5f) * 16.0f);
        y[i] = from_float<T>(static_cast<float>((h >> 16) & 0xFF) / 256.0f);
      }
    }
    grad_logits.reset(new T[elements]);
    grad_labels.reset(new T[elements]);
    // Touch the outputs once so page faults are not timed.
    std::memset(static_cast<void*>(grad_logits.get()), 0, elements * sizeof(T));
    std::memset(static_cast<void*>(grad_labels.get()), 0, elements * sizeof(T));
    loss.reset(new T[elements / s.dims[s.class_axis()]]);
  }
};

template <typename T>
void run(benchmark::State& state, const Shape& shape, bool gradients) {
  Buffers<T> b(shape);
  const std::vector<int64_t> loss_dims = shape.row_dims();
  int64_t copy = 0;
  const double bytes = static_cast<double>(b.elements) * sizeof(T) * (gradients ? 4 : 2);
  std::function<double()> twin;
  if constexpr (std::is_same_v<T, float>)
    if (gradients && shape.has_traffic_twin())
      twin = [&] {
        const float* in[] = {b.logits[copy].get(), b.labels[copy].get()};
        float* out[] = {b.grad_logits.get(), b.grad_labels.get()};
        copy = (copy + 1) % b.copies;
        return xent::bench::traffic_twin_once(in, out, 2, b.elements / shape.classes(), shape.classes());
      };
  measure(state, bytes, static_cast<double>(b.elements), gradients, [&] {
    const xent::ConstView x(b.logits[copy].get(), shape.dims), y(b.labels[copy].get(), shape.dims);
    if (gradients) {
      xent::softmax_cross_entropy_grad(y, x,
                                       {.loss = xent::View(b.loss.get(), loss_dims),
                                        .grad_logits = xent::View(b.grad_logits.get(), shape.dims),
                                        .grad_labels = xent::View(b.grad_labels.get(), shape.dims)},
                                       shape.axis);
    } else {
      xent::softmax_cross_entropy(y, x, xent::View(b.loss.get(), loss_dims), shape.axis);
    }
    copy = (copy + 1) % b.copies;
  }, twin);
}

// Class-index targets (xent_cross_entropy, reduction none), optionally with loss options: reads the logits and one
// int64 per row (labels: the logits' shape without the class axis). `option` picks the fused option whose cost
// over the plain sparse forward is measured.
enum class Option { kNone, kWeight, kLabelSmoothing, kZLoss, kSoftcap, kAll };

// in_place: the gradient overwrites the logits (grad_logits is the logits view): reads logits, writes them back.
void run_sparse(benchmark::State& state, const Shape& shape, Option option, bool gradients, bool in_place = false) {
  Buffers<float> b(shape);
  const int rank = static_cast<int>(shape.dims.size());
  const int axis = shape.class_axis();
  const int64_t C = shape.dims[axis], rows = b.elements / C;
  const std::vector<int64_t> label_dims = shape.row_dims();
  std::vector<int64_t> labels(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) labels[i] = (i * 7919) % C;
  std::vector<float> weight(static_cast<size_t>(C));
  for (int64_t j = 0; j < C; ++j) weight[j] = 0.5f + static_cast<float>(j % 5) * 0.25f;
  const int64_t weight_shape[] = {C};
  xent_tensor w = xent_make_tensor(weight.data(), XENT_FLOAT32, 1, weight_shape, nullptr);
  xent_tensor y = xent_make_tensor(labels.data(), XENT_INT64, rank - 1, label_dims.data(), nullptr);
  xent_tensor loss = xent_make_tensor(b.loss.get(), XENT_FLOAT32, rank - 1, label_dims.data(), nullptr);
  xent_tensor gx = xent_make_tensor(b.grad_logits.get(), XENT_FLOAT32, rank, shape.dims.data(), nullptr);
  xent_loss_options o = xent_default_loss_options();
  o.reduction = XENT_REDUCTION_NONE;
  if (option == Option::kWeight || option == Option::kAll) o.weight = &w;
  if (option == Option::kLabelSmoothing || option == Option::kAll) o.label_smoothing = 0.1;
  if (option == Option::kZLoss || option == Option::kAll) o.z_loss = 1e-4;
  if (option == Option::kSoftcap || option == Option::kAll) o.softcap = 30;
  int64_t copy = 0;
  const double bytes = static_cast<double>(b.elements) * sizeof(float) * (gradients ? 2 : 1) + rows * 8.0;
  std::function<double()> twin;  // reads the logits, writes their gradient (not the labels: 8 bytes a row)
  if (gradients && shape.has_traffic_twin())
    twin = [&] {
      const float* in[] = {b.logits[copy].get()};
      float* out[] = {in_place ? b.logits[copy].get() : b.grad_logits.get()};
      copy = (copy + 1) % b.copies;
      return xent::bench::traffic_twin_once(in, out, 1, rows, C);
    };
  measure(state, bytes, static_cast<double>(b.elements), gradients, [&] {
    xent_tensor x = xent_make_tensor(b.logits[copy].get(), XENT_FLOAT32, rank, shape.dims.data(), nullptr);
    const xent_status s = gradients ? xent_cross_entropy_grad(&x, &y, axis, &o, nullptr, &loss, in_place ? &x : &gx)
                                    : xent_cross_entropy(&x, &y, axis, &o, &loss);
    if (s != XENT_OK) state.SkipWithError(xent_last_error_message());
    copy = (copy + 1) % b.copies;
  }, twin);
}

// The SIMD target every row runs on: the best one compiled in and supported by this CPU (what the library
// dispatches to), or the one XENT_BENCH_TARGET names (a Highway target name: AVX3, AVX2, SSE4, ...), so that one
// machine can compare its targets. Returns nullptr if the named target is not available here.
const char* choose_simd_target() {
  const std::vector<int64_t> available = hwy::SupportedAndGeneratedTargets();
  const char* wanted = std::getenv("XENT_BENCH_TARGET");
  if (wanted == nullptr || *wanted == '\0') return hwy::TargetName(available.front());
  for (int64_t target : available) {
    if (strcasecmp(hwy::TargetName(target), wanted) == 0) {
      hwy::SetSupportedTargetsForTest(target);
      return hwy::TargetName(target);
    }
  }
  std::fprintf(stderr, "XENT_BENCH_TARGET=%s is not available on this CPU; available:", wanted);
  for (int64_t target : available) std::fprintf(stderr, " %s", hwy::TargetName(target));
  std::fprintf(stderr, "\n");
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const char* simd_target = choose_simd_target();
  if (simd_target == nullptr) return 2;
  benchmark::AddCustomContext("simd_target", simd_target);
  std::printf("SIMD target: %s\n", simd_target);
  xent::bench::ReadBandwidth reader;
  g_reader = &reader;
  const double read_bytes_per_second = xent::bench::read_bandwidth_bytes_per_second(reader);
  std::printf("read bandwidth (bench/read_bandwidth.h, %d threads, best of five at start): %.1f GB/s\n",
              omp_get_max_threads(), read_bytes_per_second / 1e9);
  benchmark::AddCustomContext("read_bandwidth_GB/s", std::to_string(read_bytes_per_second / 1e9));
  static const Shape shapes[] = {
      {"4096x32000", {4096, 32000}, -1},     {"65536x1000", {65536, 1000}, -1}, {"1x16M", {1, 16 << 20}, -1},
      {"1Mx10", {1 << 20, 10}, -1},          {"32x21x128x128_axis1", {32, 21, 128, 128}, 1},
      {"4Mx2", {4 << 20, 2}, -1},           {"64x1000x49_axis1", {64, 1000, 49}, 1},
  };
  benchmark::RegisterBenchmark("read_bandwidth", [read_bytes_per_second](benchmark::State& state) {
    for (auto _ : state) state.SetIterationTime(1);
    state.counters["GB/s"] = read_bytes_per_second / 1e9;
  })->Iterations(1)->UseManualTime();
  // Registers a row on shape s and, where s has one, its in-cache twin: run(state, shape) runs one.
  const auto add = [](const std::string& name, const Shape& s, auto run) {
    benchmark::RegisterBenchmark(name.c_str(), [&s, run](benchmark::State& st) { run(st, s); })
        ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
    if (const std::optional<Shape> twin = s.in_cache_twin())
      benchmark::RegisterBenchmark((name + "/in_cache").c_str(),
                                   [twin = *twin, run](benchmark::State& st) {
                                     run(st, twin);
                                     st.SetLabel(twin.dims_text());
                                   })
          ->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(0.5);
  };
  for (const Shape& s : shapes)
    for (bool gradients : {false, true})
      add(std::string(gradients ? "fwd_grad/" : "forward/") + "f32/" + s.name, s,
          [gradients](benchmark::State& st, const Shape& shape) { run<float>(st, shape, gradients); });
  // Half precision: half the bytes per element, so about twice the elements/s at the same bytes/s.
  for (const Shape* s : {&shapes[0], &shapes[1], &shapes[3], &shapes[4], &shapes[6]}) {
    add(std::string("forward/bf16/") + s->name, *s,
        [](benchmark::State& st, const Shape& shape) { run<xent::bfloat16>(st, shape, false); });
    add(std::string("forward/f16/") + s->name, *s,
        [](benchmark::State& st, const Shape& shape) { run<xent::float16>(st, shape, false); });
  }
  // Sparse (class-index) targets: the forward reads only the logits. NCHW with integer labels is segmentation's case.
  for (const Shape* s : {&shapes[0], &shapes[1], &shapes[3], &shapes[4]})
    for (bool gradients : {false, true})
      add(std::string(gradients ? "sparse_fwd_grad/" : "sparse/") + "f32/" + s->name, *s,
          [gradients](benchmark::State& st, const Shape& shape) { run_sparse(st, shape, Option::kNone, gradients); });
  add("sparse_fwd_grad_in_place/f32/4096x32000", shapes[0],
      [](benchmark::State& st, const Shape& shape) { run_sparse(st, shape, Option::kNone, true, true); });
  // Each fused option's cost over the plain sparse forward, same shape.
  static const std::pair<const char*, Option> options[] = {{"weight", Option::kWeight},
                                                           {"label_smoothing", Option::kLabelSmoothing},
                                                           {"z_loss", Option::kZLoss},
                                                           {"softcap", Option::kSoftcap},
                                                           {"all", Option::kAll}};
  for (const auto& [name, option] : options)
    add(std::string("sparse+") + name + "/f32/" + shapes[0].name, shapes[0],
        [option = option](benchmark::State& st, const Shape& shape) { run_sparse(st, shape, option, false); });
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
