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
};

// Checks the request, then computes with up to `threads` threads. On a bad request returns its status and sets
// *error, having written nothing. Throws std::bad_alloc when a buffer cannot be allocated (before any write).
xent_status linear_cross_entropy(const LinearRequest& request, int threads, std::string* error);

// The chunk budget (xent_set_linear_chunk_bytes): bytes <= 0 restores the default.
void set_linear_chunk_bytes(int64_t bytes);
int64_t linear_chunk_bytes();

}  // namespace xent::internal
