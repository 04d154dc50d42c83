// row_state.h — the running state of one row (or part of a row) of softmax cross-entropy, and its merge.
//
// A row is consumed block by block; each block yields a RowState, and states merge associatively, so a row can be
// split across SIMD lanes, cache blocks and threads in any order. Everything is relative to a reference
// r = max if the max is finite, else 0 (all -inf: nothing to subtract), which keeps exp() ≤ 1 and makes huge
// logits (3e38) safe.
//   max        = max_j x_j                       (NaN if a logit is NaN, see Merge)
//   sum        = Σ_j exp(x_j − r)                (≥ 1 when max is finite; 0 when every logit is −inf)
//   label_sum  = Σ_j y_j
//   label_dot  = Σ_{j: y_j ≠ 0} y_j · (x_j − r)  (y = 0 skipped: 0 · (−inf) must not make NaN)
// Then for the whole row: logsumexp = r + log(sum), and
//   loss = Σ y_j (logsumexp − x_j) = label_sum · log(sum) − label_dot.
// For labels ≥ 0 both terms are ≥ 0 (x_j − r ≤ 0), so the subtraction never cancels.
#pragma once

#include <cmath>
#include <limits>

namespace xent::internal {

struct RowState {
  double max = -std::numeric_limits<double>::infinity();
  double sum = 0;
  double label_sum = 0;
  double label_dot = 0;
};

inline double reference_of(double max) { return max == -std::numeric_limits<double>::infinity() ? 0.0 : max; }

// Combines two states of disjoint parts of one row. Terms that are exactly 0 are skipped rather than rescaled:
// rescaling a 0 by exp(−inf) or shifting a 0 label sum by an infinite reference difference would make NaN.
inline RowState Merge(const RowState& a, const RowState& b) {
  RowState m;
  m.max = (std::isnan(a.max) || std::isnan(b.max)) ? std::numeric_limits<double>::quiet_NaN()
                                                   : std::fmax(a.max, b.max);
  const double r = reference_of(m.max), ra = reference_of(a.max), rb = reference_of(b.max);
  const auto rescale = [r](double sum, double ref) { return sum == 0 ? 0 : ref == r ? sum : sum * std::exp(ref - r); };
  m.sum = rescale(a.sum, ra) + rescale(b.sum, rb);
  m.label_sum = a.label_sum + b.label_sum;
  m.label_dot = a.label_dot + (a.label_sum == 0 ? 0 : a.label_sum * (ra - r)) + b.label_dot +
                (b.label_sum == 0 ? 0 : b.label_sum * (rb - r));
  return m;
}

// What the gradient pass of a row needs, in the compute type of the kernel.
struct RowResult {
  double loss;
  double reference;  // r
  double log_sum;    // log(sum); logsumexp = r + log_sum
  double softmax_scale;  // g · label_sum / sum: grad_logits_j = softmax_scale · exp(x_j − r) − g · y_j
  double grad_loss;      // g
};

// z_loss λ adds λ·lse² to the loss and 2λ·lse·softmax to the gradient (rows with logits all −inf have none).
inline RowResult Finalize(const RowState& s, double grad_loss, double z_loss = 0) {
  RowResult r;
  r.reference = reference_of(s.max);
  r.log_sum = s.sum == 0 ? 0.0 : std::log(s.sum);  // sum == 0: every logit −inf; NaN stays NaN
  // label_sum == 0 with log_sum finite gives exactly 0 · log_sum = 0.
  r.loss = s.label_sum * r.log_sum - s.label_dot;
  r.softmax_scale = s.sum == 0 ? 0.0 : grad_loss * s.label_sum / s.sum;
  if (std::isnan(s.sum)) r.softmax_scale = s.sum;
  r.grad_loss = grad_loss;
  if (z_loss != 0 && s.sum != 0) {
    const double lse = r.reference + r.log_sum;
    r.loss += z_loss * lse * lse;
    r.softmax_scale += grad_loss * 2 * z_loss * lse / s.sum;
  }
  return r;
}

}  // namespace xent::internal
