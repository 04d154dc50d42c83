// xent_mpi.cc — the vocabulary-parallel op over MPI (xent_mpi.h): the stages of xent.h with MPI collectives in
// between. Every process makes the same collective calls in the same order whatever its arguments and outcome, so
// that a bad argument on one process becomes an error on all of them instead of a hang: the shards' layouts are
// gathered first, a failure of stage 1 travels with the denominator, and the outcome of stage 3 is agreed at the end.
#include "xent/xent_mpi.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "src/scalar.h"

namespace {

// An MPI call that failed (under an error handler that returns): unwinds to the entry point, XENT_INTERNAL.
struct MpiFailure {
  std::string what;
};
void mpi(int code, const char* what) {
  if (code != MPI_SUCCESS) throw MpiFailure{std::string(what) + " failed with MPI error " + std::to_string(code)};
}

// What each process tells the others before any work: the status of its local checks and its shard.
struct Header {
  int64_t status, rows, vocab_start, classes, sums_output;  // sums_output: asks for grad_input (fused op)
};

// Travels with the denominator: the lowest rank that failed (the communicator's size if none).
struct Control {
  double denominator, failed;
};
void reduce_control(void* in, void* inout, int* len, MPI_Datatype*) {
  const Control* a = static_cast<const Control*>(in);
  Control* b = static_cast<Control*>(inout);
  for (int i = 0; i < *len; ++i) b[i].denominator += a[i].denominator, b[i].failed = std::min(b[i].failed, a[i].failed);
}

void merge_statistics(void* in, void* inout, int* len, MPI_Datatype*) {
  xent_merge_row_statistics(static_cast<xent_row_statistics*>(inout), static_cast<const xent_row_statistics*>(in), *len);
}

// A derived datatype and a reduction, freed when the call ends.
struct Reduction {
  MPI_Datatype type = MPI_DATATYPE_NULL;
  MPI_Op op = MPI_OP_NULL;
  Reduction(int doubles, MPI_User_function* f) {
    mpi(MPI_Type_contiguous(doubles, MPI_DOUBLE, &type), "MPI_Type_contiguous");
    mpi(MPI_Type_commit(&type), "MPI_Type_commit");
    mpi(MPI_Op_create(f, /*commute=*/1, &op), "MPI_Op_create");
  }
  ~Reduction() {
    if (op != MPI_OP_NULL) MPI_Op_free(&op);
    if (type != MPI_DATATYPE_NULL) MPI_Type_free(&type);
  }
};

// One call of an op over MPI: its local checks and its stages 1 and 3 (the logits op's or the fused op's), and the
// output that is summed over the processes after stage 3 (the fused op's grad_input; null for none).
struct Stages {
  std::function<xent_status(Header*, std::string*)> local_checks;
  std::function<xent_status(int64_t vocab_size, int64_t rows, xent_row_statistics*, double*)> statistics;
  std::function<xent_status(int64_t vocab_size, int64_t rows, const xent_row_statistics*, double)> finish;
  const xent_tensor* summed = nullptr;
  int64_t vocab_start = 0;
  MPI_Comm comm = MPI_COMM_NULL, data_comm = MPI_COMM_NULL;
};

// The arguments of the logits op.
struct Call {
  const xent_tensor* logits;
  const xent_tensor* target;
  int64_t axis, vocab_start;
  const xent_loss_options* options;
  MPI_Comm comm, data_comm;
  const xent_tensor* grad_loss;
  const xent_tensor* loss;
  const xent_tensor* grad_logits;
  bool loss_required;  // xent_mpi_cross_entropy: the loss is its only output
};

bool same_shape(const xent_tensor& t, const int64_t* shape, int rank) {
  return t.rank == rank && std::equal(shape, shape + rank, t.shape);
}

// The checks a process can make alone, before any communication: the request as xent_cross_entropy sees it, and
// the outputs' shapes and dtypes (so that a bad output fails every process before anything is written).
xent_status local_checks(const Call& c, Header* h, std::string* message) {
  const auto failed = [&](xent_status s, const std::string& m) { return *message = m, s; };
  if (c.options == nullptr) return failed(XENT_INVALID_ARGUMENT, "options must not be NULL (see xent_default_loss_options)");
  if (c.logits == nullptr || c.target == nullptr) return failed(XENT_INVALID_ARGUMENT, "logits_shard and target must not be NULL");
  if (c.loss_required && c.loss == nullptr) return failed(XENT_INVALID_ARGUMENT, "loss must not be NULL");
  xent_loss_options unreduced = *c.options;
  unreduced.reduction = XENT_REDUCTION_NONE;
  // An empty shard (no classes) is valid here, but not for xent_cross_entropy_loss_shape: its shapes are checked as
  // a one-class shard's (nothing is read; only shapes are compared).
  xent_tensor logits = *c.logits, target = *c.target, weight;
  const int64_t axis = c.axis < 0 ? c.axis + logits.rank : c.axis;
  const bool empty = axis >= 0 && axis < logits.rank && logits.rank <= XENT_MAX_RANK && logits.shape[axis] == 0;
  if (empty) {
    logits.shape[axis] = 1;
    const int64_t target_axis = axis - logits.rank + target.rank;
    if (target.dtype != XENT_INT32 && target.dtype != XENT_INT64 && target_axis >= 0 && target_axis < target.rank &&
        target.shape[target_axis] == 0)
      target.shape[target_axis] = 1;
    if (c.options->weight && c.options->weight->rank == 1 && c.options->weight->shape[0] == 0) {
      weight = *c.options->weight;
      weight.shape[0] = 1;
      unreduced.weight = &weight;
    }
  }
  int32_t rank = 0;
  int64_t shape[XENT_MAX_RANK];
  const xent_status s = xent_cross_entropy_loss_shape(&logits, &target, c.axis, &unreduced, &rank, shape);
  if (s != XENT_OK) return failed(s, xent_last_error_message());
  h->rows = 1;
  for (int d = 0; d < rank; ++d) h->rows *= shape[d];
  h->classes = c.logits->shape[axis];
  const bool reduced = c.options->reduction != XENT_REDUCTION_NONE;
  const std::pair<const xent_tensor*, const char*> loss_like[] = {{c.loss, "loss"}, {c.grad_loss, "grad_loss"}};
  for (const auto& [t, name] : loss_like) {
    if (t == nullptr) continue;
    if (t->dtype != c.logits->dtype)
      return failed(XENT_INVALID_DTYPE, std::string(name) + " must have logits' dtype");
    if (!same_shape(*t, shape, reduced ? 0 : rank))
      return failed(XENT_INVALID_ARGUMENT, std::string(name) + (reduced ? " must be a scalar (shape []): the loss is reduced"
                                                                        : " must have the target's shape (one loss per row)"));
  }
  if (c.grad_logits) {
    if (c.grad_logits->dtype != c.logits->dtype)
      return failed(XENT_INVALID_DTYPE, "grad_logits_shard must have logits_shard's dtype");
    if (!same_shape(*c.grad_logits, c.logits->shape, c.logits->rank))
      return failed(XENT_INVALID_ARGUMENT, "grad_logits_shard must have logits_shard's shape");
  }
  return XENT_OK;
}

// The shards' layout as every process sees it (the same verdict everywhere): the same rows, the same request for a
// summed output (the collectives that follow depend on it), and shards that tile [0, V). Sets *vocab_size.
xent_status layout_checks(const std::vector<Header>& all, int64_t* vocab_size, std::string* message) {
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r].rows != all[0].rows) {
      *message = "every process must hold the same rows: rank 0 has " + std::to_string(all[0].rows) + " rows, rank " +
                 std::to_string(r) + " has " + std::to_string(all[r].rows);
      return XENT_INVALID_ARGUMENT;
    }
    if (all[r].sums_output != all[0].sums_output) {
      *message = "every process must ask for grad_input, or none: rank 0 " +
                 std::string(all[0].sums_output ? "does" : "does not") + ", rank " + std::to_string(r) +
                 (all[r].sums_output ? " does" : " does not");
      return XENT_INVALID_ARGUMENT;
    }
  }
  std::vector<size_t> order(all.size());
  for (size_t r = 0; r < all.size(); ++r) order[r] = r;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return all[a].vocab_start != all[b].vocab_start ? all[a].vocab_start < all[b].vocab_start
                                                    : all[a].classes < all[b].classes;
  });
  int64_t next = 0;
  for (size_t r : order) {
    if (all[r].vocab_start != next) {
      *message = "the shards do not tile the vocabulary: rank " + std::to_string(r) + " starts at class " +
                 std::to_string(all[r].vocab_start) + " where the shards before it end at " + std::to_string(next) +
                 " (each process's vocab_start must be the sum of the class counts of the shards before it)";
      return XENT_INVALID_ARGUMENT;
    }
    next += all[r].classes;
  }
  *vocab_size = next;
  return XENT_OK;
}

