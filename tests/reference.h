// reference.h — softmax cross-entropy straight from the math, in long double, with its own broadcasting.
// Every optimised path is tested against this. It shares no code with the library.
//
// Besides each value it returns a magnitude: the sum of the absolute values of the terms that make it up, scaled
// by the condition of each term. A float computation of the value has an error of a few eps times that
// magnitude; tests use it to derive tolerances from the dtype's eps instead of one absolute number.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace xent::test {

using Real = long double;

struct Dense {  // row-major
  std::vector<int64_t> shape;
  std::vector<Real> values;
};

struct Expected {
  std::vector<Real> value;
  std::vector<Real> magnitude;
};

struct Reference {
  std::vector<int64_t> loss_shape;
  Expected loss, grad_logits, grad_labels;  // grad_* in their input's shape, summed over broadcast dimensions
  // The largest intermediate of any row (reference_options): effective label mass, label times logit distance,
  // z-loss terms, times the upstream gradient. Beyond the compute type's range the op's result is unspecified
  // (NaN or ±inf, xent.h and README: Limits), however finite the exact result.
  Real peak = 0;
};

inline int64_t count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// Flat index into `t` (right-aligned against the broadcast shape) of broadcast multi-index `index`.
inline int64_t broadcast_index(const std::vector<int64_t>& t, const std::vector<int64_t>& index) {
  const size_t offset = index.size() - t.size();
  int64_t flat = 0;
  for (size_t d = 0; d < t.size(); ++d) flat = flat * t[d] + (t[d] == 1 ? 0 : index[offset + d]);
  return flat;
}

// axis as the library defines it: counted in logits' rank, right-aligned in the broadcast shape.
// grad_loss: one value per loss element, or empty for 1.
inline Reference reference(const Dense& labels, const Dense& logits, int axis, const std::vector<Real>& grad_loss) {
  const size_t rank = std::max(labels.shape.size(), logits.shape.size());
  std::vector<int64_t> shape(rank);
  for (size_t d = 0; d < rank; ++d) {
    const auto dim = [&](const Dense& t) {
      const int64_t i = static_cast<int64_t>(d) - static_cast<int64_t>(rank - t.shape.size());
      return i >= 0 ? t.shape[i] : int64_t{1};
    };
    shape[d] = dim(logits) == 1 ? dim(labels) : dim(logits);
  }
  const int logits_rank = static_cast<int>(logits.shape.size());
  const size_t class_axis = axis < 0 ? rank + axis : rank - logits_rank + axis;
  const int64_t C = shape[class_axis];

  Reference out;
  for (size_t d = 0; d < rank; ++d)
    if (d != class_axis) out.loss_shape.push_back(shape[d]);
  const int64_t rows = count(out.loss_shape);
  out.loss.value.assign(rows, 0);
  out.loss.magnitude.assign(rows, 0);
  out.grad_logits.value.assign(logits.values.size(), 0);
  out.grad_logits.magnitude.assign(logits.values.size(), 0);
  out.grad_labels.value.assign(labels.values.size(), 0);
  out.grad_labels.magnitude.assign(labels.values.size(), 0);
  const Real inf = std::numeric_limits<Real>::infinity(), nan = std::numeric_limits<Real>::quiet_NaN();

  std::vector<int64_t> index(rank, 0);
  for (int64_t row = 0; row < rows; ++row) {
    // Multi-index of the row (class index set per element below).
    for (int64_t r = row, d = static_cast<int64_t>(rank) - 1; d >= 0; --d) {
      if (static_cast<size_t>(d) == class_axis) continue;
      index[d] = r % shape[d];
      r /= shape[d];
    }
    std::vector<Real> x(C), y(C);
    std::vector<int64_t> xi(C), yi(C);
    for (int64_t j = 0; j < C; ++j) {
      index[class_axis] = j;
      xi[j] = broadcast_index(logits.shape, index);
      yi[j] = broadcast_index(labels.shape, index);
      x[j] = logits.values[xi[j]];
      y[j] = labels.values[yi[j]];
    }
    Real max = -inf;
    bool nan_x = false, nan_y = false;
    for (int64_t j = 0; j < C; ++j) {
      nan_x |= std::isnan(x[j]);
      nan_y |= std::isnan(y[j]);
      if (x[j] > max) max = x[j];
    }
    if (max == inf) nan_x = true;  // +inf − (+inf)
    Real sum = 0, label_sum = 0, label_abs = 0;
    for (int64_t j = 0; j < C; ++j) {
      if (max != -inf) sum += std::exp(x[j] - max);
      label_sum += y[j];
      label_abs += std::fabs(y[j]);
    }
    // logsumexp − max: log(sum) (0 for an all −inf row, where nothing is subtracted).
    const Real log_sum = max == -inf ? 0 : std::log(sum);
    const Real g = grad_loss.empty() ? 1 : grad_loss[row];
    // logsumexp − x_j = log_sum − (x_j − max), computed relative to max so that huge logits (3e38) lose nothing;
    // +inf for a −inf logit.
    const auto gap = [&](int64_t j) { return x[j] == -inf ? inf : log_sum - (x[j] - (max == -inf ? 0 : max)); };
    // Sizes of the intermediate quantities a float computation rounds, with −inf parts (exactly 0 terms) left out.
    const Real lse_shift = std::isnan(log_sum) ? 0 : std::fabs(log_sum);
    const auto distance = [&](int64_t j) { return x[j] == -inf || max == -inf ? 0 : std::fabs(x[j] - max); };

    Real loss = 0, loss_mag = 0;
    for (int64_t j = 0; j < C; ++j) {
      if (y[j] == 0) continue;
      loss += y[j] * gap(j);
      loss_mag += std::fabs(y[j]) * (lse_shift + distance(j) + 1);
    }
    if (nan_x || nan_y) loss = nan;
    out.loss.value[row] = loss;
    out.loss.magnitude[row] = loss_mag;
    if (!nan_x && !nan_y && std::isfinite(g)) out.peak = std::max(out.peak, (loss_mag + label_abs) * std::max(Real{1}, std::fabs(g)));

    for (int64_t j = 0; j < C; ++j) {
      const Real p = (max == -inf || x[j] == -inf) ? 0 : std::exp(x[j] - max) / sum;
      // A row of -inf logits has no probabilities: its gradient is -g·y (xent.h), whatever the other labels are.
      Real gx = max == -inf ? -g * y[j] : g * (label_sum * p - y[j]);
      if (nan_x || (nan_y && max != -inf)) gx = nan;
      out.grad_logits.value[xi[j]] += gx;
      out.grad_logits.magnitude[xi[j]] += std::fabs(g) * ((p == 0 ? 0 : label_abs * p * (2 + distance(j))) + std::fabs(y[j]));
      Real gy = (y[j] == 0 && x[j] == -inf) ? 0 : g * gap(j);
      if (nan_x) gy = nan;
      out.grad_labels.value[yi[j]] += gy;
      out.grad_labels.magnitude[yi[j]] += std::fabs(g) * (lse_shift + distance(j) + 1);
    }
  }
  return out;
}

}  // namespace xent::test

