// shards.h — the op on one shard of a vocabulary, behind the C API's stages (xent_shard_statistics,
// xent_shard_finish, xent.h): stage 1 and stage 3 of stages.h on a validated request, the transport between them
// the caller's.
#pragma once

#include <cstdint>
#include <string>

#include "src/plan.h"
#include "src/row_state.h"

namespace xent::internal {

// The C API's row statistics (xent.h) are the kernels' RowState: the same four numbers.
inline RowState from_public(const xent_row_statistics& s) { return {s.max, s.sum, s.label_sum, s.label_dot}; }
inline xent_row_statistics to_public(const RowState& s) { return {s.max, s.sum, s.label_sum, s.label_dot}; }

// The stages' own arguments, checked alike for the op's shards and the fused op's: a vocabulary size (>= 0), and a
// statistics buffer of the request's rows (`expected`, counted as `rows_are` says) that is not NULL when it has any.
xent_status check_vocab_size(int64_t vocab_size, std::string* error);
xent_status check_statistics(int64_t rows, int64_t expected, const void* statistics, const char* rows_are,
                             std::string* error);

// Stage 1 of the request (whose vocab_start and vocab_size place its classes): statistics[0, rows) and the
// shard's part of MEAN's denominator. On a bad request returns its status and sets *error, having written nothing.
xent_status shard_statistics_call(const Request& request, int64_t rows, xent_row_statistics* statistics,
                                  double* denominator, int threads, std::string* error);

// Stage 3: the loss and grad_logits of the request from every row's merged statistics and the whole denominator.
xent_status shard_finish_call(const Request& request, int64_t rows, const xent_row_statistics* merged,
                              double denominator, int threads, std::string* error);

}  // namespace xent::internal
