// reductions.cc — reductions.h.
#include "src/reductions.h"

#include <algorithm>

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
#pragma omp parallel for schedule(static) num_threads(threads) if (blocks > 16)
  for (int64_t b = 0; b < blocks; ++b) {
    double lane[8] = {};
    const int64_t end = std::min(n, (b + 1) * kBlock);
    int64_t i = b * kBlock;
    for (; i + 8 <= end; i += 8)
      for (int k = 0; k < 8; ++k) lane[k] += v[i + k];
    for (; i < end; ++i) lane[0] += v[i];
    partial[b] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace xent::internal
