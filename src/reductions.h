// reductions.h — the per-row losses of a reduced call and their sum: a reusable buffer per thread, and a sum whose
// order is fixed whatever the thread count (so that SUM and MEAN give the same bits on every run).
#pragma once

#include <cstdint>
#include <vector>

#include "src/plan.h"

namespace xent::internal {

// Room for `rows` per-row losses in double: the calling thread's kept buffer for calls of up to 2M rows (16 MiB),
// so that repeated calls do not fault fresh pages in every time; larger calls use `own`.
double* row_loss_buffer(int64_t rows, std::vector<double>& own);

// Σ v[i] in a fixed order whatever the thread count (blocks of 4096 summed 8 ways, then the block sums in order):
// the same bits on every run, and it does not wait on one long chain of dependent additions.
double deterministic_sum(const double* v, int64_t n, int threads);

// The reductions' two formulas, in one place (the op, its shards, the fused linear op). Every row's upstream
// gradient for SUM and MEAN: `upstream`, or upstream / denominator for MEAN, 0 when the denominator is 0 (every row
// ignored: PyTorch gives NaN, xent.h explains why 0).
double reduction_scale(int reduction, double upstream, double denominator);
// The reduced loss of per-row losses: their sum in a fixed order (deterministic_sum), divided by the denominator for
// MEAN (0 when it is 0).
double reduced_loss(int reduction, const double* row_loss, int64_t rows, double denominator, int threads);

// A reduced call's scalars around its kernels (the op, and the finish of its shards): on construction the layout's
// per-row losses buffer and every row's upstream gradient (the plan's scalar grad_loss, scaled for MEAN); store()
// writes the reduced loss. Nothing for reduction NONE.
class ReducedLoss {
 public:
  ReducedLoss(const Plan& plan, Layout& layout, double denominator);
  void store(const Layout& layout, int threads) const;

 private:
  const Plan& plan_;
  double denominator_;
  std::vector<double> own_row_loss_;
};

}  // namespace xent::internal