// The message of the process `root` of comm, on every process of comm (collective).
std::string shared_message(const std::string& own, int root, int rank, int size, MPI_Comm comm) {
  std::array<char, 1024> buffer{};
  if (rank == root) std::strncpy(buffer.data(), own.c_str(), buffer.size() - 1);
  mpi(MPI_Bcast(buffer.data(), static_cast<int>(buffer.size()), MPI_CHAR, root, comm), "MPI_Bcast");
  return "xent_mpi: rank " + std::to_string(root) + " of " + std::to_string(size) + ": " + buffer.data();
}

// Every process of comm returns the failure of the process `root` (collective): its status and its message.
xent_status failure_of(int root, xent_status own, const std::string& message, int rank, int size, MPI_Comm comm) {
  int code = own;
  mpi(MPI_Bcast(&code, 1, MPI_INT, root, comm), "MPI_Bcast");
  return xent_set_last_error(static_cast<xent_status>(code), shared_message(message, root, rank, size, comm).c_str());
}

constexpr const char* kDataCommFailed =
    "xent_mpi: a process of data_comm (another group of vocabulary shards) failed; its message says why";

// The lowest failing rank of comm (size if none).
double lowest_failure(double own, MPI_Comm comm) {
  double lowest = own;
  mpi(MPI_Allreduce(&own, &lowest, 1, MPI_DOUBLE, MPI_MIN, comm), "MPI_Allreduce");
  return lowest;
}