namespace xent::test {

// The loss options, as the tests describe them (independent of xent_loss_options).
struct LossOptions {
  std::vector<Real> weight;  // empty: none
  int64_t ignore_index = -100;
  bool has_ignore = true;
  int reduction = 0;  // 0 none, 1 sum, 2 mean
  Real label_smoothing = 0, z_loss = 0, softcap = 0;
};

// Cross-entropy with options, from the definitions in xent.h. Class axis is the last of logits' shape
// (tests move other axes through strides). Either `indices` (one per row) or `probabilities` (logits' shape).
// grad_loss: one per row (reduction none), one value (sum/mean), or empty for 1.
inline Reference reference_options(const Dense& logits, const std::vector<int64_t>* indices,
                                   const Dense* probabilities, const LossOptions& o,
                                   const std::vector<Real>& grad_loss) {
  const int64_t C = logits.shape.back(), rows = C ? count(logits.shape) / C : 0;
  const Real inf = std::numeric_limits<Real>::infinity(), nan = std::numeric_limits<Real>::quiet_NaN();
  Reference out;
  std::vector<Real> row_loss(rows, 0), row_mag(rows, 0);
  std::vector<Real> gx(logits.values.size(), 0), gx_mag(logits.values.size(), 0);
  std::vector<bool> ignored(rows, false);
  Real denominator = 0;
  for (int64_t i = 0; i < rows; ++i) {
    if (indices) {
      const int64_t t = (*indices)[i];
      ignored[i] = o.has_ignore && t == o.ignore_index;
      if (!ignored[i]) denominator += o.weight.empty() ? 1 : o.weight[t];
    } else {
      denominator += 1;
    }
  }
  const auto w = [&](int64_t j) { return o.weight.empty() ? Real{1} : o.weight[j]; };
  // Per-row upstream gradient.
  const auto g_of = [&](int64_t i) -> Real {
    if (o.reduction == 0) return grad_loss.empty() ? 1 : grad_loss[i];
    const Real G = grad_loss.empty() ? 1 : grad_loss[0];
    return o.reduction == 1 ? G : denominator == 0 ? 0 : G / denominator;
  };
  for (int64_t i = 0; i < rows; ++i) {
    if (ignored[i]) continue;
    std::vector<Real> x(C), a(C);
    bool nan_row = false;
    for (int64_t j = 0; j < C; ++j) {
      const Real raw = logits.values[i * C + j];
      x[j] = o.softcap != 0 ? (std::isinf(raw) ? std::copysign(o.softcap, raw) : o.softcap * std::tanh(raw / o.softcap))
                            : raw;
      nan_row |= std::isnan(x[j]);
    }
    const Real eps = o.label_smoothing;
    for (int64_t j = 0; j < C; ++j) {
      if (indices) a[j] = eps / C * w(j) + ((*indices)[i] == j ? (1 - eps) * w(j) : 0);
      else a[j] = w(j) * ((1 - eps) * probabilities->values[i * C + j] + eps / C);
      nan_row |= std::isnan(a[j]);
    }
    Real max = -inf;
    for (Real v : x) max = std::max(max, v);
    if (max == inf) nan_row = true;
    Real sum = 0, a_sum = 0, a_abs = 0, cap_mag = 0;
    for (int64_t j = 0; j < C; ++j) {
      if (max != -inf) sum += std::exp(x[j] - max);
      a_sum += a[j];
      a_abs += std::fabs(a[j]);
    }
    const Real log_sum = max == -inf ? 0 : std::log(sum);
    const Real lse = max == -inf ? -inf : max + log_sum;
    const auto distance = [&](int64_t j) { return x[j] == -inf || max == -inf ? 0 : std::fabs(x[j] - max); };
    Real loss = 0, mag = 0;
    for (int64_t j = 0; j < C; ++j) {
      if (o.softcap != 0) cap_mag += (std::fabs(a[j]) + a_abs) * std::fabs(x[j]);
      if (a[j] == 0) continue;
      loss += a[j] * (x[j] == -inf ? inf : log_sum - (x[j] - (max == -inf ? 0 : max)));
      mag += std::fabs(a[j]) * (std::fabs(log_sum) + distance(j) + 1);
    }
    if (o.z_loss != 0 && max != -inf) {
      loss += o.z_loss * lse * lse;
      mag += o.z_loss * 4 * (std::fabs(lse) + 1) * (std::fabs(max) + std::fabs(log_sum) + 1);
    }
    mag += cap_mag;
    row_loss[i] = nan_row ? nan : loss;
    row_mag[i] = mag;
    const Real g = g_of(i);
    const Real z_term = (o.z_loss != 0 && max != -inf) ? 2 * o.z_loss * lse : 0;
    if (!nan_row && std::isfinite(g))
      out.peak = std::max(out.peak, (mag + a_abs + std::fabs(z_term)) * std::max(Real{1}, std::fabs(g)));
    for (int64_t j = 0; j < C; ++j) {
      const Real p = (max == -inf || x[j] == -inf) ? 0 : std::exp(x[j] - max) / sum;
      const Real d = o.softcap != 0 ? 1 - (x[j] / o.softcap) * (x[j] / o.softcap) : 1;
      gx[i * C + j] = nan_row ? nan : g * ((a_sum + z_term) * p - a[j]) * d;
      gx_mag[i * C + j] = std::fabs(g) * ((a_abs + std::fabs(z_term)) * p * (2 + distance(j)) + std::fabs(a[j]) +
                                          (o.softcap != 0 ? (a_abs * p + std::fabs(a[j])) * 4 : 0) +
                                          (o.z_loss != 0 && max != -inf ? 4 * o.z_loss * (std::fabs(max) + 1) * p : 0));
    }
  }
  out.grad_logits = {gx, gx_mag};
  if (o.reduction == 0) {
    out.loss_shape.assign(logits.shape.begin(), logits.shape.end() - 1);
    out.loss = {row_loss, row_mag};
  } else {
    Real total = 0, total_mag = 0;
    for (int64_t i = 0; i < rows; ++i) total += row_loss[i], total_mag += row_mag[i];
    if (o.reduction == 2) {
      total = denominator == 0 ? 0 : total / denominator;
      total_mag = denominator == 0 ? 0 : total_mag / denominator;
    }
    out.loss = {{total}, {total_mag}};
  }
  return out;
}

}  // namespace xent::test
