// xent.cc — the C API: validate (validate.cc), run the kernels (kernels.cc), sum broadcast gradients. Every entry
// point is noexcept: an exception that escapes the work becomes a status and a message (guarded).
#include "xent/xent.h"

#include <omp.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/broadcast_gradient.h"
#include "src/faults.h"
#include "src/kernels.h"
#include "src/linear.h"
#include "src/paths.h"
#include "src/plan.h"
#include "src/reductions.h"
#include "src/row_state.h"
#include "src/shards.h"
#include "src/targets.h"

namespace {

thread_local std::string g_last_error;
// Set instead of g_last_error when even the message could not be stored (out of memory).
thread_local const char* g_fixed_error = nullptr;
std::atomic<int32_t> g_num_threads{0};

// GNU OpenMP's thread pool does not survive fork(): in a child of a process that ran a parallel region, the child's
// first region of more than one thread waits forever for threads that were not copied. As PyTorch does, a forked
// child runs xent single-threaded (a one-thread region does not touch the pool). Registered when the library loads.
std::atomic<bool> g_forked_child{false};
[[maybe_unused]] const int g_fork_handler =
    pthread_atfork(nullptr, nullptr, [] { g_forked_child.store(true, std::memory_order_relaxed); });
std::atomic<xent::internal::FaultHook> g_fault_hook{nullptr};

// Records this thread's outcome: the message is `message` followed by `detail` (both may be empty or null).
xent_status finish(xent_status status, const char* message = nullptr, const char* detail = nullptr) noexcept {
  g_fixed_error = nullptr;
  try {
    g_last_error.clear();
    if (status != XENT_OK) {
      if (message) g_last_error += message;
      if (detail) g_last_error += detail;
    }
  } catch (...) {
    g_fixed_error = "out of memory (the error message could not be stored)";
  }
  return status;
}
xent_status finish(xent_status status, const std::string& message) noexcept {
  return finish(status, message.c_str());
}

// Runs an entry point's body and turns any exception that escapes it into a status: nothing crosses the C ABI.
// Allocations that fail are XENT_OUT_OF_MEMORY; anything else is a bug in xent, XENT_INTERNAL.
template <typename Body>
xent_status guarded(const Body& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return finish(XENT_OUT_OF_MEMORY, "out of memory: a temporary buffer could not be allocated");
  } catch (const std::length_error&) {
    return finish(XENT_OUT_OF_MEMORY, "out of memory: a temporary buffer would be larger than any allocation");
  } catch (const std::exception& e) {
    return finish(XENT_INTERNAL, "internal error in xent (please report it): ", e.what());
  } catch (...) {
    return finish(XENT_INTERNAL, "internal error in xent (please report it): an exception of unknown type");
  }
}

xent_status run(const xent::internal::Request& request) {
  using namespace xent::internal;
  Plan plan;
  std::string error;
  xent_status status = make_plan(request, &plan, &error);
  if (status != XENT_OK) return finish(status, error);
  fault_point("run");
  // The plan's temporaries: gradients of broadcast inputs, summed into the caller's tensors afterwards.
  Layout layout = plan.layout;
  std::optional<BroadcastGradient> grad_logits, grad_labels;
  if (plan.reduced_grad_logits) layout.data[kGradLogits] = grad_logits.emplace(plan, plan.reduced_grad_logits).data();
  if (plan.reduced_grad_labels) layout.data[kGradLabels] = grad_labels.emplace(plan, plan.reduced_grad_labels).data();
  // Class-index targets are checked before anything is written; MEAN takes its denominator from them.
  double denominator = 0;
  const int threads = xent_get_num_threads();
  status = scan_targets(layout, plan.dtype, threads, &denominator, &error);
  if (status != XENT_OK) return finish(status, error);
  const ReducedLoss reduced(plan, layout, denominator);
  // No rows, no kernel: a class axis of no rows may hold any size (a view of stride 0 along 2^62 classes), which the
  // kernels' per-row buffer sizes were not made for (found by the fuzzer: a signed overflow sizing them).
  if (layout.rows > 0) run_kernels(layout, plan.dtype, plan.gradients_in_compute_type(), threads);
  if (grad_logits) grad_logits->reduce();
  if (grad_labels) grad_labels->reduce();
  reduced.store(layout, threads);
  return finish(XENT_OK);
}

