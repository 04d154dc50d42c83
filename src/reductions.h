// reductions.h — the per-row losses of a reduced call and their sum: a reusable buffer per thread, and a sum whose
// order is fixed whatever the thread count (so that SUM and MEAN give the same bits on every run).
#pragma once

#include <cstdint>
#include <vector>

namespace xent::internal {

// Room for `rows` per-row losses in double: the calling thread's kept buffer for calls of up to 2M rows (16 MiB),
// so that repeated calls do not fault fresh pages in every time; larger calls use `own`.
double* row_loss_buffer(int64_t rows, std::vector<double>& own);

// Σ v[i] in a fixed order whatever the thread count (blocks of 4096 summed 8 ways, then the block sums in order):
// the same bits on every run, and it does not wait on one long chain of dependent additions.
double deterministic_sum(const double* v, int64_t n, int threads);

}  // namespace xent::internal
