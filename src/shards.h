// shards.h — the op on one shard of a vocabulary, behind the C API's stages (xent_shard_statistics,
// xent_shard_finish, xent.h): stage 1 and stage 3 of stages.h on a validated request, the transport between them
// the caller's.
#pragma once

#include <cstdint>
#include <string>

#include "src/plan.h"

namespace xent::internal {

// Stage 1 of the request (whose vocab_start and vocab_size place its classes): statistics[0, rows) and the
// shard's part of MEAN's denominator. On a bad request returns its status and sets *error, having written nothing.
xent_status shard_statistics_call(const Request& request, int64_t rows, xent_row_statistics* statistics,
                                  double* denominator, int threads, std::string* error);

// Stage 3: the loss and grad_logits of the request from every row's merged statistics and the whole denominator.
xent_status shard_finish_call(const Request& request, int64_t rows, const xent_row_statistics* merged,
                              double denominator, int threads, std::string* error);

}  // namespace xent::internal