// The loss's shape for a request, as make_plan sees it.
xent_status loss_shape_of(const xent::internal::Request& request, int32_t* rank, int64_t shape[XENT_MAX_RANK]) {
  if (rank == nullptr || shape == nullptr) return finish(XENT_INVALID_ARGUMENT, "rank and shape must not be NULL");
  xent::internal::Plan plan;
  std::string error;
  const xent_status status = make_plan(request, &plan, &error);
  if (status != XENT_OK) return finish(status, error);
  *rank = xent::internal::loss_shape(plan, shape);
  return finish(XENT_OK);
}

bool class_indices(const xent_tensor* t) { return t && (t->dtype == XENT_INT32 || t->dtype == XENT_INT64); }

}  // namespace

namespace xent::internal {

void set_fault_hook(FaultHook hook) { g_fault_hook.store(hook); }

void fault_point(const char* where) {
  if (const FaultHook hook = g_fault_hook.load(std::memory_order_relaxed)) hook(where);
}

xent_status chosen_path(const Request& request, int threads, KernelPath* path) {
  Plan plan;
  std::string error;
  const xent_status status = make_plan(request, &plan, &error);
  if (status != XENT_OK) return status;
  TargetTraits traits = target_traits(plan.dtype);
  traits.rows_only = traits.narrow && plan.gradients_in_compute_type();
  *path = choose_path(plan.layout, traits, threads).path;
  return status;
}

}  // namespace xent::internal

