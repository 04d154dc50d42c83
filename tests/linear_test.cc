// linear_test.cc — the fused linear + cross-entropy (xent_linear_cross_entropy) against a long double composition:
// logits materialised from the definitions in xent.h, then loss and gradients, for every option and reduction,
// ignored rows, a non-uniform upstream gradient, shapes that are not multiples of anything, strided and transposed
// operands, every dtype, and chunk budgets from one row to all rows. Tolerances follow an error analysis of the
// products: a logit of H terms is off by up to (H + 2)·u times the sum of its terms' magnitudes, and every result
// by what that moves it plus its own rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/memory_limit.h"
#include "tests/test_util.h"
#include "xent/xent.hpp"

namespace xent::test {
namespace {

// One test case: h [N, H], W [V, H], b [V], targets [N], options, upstream gradient.
struct LinearCase {
  xent_dtype dtype = XENT_FLOAT32;
  int64_t N = 37, H = 31, V = 203;
  bool bias = true;
  LossOptions options;  // weight: per class, or empty
  Layout input_layout = Layout::kContiguous, weight_layout = Layout::kContiguous;
  Layout output_layout = Layout::kContiguous;  // of grad_input and grad_linear_weight
  int64_t chunk_bytes = 0;  // 0: the default budget
  Real ignored_fraction = 0.15;
  uint32_t seed = 1;
  // Not empty: W's rows split into shards at these cuts (in [0, V]), composed through the vocabulary-parallel stages
  // (xent_linear_shard_statistics, xent_merge_row_statistics, xent_linear_shard_finish) as processes would.
  std::vector<int64_t> shards;
};

std::string describe(const LinearCase& c) {
  return std::string(xent_dtype_name(c.dtype)) + " N=" + std::to_string(c.N) + " H=" + std::to_string(c.H) +
         " V=" + std::to_string(c.V) + " bias=" + std::to_string(c.bias) + " reduction=" +
         std::to_string(c.options.reduction) + " eps=" + std::to_string(static_cast<double>(c.options.label_smoothing)) +
         " z=" + std::to_string(static_cast<double>(c.options.z_loss)) + " cap=" +
         std::to_string(static_cast<double>(c.options.softcap)) + " weight=" + std::to_string(!c.options.weight.empty()) +
         " layouts " + layout_name(c.input_layout) + "/" + layout_name(c.weight_layout) + "/" +
         layout_name(c.output_layout) + " chunk=" +
         std::to_string(c.chunk_bytes) + " shards=" + std::to_string(c.shards.empty() ? 0 : c.shards.size() + 1);
}

// The expected results (long double) and each one's tolerance.
struct Want {
  std::vector<Real> loss, loss_tol, gin, gin_tol, gw, gw_tol, gb, gb_tol;
};

// From the definitions in xent.h, with a bound on the error of a computation in unit roundoff u whose logits are
// products of H terms, and whose backward products round dlogits to operands of unit roundoff u_operand (bfloat16
// operands: 2^-8).
Want expected(const LinearCase& c, const Dense& h, const Dense& W, const Dense& b, const std::vector<int64_t>& t,
              const std::vector<Real>& g_rows, Real upstream, Real u, Real u_operand) {
  const int64_t N = c.N, H = c.H, V = c.V;
  const LossOptions& o = c.options;
  const Real eps = o.label_smoothing, z = o.z_loss, cap = o.softcap;
  std::vector<Real> w(V, 1);
  if (!o.weight.empty()) w = o.weight;
  Real denominator = 0;
  for (int64_t i = 0; i < N; ++i)
    if (t[i] != o.ignore_index) denominator += w[t[i]];
  const bool reduced = o.reduction != 0;
  Want out;
  std::vector<Real> dl(N * V, 0), dl_err(N * V, 0), row_loss(N, 0), row_loss_err(N, 0);
  for (int64_t i = 0; i < N; ++i) {
    const Real g = o.reduction == 0 ? g_rows[i] : o.reduction == 1 ? upstream : denominator == 0 ? 0 : upstream / denominator;
    if (t[i] == o.ignore_index) continue;
    std::vector<Real> x(V), xp(V), S(V);
    for (int64_t v = 0; v < V; ++v) {
      Real sum = c.bias ? b.values[v] : 0, mag = c.bias ? std::fabs(b.values[v]) : 0;
      for (int64_t k = 0; k < H; ++k) {
        sum += h.values[i * H + k] * W.values[v * H + k];
        mag += std::fabs(h.values[i * H + k] * W.values[v * H + k]);
      }
      x[v] = sum, S[v] = (H + 2) * u * mag + u * std::fabs(sum);  // the logit's error bound
      xp[v] = cap > 0 ? cap * std::tanh(x[v] / cap) : x[v];
    }
    Real max = -INFINITY;
    for (Real v : xp) max = std::max(max, v);
    Real sum = 0;
    for (Real v : xp) sum += std::exp(v - max);
    const Real lse = max + std::log(sum);
    Real a_sum = 0, loss = 0, err = 0;
    std::vector<Real> a(V), p(V);
    for (int64_t v = 0; v < V; ++v) {
      a[v] = (1 - eps) * w[t[i]] * (v == t[i] ? 1 : 0) + eps / V * w[v];
      a_sum += a[v];
      p[v] = std::exp(xp[v] - lse);
      loss += a[v] * (lse - xp[v]);
    }
    loss += z * lse * lse;
    const Real C = a_sum + 2 * z * lse;
    Real spread = 0;  // Σ p·S: how far lse moves
    for (int64_t v = 0; v < V; ++v) spread += p[v] * S[v];
    for (int64_t v = 0; v < V; ++v) err += std::fabs(a[v]) * (S[v] + spread);
    row_loss[i] = loss;
    row_loss_err[i] = err + 2 * std::fabs(z * lse) * spread + 8 * u * (std::fabs(loss) + a_sum * std::fabs(lse));
    for (int64_t v = 0; v < V; ++v) {
      const Real slope = cap > 0 ? 1 - (xp[v] / cap) * (xp[v] / cap) : 1;
      dl[i * V + v] = g * (C * p[v] - a[v]) * slope;
      dl_err[i * V + v] =
          std::fabs(g) * (std::fabs(C) * p[v] * (S[v] + spread) * 2 + 8 * u * (std::fabs(C) * p[v] + std::fabs(a[v])));
    }
  }
  if (reduced) {
    Real total = 0, err = 0;
    for (int64_t i = 0; i < N; ++i) total += row_loss[i], err += row_loss_err[i];
    if (o.reduction == 2) total = denominator == 0 ? 0 : total / denominator, err = denominator == 0 ? 0 : err / denominator;
    out.loss = {total}, out.loss_tol = {err + 8 * u * std::fabs(total)};
  } else {
    out.loss = row_loss, out.loss_tol = row_loss_err;
  }
  // Products of dlogits: their terms' errors and their own rounding over V (or N) terms.
  out.gin.assign(N * H, 0), out.gin_tol.assign(N * H, 0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k = 0; k < H; ++k) {
      Real s = 0, e = 0, m = 0;
      for (int64_t v = 0; v < V; ++v) {
        const Real wv = W.values[v * H + k];
        s += dl[i * V + v] * wv, e += dl_err[i * V + v] * std::fabs(wv), m += std::fabs(dl[i * V + v] * wv);
      }
      out.gin[i * H + k] = s, out.gin_tol[i * H + k] = e + ((V + 2) * u + u_operand) * m;
    }
  out.gw.assign(V * H, 0), out.gw_tol.assign(V * H, 0);
  out.gb.assign(V, 0), out.gb_tol.assign(V, 0);
  for (int64_t v = 0; v < V; ++v) {
    for (int64_t k = 0; k < H; ++k) {
      Real s = 0, e = 0, m = 0;
      for (int64_t i = 0; i < N; ++i) {
        const Real hv = h.values[i * H + k];
        s += dl[i * V + v] * hv, e += dl_err[i * V + v] * std::fabs(hv), m += std::fabs(dl[i * V + v] * hv);
      }
      out.gw[v * H + k] = s, out.gw_tol[v * H + k] = e + ((N + 2) * u + u_operand) * m;
    }
    Real s = 0, e = 0, m = 0;
    for (int64_t i = 0; i < N; ++i) s += dl[i * V + v], e += dl_err[i * V + v], m += std::fabs(dl[i * V + v]);
    out.gb[v] = s, out.gb_tol[v] = e + (N + 2) * u * m;
  }
  return out;
}

// Every element of got within its tolerance, plus the rounding to the output's dtype.
void expect_within(const Tensor& got, const std::vector<Real>& want, const std::vector<Real>& tol, const char* what) {
  ASSERT_EQ(static_cast<size_t>(got.size()), want.size()) << what;
  int failures = 0;
  for (int64_t i = 0; i < got.size() && failures < 5; ++i) {
    const Real bound = tol[i] + storage_eps(got.dtype()) * std::fabs(want[i]) + storage_tiny(got.dtype());
    if (!(std::fabs(got.get(i) - want[i]) <= bound)) {
      ++failures;
      ADD_FAILURE() << what << "[" << i << "] = " << static_cast<double>(got.get(i)) << ", expected "
                    << static_cast<double>(want[i]) << " ± " << static_cast<double>(bound);
    }
  }
}

struct Results {
  Tensor loss, grad_input, grad_weight, grad_bias, loss_only;
  std::vector<Real> grad_input_rounding;  // shards: each part's rounding to the dtype before the sum
};

// Rows [start, start + count) of a view's first dimension.
xent_tensor rows_of(xent_tensor t, int64_t start, int64_t count) {
  t.data = static_cast<char*>(t.data) + start * t.strides[0] * dtype_size(static_cast<xent_dtype>(t.dtype));
  t.shape[0] = count;
  return t;
}

// The fused op composed from its vocabulary-parallel stages over the case's shards of W: each shard's statistics,
// merged in shard order, then each shard's finish; grad_input is the sum of the shards' parts, and every shard
// must write the same loss (bit for bit: it comes from the merged statistics alone).
void run_shards(const LinearCase& c, const xent_tensor& hv, const xent_tensor& wv, const xent_tensor& bv,
                const xent_tensor& tv, const xent_tensor& gv, const xent_tensor& cw, xent_loss_options o,
                Results& r) {
  std::vector<int64_t> bounds = {0};
  bounds.insert(bounds.end(), c.shards.begin(), c.shards.end());
  bounds.push_back(c.V);
  const size_t shards = bounds.size() - 1;
  std::vector<xent_row_statistics> merged(c.N), part(c.N);
  double denominator = 0;
  const auto shard_options = [&](size_t k, xent_tensor* weight) {
    xent_loss_options so = o;
    if (o.weight) *weight = rows_of(cw, bounds[k], bounds[k + 1] - bounds[k]), so.weight = weight;
    return so;
  };
  for (size_t k = 0; k < shards; ++k) {
    const int64_t start = bounds[k], count = bounds[k + 1] - start;
    xent_tensor weight;
    const xent_loss_options so = shard_options(k, &weight);
    const xent_tensor wk = rows_of(wv, start, count), bk = rows_of(bv, start, count);
    double d = 0;
    expect_ok(xent_linear_shard_statistics(&hv, &wk, c.bias ? &bk : nullptr, &tv, &so, start, c.V, c.N,
                                           k == 0 ? merged.data() : part.data(), &d));
    if (k > 0) expect_ok(xent_merge_row_statistics(merged.data(), part.data(), c.N));
    denominator += d;
  }
  const xent_tensor lv = r.loss.view(), gwv = r.grad_weight.view(), gbv = r.grad_bias.view();
  std::vector<Real> grad_input(static_cast<size_t>(c.N * c.H), 0);
  for (size_t k = 0; k < shards; ++k) {
    const int64_t start = bounds[k], count = bounds[k + 1] - start;
    xent_tensor weight;
    const xent_loss_options so = shard_options(k, &weight);
    const xent_tensor wk = rows_of(wv, start, count), bk = rows_of(bv, start, count);
    const xent_tensor gwk = rows_of(gwv, start, count), gbk = rows_of(gbv, start, count);
    Tensor loss(c.dtype, r.loss.shape()), part_input(c.dtype, {c.N, c.H}, c.output_layout);
    const xent_tensor lk = loss.view(), gik = part_input.view();
    expect_ok(xent_linear_shard_finish(&hv, &wk, c.bias ? &bk : nullptr, &tv, &so, start, c.V, c.N, merged.data(),
                                       denominator, &gv, &lk, &gik, &gwk, c.bias ? &gbk : nullptr));
    r.grad_input_rounding.resize(grad_input.size());
    for (int64_t i = 0; i < part_input.size(); ++i) {
      grad_input[i] += part_input.get(i);
      if (shards > 1) r.grad_input_rounding[i] += storage_eps(c.dtype) * std::fabs(part_input.get(i));
    }
    if (k == 0) expect_ok(xent_linear_shard_finish(&hv, &wk, c.bias ? &bk : nullptr, &tv, &so, start, c.V, c.N,
                                                   merged.data(), denominator, &gv, &lv, nullptr, nullptr, nullptr));
    EXPECT_TRUE(loss.bytes() == r.loss.bytes()) << "shard " << k << " wrote another loss";
  }
  for (int64_t i = 0; i < r.grad_input.size(); ++i) r.grad_input.set(i, grad_input[i]);
  const xent_tensor lo = r.loss_only.view();
  xent_tensor weight;
  const xent_loss_options so = shard_options(0, &weight);
  const xent_tensor w0 = rows_of(wv, 0, bounds[1]), b0 = rows_of(bv, 0, bounds[1]);
  expect_ok(xent_linear_shard_finish(&hv, &w0, c.bias ? &b0 : nullptr, &tv, &so, 0, c.V, c.N, merged.data(),
                                     denominator, &gv, &lo, nullptr, nullptr, nullptr));
}

// The fused op on the case's tensors; grads: loss and every gradient in one call.
Results run_linear(const LinearCase& c, Tensor& h, Tensor& W, Tensor& b, std::vector<int64_t>& targets, Tensor& grad_loss,
               Tensor& class_weight) {
  const bool reduced = c.options.reduction != 0;
  Results r{Tensor(c.dtype, reduced ? std::vector<int64_t>{} : std::vector<int64_t>{c.N}),
            Tensor(c.dtype, {c.N, c.H}, c.output_layout), Tensor(c.dtype, {c.V, c.H}, c.output_layout),
            Tensor(c.dtype, {c.V}), Tensor(c.dtype, reduced ? std::vector<int64_t>{} : std::vector<int64_t>{c.N})};
  const int64_t target_shape[] = {c.N};
  xent_tensor hv = h.view(), wv = W.view(), bv = b.view(), gv = grad_loss.view(), cw = class_weight.view();
  xent_tensor tv = xent_make_tensor(targets.data(), XENT_INT64, 1, target_shape, nullptr);
  xent_tensor lv = r.loss.view(), giv = r.grad_input.view(), gwv = r.grad_weight.view(), gbv = r.grad_bias.view();
  xent_loss_options o = xent_default_loss_options();
  o.weight = c.options.weight.empty() ? nullptr : &cw;
  o.ignore_index = c.options.ignore_index;
  o.reduction = c.options.reduction;
  o.label_smoothing = static_cast<double>(c.options.label_smoothing);
  o.z_loss = static_cast<double>(c.options.z_loss);
  o.softcap = static_cast<double>(c.options.softcap);
  xent_set_linear_chunk_bytes(c.chunk_bytes);
  if (!c.shards.empty()) {
    run_shards(c, hv, wv, bv, tv, gv, cw, o, r);
    xent_set_linear_chunk_bytes(0);
    return r;
  }
  expect_ok(xent_linear_cross_entropy_grad(&hv, &wv, c.bias ? &bv : nullptr, &tv, &o, &gv, &lv, &giv, &gwv,
                                           c.bias ? &gbv : nullptr));
  // The forward alone: the same loss, to the bit where the gradients' call takes the same schedule (the rows; the
  // tests' shapes under the default budget).
  xent_tensor lo = r.loss_only.view();
  expect_ok(xent_linear_cross_entropy(&hv, &wv, c.bias ? &bv : nullptr, &tv, &o, &lo));
  if (c.chunk_bytes == 0) EXPECT_TRUE(r.loss_only.bytes() == r.loss.bytes()) << "the forward alone gave another loss";
  xent_set_linear_chunk_bytes(0);
  return r;
}

void run_case(const LinearCase& c) {
  SCOPED_TRACE(describe(c));
  std::mt19937 rng(c.seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  Tensor h(c.dtype, {c.N, c.H}, c.input_layout), W(c.dtype, {c.V, c.H}, c.weight_layout), b(c.dtype, {c.V});
  for (int64_t i = 0; i < h.size(); ++i) h.set(i, normal(rng));
  for (int64_t i = 0; i < W.size(); ++i) W.set(i, normal(rng) / std::sqrt(static_cast<double>(std::max<int64_t>(c.H, 1))) * 3);
  for (int64_t i = 0; i < b.size(); ++i) b.set(i, normal(rng));
  std::vector<int64_t> targets(c.N);
  for (auto& t : targets)
    t = uniform(rng) < c.ignored_fraction ? c.options.ignore_index : static_cast<int64_t>(uniform(rng) * c.V) % c.V;
  const bool reduced = c.options.reduction != 0;
  Tensor grad_loss(c.dtype, reduced ? std::vector<int64_t>{} : std::vector<int64_t>{c.N});
  for (int64_t i = 0; i < grad_loss.size(); ++i) grad_loss.set(i, 4 * uniform(rng) - 2);
  Tensor class_weight(c.dtype, {c.V});
  LossOptions o = c.options;
  if (!o.weight.empty()) {
    for (int64_t v = 0; v < c.V; ++v) class_weight.set(v, o.weight[v]);
    o.weight = class_weight.dense().values;  // the reference sees the rounded weights
  }
  LinearCase rounded = c;
  rounded.options = o;
  const std::vector<unsigned char> h_before = h.bytes(), w_before = W.bytes();
  const Results r = run_linear(c, h, W, b, targets, grad_loss, class_weight);
  // Products and loss in float64, or float32 (float16 and bfloat16 too); bfloat16's backward products take dlogits
  // rounded to bfloat16.
  const Real u = c.dtype == XENT_FLOAT64 ? std::ldexp(Real{1}, -53) : std::ldexp(Real{1}, -24);
  const Real u_operand = c.dtype == XENT_BFLOAT16 ? std::ldexp(Real{1}, -8) : u;
  const Want want = expected(rounded, h.dense(), W.dense(), b.dense(), targets, grad_loss.dense().values,
                             reduced ? grad_loss.get(0) : 0, u, u_operand);
  expect_within(r.loss, want.loss, want.loss_tol, "loss");
  expect_within(r.loss_only, want.loss, want.loss_tol, "loss of the forward alone");
  std::vector<Real> gin_tol = want.gin_tol;
  for (size_t i = 0; i < r.grad_input_rounding.size(); ++i) gin_tol[i] += r.grad_input_rounding[i];
  expect_within(r.grad_input, want.gin, gin_tol, "grad_input");
  expect_within(r.grad_weight, want.gw, want.gw_tol, "grad_linear_weight");
  if (c.bias) expect_within(r.grad_bias, want.gb, want.gb_tol, "grad_linear_bias");
  EXPECT_TRUE(h.bytes() == h_before && W.bytes() == w_before) << "an input was modified";
}

std::vector<Real> class_weights(int64_t V) {
  std::vector<Real> w(V);
  for (int64_t v = 0; v < V; ++v) w[v] = 0.25 + (v % 7) * 0.125;
  return w;
}

TEST(Linear, EveryOptionAndReductionAgainstTheComposition) {
  for (xent_dtype dtype : {XENT_FLOAT32, XENT_FLOAT64})
    for (int reduction : {0, 1, 2})
      for (bool bias : {false, true}) {
        const LossOptions plain{.reduction = reduction};
        run_case({.dtype = dtype, .bias = bias, .options = plain});
        run_case({.dtype = dtype, .bias = bias,
                  .options = {.weight = class_weights(203), .reduction = reduction, .label_smoothing = 0.1,
                              .z_loss = 1e-3, .softcap = 5}});
        run_case({.dtype = dtype, .bias = bias, .options = {.reduction = reduction, .label_smoothing = 0.2}});
        run_case({.dtype = dtype, .bias = bias, .options = {.weight = class_weights(203), .reduction = reduction}});
        run_case({.dtype = dtype, .bias = bias, .options = {.reduction = reduction, .z_loss = 1e-2}});
        run_case({.dtype = dtype, .bias = bias, .options = {.reduction = reduction, .softcap = 3}});
      }
}

// Chunks of one row, of three (a ragged last chunk of one) and all rows at once; strided and transposed operands,
// which the GEMM cannot read as they are (staged, converted a tile at a time).
TEST(Linear, ChunksLayoutsAndShapes) {
  const LossOptions all{.weight = class_weights(203), .reduction = 2, .label_smoothing = 0.1, .z_loss = 1e-3, .softcap = 5};
  for (int64_t chunk : {int64_t{1}, int64_t{3 * 203 * 4}, int64_t{1} << 30}) {
    run_case({.options = all, .chunk_bytes = chunk});
    run_case({.dtype = XENT_FLOAT64, .options = {.reduction = 0}, .chunk_bytes = chunk});
  }
  for (Layout input : kAllLayouts)
    for (Layout weight : kAllLayouts) run_case({.options = {.reduction = 0}, .input_layout = input, .weight_layout = weight});
  for (const auto& [N, H, V] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {5, 1, 3}, {1, 17, 2}, {64, 64, 1},
                                {130, 7, 1000}})
    run_case({.N = N, .H = H, .V = V, .options = {.reduction = 0}});
}

// When grad_linear_weight needs an accumulator apart from the output (float16, bfloat16, outputs the GEMM cannot
// write) larger than half the budget, the vocabulary goes in tiles (statistics, then gradients tile by tile): tiles
// of one class and chunks of one row, ragged tiles and chunks, and one tile of all classes.
TEST(Linear, VocabularyTiles) {
  const LossOptions all{.weight = class_weights(203), .label_smoothing = 0.1, .z_loss = 1e-3, .softcap = 5};
  for (int64_t chunk : {int64_t{1}, int64_t{5 * 203 * 4}, int64_t{203 * 31 * 4}}) {
    for (int reduction : {0, 2}) {
      LossOptions o = all;
      o.reduction = reduction;
      for (xent_dtype dtype : {XENT_FLOAT16, XENT_BFLOAT16}) run_case({.dtype = dtype, .options = o, .chunk_bytes = chunk});
      run_case({.options = o, .output_layout = Layout::kPadded, .chunk_bytes = chunk});
      run_case({.dtype = XENT_FLOAT64, .options = o, .output_layout = Layout::kReversed, .chunk_bytes = chunk});
      run_case({.options = o, .input_layout = Layout::kTransposed, .weight_layout = Layout::kPadded,
                .output_layout = Layout::kReversed, .chunk_bytes = chunk});
    }
    run_case({.options = {.reduction = 1}, .output_layout = Layout::kPadded, .chunk_bytes = chunk, .ignored_fraction = 1});
  }
}

// The vocabulary split into shards of unequal sizes (an empty one too), composed through the stages, equals the
// single op: every option and reduction, tiles within a shard, 16-bit dtypes, strided operands.
TEST(Linear, ShardsOfTheVocabularyComposeToTheSingleOp) {
  const LossOptions all{.weight = class_weights(203), .label_smoothing = 0.1, .z_loss = 1e-3, .softcap = 5};
  for (int reduction : {0, 1, 2}) {
    LossOptions o = all;
    o.reduction = reduction;
    for (xent_dtype dtype : {XENT_FLOAT32, XENT_FLOAT64}) {
      run_case({.dtype = dtype, .options = o, .shards = {50, 120}});
      run_case({.dtype = dtype, .bias = false, .options = {.reduction = reduction}, .shards = {0, 1, 202}});
    }
    run_case({.options = o, .chunk_bytes = 5 * 64 * 4, .shards = {100, 100}});  // tiles and chunks inside shards
    run_case({.dtype = XENT_BFLOAT16, .options = o, .shards = {77}});
    run_case({.dtype = XENT_FLOAT16, .options = o, .shards = {77}});
    run_case({.options = o, .input_layout = Layout::kTransposed, .weight_layout = Layout::kPadded,
              .output_layout = Layout::kReversed, .shards = {30, 190}});
  }
  run_case({.N = 0, .options = {.reduction = 2}, .shards = {10}});
  run_case({.options = {.reduction = 2}, .ignored_fraction = 1, .shards = {10}});
}

TEST(Linear, EveryRowIgnoredAndNoRows) {
  for (int reduction : {0, 1, 2}) {
    run_case({.options = {.reduction = reduction}, .ignored_fraction = 1});
    run_case({.N = 0, .options = {.reduction = reduction}});
  }
}

// Results differ across chunk budgets only by rounding (checked above against the composition); the same budget
// and inputs give the same bits on every call.
TEST(Linear, SameBitsOnEveryCall) {
  const LinearCase c{.N = 300, .H = 64, .V = 500, .options = {.reduction = 2, .label_smoothing = 0.1}, .chunk_bytes = 7 * 500 * 4};
  Tensor h(c.dtype, {c.N, c.H}), W(c.dtype, {c.V, c.H}), b(c.dtype, {c.V}), g(c.dtype, {}), cw(c.dtype, {c.V});
  std::mt19937 rng(2);
  std::normal_distribution<double> normal;
  for (int64_t i = 0; i < h.size(); ++i) h.set(i, normal(rng));
  for (int64_t i = 0; i < W.size(); ++i) W.set(i, normal(rng) / 8);
  g.set(0, 1);
  std::vector<int64_t> targets(c.N);
  for (int64_t i = 0; i < c.N; ++i) targets[i] = (i * 37) % c.V;
  const Results a = run_linear(c, h, W, b, targets, g, cw), again = run_linear(c, h, W, b, targets, g, cw);
  EXPECT_TRUE(a.loss.bytes() == again.loss.bytes() && a.grad_input.bytes() == again.grad_input.bytes() &&
              a.grad_weight.bytes() == again.grad_weight.bytes() && a.grad_bias.bytes() == again.grad_bias.bytes());
}

// float16 and bfloat16: inputs rounded to the dtype, products accumulated in float32 (bfloat16's dlogits rounded
// to bfloat16 for the backward products), loss in float32, each result rounded once to the dtype.
TEST(Linear, HalfPrecision) {
  const LossOptions all{.weight = class_weights(203), .label_smoothing = 0.1, .z_loss = 1e-3, .softcap = 5};
  for (xent_dtype dtype : {XENT_FLOAT16, XENT_BFLOAT16})
    for (int reduction : {0, 1, 2}) {
      run_case({.dtype = dtype, .options = {.reduction = reduction}});
      LossOptions o = all;
      o.reduction = reduction;
      run_case({.dtype = dtype, .options = o, .chunk_bytes = 5 * 203 * 4});
      run_case({.dtype = dtype, .options = o, .input_layout = Layout::kPadded, .weight_layout = Layout::kTransposed});
    }
}

TEST(Linear, BadInputIsAnErrorAndWritesNothing) {
  std::vector<float> h(6 * 4, 0.5f), W(5 * 4, 0.25f), b(5, 0), loss(6, 7), gi(6 * 4, 7), gw(5 * 4, 7), cw(4, 1);
  std::vector<int64_t> t = {0, 1, 2, 3, 4, 0};
  std::vector<double> hd(6 * 4, 0.5);
  const int64_t hs[] = {6, 4}, ws[] = {5, 4}, bs[] = {5}, ts[] = {6}, w3[] = {5, 3}, cws[] = {4};
  xent_tensor hv = xent_make_tensor(h.data(), XENT_FLOAT32, 2, hs, nullptr);
  xent_tensor wv = xent_make_tensor(W.data(), XENT_FLOAT32, 2, ws, nullptr);
  xent_tensor bv = xent_make_tensor(b.data(), XENT_FLOAT32, 1, bs, nullptr);
  xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, ts, nullptr);
  xent_tensor lv = xent_make_tensor(loss.data(), XENT_FLOAT32, 1, ts, nullptr);
  xent_tensor giv = xent_make_tensor(gi.data(), XENT_FLOAT32, 2, hs, nullptr);
  xent_tensor gwv = xent_make_tensor(gw.data(), XENT_FLOAT32, 2, ws, nullptr);
  xent_loss_options o = xent_default_loss_options();
  o.reduction = XENT_REDUCTION_NONE;
  const auto expect_error = [&](xent_status status, const char* needle, const xent_tensor* in, const xent_tensor* w,
                                const xent_tensor* bias, const xent_tensor* target, const xent_loss_options* opt,
                                const xent_tensor* grad_input) {
    const std::vector<float> l0 = loss, gi0 = gi, gw0 = gw;
    EXPECT_EQ(xent_linear_cross_entropy_grad(in, w, bias, target, opt, nullptr, &lv, grad_input, &gwv, nullptr), status);
    EXPECT_NE(std::string(xent_last_error_message()).find(needle), std::string::npos) << xent_last_error_message();
    EXPECT_TRUE(loss == l0 && gi == gi0 && gw == gw0) << "an output was written on error: " << needle;
  };
  xent_tensor w_h3 = xent_make_tensor(W.data(), XENT_FLOAT32, 2, w3, nullptr);
  expect_error(XENT_INVALID_ARGUMENT, "linear_weight must have shape [V, H] with H = 4", &hv, &w_h3, nullptr, &tv, &o, &giv);
  xent_tensor b4 = xent_make_tensor(b.data(), XENT_FLOAT32, 1, cws, nullptr);
  expect_error(XENT_INVALID_ARGUMENT, "linear_bias must have shape [5]", &hv, &wv, &b4, &tv, &o, &giv);
  xent_tensor cwv = xent_make_tensor(cw.data(), XENT_FLOAT32, 1, cws, nullptr);
  xent_loss_options with_weight = o;
  with_weight.weight = &cwv;
  expect_error(XENT_INVALID_ARGUMENT, "weight must have shape [5]", &hv, &wv, nullptr, &tv, &with_weight, &giv);
  t[3] = 5;
  expect_error(XENT_INVALID_ARGUMENT, "label value of 5 which is outside the valid range of [0, 5)", &hv, &wv,
               nullptr, &tv, &o, &giv);
  t[3] = 3;
  xent_tensor hd_v = xent_make_tensor(hd.data(), XENT_FLOAT64, 2, hs, nullptr);
  expect_error(XENT_INVALID_DTYPE, "linear_weight must have the same dtype as input", &hd_v, &wv, nullptr, &tv, &o,
               &giv);
  xent_tensor t_wrong = xent_make_tensor(t.data(), XENT_INT64, 1, bs, nullptr);
  expect_error(XENT_INVALID_ARGUMENT, "target must have shape [6]", &hv, &wv, nullptr, &t_wrong, &o, &giv);
  xent_tensor h_scalar = xent_make_tensor(h.data(), XENT_FLOAT32, 0, hs, nullptr);
  expect_error(XENT_INVALID_ARGUMENT, "input must have rank >= 1", &h_scalar, &wv, nullptr, &tv, &o, &giv);
  xent_tensor gi_over_input = hv;
  expect_error(XENT_INVALID_ARGUMENT, "grad_input overlaps input", &hv, &wv, nullptr, &tv, &o, &gi_over_input);
  expect_error(XENT_INVALID_ARGUMENT, "options must not be NULL", &hv, &wv, nullptr, &tv, nullptr, &giv);
  xent_tensor gbv = xent_make_tensor(b.data(), XENT_FLOAT32, 1, bs, nullptr);
  EXPECT_EQ(xent_linear_cross_entropy_grad(&hv, &wv, nullptr, &tv, &o, nullptr, &lv, nullptr, nullptr, &gbv),
            XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("grad_linear_bias must be NULL"), std::string::npos);
}

// An input of H = 0 features addresses no element whatever its strides (found by the fuzzer: the rows' offsets were
// computed from strides of INT64_MIN, a signed overflow): every row's logits are the bias, grad_input has nothing to
// write, and the loss is the bias's cross-entropy.
TEST(Linear, NoFeaturesWithHostileRowStrides) {
  std::vector<float> b = {0.5f, -1.0f, 2.0f}, loss(3, 7.0f), gw(1, 7.0f), gb(3, 7.0f);
  std::vector<int64_t> t = {2, 0, 1};
  const int64_t hs[] = {3, 0}, ws[] = {3, 0}, bs[] = {3}, ts[] = {3};
  const int64_t hostile[] = {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
  float nothing = 0;
  xent_tensor hv = xent_make_tensor(&nothing, XENT_FLOAT32, 2, hs, hostile);
  xent_tensor giv = xent_make_tensor(&nothing, XENT_FLOAT32, 2, hs, hostile);
  xent_tensor wv = xent_make_tensor(&nothing, XENT_FLOAT32, 2, ws, hostile);
  xent_tensor gwv = xent_make_tensor(gw.data(), XENT_FLOAT32, 2, ws, hostile);
  xent_tensor bv = xent_make_tensor(b.data(), XENT_FLOAT32, 1, bs, nullptr);
  xent_tensor gbv = xent_make_tensor(gb.data(), XENT_FLOAT32, 1, bs, nullptr);
  xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, ts, nullptr);
  xent_tensor lv = xent_make_tensor(loss.data(), XENT_FLOAT32, 1, ts, nullptr);
  xent_loss_options o = xent_default_loss_options();
  o.reduction = XENT_REDUCTION_NONE;
  ASSERT_EQ(xent_linear_cross_entropy_grad(&hv, &wv, &bv, &tv, &o, nullptr, &lv, &giv, &gwv, &gbv), XENT_OK)
      << xent_last_error_message();
  const double lse = std::log(std::exp(0.5) + std::exp(-1.0) + std::exp(2.0));
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(loss[i], lse - b[t[i]], 1e-6) << i;
  // grad_bias: Σ over rows of softmax(b) − onehot(t); each class is the target of one row.
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(gb[j], 3 * std::exp(b[j] - lse) - 1, 1e-6) << j;
  EXPECT_EQ(gw[0], 7.0f);  // grad_linear_weight [3, 0]: nothing to write
}

// A vocabulary whose one row of logits is larger than the chunk budget goes in tiles: the op's working memory stays
// within the budget whatever V (it had taken one whole row of logits, V floats, and the bias and class weights of
// every class). 2^23 classes, 32 MiB a row in float32, under a 1 MiB budget in a process that may map only 24 MiB
// more; W, bias and class weights are views of stride 0 (every logit the same), so the results are closed forms.
TEST(Linear, RowOfLogitsPastTheBudgetStaysWithinIt) {
#ifdef XENT_UNDER_ASAN
  GTEST_SKIP() << "AddressSanitizer reserves address space that an RLIMIT_AS would break";
#else
  const int64_t V = int64_t{1} << 23;
  for (xent_dtype dtype : {XENT_FLOAT32, XENT_FLOAT16}) {
    // h [2, 1] = {1, 2}, W [V, 1] = 0.5, b [V] = 0.25, class weights [V] = 2: every logit of row i is h_i/2 + 1/4.
    Tensor h(dtype, {2, 1}), w(dtype, {1}), b(dtype, {1}), cw(dtype, {1}), loss(dtype, {2}), gi(dtype, {2, 1}), gb(dtype, {V});
    h.set(0, 1), h.set(1, 2), w.set(0, 0.5), b.set(0, 0.25), cw.set(0, 2);
    for (int64_t i = 0; i < 2; ++i) loss.set(i, 7), gi.set(i, 7);
    std::vector<int64_t> t = {3, V - 1};
    const int64_t ws[] = {V, 1}, w0[] = {0, 0}, vs[] = {V}, v0[] = {0}, ts[] = {2};
    xent_tensor wv = xent_make_tensor(w.data(), dtype, 2, ws, w0);
    xent_tensor bv = xent_make_tensor(b.data(), dtype, 1, vs, v0);
    xent_tensor cwv = xent_make_tensor(cw.data(), dtype, 1, vs, v0);
    xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, ts, nullptr);
    xent_tensor hv = h.view(), lv = loss.view(), giv = gi.view(), gbv = gb.view();
    xent_loss_options o = xent_default_loss_options();
    o.reduction = XENT_REDUCTION_NONE;
    o.weight = &cwv;
    xent_set_linear_chunk_bytes(1 << 20);
    const int status = in_limited_child(24 << 20, [&] {
      return xent_linear_cross_entropy_grad(&hv, &wv, &bv, &tv, &o, nullptr, &lv, &giv, nullptr, &gbv) == XENT_OK ? 0 : 1;
    });
    xent_set_linear_chunk_bytes(0);
    ASSERT_EQ(status, 0) << xent_dtype_name(dtype) << ": 1: the call failed under the limit";
    // Now the results, without the limit: loss_i = 2·log V; grad_input = Σ p·W − W_t = 0; grad_bias: Σ_i 2·(1/V − [t_i]).
    ASSERT_EQ(xent_linear_cross_entropy_grad(&hv, &wv, &bv, &tv, &o, nullptr, &lv, &giv, nullptr, &gbv), XENT_OK)
        << xent_last_error_message();
    const double tol = 4 * static_cast<double>(storage_eps(dtype));
    for (int64_t i = 0; i < 2; ++i) {
      EXPECT_NEAR(static_cast<double>(loss.get(i)), 2 * std::log(static_cast<double>(V)), tol * 32) << i;
      EXPECT_NEAR(static_cast<double>(gi.get(i)), 0, tol) << i;
    }
    for (int64_t v : {int64_t{0}, int64_t{3}, V / 2, V - 1}) {
      const double want = 2 * (2.0 / static_cast<double>(V) - (v == 3 || v == V - 1 ? 1 : 0));
      EXPECT_NEAR(static_cast<double>(gb.get(v)), want, tol * std::max(1.0, std::abs(want))) << v;
    }
  }
#endif
}

// The C++ header: views, options, exceptions.
TEST(Linear, CppApi) {
  const float h[] = {1, 2, 0.5f, -1}, W[] = {1, 0, 0, 1, 1, 1};  // h [2, 2], W [3, 2]
  const int64_t t[] = {2, 0};
  float loss[2], gi[4], gw[6];
  linear_cross_entropy_grad({h, {2, 2}}, {W, {3, 2}}, {t, {2}},
                            {.loss = View(loss, {2}), .grad_input = View(gi, {2, 2}), .grad_linear_weight = View(gw, {3, 2})},
                            {.reduction = XENT_REDUCTION_NONE});
  // Row 0: logits (1, 2, 3), target 2: loss = logsumexp − 3.
  EXPECT_NEAR(loss[0], std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3, 1e-6);
  EXPECT_THROW(linear_cross_entropy({h, {2, 2}}, {W, {3, 3}}, {t, {2}}, View(loss, {})), Error);
}

}  // namespace
}  // namespace xent::test