// Σ over comm of an output, in place: float32/float64 laid out contiguously are reduced as they are; anything else
// (16-bit, strides) through a float64 copy, each element then rounded once to its dtype.
void sum_over(const xent_tensor& t, MPI_Comm comm) {
  int64_t count = 1, expected = 1;
  bool contiguous = true;
  for (int d = t.rank - 1; d >= 0; --d) {
    if (t.shape[d] != 1 && t.strides[d] != expected) contiguous = false;
    expected *= t.shape[d], count *= t.shape[d];
  }
  constexpr int64_t kMost = int64_t{1} << 30;  // MPI counts are int
  const auto reduce = [&](void* data, MPI_Datatype type, int64_t size) {
    for (int64_t first = 0; first < count; first += kMost)
      mpi(MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + first * size,
                        static_cast<int>(std::min(kMost, count - first)), type, MPI_SUM, comm),
          "MPI_Allreduce");
  };
  if (contiguous && t.dtype == XENT_FLOAT32) return reduce(t.data, MPI_FLOAT, 4);
  if (contiguous && t.dtype == XENT_FLOAT64) return reduce(t.data, MPI_DOUBLE, 8);
  // Element k (row-major over the shape) at offset(k) elements.
  const auto offset = [&](int64_t k) {
    int64_t at = 0;
    for (int d = t.rank - 1; d >= 0; --d) at += (k % t.shape[d]) * t.strides[d], k /= t.shape[d];
    return at;
  };
  const auto dtype = static_cast<xent_dtype>(t.dtype);
  std::vector<double> copy(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) copy[k] = xent::internal::load_as_double(t.data, dtype, offset(k));
  reduce(copy.data(), MPI_DOUBLE, 8);
  for (int64_t k = 0; k < count; ++k) xent::internal::store_from_double(t.data, dtype, offset(k), copy[k]);
}

