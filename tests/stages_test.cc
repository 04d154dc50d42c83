// stages_test.cc — the stages of src/stages.h: the statistics merge (row_state.h) is associative and commutative up
// to rounding and exact with the empty state, against long double; and the op composed from its stages through
// the C API (xent_shard_statistics, xent_merge_row_statistics or xent_rebase_row_statistics, xent_shard_finish) over
// a class axis split into shards of unequal sizes gives the single-process op's results, for every option,
// reduction, dtype and kind of label; NaN crosses shards; bad shard arguments are errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "src/row_state.h"
#include "tests/test_util.h"

namespace xent::test {
namespace {

using internal::Merge;
using internal::RowState;
constexpr double kInf = std::numeric_limits<double>::infinity();

// The statistics of x[0, n) with labels y, straight from row_state.h's definitions (what a kernel's block yields).
RowState state_of(const double* x, const double* y, int64_t n) {
  RowState s;
  for (int64_t j = 0; j < n; ++j) s.max = std::isnan(x[j]) || std::isnan(s.max) ? NAN : std::max(s.max, x[j]);
  const double r = internal::reference_of(s.max);
  for (int64_t j = 0; j < n; ++j) {
    s.sum += std::exp(x[j] - r);
    s.label_sum += y[j];
    if (y[j] != 0) s.label_dot += y[j] * (x[j] - r);
  }
  return s;
}

// What a row's statistics determine, whatever reference they were taken against: logsumexp and the loss.
struct Invariants {
  long double lse, loss;
};
Invariants invariants(const RowState& s) {
  const long double r = internal::reference_of(s.max), log_sum = std::log(static_cast<long double>(s.sum));
  return {r + log_sum, s.label_sum * log_sum - s.label_dot};
}
Invariants exact(const std::vector<double>& x, const std::vector<double>& y) {
  long double max = -INFINITY, sum = 0, loss = 0;
  for (double v : x) max = std::max<long double>(max, v);
  for (double v : x) sum += std::exp(static_cast<long double>(v) - max);
  const long double lse = max + std::log(sum);
  for (size_t j = 0; j < x.size(); ++j)
    if (y[j] != 0) loss += y[j] * (lse - x[j]);
  return {lse, loss};
}

// Merges states[first, last) in a tree shaped by `split` (the left part's size for a range of n ≥ 2).
RowState merge_tree(const std::vector<RowState>& states, size_t first, size_t last,
                    const std::function<size_t(size_t)>& split) {
  if (last - first == 1) return states[first];
  const size_t left = first + split(last - first);
  return Merge(merge_tree(states, first, left, split), merge_tree(states, left, last, split));
}

TEST(Stages, MergeIsAssociativeAndCommutativeAgainstLongDouble) {
  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t C = 1 + static_cast<int64_t>(uniform(rng) * 3000);
    std::vector<double> x(C), y(C);
    for (int64_t j = 0; j < C; ++j) x[j] = 8 * normal(rng) + (trial % 7 == 0 ? 1e30 : 0), y[j] = uniform(rng) < 0.5 ? 0 : uniform(rng);
    if (trial % 5 == 0)  // masked classes: -inf logits with label 0
      for (int64_t j = 0; j < C; j += 3) x[j] = -kInf, y[j] = 0;
    // A random split into 1 to 40 blocks.
    std::vector<int64_t> cuts = {0, C};
    for (int k = static_cast<int>(uniform(rng) * 40); k > 0; --k) cuts.push_back(static_cast<int64_t>(uniform(rng) * C));
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    std::vector<RowState> blocks;
    for (size_t b = 0; b + 1 < cuts.size(); ++b)
      blocks.push_back(state_of(x.data() + cuts[b], y.data() + cuts[b], cuts[b + 1] - cuts[b]));
    const Invariants want = exact(x, y);
    const long double magnitude = std::fabs(want.lse) + std::fabs(want.loss) + 1, tolerance = 64 * 0x1p-53L * magnitude;
    std::vector<RowState> shuffled = blocks;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    const std::pair<const char*, RowState> merged[] = {
        {"left fold", merge_tree(blocks, 0, blocks.size(), [](size_t n) { return n - 1; })},
        {"right fold", merge_tree(blocks, 0, blocks.size(), [](size_t) { return size_t{1}; })},
        {"balanced", merge_tree(blocks, 0, blocks.size(), [](size_t n) { return n / 2; })},
        {"shuffled", merge_tree(shuffled, 0, shuffled.size(), [&](size_t n) { return 1 + rng() % (n - 1); })}};
    for (const auto& [tree, state] : merged) {
      SCOPED_TRACE(std::string(tree) + ", trial " + std::to_string(trial) + ", " + std::to_string(blocks.size()) +
                   " blocks of " + std::to_string(C) + " classes");
      const Invariants got = invariants(state);
      EXPECT_NEAR(static_cast<double>(got.lse), static_cast<double>(want.lse), static_cast<double>(tolerance));
      EXPECT_NEAR(static_cast<double>(got.loss), static_cast<double>(want.loss), static_cast<double>(tolerance));
    }
  }
}

TEST(Stages, EmptyStateIsTheIdentityAndNanStaysNan) {
  const double x[] = {1, -kInf, 3, 2}, y[] = {0.5, 0, 0.25, 0};
  const RowState s = state_of(x, y, 4), empty;
  for (const RowState& m : {Merge(empty, s), Merge(s, empty)}) {
    EXPECT_EQ(m.max, s.max);
    EXPECT_EQ(m.sum, s.sum);
    EXPECT_EQ(m.label_sum, s.label_sum);
    EXPECT_EQ(m.label_dot, s.label_dot);
  }
  // A block of only −inf logits (labels 0) adds nothing; a NaN block makes the row NaN.
  const double masked[] = {-kInf, -kInf}, zeros[] = {0, 0}, with_nan[] = {NAN, 1};
  const RowState m = Merge(s, state_of(masked, zeros, 2));
  EXPECT_EQ(m.sum, s.sum);
  EXPECT_EQ(m.label_dot, s.label_dot);
  EXPECT_TRUE(std::isnan(Merge(state_of(with_nan, zeros, 2), s).max));
  EXPECT_TRUE(std::isnan(static_cast<double>(invariants(Merge(s, state_of(with_nan, zeros, 2))).lse)));
}

// ---- The op composed from its stages over shards of the class axis, through the C API (xent_shard_statistics,
// xent_merge_row_statistics or xent_rebase_row_statistics, xent_shard_finish), as a transport would drive it.

enum class Combine { kMerge, kMaxRebaseSum };

struct ShardCase {
  xent_dtype dtype = XENT_FLOAT32;
  int64_t rows = 37, C = 1000;
  std::vector<int64_t> cuts;  // shard boundaries inside [0, C] (equal neighbours: an empty shard)
  bool indices = true;        // class indices, or probabilities sharded like the logits
  LossOptions options;
  Combine combine = Combine::kMerge;
};

// Runs stage 1 on every shard, combines each row's statistics across shards (a custom merge in shard order, or
// MAX, rebase and SUM as with standard all-reduces), runs stage 3 on every shard, and checks the losses (every shard
// writes the same) and the gathered gradient against the reference.
void run_shards(const ShardCase& c) {
  SCOPED_TRACE(std::string(xent_dtype_name(c.dtype)) + (c.indices ? " indices" : " probabilities") + " eps=" +
               std::to_string(static_cast<double>(c.options.label_smoothing)) + " z=" +
               std::to_string(static_cast<double>(c.options.z_loss)) + " cap=" +
               std::to_string(static_cast<double>(c.options.softcap)) + " weight=" +
               std::to_string(!c.options.weight.empty()) + " reduction=" + std::to_string(c.options.reduction) +
               " shards=" + std::to_string(c.cuts.size() + 1) +
               (c.combine == Combine::kMerge ? " merge" : " max-rebase-sum"));
  std::mt19937 rng(5);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  const int64_t R = c.rows, C = c.C;
  const bool reduced = c.options.reduction != 0;
  Tensor logits(c.dtype, {R, C}), probs(c.dtype, {R, C}), grad_loss(c.dtype, reduced ? std::vector<int64_t>{}
                                                                                    : std::vector<int64_t>{R}),
      weight(c.dtype, {C});
  for (int64_t i = 0; i < logits.size(); ++i) logits.set(i, 4 * normal(rng)), probs.set(i, uniform(rng));
  for (int64_t i = 0; i < grad_loss.size(); ++i) grad_loss.set(i, 4 * uniform(rng) - 2);
  std::vector<int64_t> targets(R);
  for (int64_t i = 0; i < R; ++i) targets[i] = i % 9 == 4 ? c.options.ignore_index : static_cast<int64_t>(uniform(rng) * C);
  LossOptions o = c.options;
  if (!o.weight.empty()) {
    for (int64_t j = 0; j < C; ++j) weight.set(j, o.weight[j]);
    o.weight = weight.dense().values;
  }
  const Dense probs_dense = probs.dense();
  const Reference ref = reference_options(logits.dense(), c.indices ? &targets : nullptr,
                                          c.indices ? nullptr : &probs_dense, o, grad_loss.dense().values);

  std::vector<int64_t> bounds = {0};
  bounds.insert(bounds.end(), c.cuts.begin(), c.cuts.end());
  bounds.push_back(C);
  const size_t shards = bounds.size() - 1;
  const int64_t target_shape[] = {R};
  xent_tensor tv = xent_make_tensor(targets.data(), XENT_INT64, 1, target_shape, nullptr);
  xent_tensor gv = grad_loss.view();
  Tensor gx(c.dtype, {R, C});
  std::vector<Tensor> losses;
  std::vector<xent_row_statistics> combined(R);
  std::vector<std::vector<xent_row_statistics>> statistics(shards, std::vector<xent_row_statistics>(R));
  std::vector<double> denominators(shards);
  const auto element = [](const xent_tensor& t, int64_t at) {
    return static_cast<char*>(t.data) + at * (t.dtype == XENT_FLOAT64 ? 8 : t.dtype == XENT_FLOAT32 ? 4 : 2);
  };
  // The views of shard k, and its options (weight shard).
  struct Shard {
    xent_tensor x, p, g, w;
    xent_loss_options options;
  };
  std::vector<Shard> views(shards);
  for (size_t k = 0; k < shards; ++k) {
    const int64_t start = bounds[k], n = bounds[k + 1] - start;
    const int64_t shape[] = {R, n}, strides[] = {C, 1}, weight_shape[] = {n};
    const xent_tensor x = logits.view(), p = probs.view(), g = gx.view(), w = weight.view();
    Shard& v = views[k];
    v.x = xent_make_tensor(element(x, start), static_cast<xent_dtype>(c.dtype), 2, shape, strides);
    v.p = xent_make_tensor(element(p, start), static_cast<xent_dtype>(c.dtype), 2, shape, strides);
    v.g = xent_make_tensor(element(g, start), static_cast<xent_dtype>(c.dtype), 2, shape, strides);
    v.w = xent_make_tensor(element(w, start), static_cast<xent_dtype>(c.dtype), 1, weight_shape, nullptr);
    v.options = xent_default_loss_options();
    v.options.weight = o.weight.empty() ? nullptr : &v.w;
    v.options.ignore_index = o.ignore_index;
    v.options.reduction = o.reduction;
    v.options.label_smoothing = static_cast<double>(o.label_smoothing);
    v.options.z_loss = static_cast<double>(o.z_loss);
    v.options.softcap = static_cast<double>(o.softcap);
    expect_ok(xent_shard_statistics(&v.x, c.indices ? &tv : &v.p, -1, &v.options, start, C, R,
                                    statistics[k].data(), &denominators[k]));
  }
  double denominator = 0;
  for (double d : denominators) denominator += d;
  if (c.combine == Combine::kMerge) {
    combined = statistics[0];
    for (size_t k = 1; k < shards; ++k) expect_ok(xent_merge_row_statistics(combined.data(), statistics[k].data(), R));
  } else {
    std::vector<double> max(R, -kInf);
    for (size_t k = 0; k < shards; ++k)
      for (int64_t i = 0; i < R; ++i) max[i] = std::max(max[i], statistics[k][i].max);
    combined.assign(R, {0, 0, 0, 0});
    for (size_t k = 0; k < shards; ++k) {
      expect_ok(xent_rebase_row_statistics(statistics[k].data(), max.data(), R));
      for (int64_t i = 0; i < R; ++i) {
        combined[i].sum += statistics[k][i].sum;
        combined[i].label_sum += statistics[k][i].label_sum;
        combined[i].label_dot += statistics[k][i].label_dot;
      }
    }
    for (int64_t i = 0; i < R; ++i) combined[i].max = max[i];
  }
  for (size_t k = 0; k < shards; ++k) {
    const Shard& v = views[k];
    losses.emplace_back(c.dtype, reduced ? std::vector<int64_t>{} : std::vector<int64_t>{R});
    xent_tensor lv = losses.back().view();
    expect_ok(xent_shard_finish(&v.x, c.indices ? &tv : &v.p, -1, &v.options, bounds[k], C, R, combined.data(),
                                denominator, &gv, &lv, &v.g));
  }
  for (size_t k = 0; k < shards; ++k) expect_matches(losses[k], ref.loss, ("loss of shard " + std::to_string(k)).c_str());
  expect_matches(gx, ref.grad_logits, "grad_logits, gathered from the shards");
}

TEST(Stages, ShardsOfTheClassAxisComposeToTheSingleOp) {
  std::vector<Real> weights(1000);
  for (int64_t j = 0; j < 1000; ++j) weights[j] = 0.25 + (j % 7) * 0.125;
  const std::vector<std::vector<int64_t>> splits = {{}, {500}, {1, 333, 334}, {127, 640, 999}, {0, 400, 400}};
  for (xent_dtype dtype : {XENT_FLOAT16, XENT_BFLOAT16, XENT_FLOAT32, XENT_FLOAT64})
    for (const auto& cuts : splits)
      for (bool indices : {true, false}) {
        run_shards({.dtype = dtype, .cuts = cuts, .indices = indices});
        run_shards({.dtype = dtype, .cuts = cuts, .indices = indices,
                    .options = {.weight = weights, .label_smoothing = 0.1, .z_loss = 1e-3, .softcap = 5}});
      }
  for (int reduction : {1, 2})
    for (Combine combine : {Combine::kMerge, Combine::kMaxRebaseSum})
      for (bool indices : {true, false}) {
        run_shards({.cuts = {127, 640}, .indices = indices, .options = {.reduction = reduction}, .combine = combine});
        run_shards({.dtype = XENT_FLOAT64, .cuts = {1, 333, 334}, .indices = indices,
                    .options = {.weight = weights, .reduction = reduction, .label_smoothing = 0.1, .z_loss = 1e-3},
                    .combine = combine});
      }
  run_shards({.cuts = {1, 333, 334}, .options = {.weight = weights, .label_smoothing = 0.3},
              .combine = Combine::kMaxRebaseSum});
  // Empty shards at vocab_start 0 beside the one holding class 0: MEAN over probabilities counts the rows once
  // (the fuzzer found them counted by every shard at vocab_start 0: tests/fuzz/corpus/regression-mean-empty-shards).
  for (bool indices : {true, false})
    run_shards({.cuts = {0, 0}, .indices = indices, .options = {.reduction = 2}});
  // Short rows and long ones: the lane kernels never run in stages, the row kernel's pieces do.
  run_shards({.rows = 64, .C = 10, .cuts = {3, 4}, .options = {.label_smoothing = 0.2}});
  run_shards({.rows = 2, .C = 300000, .cuts = {70000, 200001}, .options = {.z_loss = 1e-4}});
}

// A NaN in one shard's part of a row reaches every shard's loss and gradient of that row, and no other row, with
// either way of combining; so does a +inf logit (no softcap).
TEST(Stages, NanInOneShardMakesItsRowNanEverywhere) {
  for (Combine combine : {Combine::kMerge, Combine::kMaxRebaseSum})
    for (double bad : {static_cast<double>(NAN), kInf}) {
      const int64_t R = 3, C = 8, cut = 5;
      std::vector<float> x(R * C, 0.5f), gx(R * C), loss(2 * R);
      x[1 * C + 6] = static_cast<float>(bad);  // row 1, in the second shard
      std::vector<int64_t> t = {0, 2, 7};
      const int64_t tshape[] = {R};
      const xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, tshape, nullptr);
      xent_loss_options o = xent_default_loss_options();
      o.reduction = XENT_REDUCTION_NONE;
      std::vector<xent_row_statistics> s[2] = {std::vector<xent_row_statistics>(R), std::vector<xent_row_statistics>(R)};
      xent_tensor xs[2], gs[2], ls[2];
      double d[2];
      for (int k = 0; k < 2; ++k) {
        const int64_t start = k ? cut : 0, shape[] = {R, k ? C - cut : cut}, strides[] = {C, 1}, lshape[] = {R};
        xs[k] = xent_make_tensor(x.data() + start, XENT_FLOAT32, 2, shape, strides);
        gs[k] = xent_make_tensor(gx.data() + start, XENT_FLOAT32, 2, shape, strides);
        ls[k] = xent_make_tensor(loss.data() + k * R, XENT_FLOAT32, 1, lshape, nullptr);
        expect_ok(xent_shard_statistics(&xs[k], &tv, -1, &o, start, C, R, s[k].data(), &d[k]));
      }
      std::vector<xent_row_statistics> m = s[0];
      if (combine == Combine::kMerge) {
        expect_ok(xent_merge_row_statistics(m.data(), s[1].data(), R));
      } else {
        std::vector<double> max(R);
        for (int64_t i = 0; i < R; ++i) max[i] = std::isnan(s[1][i].max) ? s[0][i].max : std::max(s[0][i].max, s[1][i].max);
        expect_ok(xent_rebase_row_statistics(s[0].data(), max.data(), R));
        expect_ok(xent_rebase_row_statistics(s[1].data(), max.data(), R));
        for (int64_t i = 0; i < R; ++i)
          m[i] = {max[i], s[0][i].sum + s[1][i].sum, s[0][i].label_sum + s[1][i].label_sum,
                  s[0][i].label_dot + s[1][i].label_dot};
      }
      for (int k = 0; k < 2; ++k)
        expect_ok(xent_shard_finish(&xs[k], &tv, -1, &o, k ? cut : 0, C, R, m.data(), 0, nullptr, &ls[k], &gs[k]));
      for (int k = 0; k < 2; ++k) {
        EXPECT_TRUE(std::isnan(loss[k * R + 1])) << "shard " << k;
        EXPECT_FALSE(std::isnan(loss[k * R + 0]));
        EXPECT_FALSE(std::isnan(loss[k * R + 2]));
      }
      EXPECT_TRUE(std::isnan(gx[1 * C + 0]));
      EXPECT_FALSE(std::isnan(gx[0 * C + 6]));
    }
}

