// options_test.cc — the sparse op and xent_cross_entropy's options (weight, ignore_index, label smoothing,
// z-loss, soft-cap, reductions) against reference_options, for every dtype, class-index dtype and layout.
#include <cstring>

#include <gtest/gtest.h>

#include "tests/test_util.h"
#include "xent/xent.hpp"

namespace xent::test {
namespace {

constexpr xent_dtype kAllDtypes[] = {XENT_FLOAT16, XENT_BFLOAT16, XENT_FLOAT32, XENT_FLOAT64};
constexpr Real kInf = std::numeric_limits<Real>::infinity();
constexpr Real kNaN = std::numeric_limits<Real>::quiet_NaN();

// Class indices in int32 or int64, contiguous.
struct Indices {
  xent_dtype dtype;
  std::vector<int64_t> shape, values;
  std::vector<int32_t> i32;
  std::vector<int64_t> i64;
  xent_tensor view() {
    i32.assign(values.begin(), values.end());
    i64 = values;
    void* data = dtype == XENT_INT32 ? static_cast<void*>(i32.data()) : static_cast<void*>(i64.data());
    return xent_make_tensor(data, dtype, static_cast<int32_t>(shape.size()), shape.data(), nullptr);
  }
};

struct OptCase {
  xent_dtype dtype = XENT_FLOAT32;
  std::vector<int64_t> shape;  // logits; class axis last
  bool sparse = true;
  xent_dtype index_dtype = XENT_INT64;
  LossOptions options;
  Layout layout = Layout::kContiguous;
  Real ignored_fraction = 0.15;
  uint32_t seed = 1;
  std::function<void(Tensor& logits, std::vector<int64_t>& targets)> edit;
};

xent_loss_options c_options(const LossOptions& o, xent_tensor* weight) {
  xent_loss_options c = xent_default_loss_options();
  c.weight = weight;
  c.ignore_index = o.ignore_index;
  c.reduction = o.reduction;
  c.label_smoothing = static_cast<double>(o.label_smoothing);
  c.z_loss = static_cast<double>(o.z_loss);
  c.softcap = static_cast<double>(o.softcap);
  return c;
}

void run_options_case(const OptCase& c) {
  SCOPED_TRACE(std::string(xent_dtype_name(c.dtype)) + " logits" + shape_of(c.shape) + (c.sparse ? " indices" : " probabilities") +
               " reduction=" + std::to_string(c.options.reduction) + " eps=" + std::to_string((double)c.options.label_smoothing) +
               " z=" + std::to_string((double)c.options.z_loss) + " cap=" + std::to_string((double)c.options.softcap) +
               " weight=" + std::to_string(!c.options.weight.empty()) + " " + layout_name(c.layout));
  std::mt19937 rng(c.seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  const int64_t C = c.shape.back();
  const std::vector<int64_t> batch(c.shape.begin(), c.shape.end() - 1);
  Tensor logits(c.dtype, c.shape, c.layout);
  for (int64_t i = 0; i < logits.size(); ++i) logits.set(i, 4 * normal(rng));
  Tensor probs(c.dtype, c.shape, c.layout);
  for (int64_t i = 0; i < probs.size(); ++i) probs.set(i, uniform(rng));
  std::vector<int64_t> targets(static_cast<size_t>(count(batch)));
  for (auto& t : targets)
    t = uniform(rng) < c.ignored_fraction ? c.options.ignore_index : static_cast<int64_t>(uniform(rng) * C) % C;
  if (c.edit) c.edit(logits, targets);
  LossOptions o = c.options;
  Tensor weight(c.dtype, {C});
  if (!o.weight.empty()) {
    for (int64_t j = 0; j < C; ++j) weight.set(j, o.weight[j]);
    o.weight = weight.dense().values;  // the reference sees the rounded weights
  }
  Indices indices{c.index_dtype, batch, targets};
  xent_tensor xv = logits.view(), tv = c.sparse ? indices.view() : probs.view(), wv = weight.view();
  const xent_loss_options copt = c_options(o, o.weight.empty() ? nullptr : &wv);
  const Dense probs_dense = probs.dense();
  const Reference plain =
      reference_options(logits.dense(), c.sparse ? &targets : nullptr, c.sparse ? nullptr : &probs_dense, o, {});

  Tensor loss(c.dtype, plain.loss_shape);
  xent_tensor lv = loss.view();
  expect_ok(xent_cross_entropy(&xv, &tv, -1, &copt, &lv));
  expect_matches(loss, plain.loss, "loss");

  Tensor grad_loss(c.dtype, plain.loss_shape), loss2(c.dtype, plain.loss_shape), gx(c.dtype, c.shape, c.layout);
  for (int64_t i = 0; i < grad_loss.size(); ++i) grad_loss.set(i, 4 * uniform(rng) - 2);
  const Reference ref = reference_options(logits.dense(), c.sparse ? &targets : nullptr, c.sparse ? nullptr : &probs_dense,
                                          o, grad_loss.dense().values);
  xent_tensor gv = grad_loss.view(), l2 = loss2.view(), gxv = gx.view();
  expect_ok(xent_cross_entropy_grad(&xv, &tv, -1, &copt, &gv, &l2, &gxv));
  expect_matches(loss2, plain.loss, "loss (grad call)");
  expect_matches(gx, ref.grad_logits, "grad_logits");
}

TEST(Sparse, MatchesReferenceEveryDtypeSizeAndLayout) {
  for (xent_dtype dtype : kAllDtypes)
    for (xent_dtype index_dtype : {XENT_INT32, XENT_INT64})
      for (int64_t C : {1, 2, 7, 16, 17, 100, 2049, 5000})
        for (Layout layout : {Layout::kContiguous, Layout::kTransposed, Layout::kMisaligned}) {
          OptCase c{.dtype = dtype, .shape = {5, C}, .index_dtype = index_dtype, .layout = layout, .ignored_fraction = 0,
                    .seed = static_cast<uint32_t>(C)};
          c.options.has_ignore = false;
          run_options_case(c);
        }
  // Rows of 2 to 4 classes in full vector groups (TinyRows) and a partial last one, both index dtypes.
  for (xent_dtype dtype : kAllDtypes)
    for (xent_dtype index_dtype : {XENT_INT32, XENT_INT64})
      for (int64_t C : {2, 3, 4})
        for (Layout layout : {Layout::kContiguous, Layout::kMisaligned}) {
          OptCase c{.dtype = dtype, .shape = {37, C}, .index_dtype = index_dtype, .layout = layout,
                    .ignored_fraction = 0, .seed = static_cast<uint32_t>(C)};
          c.options.has_ignore = false;
          run_options_case(c);
        }
}

// The TensorFlow-style entry points: no ignore_index, errors for out-of-range labels.
TEST(Sparse, TensorFlowEntryPoints) {
  // logits [[0, -inf]], label 0 -> 0; the label's own -inf logit -> +inf.
  const float logits[] = {0, -INFINITY, -INFINITY, 0};
  const int64_t labels[] = {0, 0};
  float loss[2], gx[4];
  xent_tensor x = xent_make_tensor((void*)logits, XENT_FLOAT32, 2, std::array<int64_t, 2>{2, 2}.data(), nullptr);
  xent_tensor y = xent_make_tensor((void*)labels, XENT_INT64, 1, std::array<int64_t, 1>{2}.data(), nullptr);
  xent_tensor l = xent_make_tensor(loss, XENT_FLOAT32, 1, std::array<int64_t, 1>{2}.data(), nullptr);
  xent_tensor g = xent_make_tensor(gx, XENT_FLOAT32, 2, std::array<int64_t, 2>{2, 2}.data(), nullptr);
  expect_ok(xent_sparse_softmax_cross_entropy_grad(&y, &x, -1, nullptr, &l, &g));
  EXPECT_EQ(loss[0], 0);
  EXPECT_EQ(loss[1], INFINITY);
  EXPECT_EQ(gx[0], 0);
  EXPECT_EQ(gx[1], 0);
}

TEST(Sparse, HigherRankAndScalarLabel) {
  // labels [[3,2],[0,3]] against logits [2,2,4].
  std::vector<float> logits(16);
  for (int i = 0; i < 16; ++i) logits[i] = 0.25f * i - 1;
  const int32_t labels[] = {3, 2, 0, 3};
  float loss[4];
  xent_tensor x = xent_make_tensor(logits.data(), XENT_FLOAT32, 3, std::array<int64_t, 3>{2, 2, 4}.data(), nullptr);
  xent_tensor y = xent_make_tensor((void*)labels, XENT_INT32, 2, std::array<int64_t, 2>{2, 2}.data(), nullptr);
  xent_tensor l = xent_make_tensor(loss, XENT_FLOAT32, 2, std::array<int64_t, 2>{2, 2}.data(), nullptr);
  expect_ok(xent_sparse_softmax_cross_entropy(&y, &x, -1, &l));
  for (int r = 0; r < 4; ++r) {
    double s = 0;
    for (int j = 0; j < 4; ++j) s += std::exp(logits[r * 4 + j]);
    EXPECT_NEAR(loss[r], std::log(s) - logits[r * 4 + labels[r]], 1e-6) << r;
  }
  // A scalar label with 1-D logits gives a scalar.
  const int64_t label = 1;
  float scalar_loss = -1;
  xent_tensor x1 = xent_make_tensor(logits.data(), XENT_FLOAT32, 1, std::array<int64_t, 1>{4}.data(), nullptr);
  xent_tensor y0 = xent_make_tensor((void*)&label, XENT_INT64, 0, nullptr, nullptr);
  xent_tensor l0 = xent_make_tensor(&scalar_loss, XENT_FLOAT32, 0, nullptr, nullptr);
  expect_ok(xent_sparse_softmax_cross_entropy(&y0, &x1, -1, &l0));
  EXPECT_NEAR(scalar_loss, loss[0] + logits[3] - logits[1], 1e-6);
}

TEST(Sparse, ClassAxisNotLastEqualsTransposed) {
  // logits [C, N] with axis 0 must equal logits [N, C] with axis -1 on the same numbers.
  const int64_t C = 37, N = 40;
  std::vector<float> a(C * N), b(C * N);
  std::vector<int64_t> labels(N);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t n = 0; n < N; ++n) a[c * N + n] = b[n * C + c] = std::sin(0.1f * (c * N + n)) * 5;
  for (int64_t n = 0; n < N; ++n) labels[n] = (n * 7) % C;
  float la[N], lb[N];
  xent_tensor xa = xent_make_tensor(a.data(), XENT_FLOAT32, 2, std::array<int64_t, 2>{C, N}.data(), nullptr);
  xent_tensor xb = xent_make_tensor(b.data(), XENT_FLOAT32, 2, std::array<int64_t, 2>{N, C}.data(), nullptr);
  xent_tensor y = xent_make_tensor(labels.data(), XENT_INT64, 1, std::array<int64_t, 1>{N}.data(), nullptr);
  xent_tensor lva = xent_make_tensor(la, XENT_FLOAT32, 1, std::array<int64_t, 1>{N}.data(), nullptr);
  xent_tensor lvb = xent_make_tensor(lb, XENT_FLOAT32, 1, std::array<int64_t, 1>{N}.data(), nullptr);
  expect_ok(xent_sparse_softmax_cross_entropy(&y, &xa, 0, &lva));
  expect_ok(xent_sparse_softmax_cross_entropy(&y, &xb, -1, &lvb));
  for (int64_t n = 0; n < N; ++n) EXPECT_FLOAT_EQ(la[n], lb[n]) << n;
}

TEST(Sparse, LabelOutOfRangeIsAnErrorAndWritesNothing) {
  for (int64_t bad : {int64_t{7}, int64_t{5}, int64_t{-1}, int64_t{-100}}) {
    const float logits[10] = {};
    const int64_t labels[] = {1, bad};
    float loss[2] = {42, 42};
    xent_tensor x = xent_make_tensor((void*)logits, XENT_FLOAT32, 2, std::array<int64_t, 2>{2, 5}.data(), nullptr);
    xent_tensor y = xent_make_tensor((void*)labels, XENT_INT64, 1, std::array<int64_t, 1>{2}.data(), nullptr);
    xent_tensor l = xent_make_tensor(loss, XENT_FLOAT32, 1, std::array<int64_t, 1>{2}.data(), nullptr);
    EXPECT_EQ(xent_sparse_softmax_cross_entropy(&y, &x, -1, &l), XENT_INVALID_ARGUMENT);
    EXPECT_EQ(std::string(xent_last_error_message()),
              "Received a label value of " + std::to_string(bad) + " which is outside the valid range of [0, 5)");
    EXPECT_EQ(loss[0], 42);
    EXPECT_EQ(loss[1], 42);
  }
}

// The scan walks runs of the innermost batch dimension: a bad int32 label in a later run of strided labels, with
// class weights, is found and named, and nothing is written.
TEST(Sparse, LabelOutOfRangeInStridedWeightedInt32Labels) {
  for (int32_t bad : {5, -1}) {
    const float logits[3 * 2 * 5] = {}, weight[5] = {1, 2, 3, 4, 5};
    int32_t labels[6] = {0, 1, 2, 3, 4, -100};  // transposed below: row (i, j) reads labels[i + 3·j]
    labels[4] = bad;
    float loss[1] = {42};
    xent_tensor x = xent_make_tensor((void*)logits, XENT_FLOAT32, 3, std::array<int64_t, 3>{3, 2, 5}.data(), nullptr);
    xent_tensor y = xent_make_tensor(labels, XENT_INT32, 2, std::array<int64_t, 2>{3, 2}.data(),
                                     std::array<int64_t, 2>{1, 3}.data());
    xent_tensor w = xent_make_tensor((void*)weight, XENT_FLOAT32, 1, std::array<int64_t, 1>{5}.data(), nullptr);
    xent_tensor l = xent_make_tensor(loss, XENT_FLOAT32, 0, nullptr, nullptr);
    xent_loss_options o = xent_default_loss_options();
    o.weight = &w;
    EXPECT_EQ(xent_cross_entropy(&x, &y, -1, &o, &l), XENT_INVALID_ARGUMENT);
    EXPECT_EQ(std::string(xent_last_error_message()),
              "Received a label value of " + std::to_string(bad) +
                  " which is outside the valid range of [0, 5) and is not ignore_index (-100)");
    EXPECT_EQ(loss[0], 42);
    labels[4] = 4;  // valid now: the weighted mean is Σ w[t]·log 5 / Σ w[t] = log 5 over the rows not ignored
    expect_ok(xent_cross_entropy(&x, &y, -1, &o, &l));
    EXPECT_FLOAT_EQ(loss[0], std::log(5.0f));
  }
}

// Long runs of contiguous targets are checked by every thread, a slice each (src/targets.cc): a bad label in any
// slice, the first or the last, is found and named with nothing written; MEAN's denominator counts the rows not
// ignored across slices (all logits 0: every row's loss is log 2, so the mean is log 2 and the sum is log 2 times
// the rows counted).
TEST(Sparse, LabelOutOfRangeInLongRunsOfTargets) {
  const int64_t rows = 300001;
  std::vector<float> logits(static_cast<size_t>(rows * 2), 0.0f), loss(static_cast<size_t>(rows), 42.0f);
  std::vector<int64_t> labels(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) labels[i] = i % 2;
  xent_tensor x = xent_make_tensor(logits.data(), XENT_FLOAT32, 2, std::array<int64_t, 2>{rows, 2}.data(), nullptr);
  xent_tensor y = xent_make_tensor(labels.data(), XENT_INT64, 1, std::array<int64_t, 1>{rows}.data(), nullptr);
  xent_tensor l = xent_make_tensor(loss.data(), XENT_FLOAT32, 1, std::array<int64_t, 1>{rows}.data(), nullptr);
  const int32_t threads_before = xent_get_num_threads();
  for (int32_t threads : {1, 2, 3}) {
    xent_set_num_threads(threads);
    for (int64_t at : {int64_t{0}, int64_t{70000}, rows - 1}) {
      const int64_t kept = labels[at];
      labels[at] = 2;
      EXPECT_EQ(xent_sparse_softmax_cross_entropy(&y, &x, -1, &l), XENT_INVALID_ARGUMENT);
      EXPECT_EQ(std::string(xent_last_error_message()),
                "Received a label value of 2 which is outside the valid range of [0, 2)");
      EXPECT_TRUE(std::all_of(loss.begin(), loss.end(), [](float v) { return v == 42; }));
      labels[at] = kept;
    }
    for (int64_t i = 3; i < rows; i += 7) labels[i] = -100;  // ignore_index of cross_entropy
    float mean = 0, sum = 0;
    xent_tensor m = xent_make_tensor(&mean, XENT_FLOAT32, 0, nullptr, nullptr);
    xent_tensor s = xent_make_tensor(&sum, XENT_FLOAT32, 0, nullptr, nullptr);
    xent_loss_options o = xent_default_loss_options();
    o.reduction = XENT_REDUCTION_MEAN;
    expect_ok(xent_cross_entropy(&x, &y, -1, &o, &m));
    o.reduction = XENT_REDUCTION_SUM;
    expect_ok(xent_cross_entropy(&x, &y, -1, &o, &s));
    const int64_t counted = rows - (rows + 3) / 7;  // rows i with i % 7 == 3 are ignored
    EXPECT_NEAR(mean, std::log(2.0), 1e-6);
    EXPECT_NEAR(sum / static_cast<double>(counted), std::log(2.0), 1e-5);
    for (int64_t i = 3; i < rows; i += 7) labels[i] = i % 2;
  }
  xent_set_num_threads(threads_before);
}

TEST(Sparse, ShapeAndDtypeErrors) {
  const float logits[8] = {};
  const int64_t labels[3] = {};
  const float flabels[2] = {};
  float loss[2];
  xent_tensor x = xent_make_tensor((void*)logits, XENT_FLOAT32, 2, std::array<int64_t, 2>{2, 4}.data(), nullptr);
  xent_tensor y = xent_make_tensor((void*)labels, XENT_INT64, 1, std::array<int64_t, 1>{3}.data(), nullptr);
  xent_tensor yf = xent_make_tensor((void*)flabels, XENT_FLOAT32, 1, std::array<int64_t, 1>{2}.data(), nullptr);
  xent_tensor l = xent_make_tensor(loss, XENT_FLOAT32, 1, std::array<int64_t, 1>{2}.data(), nullptr);
  EXPECT_EQ(xent_sparse_softmax_cross_entropy(&y, &x, -1, &l), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("labels must have shape [2] (logits' shape without the class axis), received [3]"),
            std::string::npos) << xent_last_error_message();
  EXPECT_EQ(xent_sparse_softmax_cross_entropy(&yf, &x, -1, &l), XENT_INVALID_DTYPE);
  EXPECT_NE(std::string(xent_last_error_message()).find("int32 or int64"), std::string::npos);
  const int64_t none[1] = {};
  xent_tensor x0 = xent_make_tensor((void*)logits, XENT_FLOAT32, 2, std::array<int64_t, 2>{2, 0}.data(), nullptr);
  xent_tensor y2 = xent_make_tensor((void*)none, XENT_INT64, 1, std::array<int64_t, 1>{2}.data(), nullptr);
  EXPECT_EQ(xent_sparse_softmax_cross_entropy(&y2, &x0, -1, &l), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("at least one class"), std::string::npos);
}

// Every option alone, then all together, for class indices and probabilities, every reduction.
TEST(Options, EachAndAllAgainstReference) {
  std::vector<LossOptions> variants;
  for (int reduction : {0, 1, 2}) {
    LossOptions base;
    base.reduction = reduction;
    variants.push_back(base);
    LossOptions w = base;
    for (int j = 0; j < 37; ++j) w.weight.push_back(0.25 + 0.05 * j);
    variants.push_back(w);
    LossOptions s = base;
    s.label_smoothing = 0.1;
    variants.push_back(s);
    LossOptions z = base;
    z.z_loss = 1e-2;
    variants.push_back(z);
    LossOptions cap = base;
    cap.softcap = 3;
    variants.push_back(cap);
    LossOptions all = w;
    all.label_smoothing = 0.2, all.z_loss = 1e-3, all.softcap = 5, all.ignore_index = 4;
    variants.push_back(all);
  }
  for (xent_dtype dtype : kAllDtypes)
    for (const LossOptions& o : variants)
      for (bool sparse : {true, false}) {
        run_options_case({.dtype = dtype, .shape = {6, 37}, .sparse = sparse, .options = o});
        run_options_case({.dtype = dtype, .shape = {2, 3, 37}, .sparse = sparse, .options = o,
                          .layout = Layout::kTransposed, .seed = 3});
        // One row per SIMD lane: short rows (2 to 4 classes: TinyRows), and classes strided (transposed) in one and
        // in several lane blocks.
        for (int64_t C : {2, 3, 4, 7, 48}) {
          LossOptions short_rows = o;
          if (!short_rows.weight.empty()) short_rows.weight.resize(static_cast<size_t>(C));
          run_options_case({.dtype = dtype, .shape = {40, C}, .sparse = sparse, .options = short_rows, .seed = 4});
        }
        run_options_case({.dtype = dtype, .shape = {40, 37}, .sparse = sparse, .options = o,
                          .layout = Layout::kTransposed, .seed = 5});
        LossOptions wide = o;
        if (!wide.weight.empty())
          for (int j = 37; j < 130; ++j) wide.weight.push_back(0.5 + 0.01 * j);
        run_options_case({.dtype = dtype, .shape = {33, 130}, .sparse = sparse, .options = wide,
                          .layout = Layout::kTransposed, .seed = 6});
        // More classes than a stage holds: swept block-major (LaneSweep), a partial last group.
        if (!wide.weight.empty())
          for (int j = 130; j < 1000; ++j) wide.weight.push_back(0.5 + 0.001 * j);
        run_options_case({.dtype = dtype, .shape = {20, 1000}, .sparse = sparse, .options = wide,
                          .layout = Layout::kTransposed, .seed = 7});
      }
}

// Label smoothing alone with class indices: every effective label is the same β, which the row kernel sums apart
// (kUniformLabels): rows of one and of several blocks, partial last vectors, a −inf logit (whose smoothed label
// makes the loss +inf, with finite gradients) and a row of a huge logit.
TEST(Options, LabelSmoothingOfClassIndices) {
  LossOptions s;
  s.label_smoothing = 0.1;
  for (xent_dtype dtype : kAllDtypes)
    for (int64_t C : {1, 9, 40, 1023, 3001})
      for (Layout layout : {Layout::kContiguous, Layout::kMisaligned}) {
        run_options_case({.dtype = dtype, .shape = {4, C}, .options = s, .layout = layout, .seed = 8});
        run_options_case({.dtype = dtype, .shape = {4, C}, .options = s, .layout = layout, .ignored_fraction = 0,
                          .seed = 9, .edit = [C](Tensor& logits, std::vector<int64_t>&) {
                            logits.set(C / 2, -INFINITY);
                            logits.set(2 * C + C - 1, 60000);
                          }});
      }
}

TEST(Options, LongRowsSplitAcrossThreads) {
  LossOptions all;
  all.label_smoothing = 0.1, all.z_loss = 1e-4, all.softcap = 20, all.reduction = 2;
  for (int j = 0; j < 300000; ++j) all.weight.push_back(1 + (j % 7) * 0.1);
  set_num_threads(2);
  run_options_case({.shape = {2, 300000}, .options = all, .ignored_fraction = 0});
  run_options_case({.shape = {2, 300000}, .sparse = false, .options = all});
  set_num_threads(0);
}

TEST(Options, IgnoredRowsAndEmptyMean) {
  LossOptions mean;
  mean.reduction = 2;
  run_options_case({.shape = {50, 9}, .options = mean, .ignored_fraction = 0.5});
  // Every row ignored: MEAN is 0 with gradient 0 (documented; PyTorch gives NaN).
  run_options_case({.shape = {4, 9}, .options = mean, .ignored_fraction = 1});
  LossOptions none;
  run_options_case({.shape = {4, 9}, .options = none, .ignored_fraction = 1});
}

TEST(Options, MaskedLogitsAndHugeValues) {
  LossOptions o;
  o.reduction = 0;
  o.has_ignore = false;
  run_options_case({.shape = {3, 5}, .options = o, .ignored_fraction = 0, .edit = [](Tensor& x, std::vector<int64_t>& t) {
                      x.set(1, -kInf), x.set(2, -kInf), t[0] = 0;        // masked logits away from the label: finite
                      x.set(5, -kInf), t[1] = 0;                          // label on a masked logit: +inf
                      x.set(10, 3e38), x.set(11, -3e38), t[2] = 1;        // huge logits: finite, exact
                    }});
}

// Label smoothing beside logits near ±3e38: every class's label term is β·(x − r) with x − r near −3e38, finite
// terms whose unweighted float sum overflowed (the loss was inf where it is 1.2e38; found by the fuzzer,
// tests/fuzz/corpus/regression-smoothing-huge-logits). Rows long enough for the row kernel, and short ones.
TEST(Options, LabelSmoothingBesideHugeLogits) {
  for (int64_t C : {5, 40, 300}) {
    LossOptions o;
    o.reduction = 0;
    o.label_smoothing = 0.5;
    run_options_case({.shape = {3, C}, .options = o, .ignored_fraction = 0,
                      .edit = [C](Tensor& x, std::vector<int64_t>& t) {
                        x.set(2, 3e38), t[0] = 2;                        // max at the target
                        for (int64_t j = 0; j < C; j += 2) x.set(C + j, -3e38);
                        x.set(C + 1, 3e38), t[1] = 3;                    // max away from the target, huge gaps
                        x.set(2 * C, 1e38), x.set(2 * C + 1, -1e38), t[2] = 0;
                      }});
  }
}

// Ignored rows have gradient exactly 0, also when their logits hold a NaN or +inf (g = 0 times NaN was NaN in the
// lane kernels' gradients; found by the fuzzer, tests/fuzz/corpus/regression-ignored-nan-rows), with the other
// rows ignored too (MEAN of nothing) or not, short rows to rows of several lane blocks.
TEST(Options, IgnoredRowsWithNaNHaveZeroGradient) {
  for (xent_dtype dtype : kAllDtypes)
    for (int64_t C : {1, 3, 10, 40, 100, 300})
      for (bool all_ignored : {true, false})
        for (bool softcap : {false, true}) {
          SCOPED_TRACE(std::string(xent_dtype_name(dtype)) + " C=" + std::to_string(C) + (all_ignored ? " all" : " some"));
          const int64_t R = 37;
          Tensor logits(dtype, {R, C}), grad(dtype, {R, C});
          std::vector<int64_t> t(R);
          for (int64_t i = 0; i < R; ++i) {
            t[i] = all_ignored || i % 3 == 0 ? -100 : i % C;
            for (int64_t j = 0; j < C; ++j) logits.set(i * C + j, static_cast<Real>((i + j) % 7) - 3);
          }
          for (int64_t i : {0, 3, 9}) logits.set(i * C + C / 2, std::numeric_limits<Real>::quiet_NaN());
          logits.set(6 * C, kInf);
          const int64_t tshape[] = {R};
          const xent_tensor xv = logits.view(), gv = grad.view();
          const xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, tshape, nullptr);
          xent_loss_options o = xent_default_loss_options();
          if (softcap) o.softcap = 5, o.z_loss = 1e-3;
          expect_ok(xent_cross_entropy_grad(&xv, &tv, -1, &o, nullptr, nullptr, &gv));
          for (int64_t i = 0; i < R; ++i)
            for (int64_t j = 0; j < C; ++j)
              if (t[i] == -100) ASSERT_EQ(grad.get(i * C + j), 0) << "row " << i << " class " << j;
        }
}

// The same, one row per SIMD lane (the lane kernel picks each lane's logit at its target in the max pass): short
// rows (C = 10, column tiles), classes strided in one block (37), across blocks (200, staged) and swept (1000).
// Each special row sits among ordinary ones: −inf away from the target and at it, a row of only −inf, a NaN away
// from the target, huge logits at the target and away from it; then with class weights (one of them 0, on a −inf
// target: the term is skipped, loss 0) and z-loss, and with a soft-cap as well.
TEST(Options, MaskedLogitsAndHugeValuesOneRowPerLane) {
  constexpr int64_t kRows = 20;
  for (int64_t C : {10, 37, 50, 100, 200, 1000})
    for (xent_dtype dtype : kAllDtypes)
      for (int variant : {0, 1, 2}) {
        const Real huge = dtype == XENT_FLOAT16 ? 6e4 : 3e38;
        LossOptions o;
        if (variant > 0) {
          for (int64_t j = 0; j < C; ++j) o.weight.push_back(j % 5 == 3 ? 0 : 0.5 + static_cast<Real>(j % 5) * 0.25);
          o.z_loss = 1e-3;
        }
        if (variant > 1) o.softcap = 30;
        const Layout layout = C == 10 || C == 50 || C == 100 ? Layout::kContiguous : Layout::kTransposed;
        run_options_case({.dtype = dtype, .shape = {kRows, C}, .options = o, .layout = layout, .ignored_fraction = 0,
                          .seed = static_cast<uint32_t>(C),
                          .edit = [&](Tensor& x, std::vector<int64_t>& t) {
                            const auto set = [&](int64_t row, int64_t j, Real v) { x.set(row * C + j, v); };
                            for (int64_t j = 0; j < C; ++j) if (j != C - 1) set(1, j, -kInf);
                            t[1] = C - 1;                                            // finite
                            set(2, C / 2 + 1, -kInf), t[2] = C / 2 + 1;              // +inf
                            for (int64_t j = 0; j < C; ++j) set(3, j, -kInf);
                            t[3] = 0;                                                // every logit −inf: +inf
                            set(4, 3, kNaN), t[4] = 5;                               // NaN
                            for (int64_t j = 0; j < C; ++j) set(5, j, j == 7 ? huge : -huge);
                            t[5] = 7;                                                // 0
                            set(6, C - 3, -huge), t[6] = C - 3;                      // about huge, finite
                            set(7, 2, huge), t[7] = C - 2;                           // about huge, finite
                            set(8, 8, -kInf), t[8] = 8;                              // weight 0 (variants 1, 2): 0
                          }});
      }
}

TEST(Options, ValidationErrors) {
  const float logits[8] = {};
  const int64_t labels[2] = {0, 1};
  const float w3[3] = {1, 1, 1};
  float loss[2];
  xent_tensor x = xent_make_tensor((void*)logits, XENT_FLOAT32, 2, std::array<int64_t, 2>{2, 4}.data(), nullptr);
  xent_tensor y = xent_make_tensor((void*)labels, XENT_INT64, 1, std::array<int64_t, 1>{2}.data(), nullptr);
  xent_tensor w = xent_make_tensor((void*)w3, XENT_FLOAT32, 1, std::array<int64_t, 1>{3}.data(), nullptr);
  xent_tensor scalar = xent_make_tensor(loss, XENT_FLOAT32, 0, nullptr, nullptr);
  xent_tensor per_row = xent_make_tensor(loss, XENT_FLOAT32, 1, std::array<int64_t, 1>{2}.data(), nullptr);
  const auto expect = [&](xent_loss_options o, const xent_tensor* out, const char* needle) {
    EXPECT_EQ(xent_cross_entropy(&x, &y, -1, &o, out), XENT_INVALID_ARGUMENT) << needle;
    EXPECT_NE(std::string(xent_last_error_message()).find(needle), std::string::npos) << xent_last_error_message();
  };
  xent_loss_options o = xent_default_loss_options();
  o.weight = &w;
  expect(o, &scalar, "weight must have shape [4] (one weight per class), received [3]");
  o = xent_default_loss_options(), o.label_smoothing = 1.5;
  expect(o, &scalar, "label_smoothing must be in [0, 1], received 1.5");
  o = xent_default_loss_options(), o.label_smoothing = NAN;
  expect(o, &scalar, "label_smoothing must be in [0, 1]");
  o = xent_default_loss_options(), o.z_loss = -1;
  expect(o, &scalar, "z_loss must be finite and >= 0, received -1");
  o = xent_default_loss_options(), o.softcap = -2;
  expect(o, &scalar, "softcap must be finite and > 0");
  o = xent_default_loss_options(), o.reduction = 7;
  expect(o, &scalar, "reduction must be XENT_REDUCTION_NONE (0), SUM (1) or MEAN (2), received 7");
  o = xent_default_loss_options();
  expect(o, &per_row, "loss must have shape [] (a scalar: the loss is reduced), received [2]");
  o.reduction = XENT_REDUCTION_NONE;
  expect(o, &scalar, "loss must have shape [2]");
}

TEST(Options, CppApi) {
  const float logits[] = {4, 2, 1, 0, 5, 1};
  const int64_t labels[] = {0, 1};
  const float weight[] = {2, 1, 1};
  float loss[2], mean = 0, gx[6];
  sparse_softmax_cross_entropy({labels, {2}}, {logits, {2, 3}}, {loss, {2}});
  EXPECT_NEAR(loss[0], std::log(std::exp(4.) + std::exp(2.) + std::exp(1.)) - 4, 1e-6);
  cross_entropy_grad({logits, {2, 3}}, {labels, {2}}, {.loss = View(&mean, {}), .grad_logits = View(gx, {2, 3})},
                     {.weight = ConstView(weight, {3}), .label_smoothing = 0.1});
  EXPECT_GT(mean, 0);
  EXPECT_THROW(cross_entropy({logits, {2, 3}}, {labels, {2}}, {&mean, {}}, {.label_smoothing = 2}), Error);
}

}  // namespace
}  // namespace xent::test

