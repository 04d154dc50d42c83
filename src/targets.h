// targets.h — class-index targets are data: they are checked (every one in [0, C) or ignored) before anything is
// computed or written, and the MEAN reduction's denominator is taken from them.
#pragma once

#include <string>

#include "src/plan.h"

namespace xent::internal {

// For class-index targets: checks each row's target (in [0, vocab_size) or ignored) and returns Σ w[t] (or the
// count, without weights) over the rows not ignored whose target is one of the layout's classes; long runs of
// contiguous targets are checked by up to `threads` threads. For probability targets: returns the number of rows
// (on the shard that holds class 0; other shards, empty ones at vocab_start 0 included, 0). Summed over the shards of a vocabulary: MEAN's denominator.
xent_status scan_targets(const Layout& layout, xent_dtype dtype, int threads, double* denominator, std::string* error);

}  // namespace xent::internal