xent_status run(const Stages& c) {
  int rank = 0, size = 1;
  mpi(MPI_Comm_rank(c.comm, &rank), "MPI_Comm_rank");
  mpi(MPI_Comm_size(c.comm, &size), "MPI_Comm_size");
  const bool data = c.data_comm != MPI_COMM_NULL;

  // 1. Local checks, then the shards' layouts on every process.
  Header own{};
  std::string message;
  own.status = c.local_checks(&own, &message);
  own.vocab_start = c.vocab_start;
  own.sums_output = c.summed != nullptr;
  std::vector<Header> all(static_cast<size_t>(size));
  constexpr int kHeaderInts = sizeof(Header) / sizeof(int64_t);
  mpi(MPI_Allgather(&own, kHeaderInts, MPI_INT64_T, all.data(), kHeaderInts, MPI_INT64_T, c.comm), "MPI_Allgather");
  xent_status status = XENT_OK;
  int failed = size;  // the lowest rank that failed; size: none
  for (int r = 0; r < size && failed == size; ++r)
    if (all[r].status != XENT_OK) failed = r, status = static_cast<xent_status>(all[r].status);
  int64_t vocab_size = 0;
  std::string layout_message;
  const xent_status layout = failed == size ? layout_checks(all, &vocab_size, &layout_message) : XENT_OK;

  // 2. Stage 1, where everything so far is right.
  const int64_t rows = failed == size && layout == XENT_OK ? all[0].rows : 0;
  std::vector<xent_row_statistics> statistics(static_cast<size_t>(rows));
  Control control{0, static_cast<double>(size)};
  if (failed == size && layout == XENT_OK) {
    const xent_status s = c.statistics(vocab_size, rows, statistics.data(), &control.denominator);
    if (s != XENT_OK) control.failed = rank, status = s, message = xent_last_error_message();
  } else {
    control.failed = -1;  // known everywhere already
  }
  Reduction control_sum(2, reduce_control);
  mpi(MPI_Allreduce(MPI_IN_PLACE, &control, 1, control_sum.type, control_sum.op, c.comm), "MPI_Allreduce");
  // Over data_comm: the batch's denominator, and whether any process there failed.
  double any_failed = control.failed < size ? 1 : 0;
  if (data) {
    double sums[2] = {control.denominator, any_failed};
    mpi(MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, c.data_comm), "MPI_Allreduce");
    control.denominator = sums[0], any_failed = sums[1];
  }
  if (failed < size) return failure_of(failed, status, message, rank, size, c.comm);
  if (layout != XENT_OK) return xent_set_last_error(layout, ("xent_mpi: " + layout_message).c_str());
  if (control.failed < size) return failure_of(static_cast<int>(control.failed), status, message, rank, size, c.comm);
  if (any_failed > 0) return xent_set_last_error(XENT_INVALID_ARGUMENT, kDataCommFailed);

  // 3. Every row's statistics merged over the shards, then stage 3.
  Reduction merge(4, merge_statistics);
  constexpr int64_t kMostRows = int64_t{1} << 30;  // MPI counts are int
  for (int64_t first = 0; first < rows; first += kMostRows)
    mpi(MPI_Allreduce(MPI_IN_PLACE, statistics.data() + first, static_cast<int>(std::min(kMostRows, rows - first)),
                      merge.type, merge.op, c.comm),
        "MPI_Allreduce");
  const xent_status s = c.finish(vocab_size, rows, statistics.data(), control.denominator);
  if (s != XENT_OK) message = xent_last_error_message();
  // 4. The outcome, agreed (stage 3 fails only on what the local checks do not see, e.g. outputs overlapping inputs).
  const double lowest = lowest_failure(s == XENT_OK ? size : rank, c.comm);
  double data_failed = lowest < size ? 1 : 0;
  if (data) mpi(MPI_Allreduce(MPI_IN_PLACE, &data_failed, 1, MPI_DOUBLE, MPI_MAX, c.data_comm), "MPI_Allreduce");
  if (lowest < size) return failure_of(static_cast<int>(lowest), s, message, rank, size, c.comm);
  if (data_failed > 0) return xent_set_last_error(XENT_INVALID_ARGUMENT, kDataCommFailed);
  // 5. The fused op's grad_input: every shard's part, summed.
  if (c.summed) sum_over(*c.summed, c.comm);
  return xent_set_last_error(XENT_OK, "");
}