namespace xent::test {
namespace {

// In place (grad_logits given as the logits view itself) equals out of place, bit for bit, on every kernel path.
TEST(InPlace, GradientOverLogitsEqualsOutOfPlace) {
  struct P { std::vector<int64_t> shape; int axis; };
  for (const P& p : {P{{7, 3000}, -1}, P{{40, 7}, -1}, P{{5, 40, 30}, 1}, P{{2, 21, 600}, 1}, P{{2, 1000, 49}, 1},
                    P{{1, 200000}, -1}, P{{60000, 10}, -1}, P{{3001, 3}, -1}})
    for (xent_dtype dtype : {XENT_FLOAT32, XENT_FLOAT16})
      for (bool sparse : {false, true}) {
        SCOPED_TRACE(shape_of(p.shape) + (sparse ? " sparse" : " dense") + xent_dtype_name(dtype));
        Tensor logits(dtype, p.shape), labels(dtype, p.shape), copy(dtype, p.shape), gx(dtype, p.shape);
        std::mt19937 rng(3);
        std::normal_distribution<double> normal;
        for (int64_t i = 0; i < logits.size(); ++i) logits.set(i, 3 * normal(rng)), labels.set(i, (i % 5) * 0.2);
        for (int64_t i = 0; i < logits.size(); ++i) copy.set(i, logits.get(i));
        const int64_t C = p.shape[p.axis < 0 ? p.shape.size() - 1 : p.axis];
        std::vector<int64_t> batch;
        for (size_t d = 0; d < p.shape.size(); ++d)
          if (static_cast<int>(d) != (p.axis < 0 ? static_cast<int>(p.shape.size()) - 1 : p.axis)) batch.push_back(p.shape[d]);
        std::vector<int64_t> targets(static_cast<size_t>(count(batch)));
        for (size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<int64_t>(i * 7) % C;
        xent_tensor t = xent_make_tensor(targets.data(), XENT_INT64, static_cast<int32_t>(batch.size()), batch.data(), nullptr);
        xent_tensor x = logits.view(), y = labels.view(), xc = copy.view(), g = gx.view();
        if (sparse) {
          expect_ok(xent_sparse_softmax_cross_entropy_grad(&t, &xc, p.axis, nullptr, nullptr, &g));
          expect_ok(xent_sparse_softmax_cross_entropy_grad(&t, &x, p.axis, nullptr, nullptr, &x));
        } else {
          expect_ok(xent_softmax_cross_entropy_grad(&y, &xc, p.axis, nullptr, nullptr, &g, nullptr));
          expect_ok(xent_softmax_cross_entropy_grad(&y, &x, p.axis, nullptr, nullptr, &x, nullptr));
        }
        for (int64_t i = 0; i < logits.size(); ++i) ASSERT_EQ(logits.get(i), gx.get(i)) << i;
      }
}

// The dense op with both gradients, each written over its own input or into a separate tensor, equals both written
// out of place, bit for bit: every vector's logits and labels are read before its gradients overwrite them. Rows
// from 129 classes (the row kernel, with kept exps) and gradients of 64 MiB (streamed, in chunks of gx then gy
// when out of place) had read logits that grad_logits had already overwritten.
TEST(InPlace, BothGradientsOverTheirInputsEqualOutOfPlace) {
  struct P { std::vector<int64_t> shape; int axis; };
  for (const P& p : {P{{7, 3000}, -1}, P{{40, 7}, -1}, P{{40, 100}, -1}, P{{9, 129}, -1}, P{{5, 40, 30}, 1},
                    P{{2, 1000, 49}, 1}, P{{1, 200000}, -1}, P{{60000, 10}, -1}, P{{3001, 3}, -1},
                    P{{520, 32768}, -1}})
    for (xent_dtype dtype : {XENT_FLOAT32, XENT_FLOAT16}) {
      const bool streamed = count(p.shape) > (int64_t{1} << 22);  // float32, grad_logits over logits only: the chunks
      if (streamed && dtype == XENT_FLOAT16) continue;
      for (int over : {1, 2, 3}) {  // bit 0: grad_logits over logits; bit 1: grad_labels over labels
        if (streamed && over != 1) continue;
        SCOPED_TRACE(shape_of(p.shape) + xent_dtype_name(dtype) + " in place " + std::to_string(over));
        Tensor logits(dtype, p.shape), labels(dtype, p.shape), gx(dtype, p.shape), gy(dtype, p.shape);
        std::mt19937 rng(5);
        std::normal_distribution<double> normal;
        for (int64_t i = 0; i < logits.size(); ++i) logits.set(i, 3 * normal(rng)), labels.set(i, (i % 5) * 0.2);
        xent_tensor x = logits.view(), y = labels.view(), g_x = gx.view(), g_y = gy.view();  // out of place
        expect_ok(xent_softmax_cross_entropy_grad(&y, &x, p.axis, nullptr, nullptr, &g_x, &g_y));
        Tensor x_in = logits, y_in = labels, gx_out(dtype, p.shape), gy_out(dtype, p.shape);  // contiguous copies
        xent_tensor xi = x_in.view(), yi = y_in.view(), gxo = gx_out.view(), gyo = gy_out.view();
        expect_ok(xent_softmax_cross_entropy_grad(&yi, &xi, p.axis, nullptr, nullptr, over & 1 ? &xi : &gxo,
                                                  over & 2 ? &yi : &gyo));
        Tensor& gx_got = over & 1 ? x_in : gx_out;
        Tensor& gy_got = over & 2 ? y_in : gy_out;
        const size_t bytes = static_cast<size_t>(logits.size() * dtype_size(dtype));
        EXPECT_EQ(std::memcmp(gx_got.data(), gx.data(), bytes), 0) << "grad_logits";
        EXPECT_EQ(std::memcmp(gy_got.data(), gy.data(), bytes), 0) << "grad_labels";
      }
    }
}

TEST(InPlace, OnlyTheVeryViewIsAllowed) {
  Tensor logits(XENT_FLOAT32, {4, 6}), labels(XENT_FLOAT32, {4, 6});
  xent_tensor x = logits.view(), y = labels.view(), shifted = logits.view();
  shifted.shape[1] = 5;  // same memory, another view
  xent_tensor y5 = y;
  y5.shape[1] = 5;
  EXPECT_EQ(xent_softmax_cross_entropy_grad(&y5, &x, -1, nullptr, nullptr, &shifted, nullptr), XENT_INVALID_ARGUMENT);
  EXPECT_EQ(xent_softmax_cross_entropy_grad(&y, &x, -1, nullptr, nullptr, &y, nullptr), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("grad_logits overlaps labels"), std::string::npos);
}

}  // namespace
}  // namespace xent::test
