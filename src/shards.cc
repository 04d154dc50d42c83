// shards.cc — stage 1 and stage 3 (stages.h) of one shard of a vocabulary, for the C API's vocabulary-parallel
// entry points. Validation is make_plan's (the shard's classes placed by Request::vocab_start/vocab_size); the
// targets are checked against the whole vocabulary before anything is written.
#include "src/shards.h"

#include <vector>

#include "src/reductions.h"
#include "src/stages.h"
#include "src/targets.h"

namespace xent::internal {

xent_status check_vocab_size(int64_t vocab_size, std::string* error) {
  if (vocab_size >= 0) return XENT_OK;
  *error = "vocab_size must be >= 0 (the number of classes of the whole vocabulary), received " +
           std::to_string(vocab_size);
  return XENT_INVALID_ARGUMENT;
}

xent_status check_statistics(int64_t rows, int64_t expected, const void* statistics, const char* rows_are,
                             std::string* error) {
  if (rows != expected) {
    *error = std::string("rows must be the number of rows (") + rows_are + "), " + std::to_string(expected) +
             ", received " + std::to_string(rows);
    return XENT_INVALID_ARGUMENT;
  }
  if (statistics == nullptr && rows > 0) {
    *error = "the row statistics must not be NULL (rows = " + std::to_string(rows) + ")";
    return XENT_INVALID_ARGUMENT;
  }
  return XENT_OK;
}

namespace {

// The validated plan of a shard request whose statistics buffer has `rows` entries.
xent_status shard_plan(const Request& r, int64_t rows, const void* statistics, Plan* plan, std::string* error) {
  xent_status status = check_vocab_size(r.vocab_size, error);
  if (status == XENT_OK) status = make_plan(r, plan, error);
  if (status == XENT_OK)
    status = check_statistics(rows, plan->layout.rows, statistics, "the product of the loss's unreduced shape", error);
  if (status != XENT_OK) return status;
  if (plan->gradients_in_compute_type()) {
    *error = "a shard's probability targets must have the logits' shape when grad_logits is asked for (no "
             "broadcasting): received target " + shape_string(r.labels->shape, r.labels->rank) + " and logits " +
             shape_string(r.logits->shape, r.logits->rank);
    return XENT_INVALID_ARGUMENT;
  }
  return XENT_OK;
}

}  // namespace

xent_status shard_statistics_call(const Request& request, int64_t rows, xent_row_statistics* statistics,
                                  double* denominator, int threads, std::string* error) {
  Plan plan;
  xent_status status = shard_plan(request, rows, statistics, &plan, error);
  if (status != XENT_OK) return status;
  if (denominator == nullptr) {
    *error = "denominator must not be NULL";
    return XENT_INVALID_ARGUMENT;
  }
  double part = 0;
  status = scan_targets(plan.layout, plan.dtype, threads, &part, error);
  if (status != XENT_OK) return status;
  std::vector<RowState> states(static_cast<size_t>(rows));
  if (rows > 0) shard_statistics(plan.layout, plan.dtype, states.data(), threads);  // (as the op: no rows, no kernel)
  for (int64_t i = 0; i < rows; ++i) statistics[i] = to_public(states[i]);
  *denominator = part;
  return XENT_OK;
}

xent_status shard_finish_call(const Request& request, int64_t rows, const xent_row_statistics* merged,
                              double denominator, int threads, std::string* error) {
  Plan plan;
  xent_status status = shard_plan(request, rows, merged, &plan, error);
  if (status != XENT_OK) return status;
  Layout layout = plan.layout;
  double unused = 0;
  status = scan_targets(layout, plan.dtype, threads, &unused, error);
  if (status != XENT_OK) return status;
  std::vector<RowState> states(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) states[i] = from_public(merged[i]);
  const ReducedLoss reduced(plan, layout, denominator);
  if (rows > 0) shard_finish(layout, plan.dtype, states.data(), threads);
  reduced.store(layout, threads);
  return XENT_OK;
}

}  // namespace xent::internal
