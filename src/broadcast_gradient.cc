#include "src/broadcast_gradient.h"

#include <cmath>
#include <vector>

#include "src/scalar.h"

namespace xent::internal {

BroadcastGradient::BroadcastGradient(const Plan& plan, const xent_tensor* output) : plan_(plan), output_(output) {
  const size_t n = static_cast<size_t>(plan.elements);
  if (plan.dtype == XENT_FLOAT64) double_temp_.reset(new double[n]);
  else float_temp_.reset(new float[n]);
}

void* BroadcastGradient::data() const {
  return double_temp_ ? static_cast<void*>(double_temp_.get()) : static_cast<void*>(float_temp_.get());
}

void BroadcastGradient::reduce() const {
  const xent_tensor& out = *output_;
  int64_t out_elements = 1;
  for (int d = 0; d < out.rank; ++d) out_elements *= out.shape[d];
  if (out_elements == 0) return;
  // Compensated (Neumaier) sums: an output element may gather millions of terms, and a float64 gradient must stay
  // within xent.h's 1e-13 relative bound whatever their number (a plain sum's error grows with it: 1.4e-13 over
  // 7542 terms, found by the fuzzer). carry holds each sum's lost low-order part; it is left alone once the sum is
  // not finite (inf − inf would make it NaN).
  std::vector<double> sums(static_cast<size_t>(out_elements), 0.0), carry(sums.size(), 0.0);

  // Row-major strides of `sums` over the broadcast shape: 0 on the dimensions the input was broadcast along.
  const int offset = plan_.rank - out.rank;
  std::vector<int64_t> sum_strides(plan_.rank, 0);
  int64_t stride = 1;
  for (int d = out.rank - 1; d >= 0; --d) {
    sum_strides[offset + d] = out.shape[d] == 1 ? 0 : stride;
    stride *= out.shape[d];
  }
  std::vector<int64_t> index(plan_.rank, 0);
  int64_t target = 0;
  for (int64_t e = 0; e < plan_.elements; ++e) {
    const double v = double_temp_ ? double_temp_[e] : static_cast<double>(float_temp_[e]);
    double& sum = sums[target];
    const double t = sum + v;
    if (std::isfinite(t)) carry[target] += std::fabs(sum) >= std::fabs(v) ? (sum - t) + v : (v - t) + sum;
    sum = t;
    for (int d = plan_.rank - 1; d >= 0; --d) {  // next index, row-major
      target += sum_strides[d];
      if (++index[d] < plan_.shape[d]) break;
      target -= sum_strides[d] * index[d];
      index[d] = 0;
    }
  }

  // Write with the caller's strides.
  std::vector<int64_t> out_index(out.rank, 0);
  for (int64_t e = 0; e < out_elements; ++e) {
    int64_t at = 0;
    for (int d = 0; d < out.rank; ++d) at += out_index[d] * out.strides[d];
    store_from_double(out.data, static_cast<xent_dtype>(out.dtype), at,
                      std::isfinite(sums[e]) ? sums[e] + carry[e] : sums[e]);
    for (int d = out.rank - 1; d >= 0; --d) {
      if (++out_index[d] < out.shape[d]) break;
      out_index[d] = 0;
    }
  }
}

}  // namespace xent::internal
