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

    for (int64_t j = 0; j < C; ++j) {
      const Real p = (max == -inf || x[j] == -inf) ? 0 : std::exp(x[j] - max) / sum;
      Real gx = g * (label_sum * p - y[j]);
      if (nan_x || nan_y) gx = nan;
      out.grad_logits.value[xi[j]] += gx;
      out.grad_logits.magnitude[xi[j]] += std::fabs(g) * (label_abs * p * (2 + distance(j)) + std::fabs(y[j]));
      Real gy = (y[j] == 0 && x[j] == -inf) ? 0 : g * gap(j);
      if (nan_x) gy = nan;
      out.grad_labels.value[yi[j]] += gy;
      out.grad_labels.magnitude[yi[j]] += std::fabs(g) * (lse_shift + distance(j) + 1);
    }
  }
  return out;
}

}  // namespace xent::test