xent_status guarded(const Stages& c) noexcept {
  try {
    if (c.comm == MPI_COMM_NULL) return xent_set_last_error(XENT_INVALID_ARGUMENT, "xent_mpi: comm must not be MPI_COMM_NULL");
    return run(c);
  } catch (const MpiFailure& f) {
    return xent_set_last_error(XENT_INTERNAL, ("xent_mpi: " + f.what).c_str());
  } catch (const std::bad_alloc&) {
    return xent_set_last_error(XENT_OUT_OF_MEMORY, "xent_mpi: out of memory (the row statistics)");
  } catch (...) {
    return xent_set_last_error(XENT_INTERNAL, "xent_mpi: internal error (please report it)");
  }
}

// The logits op's stages.
xent_status cross_entropy(const Call& c) noexcept {
  Stages stages;
  stages.local_checks = [&](Header* h, std::string* message) { return local_checks(c, h, message); };
  stages.statistics = [&](int64_t vocab_size, int64_t rows, xent_row_statistics* s, double* d) {
    return xent_shard_statistics(c.logits, c.target, c.axis, c.options, c.vocab_start, vocab_size, rows, s, d);
  };
  stages.finish = [&](int64_t vocab_size, int64_t rows, const xent_row_statistics* m, double d) {
    return xent_shard_finish(c.logits, c.target, c.axis, c.options, c.vocab_start, vocab_size, rows, m, d,
                             c.grad_loss, c.loss, c.grad_logits);
  };
  stages.vocab_start = c.vocab_start, stages.comm = c.comm, stages.data_comm = c.data_comm;
  return guarded(stages);
}

// The fused op's arguments and local checks: the rows (input's leading dimensions) and the outputs' shapes; stage 1
// checks everything else.
struct LinearCall {
  const xent_tensor *input, *linear_weight, *linear_bias, *target;
  const xent_loss_options* options;
  int64_t vocab_start;
  MPI_Comm comm, data_comm;
  const xent_tensor *grad_loss, *loss, *grad_input, *grad_linear_weight, *grad_linear_bias;
  bool loss_required;
};

xent_status linear_local_checks(const LinearCall& c, Header* h, std::string* message) {
  const auto failed = [&](xent_status s, const std::string& m) { return *message = m, s; };
  if (c.options == nullptr) return failed(XENT_INVALID_ARGUMENT, "options must not be NULL (see xent_default_loss_options)");
  if (c.input == nullptr || c.linear_weight == nullptr || c.target == nullptr)
    return failed(XENT_INVALID_ARGUMENT, "input, linear_weight_shard and target must not be NULL");
  if (c.loss_required && c.loss == nullptr) return failed(XENT_INVALID_ARGUMENT, "loss must not be NULL");
  const xent_tensor& in = *c.input;
  if (in.rank < 1 || in.rank > XENT_MAX_RANK)
    return failed(XENT_INVALID_ARGUMENT, "input must have rank in [1, " + std::to_string(XENT_MAX_RANK) + "] ([..., H])");
  if (c.linear_weight->rank != 2) return failed(XENT_INVALID_ARGUMENT, "linear_weight_shard must have shape [V_local, H]");
  h->rows = 1;
  for (int d = 0; d + 1 < in.rank; ++d)
    if (in.shape[d] < 0 || __builtin_mul_overflow(h->rows, in.shape[d], &h->rows))
      return failed(XENT_INVALID_ARGUMENT, "input's leading dimensions must be >= 0 and their product fit int64");
  h->classes = c.linear_weight->shape[0];
  const bool reduced = c.options->reduction != XENT_REDUCTION_NONE;
  const std::pair<const xent_tensor*, const char*> loss_like[] = {{c.loss, "loss"}, {c.grad_loss, "grad_loss"}};
  for (const auto& [t, name] : loss_like)
    if (t && !same_shape(*t, in.shape, reduced ? 0 : in.rank - 1))
      return failed(XENT_INVALID_ARGUMENT, std::string(name) + (reduced ? " must be a scalar (shape []): the loss is reduced"
                                                                        : " must have the target's shape (one loss per row)"));
  if (c.grad_input && !same_shape(*c.grad_input, in.shape, in.rank))
    return failed(XENT_INVALID_ARGUMENT, "grad_input must have input's shape");
  if (c.grad_linear_weight && !same_shape(*c.grad_linear_weight, c.linear_weight->shape, 2))
    return failed(XENT_INVALID_ARGUMENT, "grad_linear_weight_shard must have linear_weight_shard's shape");
  return XENT_OK;
}