extern "C" {

xent_tensor xent_make_tensor(void* data, xent_dtype dtype, int32_t rank, const int64_t* shape,
                             const int64_t* strides) XENT_NOEXCEPT {
  xent_tensor t{};
  t.data = data;
  t.dtype = dtype;
  t.rank = rank;
  const int32_t n = shape == nullptr ? 0 : rank < 0 ? 0 : rank > XENT_MAX_RANK ? XENT_MAX_RANK : rank;
  // Row-major strides; a product past int64 saturates (such a shape has more elements than int64 counts, or none,
  // and validation refuses the first; the stride of an empty tensor is never used).
  int64_t stride = 1;
  for (int32_t d = n - 1; d >= 0; --d) {
    t.shape[d] = shape[d];
    t.strides[d] = strides ? strides[d] : stride;
    if (__builtin_mul_overflow(stride, shape[d], &stride)) stride = INT64_MAX;
  }
  return t;
}

xent_status xent_softmax_cross_entropy(const xent_tensor* labels, const xent_tensor* logits, int64_t axis,
                                       const xent_tensor* loss) XENT_NOEXCEPT {
  if (loss == nullptr) return finish(XENT_INVALID_ARGUMENT, "loss must not be NULL");
  return xent_softmax_cross_entropy_grad(labels, logits, axis, nullptr, loss, nullptr, nullptr);
}

xent_status xent_softmax_cross_entropy_grad(const xent_tensor* labels, const xent_tensor* logits, int64_t axis,
                                            const xent_tensor* grad_loss, const xent_tensor* loss,
                                            const xent_tensor* grad_logits, const xent_tensor* grad_labels) XENT_NOEXCEPT {
  return guarded([&] {
    return run({.labels = labels, .logits = logits, .axis = axis, .grad_loss = grad_loss, .loss = loss,
                .grad_logits = grad_logits, .grad_labels = grad_labels});
  });
}

xent_status xent_sparse_softmax_cross_entropy(const xent_tensor* labels, const xent_tensor* logits, int64_t axis,
                                              const xent_tensor* loss) XENT_NOEXCEPT {
  if (loss == nullptr) return finish(XENT_INVALID_ARGUMENT, "loss must not be NULL");
  return xent_sparse_softmax_cross_entropy_grad(labels, logits, axis, nullptr, loss, nullptr);
}

xent_status xent_sparse_softmax_cross_entropy_grad(const xent_tensor* labels, const xent_tensor* logits,
                                                   int64_t axis, const xent_tensor* grad_loss,
                                                   const xent_tensor* loss, const xent_tensor* grad_logits) XENT_NOEXCEPT {
  return guarded([&] {
    return run({.labels = labels, .logits = logits, .axis = axis, .grad_loss = grad_loss, .loss = loss,
                .grad_logits = grad_logits, .sparse = true});
  });
}

xent_loss_options xent_default_loss_options(void) XENT_NOEXCEPT {
  xent_loss_options o{};
  o.weight = nullptr;
  o.ignore_index = -100;
  o.reduction = XENT_REDUCTION_MEAN;
  o.label_smoothing = 0;
  o.z_loss = 0;
  o.softcap = 0;
  return o;
}

xent_status xent_cross_entropy(const xent_tensor* logits, const xent_tensor* target, int64_t axis,
                               const xent_loss_options* options, const xent_tensor* loss) XENT_NOEXCEPT {
  if (loss == nullptr) return finish(XENT_INVALID_ARGUMENT, "loss must not be NULL");
  return xent_cross_entropy_grad(logits, target, axis, options, nullptr, loss, nullptr);
}

xent_status xent_cross_entropy_grad(const xent_tensor* logits, const xent_tensor* target, int64_t axis,
                                    const xent_loss_options* options, const xent_tensor* grad_loss,
                                    const xent_tensor* loss, const xent_tensor* grad_logits) XENT_NOEXCEPT {
  if (options == nullptr) return finish(XENT_INVALID_ARGUMENT, "options must not be NULL (see xent_default_loss_options)");
  if (target == nullptr) return finish(XENT_INVALID_ARGUMENT, "target must not be NULL");
  return guarded([&] {
    return run({.labels = target, .logits = logits, .axis = axis, .grad_loss = grad_loss, .loss = loss,
                .grad_logits = grad_logits, .sparse = class_indices(target), .options = options});
  });
}

xent_status xent_loss_shape(const xent_tensor* labels, const xent_tensor* logits, int64_t axis, int32_t* rank,
                            int64_t shape[XENT_MAX_RANK]) XENT_NOEXCEPT {
  return guarded([&] {
    return loss_shape_of({.labels = labels, .logits = logits, .axis = axis, .sparse = class_indices(labels)}, rank,
                         shape);
  });
}

xent_status xent_cross_entropy_loss_shape(const xent_tensor* logits, const xent_tensor* target, int64_t axis,
                                          const xent_loss_options* options, int32_t* rank,
                                          int64_t shape[XENT_MAX_RANK]) XENT_NOEXCEPT {
  if (options == nullptr) return finish(XENT_INVALID_ARGUMENT, "options must not be NULL (see xent_default_loss_options)");
  if (target == nullptr) return finish(XENT_INVALID_ARGUMENT, "target must not be NULL");
  return guarded([&] {
    return loss_shape_of({.labels = target, .logits = logits, .axis = axis, .sparse = class_indices(target),
                          .options = options},
                         rank, shape);
  });
}

xent_status xent_shard_statistics(const xent_tensor* logits, const xent_tensor* target, int64_t axis,
                                  const xent_loss_options* options, int64_t vocab_start, int64_t vocab_size,
                                  int64_t rows, xent_row_statistics* statistics, double* denominator) XENT_NOEXCEPT {
  if (options == nullptr) return finish(XENT_INVALID_ARGUMENT, "options must not be NULL (see xent_default_loss_options)");
  if (target == nullptr) return finish(XENT_INVALID_ARGUMENT, "target must not be NULL");
  return guarded([&] {
    std::string error;
    const xent_status status = xent::internal::shard_statistics_call(
        {.labels = target, .logits = logits, .axis = axis, .sparse = class_indices(target), .options = options,
         .vocab_start = vocab_start, .vocab_size = vocab_size},
        rows, statistics, denominator, xent_get_num_threads(), &error);
    return finish(status, error);
  });
}

xent_status xent_merge_row_statistics(xent_row_statistics* into, const xent_row_statistics* from,
                                      int64_t rows) XENT_NOEXCEPT {
  if (rows < 0) return finish(XENT_INVALID_ARGUMENT, "rows must be >= 0, received ", std::to_string(rows).c_str());
  if (rows > 0 && (into == nullptr || from == nullptr))
    return finish(XENT_INVALID_ARGUMENT, "the row statistics must not be NULL");
  using xent::internal::from_public, xent::internal::to_public, xent::internal::Merge;
  for (int64_t i = 0; i < rows; ++i) into[i] = to_public(Merge(from_public(into[i]), from_public(from[i])));
  return finish(XENT_OK);
}

xent_status xent_rebase_row_statistics(xent_row_statistics* statistics, const double* max, int64_t rows) XENT_NOEXCEPT {
  if (rows < 0) return finish(XENT_INVALID_ARGUMENT, "rows must be >= 0, received ", std::to_string(rows).c_str());
  if (rows > 0 && (statistics == nullptr || max == nullptr))
    return finish(XENT_INVALID_ARGUMENT, "statistics and max must not be NULL");
  for (int64_t i = 0; i < rows; ++i)
    if (max[i] < statistics[i].max)
      return finish(XENT_INVALID_ARGUMENT, ("max[" + std::to_string(i) + "] = " + std::to_string(max[i]) +
                                            " is below the row's own maximum " + std::to_string(statistics[i].max) +
                                            ": pass the maximum over every shard")
                                               .c_str());
  for (int64_t i = 0; i < rows; ++i) {
    xent_row_statistics& s = statistics[i];
    const double m = max[i];
    if (std::isnan(m) || std::isnan(s.max) || m == HUGE_VAL) {
      // A NaN or +inf logit somewhere in the row (a +inf one without softcap makes its own shard's sum NaN): the
      // row is NaN, and the SUM carries it to every shard.
      s = {m, NAN, NAN, NAN};
      continue;
    }
    // As Merge rescales: terms that are exactly 0 stay 0 (no 0 * inf).
    const double r = xent::internal::reference_of(m), own = xent::internal::reference_of(s.max);
    if (s.sum != 0 && own != r) s.sum *= std::exp(own - r);
    if (s.label_sum != 0) s.label_dot += s.label_sum * (own - r);
    s.max = m;
  }
  return finish(XENT_OK);
}

xent_status xent_shard_finish(const xent_tensor* logits, const xent_tensor* target, int64_t axis,
                              const xent_loss_options* options, int64_t vocab_start, int64_t vocab_size, int64_t rows,
                              const xent_row_statistics* merged, double denominator, const xent_tensor* grad_loss,
                              const xent_tensor* loss, const xent_tensor* grad_logits) XENT_NOEXCEPT {
  if (options == nullptr) return finish(XENT_INVALID_ARGUMENT, "options must not be NULL (see xent_default_loss_options)");
  if (target == nullptr) return finish(XENT_INVALID_ARGUMENT, "target must not be NULL");
  return guarded([&] {
    std::string error;
    const xent_status status = xent::internal::shard_finish_call(
        {.labels = target, .logits = logits, .axis = axis, .grad_loss = grad_loss, .loss = loss,
         .grad_logits = grad_logits, .sparse = class_indices(target), .options = options, .vocab_start = vocab_start,
         .vocab_size = vocab_size},
        rows, merged, denominator, xent_get_num_threads(), &error);
    return finish(status, error);
  });
}

xent_status xent_linear_cross_entropy(const xent_tensor* input, const xent_tensor* linear_weight,
                                      const xent_tensor* linear_bias, const xent_tensor* target,
                                      const xent_loss_options* options, const xent_tensor* loss) XENT_NOEXCEPT {
  if (loss == nullptr) return finish(XENT_INVALID_ARGUMENT, "loss must not be NULL");
  return xent_linear_cross_entropy_grad(input, linear_weight, linear_bias, target, options, nullptr, loss, nullptr,
                                        nullptr, nullptr);
}

xent_status xent_linear_cross_entropy_grad(const xent_tensor* input, const xent_tensor* linear_weight,
                                           const xent_tensor* linear_bias, const xent_tensor* target,
                                           const xent_loss_options* options, const xent_tensor* grad_loss,
                                           const xent_tensor* loss, const xent_tensor* grad_input,
                                           const xent_tensor* grad_linear_weight,
                                           const xent_tensor* grad_linear_bias) XENT_NOEXCEPT {
  return guarded([&] {
    std::string error;
    const xent_status status = xent::internal::linear_cross_entropy(
        {.input = input, .linear_weight = linear_weight, .linear_bias = linear_bias, .target = target,
         .options = options, .grad_loss = grad_loss, .loss = loss, .grad_input = grad_input,
         .grad_linear_weight = grad_linear_weight, .grad_linear_bias = grad_linear_bias},
        xent_get_num_threads(), &error);
    return finish(status, error);
  });
}

xent_status xent_linear_shard_statistics(const xent_tensor* input, const xent_tensor* linear_weight,
                                         const xent_tensor* linear_bias, const xent_tensor* target,
                                         const xent_loss_options* options, int64_t vocab_start, int64_t vocab_size,
                                         int64_t rows, xent_row_statistics* statistics,
                                         double* denominator) XENT_NOEXCEPT {
  return guarded([&] {
    std::string error;
    const xent_status status = xent::internal::linear_shard_statistics(
        {.input = input, .linear_weight = linear_weight, .linear_bias = linear_bias, .target = target,
         .options = options, .vocab_start = vocab_start, .vocab_size = vocab_size},
        rows, statistics, denominator, xent_get_num_threads(), &error);
    return finish(status, error);
  });
}

xent_status xent_linear_shard_finish(const xent_tensor* input, const xent_tensor* linear_weight,
                                     const xent_tensor* linear_bias, const xent_tensor* target,
                                     const xent_loss_options* options, int64_t vocab_start, int64_t vocab_size,
                                     int64_t rows, const xent_row_statistics* merged, double denominator,
                                     const xent_tensor* grad_loss, const xent_tensor* loss,
                                     const xent_tensor* grad_input, const xent_tensor* grad_linear_weight,
                                     const xent_tensor* grad_linear_bias) XENT_NOEXCEPT {
  return guarded([&] {
    std::string error;
    const xent_status status = xent::internal::linear_shard_finish(
        {.input = input, .linear_weight = linear_weight, .linear_bias = linear_bias, .target = target,
         .options = options, .grad_loss = grad_loss, .loss = loss, .grad_input = grad_input,
         .grad_linear_weight = grad_linear_weight, .grad_linear_bias = grad_linear_bias, .vocab_start = vocab_start,
         .vocab_size = vocab_size},
        rows, merged, denominator, xent_get_num_threads(), &error);
    return finish(status, error);
  });
}

void xent_set_linear_chunk_bytes(int64_t bytes) XENT_NOEXCEPT { xent::internal::set_linear_chunk_bytes(bytes); }

int64_t xent_get_linear_chunk_bytes(void) XENT_NOEXCEPT { return xent::internal::linear_chunk_bytes(); }

const char* xent_last_error_message(void) XENT_NOEXCEPT {
  return g_fixed_error ? g_fixed_error : g_last_error.c_str();
}

xent_status xent_set_last_error(xent_status status, const char* message) XENT_NOEXCEPT {
  finish(XENT_INTERNAL, message ? message : "");  // recorded whatever the status
  return status;
}

void xent_set_num_threads(int32_t n) XENT_NOEXCEPT { g_num_threads.store(n > 0 ? n : 0); }

int32_t xent_get_num_threads(void) XENT_NOEXCEPT {
  if (g_forked_child.load(std::memory_order_relaxed)) return 1;
  const int32_t n = g_num_threads.load();
  return n > 0 ? n : omp_get_max_threads();
}

const char* xent_dtype_name(xent_dtype dtype) XENT_NOEXCEPT {
  switch (dtype) {
    case XENT_FLOAT16: return "float16";
    case XENT_BFLOAT16: return "bfloat16";
    case XENT_FLOAT32: return "float32";
    case XENT_FLOAT64: return "float64";
    case XENT_INT32: return "int32";
    case XENT_INT64: return "int64";
  }
  return "an unknown dtype";
}

const char* xent_status_name(xent_status status) XENT_NOEXCEPT {
  switch (status) {
    case XENT_OK: return "ok";
    case XENT_INVALID_ARGUMENT: return "invalid argument";
    case XENT_INVALID_DTYPE: return "invalid dtype";
    case XENT_UNSUPPORTED: return "unsupported";
    case XENT_OUT_OF_MEMORY: return "out of memory";
    case XENT_INTERNAL: return "internal error";
  }
  return "unknown status";
}

}  // extern "C"
