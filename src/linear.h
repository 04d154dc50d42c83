// linear.h — the fused linear + cross-entropy behind xent_linear_cross_entropy(_grad) (xent.h).
#pragma once

#include <cstdint>
#include <string>

#include "xent/xent.h"

namespace xent::internal {

struct LinearRequest {
  const xent_tensor* input = nullptr;          // [..., H]
  const xent_tensor* linear_weight = nullptr;  // [V, H]
  const xent_tensor* linear_bias = nullptr;    // [V] or null
  const xent_tensor* target = nullptr;         // [...], class indices
  const xent_loss_options* options = nullptr;
  const xent_tensor* grad_loss = nullptr;  // the loss's shape, or null for 1
  const xent_tensor* loss = nullptr;       // every output may be null
  const xent_tensor* grad_input = nullptr;
  const xent_tensor* grad_linear_weight = nullptr;
  const xent_tensor* grad_linear_bias = nullptr;
  // linear_weight's rows as a shard of a vocabulary (stages.h): classes [vocab_start, vocab_start + V) of
  // vocab_size; targets index the vocabulary. vocab_size -1: the whole vocabulary (the single-process op).
  int64_t vocab_start = 0, vocab_size = -1;
};

// Checks the request, then computes with up to `threads` threads. On a bad request returns its status and sets
// *error, having written nothing. Throws std::bad_alloc when a buffer cannot be allocated (before any write).
xent_status linear_cross_entropy(const LinearRequest& request, int threads, std::string* error);

// The fused op on one shard of a vocabulary (xent_linear_shard_statistics, xent_linear_shard_finish): stage 1,
// statistics[0, N) and the shard's part of MEAN's denominator; stage 3, from every row's merged statistics and the
// whole denominator, the loss and this shard's gradients (grad_input: its part, dlogits · W_shard). The request's
// vocab_size must be set. Errors and allocation as linear_cross_entropy's.
xent_status linear_shard_statistics(const LinearRequest& request, int64_t rows, xent_row_statistics* statistics,
                                    double* denominator, int threads, std::string* error);
xent_status linear_shard_finish(const LinearRequest& request, int64_t rows, const xent_row_statistics* merged,
                                double denominator, int threads, std::string* error);

// The chunk budget (xent_set_linear_chunk_bytes): bytes <= 0 restores the default.
void set_linear_chunk_bytes(int64_t bytes);
int64_t linear_chunk_bytes();

}  // namespace xent::internal