xent_status linear_cross_entropy(const LinearCall& c) noexcept {
  Stages stages;
  stages.local_checks = [&](Header* h, std::string* message) { return linear_local_checks(c, h, message); };
  stages.statistics = [&](int64_t vocab_size, int64_t rows, xent_row_statistics* s, double* d) {
    return xent_linear_shard_statistics(c.input, c.linear_weight, c.linear_bias, c.target, c.options, c.vocab_start,
                                        vocab_size, rows, s, d);
  };
  stages.finish = [&](int64_t vocab_size, int64_t rows, const xent_row_statistics* m, double d) {
    return xent_linear_shard_finish(c.input, c.linear_weight, c.linear_bias, c.target, c.options, c.vocab_start,
                                    vocab_size, rows, m, d, c.grad_loss, c.loss, c.grad_input, c.grad_linear_weight,
                                    c.grad_linear_bias);
  };
  stages.summed = c.grad_input;
  stages.vocab_start = c.vocab_start, stages.comm = c.comm, stages.data_comm = c.data_comm;
  return guarded(stages);
}

}  // namespace

extern "C" {

xent_status xent_mpi_cross_entropy(const xent_tensor* logits_shard, const xent_tensor* target, int64_t axis,
                                   int64_t vocab_start, const xent_loss_options* options, MPI_Comm comm,
                                   MPI_Comm data_comm, const xent_tensor* loss) XENT_NOEXCEPT {
  return cross_entropy({logits_shard, target, axis, vocab_start, options, comm, data_comm, nullptr, loss, nullptr, true});
}

xent_status xent_mpi_cross_entropy_grad(const xent_tensor* logits_shard, const xent_tensor* target, int64_t axis,
                                        int64_t vocab_start, const xent_loss_options* options, MPI_Comm comm,
                                        MPI_Comm data_comm, const xent_tensor* grad_loss, const xent_tensor* loss,
                                        const xent_tensor* grad_logits_shard) XENT_NOEXCEPT {
  return cross_entropy(
      {logits_shard, target, axis, vocab_start, options, comm, data_comm, grad_loss, loss, grad_logits_shard, false});
}

xent_status xent_mpi_linear_cross_entropy(const xent_tensor* input, const xent_tensor* linear_weight_shard,
                                          const xent_tensor* linear_bias_shard, const xent_tensor* target,
                                          int64_t vocab_start, const xent_loss_options* options, MPI_Comm comm,
                                          MPI_Comm data_comm, const xent_tensor* loss) XENT_NOEXCEPT {
  return linear_cross_entropy({input, linear_weight_shard, linear_bias_shard, target, options, vocab_start, comm,
                               data_comm, nullptr, loss, nullptr, nullptr, nullptr, true});
}

xent_status xent_mpi_linear_cross_entropy_grad(const xent_tensor* input, const xent_tensor* linear_weight_shard,
                                               const xent_tensor* linear_bias_shard, const xent_tensor* target,
                                               int64_t vocab_start, const xent_loss_options* options, MPI_Comm comm,
                                               MPI_Comm data_comm, const xent_tensor* grad_loss,
                                               const xent_tensor* loss, const xent_tensor* grad_input,
                                               const xent_tensor* grad_linear_weight_shard,
                                               const xent_tensor* grad_linear_bias_shard) XENT_NOEXCEPT {
  return linear_cross_entropy({input, linear_weight_shard, linear_bias_shard, target, options, vocab_start, comm,
                               data_comm, grad_loss, loss, grad_input, grad_linear_weight_shard,
                               grad_linear_bias_shard, false});
}

}  // extern "C"
