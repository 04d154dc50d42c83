// stages_test.cc — the stages of src/stages.h: the statistics merge (row_state.h) is associative and commutative up
// to rounding and exact with the empty state, against long double; and the op composed from its stages over a
// class axis split into shards of unequal sizes (statistics per shard, merge, finish per shard) gives the
// single-process op's results, for every option, dtype and kind of label.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "src/plan.h"
#include "src/row_state.h"
#include "src/stages.h"
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

// ---- The op composed from its stages over shards of the class axis.

struct ShardCase {
  xent_dtype dtype = XENT_FLOAT32;
  int64_t rows = 37, C = 1000;
  std::vector<int64_t> cuts;  // shard boundaries inside (0, C)
  bool indices = true;        // class indices, or probabilities sharded like the logits
  LossOptions options;
};

// Runs stage 1 on every shard, merges each row's states across shards (in shard order), runs stage 3 on every
// shard, and checks the losses (every shard writes the same) and the gathered gradient against the reference.
void run_shards(const ShardCase& c) {
  SCOPED_TRACE(std::string(xent_dtype_name(c.dtype)) + (c.indices ? " indices" : " probabilities") + " eps=" +
               std::to_string(static_cast<double>(c.options.label_smoothing)) + " z=" +
               std::to_string(static_cast<double>(c.options.z_loss)) + " cap=" +
               std::to_string(static_cast<double>(c.options.softcap)) + " weight=" +
               std::to_string(!c.options.weight.empty()) + " shards=" + std::to_string(c.cuts.size() + 1));
  std::mt19937 rng(5);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  const int64_t R = c.rows, C = c.C;
  Tensor logits(c.dtype, {R, C}), probs(c.dtype, {R, C}), grad_loss(c.dtype, {R}), weight(c.dtype, {C});
  for (int64_t i = 0; i < logits.size(); ++i) logits.set(i, 4 * normal(rng)), probs.set(i, uniform(rng));
  for (int64_t i = 0; i < R; ++i) grad_loss.set(i, 4 * uniform(rng) - 2);
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
  std::vector<internal::Layout> layouts;
  std::vector<std::vector<RowState>> states(shards, std::vector<RowState>(R));
  const auto element = [](const xent_tensor& t, int64_t at) {
    return static_cast<char*>(t.data) + at * (t.dtype == XENT_FLOAT64 ? 8 : t.dtype == XENT_FLOAT32 ? 4 : 2);
  };
  for (size_t k = 0; k < shards; ++k) {
    const int64_t start = bounds[k], n = bounds[k + 1] - start;
    const int64_t shape[] = {R, n}, strides[] = {C, 1}, weight_shape[] = {n};
    const xent_tensor x = logits.view(), p = probs.view(), g = gx.view(), w = weight.view();
    xent_tensor xs = xent_make_tensor(element(x, start), static_cast<xent_dtype>(c.dtype), 2, shape, strides);
    xent_tensor ps = xent_make_tensor(element(p, start), static_cast<xent_dtype>(c.dtype), 2, shape, strides);
    xent_tensor gs = xent_make_tensor(element(g, start), static_cast<xent_dtype>(c.dtype), 2, shape, strides);
    xent_tensor ws = xent_make_tensor(element(w, start), static_cast<xent_dtype>(c.dtype), 1, weight_shape, nullptr);
    losses.emplace_back(c.dtype, std::vector<int64_t>{R});
    xent_tensor lv = losses.back().view();
    xent_loss_options copt = xent_default_loss_options();
    copt.weight = o.weight.empty() ? nullptr : &ws;
    copt.ignore_index = o.ignore_index;
    copt.reduction = XENT_REDUCTION_NONE;
    copt.label_smoothing = static_cast<double>(o.label_smoothing);
    copt.z_loss = static_cast<double>(o.z_loss);
    copt.softcap = static_cast<double>(o.softcap);
    internal::Plan plan;
    std::string error;
    ASSERT_EQ(internal::make_plan({.labels = c.indices ? &tv : &ps, .logits = &xs, .axis = -1, .grad_loss = &gv,
                                   .loss = &lv, .grad_logits = &gs, .sparse = c.indices, .options = &copt},
                                  &plan, &error),
              XENT_OK)
        << error;
    internal::Layout l = plan.layout;
    l.vocab_start = start, l.vocab_size = C;
    l.options.beta = static_cast<double>(o.label_smoothing) / static_cast<double>(C);  // ε over the vocabulary
    layouts.push_back(l);
    internal::shard_statistics(l, c.dtype, states[k].data(), 2);
  }
  std::vector<RowState> merged = states[0];
  for (size_t k = 1; k < shards; ++k)
    for (int64_t i = 0; i < R; ++i) merged[i] = Merge(merged[i], states[k][i]);
  for (size_t k = 0; k < shards; ++k) internal::shard_finish(layouts[k], c.dtype, merged.data(), 2);
  for (size_t k = 0; k < shards; ++k) expect_matches(losses[k], ref.loss, ("loss of shard " + std::to_string(k)).c_str());
  expect_matches(gx, ref.grad_logits, "grad_logits, gathered from the shards");
}

TEST(Stages, ShardsOfTheClassAxisComposeToTheSingleOp) {
  std::vector<Real> weights(1000);
  for (int64_t j = 0; j < 1000; ++j) weights[j] = 0.25 + (j % 7) * 0.125;
  const std::vector<std::vector<int64_t>> splits = {{}, {500}, {1, 333, 334}, {127, 640, 999}};
  for (xent_dtype dtype : {XENT_FLOAT16, XENT_BFLOAT16, XENT_FLOAT32, XENT_FLOAT64})
    for (const auto& cuts : splits)
      for (bool indices : {true, false}) {
        run_shards({.dtype = dtype, .cuts = cuts, .indices = indices});
        run_shards({.dtype = dtype, .cuts = cuts, .indices = indices,
                    .options = {.weight = weights, .label_smoothing = 0.1, .z_loss = 1e-3, .softcap = 5}});
      }
  // Short rows and long ones: the lane kernels never run in stages, the row kernel's pieces do.
  run_shards({.rows = 64, .C = 10, .cuts = {3, 4}, .options = {.label_smoothing = 0.2}});
  run_shards({.rows = 2, .C = 300000, .cuts = {70000, 200001}, .options = {.z_loss = 1e-4}});
}

}  // namespace
}  // namespace xent::test