// A shard of no classes addresses no memory, so any strides are valid, INT64_MIN included; its rows still have
// statistics (the empty state) and, finished, a loss and an empty gradient. The kernels stepped their row pointers
// by those strides (pointer overflow under UBSan; found by the fuzzer,
// tests/fuzz/corpus/regression-empty-shard-int64-min-stride).
TEST(Stages, EmptyShardWithAnyStrides) {
  const int64_t R = 6, shape[] = {R, 0}, strides[] = {std::numeric_limits<int64_t>::min(), 1}, tshape[] = {R};
  double x = 0, gx = 0;
  std::vector<int64_t> t(R, 3);
  const xent_tensor xv = xent_make_tensor(&x, XENT_FLOAT64, 2, shape, strides);
  const xent_tensor gv = xent_make_tensor(&gx, XENT_FLOAT64, 2, shape, strides);
  const xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, tshape, nullptr);
  xent_loss_options o = xent_default_loss_options();
  o.reduction = XENT_REDUCTION_NONE;
  std::vector<xent_row_statistics> s(R);
  double d = -1;
  expect_ok(xent_shard_statistics(&xv, &tv, -1, &o, 0, 5, R, s.data(), &d));
  for (const xent_row_statistics& r : s) EXPECT_EQ(r.max, -kInf);
  EXPECT_EQ(d, 0);
  std::vector<double> loss(R, 7);
  const xent_tensor lv = xent_make_tensor(loss.data(), XENT_FLOAT64, 1, tshape, nullptr);
  expect_ok(xent_shard_finish(&xv, &tv, -1, &o, 0, 5, R, s.data(), 6, nullptr, &lv, &gv));
  // The merged statistics of this shard alone: no class seen, the target's logit not among them.
  for (double l : loss) EXPECT_FALSE(l == 7);
}

