// reductions.cc — reductions.h.
#include "src/reductions.h"

#include <algorithm>

#include "src/parallel.h"
#include "src/scalar.h"
#include "xent/xent.h"

namespace xent::internal {

double* row_loss_buffer(int64_t rows, std::vector<double>& own) {
  constexpr int64_t kKeptRows = int64_t{1} << 21;
  thread_local std::vector<double> kept;
  std::vector<double>& buffer = rows <= kKeptRows ? kept : own;
  if (static_cast<int64_t>(buffer.size()) < rows) buffer.resize(static_cast<size_t>(rows));
  return buffer.data();
}

double deterministic_sum(const double* v, int64_t n, int threads) {
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));
  ParallelFor(blocks, blocks > 16 ? threads : 1, [&](int64_t b) {
    double lane[8] = {};
    const int64_t end = std::min(n, (b + 1) * kBlock);
    int64_t i = b * kBlock;
    for (; i + 8 <= end; i += 8)
      for (int k = 0; k < 8; ++k) lane[k] += v[i + k];
    for (; i < end; ++i) lane[0] += v[i];
    partial[b] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

double reduction_scale(int reduction, double upstream, double denominator) {
  if (reduction == XENT_REDUCTION_SUM) return upstream;
  return denominator == 0 ? 0.0 : upstream / denominator;
}

double reduced_loss(int reduction, const double* row_loss, int64_t rows, double denominator, int threads) {
  const double total = deterministic_sum(row_loss, rows, threads);
  if (reduction != XENT_REDUCTION_MEAN) return total;
  return denominator == 0 ? 0.0 : total / denominator;
}

ReducedLoss::ReducedLoss(const Plan& plan, Layout& layout, double denominator)
    : plan_(plan), denominator_(denominator) {
  const xent_reduction reduction = layout.options.reduction;
  if (reduction == XENT_REDUCTION_NONE) return;
  layout.row_loss = row_loss_buffer(layout.rows, own_row_loss_);
  const double upstream = plan.scalar_grad_loss ? load_as_double(plan.scalar_grad_loss->data, plan.dtype, 0) : 1.0;
  layout.grad_scale = reduction_scale(reduction, upstream, denominator);
}

void ReducedLoss::store(const Layout& layout, int threads) const {
  const xent_reduction reduction = layout.options.reduction;
  if (reduction == XENT_REDUCTION_NONE || !plan_.scalar_loss) return;
  store_from_double(plan_.scalar_loss->data, plan_.dtype, 0,
                    reduced_loss(reduction, layout.row_loss, layout.rows, denominator_, threads));
}

}  // namespace xent::internal