// Bad arguments to the stages: a clear error, nothing written.
TEST(Stages, ShardArgumentsAreChecked) {
  const int64_t R = 2, C = 4;
  std::vector<float> x(R * C, 0.f);
  std::vector<int64_t> t = {1, 9};
  const int64_t xshape[] = {R, C}, tshape[] = {R};
  const xent_tensor xv = xent_make_tensor(x.data(), XENT_FLOAT32, 2, xshape, nullptr);
  const xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, tshape, nullptr);
  const xent_loss_options o = xent_default_loss_options();
  std::vector<xent_row_statistics> s(R, {7, 7, 7, 7});
  double d = 7;
  const auto expect_error = [&](xent_status status, const char* needle) {
    EXPECT_EQ(status, XENT_INVALID_ARGUMENT);
    EXPECT_NE(std::string(xent_last_error_message()).find(needle), std::string::npos) << xent_last_error_message();
    EXPECT_EQ(s[0].max, 7);
    EXPECT_EQ(d, 7);
  };
  expect_error(xent_shard_statistics(&xv, &tv, -1, &o, 0, 8, R, s.data(), &d), "label value of 9");
  expect_error(xent_shard_statistics(&xv, &tv, -1, &o, 7, 10, R, s.data(), &d), "must lie in the vocabulary");
  expect_error(xent_shard_statistics(&xv, &tv, -1, &o, -1, 10, R, s.data(), &d), "must lie in the vocabulary");
  expect_error(xent_shard_statistics(&xv, &tv, -1, &o, 0, -1, R, s.data(), &d), "vocab_size must be >= 0");
  expect_error(xent_shard_statistics(&xv, &tv, -1, &o, 0, 10, R + 1, s.data(), &d), "rows must be the number of rows");
  expect_error(xent_shard_statistics(&xv, &tv, -1, &o, 0, 10, R, nullptr, &d), "must not be NULL");
  std::vector<double> low = {-1, -1};
  s.assign(R, {0, 1, 0, 0});
  EXPECT_EQ(xent_rebase_row_statistics(s.data(), low.data(), R), XENT_INVALID_ARGUMENT);
  EXPECT_EQ(s[0].sum, 1);
  EXPECT_EQ(xent_merge_row_statistics(s.data(), nullptr, R), XENT_INVALID_ARGUMENT);
  EXPECT_EQ(xent_merge_row_statistics(s.data(), s.data(), -1), XENT_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace xent::test
