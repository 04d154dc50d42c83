// xent_test.cc — the C API against the long double reference: every dtype, sizes 0..2N and N±1 around every
// block boundary, strided/transposed/reversed/misaligned layouts, any axis, broadcasting, special values,
// threads, and every SIMD target compiled into the library.
#include <gtest/gtest.h>

#include <functional>
#include <iostream>

#include "hwy/targets.h"
#include "src/kernels.h"
#include "src/paths.h"
#include "tests/test_util.h"
#include "xent/xent.hpp"

namespace xent::test {
namespace {

constexpr xent_dtype kAllDtypes[] = {XENT_FLOAT16, XENT_BFLOAT16, XENT_FLOAT32, XENT_FLOAT64};
constexpr Real kInf = std::numeric_limits<Real>::infinity();
constexpr Real kNaN = std::numeric_limits<Real>::quiet_NaN();

struct Case {
  xent_dtype dtype = XENT_FLOAT32;
  std::vector<int64_t> labels_shape, logits_shape;
  int axis = -1;
  Layout logits_layout = Layout::kContiguous, labels_layout = Layout::kContiguous, out_layout = Layout::kContiguous;
  Real scale = 8;              // logits ~ scale · N(0, 1)
  Real zero_fraction = 0.3;    // labels: this share exactly 0, the rest uniform in [label_low, 1]
  Real label_low = 0;
  bool grad_loss = true;       // random upstream gradient, or none (1)
  bool page_end = false;       // every tensor the API sees ends a page, before an inaccessible one (PageEndCopy)
  uint32_t seed = 1;
  std::function<void(Tensor& labels, Tensor& logits)> edit;  // special values, applied after the random fill
};

std::string describe(const Case& c) {
  std::string s = std::string(xent_dtype_name(c.dtype)) + " labels" +
                  shape_of(c.labels_shape) + " logits" + shape_of(c.logits_shape) + " axis=" + std::to_string(c.axis) +
                  " layouts " + layout_name(c.logits_layout) + "/" + layout_name(c.labels_layout) + "/" +
                  layout_name(c.out_layout);
  return s + (c.page_end ? " at page ends" : "");
}

// The memory an API call sees of a tensor: its own, or a PageEndCopy that sync() copies back.
class Placed {
 public:
  Placed(Tensor& t, bool page_end) : tensor_(t) {
    if (page_end) copy_.emplace(t);
  }
  xent_tensor view() { return copy_ ? copy_->view() : tensor_.view(); }
  void sync() {
    if (copy_) copy_->copy_back();
  }

 private:
  Tensor& tensor_;
  std::optional<PageEndCopy> copy_;
};

// Runs forward, forward+all gradients, and forward+grad_logits only; checks each against the reference and that
// the inputs were not modified.
void run_case(const Case& c) {
  SCOPED_TRACE(describe(c));
  std::mt19937 rng(c.seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  Tensor logits(c.dtype, c.logits_shape, c.logits_layout), labels(c.dtype, c.labels_shape, c.labels_layout);
  for (int64_t i = 0; i < logits.size(); ++i) logits.set(i, c.scale * normal(rng));
  for (int64_t i = 0; i < labels.size(); ++i)
    labels.set(i, uniform(rng) < c.zero_fraction ? 0 : c.label_low + (1 - c.label_low) * uniform(rng));
  if (c.edit) c.edit(labels, logits);
  const std::vector<unsigned char> logits_before = logits.bytes(), labels_before = labels.bytes();

  const Reference plain = reference(labels.dense(), logits.dense(), c.axis, {});
  Placed x(logits, c.page_end), y(labels, c.page_end);
  xent_tensor xv = x.view(), yv = y.view();
  Tensor loss(c.dtype, plain.loss_shape, c.out_layout);
  Placed l(loss, c.page_end);
  xent_tensor lv = l.view();
  expect_ok(xent_softmax_cross_entropy(&yv, &xv, c.axis, &lv));
  l.sync();
  expect_matches(loss, plain.loss, "loss");

  Tensor grad_loss(c.dtype, plain.loss_shape, c.out_layout);
  std::vector<Real> g;
  if (c.grad_loss) {
    for (int64_t i = 0; i < grad_loss.size(); ++i) grad_loss.set(i, 4 * uniform(rng) - 2);
    g = grad_loss.dense().values;
  }
  const Reference ref = c.grad_loss ? reference(labels.dense(), logits.dense(), c.axis, g) : plain;
  Tensor loss2(c.dtype, plain.loss_shape, c.out_layout), gx(c.dtype, c.logits_shape, c.out_layout),
      gy(c.dtype, c.labels_shape, c.out_layout), gx_only(c.dtype, c.logits_shape, c.out_layout);
  Placed gl(grad_loss, c.page_end), l2(loss2, c.page_end), gxp(gx, c.page_end), gyp(gy, c.page_end),
      gxo(gx_only, c.page_end);
  xent_tensor gv = gl.view(), l2v = l2.view(), gxv = gxp.view(), gyv = gyp.view(), gxov = gxo.view();
  expect_ok(xent_softmax_cross_entropy_grad(&yv, &xv, c.axis, c.grad_loss ? &gv : nullptr, &l2v, &gxv, &gyv));
  l2.sync(), gxp.sync(), gyp.sync();
  expect_matches(loss2, plain.loss, "loss (grad call)");
  expect_matches(gx, ref.grad_logits, "grad_logits");
  expect_matches(gy, ref.grad_labels, "grad_labels");

  expect_ok(xent_softmax_cross_entropy_grad(&yv, &xv, c.axis, c.grad_loss ? &gv : nullptr, nullptr, &gxov, nullptr));
  gxo.sync();
  expect_matches(gx_only, ref.grad_logits, "grad_logits (only output)");

  x.sync(), y.sync();
  EXPECT_TRUE(logits.bytes() == logits_before) << "logits were modified";
  EXPECT_TRUE(labels.bytes() == labels_before) << "labels were modified";
}

TEST(Xent, SeedExample) {
  const float logits[] = {4, 2, 1, 0, 5, 1}, labels[] = {1, 0, 0, 0, 0.8f, 0.2f};
  float loss[2];
  softmax_cross_entropy({labels, {2, 3}}, {logits, {2, 3}}, {loss, {2}});
  EXPECT_FLOAT_EQ(loss[0], 0.16984604f);
  EXPECT_FLOAT_EQ(loss[1], 0.82474494f);
}

// Class counts 0..2N+1 for every vector width up to 16 float lanes, N±1 and 8N+2, and around the 2048-class
// block: partial vectors, partial blocks and the merge of blocks all get hit.
TEST(Xent, EveryDtypeAndClassCount) {
  std::vector<int64_t> sizes;
  for (int64_t c = 1; c <= 34; ++c) sizes.push_back(c);
  for (int64_t c : {63, 64, 65, 130, 2047, 2048, 2049, 4095, 4096, 4097, 6150}) sizes.push_back(c);
  for (xent_dtype dtype : kAllDtypes)
    for (int64_t C : sizes) run_case({.dtype = dtype, .labels_shape = {3, C}, .logits_shape = {3, C}, .seed = uint32_t(C)});
}

TEST(Xent, ZeroRowsGiveEmptyResults) {
  for (xent_dtype dtype : kAllDtypes) {
    run_case({.dtype = dtype, .labels_shape = {0, 5}, .logits_shape = {0, 5}});
    run_case({.dtype = dtype, .labels_shape = {0, 0}, .logits_shape = {0, 0}});
    run_case({.dtype = dtype, .labels_shape = {2, 0, 3}, .logits_shape = {2, 0, 3}, .axis = 2});
  }
}

TEST(Xent, SignedAndUnnormalisedLabels) {
  for (xent_dtype dtype : kAllDtypes)
    for (int64_t C : {1, 7, 100, 3000})
      run_case({.dtype = dtype, .labels_shape = {4, C}, .logits_shape = {4, C}, .zero_fraction = 0.2, .label_low = -1});
}

TEST(Xent, EveryLayoutAndAxis) {
  const std::vector<std::pair<std::vector<int64_t>, int>> shapes = {
      {{4, 37}, -1}, {{6, 70}, 0}, {{5, 3, 9}, 1}, {{5, 3, 9}, -3}, {{2, 3, 4, 5}, 2}, {{40}, 0}, {{3, 2100}, -1}};
  for (xent_dtype dtype : kAllDtypes)
    for (const auto& [shape, axis] : shapes)
      for (int l = 0; l < 5; ++l)
        run_case({.dtype = dtype, .labels_shape = shape, .logits_shape = shape, .axis = axis,
                  .logits_layout = kAllLayouts[l], .labels_layout = kAllLayouts[(l + 1) % 5],
                  .out_layout = kAllLayouts[(l + 2) % 5]});
}

// Layouts that take the lane kernel (one row per SIMD lane): strided classes with contiguous neighbouring rows,
// and many short rows (2 to 4 classes are deinterleaved by shuffles, longer ones gathered); lane tails (rows not a
// multiple of the vector), and more classes than one lane block.
TEST(Xent, RowsAcrossLanes) {
  const std::vector<std::pair<std::vector<int64_t>, int>> shapes = {
      {{40, 37}, 0}, {{40, 2}, -1}, {{40, 3}, -1}, {{37, 4}, -1}, {{40, 7}, -1}, {{1000, 10}, -1}, {{150, 33}, 0}, {{3, 70, 20}, 1}, {{2, 5, 17}, 1},
      {{130, 19}, 0}, {{2, 21, 8, 8}, 1},
      // contiguous rows transposed in registers (LaneRows' fill_tile): 16 lanes with loads past the group's end
      // (5, 6, 10), whole passes (16, 32), a last pass of the last 16 or 8 classes (17, 20, 31)
      {{40, 5}, -1}, {{33, 6}, -1}, {{48, 16}, -1}, {{37, 17}, -1}, {{40, 20}, -1}, {{35, 31}, -1}, {{40, 32}, -1},
      // 33 to kMaxShortRows (128) contiguous classes: full groups in ShortRows (above 64 classes two lane blocks),
      // the rest of the rows in LaneRows without tiles; 129 goes back to the row kernel
      {{40, 33}, -1}, {{37, 47}, -1}, {{40, 56}, -1}, {{35, 64}, -1}, {{40, 65}, -1}, {{37, 100}, -1},
      {{40, 128}, -1}, {{40, 129}, -1}};
  for (xent_dtype dtype : kAllDtypes)
    for (const auto& [shape, axis] : shapes)
      for (Layout layout : {Layout::kContiguous, Layout::kPadded, Layout::kReversed, Layout::kMisaligned})
        run_case({.dtype = dtype, .labels_shape = shape, .logits_shape = shape, .axis = axis,
                  .logits_layout = layout, .labels_layout = Layout::kContiguous, .out_layout = layout});
}

TEST(Xent, BroadcastInEveryDimension) {
  struct B { std::vector<int64_t> labels, logits; int axis; };
  const B cases[] = {
      {{3, 1}, {3, 4}, -1},        // one label per row, broadcast along the classes (TensorFlow accepts this)
      {{2, 4}, {1, 4}, -1},        // one logits row for every labels row
      {{4}, {3, 4}, -1},           // labels of lower rank
      {{3, 4}, {4}, -1},           // logits of lower rank: the loss has labels' batch shape
      {{3, 4}, {3, 1}, -1},        // a single logit broadcast along the classes
      {{2, 1, 5}, {3, 5}, -1},     // both broadcast
      {{2, 3, 1}, {1, 3, 6}, 1},   // class axis in the middle, both broadcast elsewhere
      {{1}, {2, 5}, 0},            // a scalar-like label, class axis first
      {{6, 1, 2100}, {1, 3, 2100}, -1},
      {{40, 1}, {40, 8}, -1},      // the same with rows across lanes
      {{1, 8}, {40, 8}, -1},
      {{40, 8}, {8}, -1},
      {{1, 70}, {9, 70}, 0},
      {{2, 1, 20}, {2, 5, 20}, 1},
  };
  for (xent_dtype dtype : kAllDtypes)
    for (const B& b : cases)
      for (Layout layout : {Layout::kContiguous, Layout::kTransposed})
        run_case({.dtype = dtype, .labels_shape = b.labels, .logits_shape = b.logits, .axis = b.axis,
                  .logits_layout = layout, .labels_layout = layout, .out_layout = layout});
}

// A float64 gradient of a broadcast input sums one term per element of the broadcast shape: within xent.h's 1e-13
// relative bound however many there are (a plain sum's error grows with their number: the fuzzer found 1.4e-13
// over 7542 terms). Labels [1] against logits [3, 100000] of one value: grad_labels = 3·C·log(C).
TEST(Xent, Float64BroadcastGradientOfManyTerms) {
  const int64_t C = 100000;
  Tensor logits(XENT_FLOAT64, {3, C}), labels(XENT_FLOAT64, {1}), loss(XENT_FLOAT64, {3}), gy(XENT_FLOAT64, {1});
  for (int64_t i = 0; i < logits.size(); ++i) logits.set(i, 0.25);
  labels.set(0, 0.5);
  xent_tensor x = logits.view(), y = labels.view(), l = loss.view(), b = gy.view();
  expect_ok(xent_softmax_cross_entropy_grad(&y, &x, -1, nullptr, &l, nullptr, &b));
  const long double exact = 3.0L * C * std::log(static_cast<long double>(C));
  EXPECT_LE(std::fabs(static_cast<long double>(gy.get(0)) - exact) / exact, 1e-13L) << gy.get(0) << " vs " << static_cast<double>(exact);
}

// --- Special values. Each is checked against the reference and, where the issue states a number, against it.

TEST(Xent, MaskedLogitWithZeroLabelContributesNothing) {
  // TensorFlow returns NaN for logits [[0, -inf]], labels [[1, 0]]; the answer is 0 with finite gradients.
  for (xent_dtype dtype : kAllDtypes) {
    Tensor logits(dtype, {1, 2}), labels(dtype, {1, 2}), loss(dtype, {1}), gx(dtype, {1, 2}), gy(dtype, {1, 2});
    logits.set(0, 0), logits.set(1, -kInf), labels.set(0, 1), labels.set(1, 0);
    xent_tensor x = logits.view(), y = labels.view(), l = loss.view(), a = gx.view(), b = gy.view();
    expect_ok(xent_softmax_cross_entropy_grad(&y, &x, -1, nullptr, &l, &a, &b));
    EXPECT_EQ(loss.get(0), 0);
    EXPECT_EQ(gx.get(0), 0);
    EXPECT_EQ(gx.get(1), 0);
    EXPECT_EQ(gy.get(0), 0);  // logsumexp − 0
    EXPECT_EQ(gy.get(1), 0);  // documented convention for y = 0 on a −inf logit
  }
}

TEST(Xent, SpecialValuesMatchReference) {
  struct S { const char* name; std::vector<Real> x, y; };
  const S rows[] = {
      {"masked vocabulary", {0, -kInf, 2, -kInf}, {0.5, 0, 0.5, 0}},
      {"label mass on -inf", {0, -kInf, 1}, {0.5, 0.5, 0}},
      {"all -inf, zero labels", {-kInf, -kInf, -kInf}, {0, 0, 0}},
      {"all -inf, labels", {-kInf, -kInf, -kInf}, {0, 1, 0}},
      {"all zero labels", {1, 2, 3}, {0, 0, 0}},
      {"huge logits", {3e38, -3e38, 1e30}, {0.25, 0.25, 0.5}},
      {"huge equal logits", {3e38, 3e38}, {1, 0}},
      {"NaN logit", {0, kNaN, 1}, {1, 0, 0}},
      {"NaN label", {0, 1, 1}, {1, kNaN, 0}},
      {"+inf logit", {0, kInf, 1}, {0, 1, 0}},
      // A NaN row's gradients are NaN also where a label 0 meets a −inf logit (x86's Max drops a NaN beside −inf).
      {"NaN beside -inf", {kNaN, -kInf, -kInf}, {1, 0, 0}},
      // Two classes take one exp (SumLanes): every case of which logit is the larger, or none is.
      {"two classes, -inf second", {1, -kInf}, {0.5, 0.5}},
      {"two classes, -inf first", {-kInf, 1}, {1, 0}},
      {"two classes, both -inf", {-kInf, -kInf}, {0, 1}},
      {"two classes, equal", {2, 2}, {0.3, 0.7}},
      {"two classes, +inf second", {1, kInf}, {0.5, 0.5}},
      {"two classes, +inf first", {kInf, -kInf}, {1, 0}},
      {"two classes, NaN first", {kNaN, 1}, {0, 1}},
      {"two classes, NaN second", {1, kNaN}, {0, 1}},
      {"two classes, NaN and -inf", {kNaN, -kInf}, {1, 0}},
  };
  for (xent_dtype dtype : {XENT_FLOAT32, XENT_FLOAT64, XENT_FLOAT16, XENT_BFLOAT16})
    for (const S& s : rows) {
      if (dtype != XENT_FLOAT32 && dtype != XENT_FLOAT64 && std::string(s.name).find("huge") != std::string::npos)
        continue;  // beyond the 16-bit range
      SCOPED_TRACE(s.name);
      const int64_t C = static_cast<int64_t>(s.x.size());
      // The special row sits between ordinary rows, which must stay unaffected: row 1 of 3 contiguous rows
      // (row kernel), row 1 of 20 with the class axis first (lane kernel), and row 9 of 20 contiguous short rows
      // (lane kernel, gathered into a column tile with the rows around it).
      Case c{.dtype = dtype, .labels_shape = {3, C}, .logits_shape = {3, C}};
      c.edit = [&](Tensor& labels, Tensor& logits) {
        for (int64_t j = 0; j < C; ++j) logits.set(C + j, s.x[j]), labels.set(C + j, s.y[j]);
      };
      run_case(c);
      Case lanes{.dtype = dtype, .labels_shape = {C, 20}, .logits_shape = {C, 20}, .axis = 0};
      lanes.edit = [&](Tensor& labels, Tensor& logits) {
        for (int64_t j = 0; j < C; ++j) logits.set(j * 20 + 1, s.x[j]), labels.set(j * 20 + 1, s.y[j]);
      };
      run_case(lanes);
      Case tiled{.dtype = dtype, .labels_shape = {20, C}, .logits_shape = {20, C}};
      tiled.edit = [&](Tensor& labels, Tensor& logits) {
        for (int64_t j = 0; j < C; ++j) logits.set(9 * C + j, s.x[j]), labels.set(9 * C + j, s.y[j]);
      };
      run_case(tiled);
    }
}

// Long contiguous rows (row kernel, full vectors and a partial last one, one or several blocks; C = 96, 1000,
// 4099): −inf logits with label 0 scattered through a row of finite ones (the answer is finite, y = 0 must add 0
// where 0·−inf is NaN), the same with label mass on one −inf (+inf), a NaN label, and an ordinary row beside them.
TEST(Xent, MaskedLogitsInLongRows) {
  for (int64_t C : {96, 1000, 4099}) {
    for (xent_dtype dtype : kAllDtypes) {
      Case c{.dtype = dtype, .labels_shape = {4, C}, .logits_shape = {4, C}};
      c.edit = [&](Tensor& labels, Tensor& logits) {
        for (int64_t j = 1; j < C; j += 3) {
          for (int64_t row : {0, 1}) logits.set(row * C + j, -kInf), labels.set(row * C + j, 0);
        }
        labels.set(C + 1 + 3 * (C / 6), 0.1);  // on one of row 1's −inf logits
        labels.set(2 * C + C / 3, kNaN);
      };
      run_case(c);
    }
  }
}

// Rows up to 65536 classes keep the forward's exps for their gradients, relative to each block's own max
// (src/row_kernel-inl.h, KeptExps): whole blocks of −inf (block 0, block 1 of 1024 or 2048 classes), and a block
// of −inf beside logits of −1e30 (exp(0 − r) would overflow there).
TEST(Xent, KeptExpsAcrossBlocks) {
  const int64_t C = 5000;
  for (xent_dtype dtype : {XENT_FLOAT32, XENT_FLOAT64}) {
    Case c{.dtype = dtype, .labels_shape = {3, C}, .logits_shape = {3, C}};
    c.edit = [&](Tensor& labels, Tensor& logits) {
      for (int64_t j = 0; j < 2048; ++j) {
        for (int64_t row : {0, 2}) logits.set(row * C + j, -kInf), labels.set(row * C + j, 0);
        logits.set(C + 2048 + j, -kInf), labels.set(C + 2048 + j, 0);
      }
      for (int64_t j = 2048; j < C; ++j) logits.set(2 * C + j, -1e30 + logits.get(2 * C + j));
    };
    run_case(c);
  }
}

// Rows of more than 64 classes computed one per lane (class axis first) merge their blocks of 64 classes in double
// vectors (src/lane_kernel-inl.h, MergeLanes): each special lane sits among ordinary ones, with a whole block of
// −inf first, in the middle, last, or everywhere, label mass on a block of −inf, a NaN in one block, and huge
// logits of either sign in different blocks (float16: 6e4). 200 classes are staged, 1000 swept (LaneSweep);
// contiguous rows of 100 and 128 classes go through ShortRows (full groups) and LaneRows (the last rows).
TEST(Xent, SpecialValuesAcrossLaneBlocks) {
  const int64_t lanes = 20;
  for (const auto& [classes, class_axis] : {std::pair<int64_t, int>{200, 0}, {1000, 0}, {100, 1}, {128, 1}}) {
    const int64_t C = classes;
    const int axis = class_axis;
    for (xent_dtype dtype : kAllDtypes) {
      const Real huge = dtype == XENT_FLOAT16 ? 6e4 : 3e38;
      Case c{.dtype = dtype, .labels_shape = {C, lanes}, .logits_shape = {C, lanes}, .axis = 0};
      if (axis == 1) c.labels_shape = c.logits_shape = {lanes, C}, c.axis = 1;
      c.edit = [&](Tensor& labels, Tensor& logits) {
        const auto set = [&](int64_t lane, int64_t j, Real x, Real y) {
          const int64_t at = axis == 0 ? j * lanes + lane : lane * C + j;
          logits.set(at, x), labels.set(at, y);
        };
        for (int64_t j = 0; j < 64; ++j) set(1, j, -kInf, 0);
        const int64_t second_block_end = std::min<int64_t>(128, C);
        for (int64_t j = 64; j < second_block_end; ++j) set(2, j, -kInf, 0);
        for (int64_t j = 128; j < C; ++j) set(3, j, -kInf, 0);
        for (int64_t j = 0; j < C; ++j) set(4, j, -kInf, 0);
        for (int64_t j = 0; j < C; ++j) set(5, j, -kInf, j == 7 ? 1 : 0);
        for (int64_t j = 64; j < second_block_end; ++j) set(6, j, -kInf, 0.01);
        set(7, std::min<int64_t>(100, C - 1), kNaN, 0);
        set(8, 10, huge, 0.5), set(8, std::min<int64_t>(150, C - 1), -huge, 0.5);
        set(9, C - 10, huge, 1);
        set(10, 3, -huge, 1);
      };
      run_case(c);
    }
  }
}

TEST(Xent, HugeLogitsGiveFiniteExactLoss) {
  const float logits[] = {3e38f, 0.0f}, labels[] = {0, 1};
  float loss[1];
  softmax_cross_entropy({labels, {1, 2}}, {logits, {1, 2}}, {loss, {1}});
  EXPECT_EQ(loss[0], 3e38f);
}

TEST(Xent, NanStaysInItsRow) {
  float logits[] = {1, 2, std::nanf(""), 0, 3, 1}, labels[] = {0, 1, 0, 0, 1, 0};
  float loss[2];
  softmax_cross_entropy({labels, {2, 3}}, {logits, {2, 3}}, {loss, {2}});
  EXPECT_TRUE(std::isnan(loss[0]));
  EXPECT_NEAR(loss[1], std::log(std::exp(0.f) + std::exp(3.f) + std::exp(1.f)) - 3, 1e-6);
}

TEST(Xent, ExactGradientForUnnormalisedLabels) {
  // One class, labels [[-1],[0],[1],[1]]: loss 0 and gradient 0 everywhere (TensorFlow returns [[2],[1],[0],[0]]).
  const float logits[] = {0.5f, -2, 3, 7}, labels[] = {-1, 0, 1, 1};
  float loss[4], gx[4], gy[4];
  softmax_cross_entropy_grad({labels, {4, 1}}, {logits, {4, 1}},
                             {.loss = View(loss, {4}), .grad_logits = View(gx, {4, 1}), .grad_labels = View(gy, {4, 1})});
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(loss[i], 0) << i;
    EXPECT_EQ(gx[i], 0) << i;
    EXPECT_EQ(gy[i], 0) << i;  // logsumexp of one logit is that logit
  }
}

TEST(Xent, Float16LongRowOfZerosIsLogC) {
  // 100 000 classes in float16: the sum (100 000) exceeds float16's range, the result log(100 000) does not.
  const int64_t C = 100000;
  std::vector<float16> logits(C, float16{0}), labels(C, float16{0}), gx(C);
  labels[123] = to_float16(1.0f);
  float16 loss;
  softmax_cross_entropy_grad({labels.data(), {C}}, {logits.data(), {C}},
                             {.loss = View(&loss, {}), .grad_logits = View(gx.data(), {C})});
  EXPECT_EQ(to_float(loss), to_float(to_float16(std::log(100000.0))));
  EXPECT_EQ(to_float(gx[0]), to_float(to_float16(1e-5)));
  EXPECT_EQ(to_float(gx[123]), to_float(to_float16(1e-5 - 1)));
}

// The accuracy bound stated in xent.h: float32 rows of 32 000 classes, logits of scale 8.
TEST(Xent, Float32AccuracyOnLongRows) {
  const int64_t rows = 32, C = 32000;
  Tensor logits(XENT_FLOAT32, {rows, C}), labels(XENT_FLOAT32, {rows, C}), loss(XENT_FLOAT32, {rows});
  std::mt19937 rng(7);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  for (int64_t i = 0; i < rows * C; ++i) logits.set(i, 8 * normal(rng)), labels.set(i, uniform(rng) < 0.5 ? 0 : uniform(rng));
  xent_tensor x = logits.view(), y = labels.view(), l = loss.view();
  expect_ok(xent_softmax_cross_entropy(&y, &x, -1, &l));
  const Reference ref = reference(labels.dense(), logits.dense(), -1, {});
  Real worst = 0;
  for (int64_t r = 0; r < rows; ++r)
    worst = std::max(worst, std::fabs(loss.get(r) - ref.loss.value[r]) / std::fabs(ref.loss.value[r]));
  const Real eps = std::ldexp(Real{1}, -23);
  std::cout << "float32, 32000 classes, scale 8: max relative loss error " << static_cast<double>(worst / eps)
            << " eps\n";
  EXPECT_LE(worst, 4 * eps);
}

// Every dtype on shapes with the class axis 1, contiguous logits (padded with the others when pad_logits), labels
// and outputs contiguous, reversed (lane stride −1) or padded, on one and two threads.
void run_axis1_layouts(const std::vector<std::vector<int64_t>>& shapes, bool pad_logits) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (xent_dtype dtype : kAllDtypes)
      for (const auto& shape : shapes)
        for (Layout other : {Layout::kContiguous, Layout::kReversed, Layout::kPadded})
          run_case({.dtype = dtype, .labels_shape = shape, .logits_shape = shape, .axis = 1,
                    .logits_layout = pad_logits && other == Layout::kPadded ? other : Layout::kContiguous,
                    .labels_layout = other, .out_layout = other});
  }
  set_num_threads(0);
}

// Contiguous lanes with strided classes (NCHW) go through stages: runs of up to 4 KiB per class of the logits
// copied into a buffer, labels read and gradients written in place (src/kernels.cc, StageLanes). For every dtype
// one or more full stages (float32: 1024, 512 and 128 lanes for these class counts), a partial last stage and a
// partial last group, with labels and outputs contiguous or not (reversed: lane stride −1, or padded), on one and
// two threads. A last group of
// a few lanes runs on a narrower vector (NarrowestLaneRows), masked to its lanes where they are contiguous: with
// 16 float lanes 2610 ends in 2 (128 bits), 1062 in 6 (256 bits), 1100 and 300 in 12 (512 bits).
TEST(Xent, StagedLanes) { run_axis1_layouts({{2, 21, 2610}, {3, 40, 1100}, {1, 130, 300}, {1, 9, 1062}}, false); }

// Rows of more classes than a stage holds, lanes contiguous, go through the lane kernel block-major (src/kernels.cc,
// LaneSweep): every group of a work item's block of classes, then the next block; forward, then the gradients.
// A partial last group (49, 20 and 22 lanes: with 16 float lanes the last 1, 4 or 6 on a narrower vector), several
// work items (300 lanes), labels and outputs contiguous or not, on one and two threads.
TEST(Xent, SweptLanes) { run_axis1_layouts({{2, 1000, 49}, {1, 800, 300}, {3, 1500, 20}, {2, 300, 22}}, true); }

// Contiguous short rows of 2 MiB and more are copied a work item at a time before they are gathered (src/kernels.cc,
// CopyShortRows; float64 on x86), float rows of that size transposed in place: a partial last work item and group,
// labels copied or read in place (reversed, padded), outputs strided, on one and two threads; 4 classes are below
// the copy's minimum.
TEST(Xent, CopiedShortRows) {
  const std::vector<std::pair<xent_dtype, std::vector<int64_t>>> shapes = {
      {XENT_FLOAT32, {52429, 10}}, {XENT_FLOAT32, {2, 8195, 32}}, {XENT_FLOAT64, {37451, 7}},
      {XENT_FLOAT64, {2, 4099, 32}}, {XENT_FLOAT32, {131075, 4}}};
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& [dtype, shape] : shapes)
      for (Layout other : {Layout::kContiguous, Layout::kReversed, Layout::kPadded})
        run_case({.dtype = dtype, .labels_shape = shape, .logits_shape = shape, .logits_layout = Layout::kContiguous,
                  .labels_layout = other, .out_layout = other});
  }
  set_num_threads(0);
}

// Every tensor ends a page, and the next page is inaccessible: short rows read as vectors (a group's rows loaded
// whole, or transposed in registers, LaneRows' fill_tile) must not read a byte past the last row, nor gradients
// write one. Rows contiguous and with gaps between them, 1 to 33 classes and some up to 129 (ShortRows' limit and
// past it), groups full and partial for 4, 8 and 16 lanes. (Elsewhere the tensors' buffers have slack after the
// last element, where ASan sees nothing.)
TEST(Xent, NothingReadOrWrittenPastTheEnd) {
  std::vector<int64_t> classes;
  for (int64_t C = 1; C <= 33; ++C) classes.push_back(C);
  for (int64_t C : {40, 47, 48, 63, 64, 65, 100, 127, 128, 129}) classes.push_back(C);
  for (xent_dtype dtype : kAllDtypes)
    for (int64_t C : classes)
      for (int64_t rows : {8, 16, 21, 40})
        for (Layout layout : {Layout::kContiguous, Layout::kPadded})
          run_case({.dtype = dtype, .labels_shape = {rows, C}, .logits_shape = {rows, C}, .logits_layout = layout,
                    .labels_layout = layout, .out_layout = layout, .page_end = true, .seed = uint32_t(C)});
}

// The machinery of the test above: one element past a PageEndCopy faults.
TEST(Xent, PageEndCopyFaultsPastTheEnd) {
  Tensor t(XENT_FLOAT32, {3, 5}, Layout::kPadded);
  t.set(14, 7);
  PageEndCopy copy(t);
  const float* last = static_cast<const float*>(copy.view().data) + t.offset(14);
  EXPECT_EQ(*last, 7);
  EXPECT_DEATH({ [[maybe_unused]] volatile float past = last[1]; }, "");
}

// Rows split across threads (1 × 300 000, 3 × 200 000) and rows shared among threads give the reference result.
TEST(Xent, ThreadsAndSplitRows) {
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    set_num_threads(threads);
    run_case({.labels_shape = {1, 300000}, .logits_shape = {1, 300000}});
    run_case({.dtype = XENT_BFLOAT16, .labels_shape = {3, 200000}, .logits_shape = {3, 200000}});
    run_case({.labels_shape = {1, 300000}, .logits_shape = {1, 300000}, .logits_layout = Layout::kReversed});
    run_case({.labels_shape = {257, 301}, .logits_shape = {257, 301}});
    run_case({.labels_shape = {4099, 10}, .logits_shape = {4099, 10}});
    run_case({.dtype = XENT_FLOAT64, .labels_shape = {3, 7, 40, 41}, .logits_shape = {3, 7, 40, 41}, .axis = 1});
  }
  set_num_threads(0);
}

// Runs body once on each SIMD target compiled into the library and supported by this CPU, then restores the
// library's own choice.
void for_each_compiled_target(const std::function<void()>& body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

// Each kernel path (src/paths.h) is chosen for a shape made for it, on every SIMD target compiled in where the path
// can serve the dtype, and gives the reference's results there: a moved threshold fails here instead of silently
// leaving a path untested.
TEST(Xent, EachKernelPathIsChosenAndMatchesTheReference) {
  using internal::KernelPath;
  struct PathCase {
    KernelPath path;
    Case c;
    int threads;
  };
  const PathCase cases[] = {
      {KernelPath::kStagedLanes, {.labels_shape = {2, 21, 300}, .logits_shape = {2, 21, 300}, .axis = 1}, 1},
      {KernelPath::kTinyRows, {.labels_shape = {64, 3}, .logits_shape = {64, 3}}, 1},
      {KernelPath::kShortRows, {.labels_shape = {64, 10}, .logits_shape = {64, 10}}, 1},
      {KernelPath::kCopiedLanes, {.dtype = XENT_FLOAT64, .labels_shape = {26300, 10}, .logits_shape = {26300, 10}}, 1},
      {KernelPath::kSweptLanes, {.labels_shape = {2, 1000, 49}, .logits_shape = {2, 1000, 49}, .axis = 1}, 1},
      {KernelPath::kLaneRows, {.labels_shape = {40, 10}, .logits_shape = {40, 10}, .logits_layout = Layout::kPadded}, 1},
      {KernelPath::kSplitRows, {.labels_shape = {1, 300000}, .logits_shape = {1, 300000}}, 2},
      {KernelPath::kRows, {.labels_shape = {8, 1000}, .logits_shape = {8, 1000}}, 1},
  };
  int checked[std::size(internal::kAllPaths)] = {};
  for_each_compiled_target([&] {
    for (xent_dtype dtype : kAllDtypes) {
      const internal::TargetTraits traits = internal::target_traits(dtype);
      for (PathCase pc : cases) {
        if (pc.c.dtype == XENT_FLOAT64 && dtype != XENT_FLOAT64) continue;  // cases made for one dtype
        pc.c.dtype = dtype;
        // Paths that serve only some dtypes on some targets: ShortRows needs vectors that transpose, the copied
        // lanes a dtype that would otherwise be gathered.
        if (pc.path == KernelPath::kShortRows && !traits.transposable) continue;
        if (pc.path == KernelPath::kCopiedLanes && (traits.narrow || traits.transposable)) continue;
        SCOPED_TRACE(std::string(internal::path_name(pc.path)) + ", " + describe(pc.c));
        Tensor logits(dtype, pc.c.logits_shape, pc.c.logits_layout), labels(dtype, pc.c.labels_shape);
        Tensor gx(dtype, pc.c.logits_shape), gy(dtype, pc.c.labels_shape);
        xent_tensor xv = logits.view(), yv = labels.view(), gxv = gx.view(), gyv = gy.view();
        internal::KernelPath chosen{};
        ASSERT_EQ(internal::chosen_path({.labels = &yv, .logits = &xv, .axis = pc.c.axis, .grad_logits = &gxv,
                                         .grad_labels = &gyv},
                                        pc.threads, &chosen),
                  XENT_OK);
        EXPECT_STREQ(internal::path_name(chosen), internal::path_name(pc.path));
        set_num_threads(pc.threads);
        run_case(pc.c);
        set_num_threads(0);
        ++checked[static_cast<int>(pc.path)];
      }
    }
  });
  for (KernelPath path : internal::kAllPaths)
    EXPECT_GT(checked[static_cast<int>(path)], 0) << internal::path_name(path) << " was not checked on any target";
}

// Gradients of broadcast float16/bfloat16 inputs are written in float to a temporary, on the row kernel only
// (TargetTraits::rows_only); float32 takes its usual path.
TEST(Xent, BroadcastHalfGradientsRunOnTheRowKernel) {
  for (xent_dtype dtype : kAllDtypes) {
    Tensor logits(dtype, {64, 10}), labels(dtype, {1, 10}), gx(dtype, {64, 10}), gy(dtype, {1, 10});
    xent_tensor xv = logits.view(), yv = labels.view(), gxv = gx.view(), gyv = gy.view();
    internal::KernelPath path{};
    ASSERT_EQ(internal::chosen_path({.labels = &yv, .logits = &xv, .axis = -1, .grad_logits = &gxv, .grad_labels = &gyv},
                                    1, &path),
              XENT_OK);
    const bool narrow = dtype == XENT_FLOAT16 || dtype == XENT_BFLOAT16;
    EXPECT_EQ(path == internal::KernelPath::kRows, narrow) << xent_dtype_name(dtype) << ": " << internal::path_name(path);
    run_case({.dtype = dtype, .labels_shape = {1, 10}, .logits_shape = {64, 10}});
  }
}

// The same inputs give the same bits with 1, 2, 3 and 4 threads, for every dtype and every path: a row's split
// into pieces and every sum's order are fixed by the shapes, never by the thread count.
TEST(Xent, SameBitsOnOneToFourThreads) {
  const std::vector<std::pair<std::vector<int64_t>, int>> shapes = {
      {{1, 1 << 20}, -1}, {{3, 70000}, -1}, {{257, 301}, -1}, {{4099, 10}, -1},  {{2050, 3}, -1},
      {{3, 7, 40, 41}, 1}, {{2, 21, 300}, 1}, {{2, 1000, 49}, 1}};
  for (xent_dtype dtype : kAllDtypes) {
    for (const auto& shape_axis : shapes) {
      const std::vector<int64_t>& shape = shape_axis.first;  // not a structured binding: a lambda uses them, which
      const int axis = shape_axis.second;                     // clang 14 (the sanitizer build) does not allow
      SCOPED_TRACE(std::string(xent_dtype_name(dtype)) + " " + shape_of(shape));
      std::mt19937 rng(7);
      std::normal_distribution<double> normal;
      Tensor logits(dtype, shape), labels(dtype, shape);
      for (int64_t i = 0; i < logits.size(); ++i) logits.set(i, 4 * normal(rng)), labels.set(i, std::fabs(normal(rng)));
      std::vector<int64_t> loss_shape = shape, targets;
      loss_shape.erase(loss_shape.begin() + (axis < 0 ? static_cast<int>(shape.size()) + axis : axis));
      const int64_t rows = count(loss_shape), C = shape[axis < 0 ? shape.size() + axis : axis];
      for (int64_t i = 0; i < rows; ++i) targets.push_back(i % 11 == 0 ? -100 : (i * 7919) % C);
      Tensor weight(dtype, {C});
      for (int64_t j = 0; j < C; ++j) weight.set(j, 0.5 + (j % 3) * 0.25);
      // Dense op with both gradients; class indices with options and a MEAN reduction.
      const auto results = [&] {
        Tensor loss(dtype, loss_shape), gx(dtype, shape), gy(dtype, shape), mean(dtype, {}), gs(dtype, shape);
        xent_tensor xv = logits.view(), yv = labels.view(), lv = loss.view(), gxv = gx.view(), gyv = gy.view(),
                    mv = mean.view(), gsv = gs.view(), wv = weight.view();
        expect_ok(xent_softmax_cross_entropy_grad(&yv, &xv, axis, nullptr, &lv, &gxv, &gyv));
        xent_tensor tv = xent_make_tensor(targets.data(), XENT_INT64, static_cast<int32_t>(loss_shape.size()),
                                          loss_shape.data(), nullptr);
        xent_loss_options o = xent_default_loss_options();
        o.weight = &wv, o.label_smoothing = 0.1, o.z_loss = 1e-3;
        expect_ok(xent_cross_entropy_grad(&xv, &tv, axis, &o, nullptr, &mv, &gsv));
        std::vector<unsigned char> bytes;
        for (const Tensor* t : {&loss, &gx, &gy, &mean, &gs}) {
          const std::vector<unsigned char> b = t->bytes();
          bytes.insert(bytes.end(), b.begin(), b.end());
        }
        return bytes;
      };
      set_num_threads(1);
      const std::vector<unsigned char> one = results();
      for (int threads : {2, 3, 4}) {
        set_num_threads(threads);
        EXPECT_TRUE(results() == one) << threads << " threads gave other bits than one";
      }
      set_num_threads(0);
    }
  }
}

// A row's results do not depend on its place: the full groups of short rows (TinyRows, ShortRows) and the rows of
// a partial last group (LaneRows) take the same steps, so one row gives the same bits in either. 37 rows put the
// last 5 (4 lanes: 1) in a partial group; the last row is a copy of the first. Dense and class-index labels, every
// SIMD target compiled in and supported here.
TEST(Xent, RowResultsIndependentOfTheirGroup) {
  const int64_t rows = 37;
  for_each_compiled_target([&] {
    for (int64_t C : {2, 3, 4, 5, 10, 20, 32, 33, 48, 64, 65, 100, 128, 129}) {
      SCOPED_TRACE("C " + std::to_string(C));
      std::vector<float> x(rows * C), y(rows * C), loss(rows), gx(rows * C), gy(rows * C);
      std::vector<int64_t> targets(rows);
      std::mt19937 rng(static_cast<uint32_t>(C));
      std::normal_distribution<float> normal;
      for (int64_t i = 0; i < rows * C; ++i) x[i] = 4 * normal(rng), y[i] = static_cast<float>(i % 7) * 0.1f;
      for (int64_t i = 0; i < rows; ++i) targets[i] = (i * 5) % C;
      std::copy_n(x.begin(), C, x.end() - C), std::copy_n(y.begin(), C, y.end() - C), targets[rows - 1] = targets[0];
      const auto same_as_first = [&](const std::vector<float>& v, int64_t n) {
        return std::memcmp(v.data(), v.data() + (rows - 1) * n, n * sizeof(float)) == 0;
      };
      softmax_cross_entropy_grad({y.data(), {rows, C}}, {x.data(), {rows, C}},
                                 {.loss = View(loss.data(), {rows}), .grad_logits = View(gx.data(), {rows, C}),
                                  .grad_labels = View(gy.data(), {rows, C})});
      EXPECT_TRUE(same_as_first(loss, 1) && same_as_first(gx, C) && same_as_first(gy, C));
      sparse_softmax_cross_entropy_grad({targets.data(), {rows}}, {x.data(), {rows, C}},
                                        {.loss = View(loss.data(), {rows}), .grad_logits = View(gx.data(), {rows, C})});
      EXPECT_TRUE(same_as_first(loss, 1) && same_as_first(gx, C)) << "class-index targets";
    }
  });
}

void streamed_equals_cached(int64_t rows, int64_t C) {
  SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(C));
  const auto page_aligned = [](std::vector<float>& storage) {
    const auto address = reinterpret_cast<uintptr_t>(storage.data());
    return storage.data() + ((4096 - address % 4096) % 4096) / sizeof(float);
  };
  for (int64_t offset : {0, 1, 513, 515}) {
    SCOPED_TRACE("offset " + std::to_string(offset));
    const int64_t size = rows * C + 1024 + 516;
    std::vector<float> xs(size), ys(size), gxs(size), gys(size), hxs(size), hys(size);
    float *x = page_aligned(xs), *y = page_aligned(ys), *gx = page_aligned(gxs) + offset, *gy = page_aligned(gys) + offset,
          *hx = page_aligned(hxs) + offset, *hy = page_aligned(hys) + offset;
    std::mt19937 rng(11);
    std::normal_distribution<float> normal;
    for (int64_t i = 0; i < rows * C; ++i) x[i] = 4 * normal(rng), y[i] = (i % 7) * 0.1f;
    softmax_cross_entropy_grad({y, {rows, C}}, {x, {rows, C}},
                               {.grad_logits = View(gx, {rows, C}), .grad_labels = View(gy, {rows, C})});
    for (int64_t half : {0, 1}) {
      const int64_t begin = half * rows / 2, n = rows / 2;
      softmax_cross_entropy_grad({y + begin * C, {n, C}}, {x + begin * C, {n, C}},
                                 {.grad_logits = View(hx + begin * C, {n, C}), .grad_labels = View(hy + begin * C, {n, C})});
    }
    EXPECT_TRUE(std::equal(gx, gx + rows * C, hx));
    EXPECT_TRUE(std::equal(gy, gy + rows * C, hy));
    // Class-index targets: the target's element of each streamed row is written after the streams (kernels.cc).
    std::vector<int64_t> targets(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) targets[i] = (i * 7) % C;
    sparse_softmax_cross_entropy_grad({targets.data(), {rows}}, {x, {rows, C}}, {.grad_logits = View(gx, {rows, C})});
    for (int64_t half : {0, 1}) {
      const int64_t begin = half * rows / 2, n = rows / 2;
      sparse_softmax_cross_entropy_grad({targets.data() + begin, {n}}, {x + begin * C, {n, C}},
                                        {.grad_logits = View(hx + begin * C, {n, C})});
    }
    EXPECT_TRUE(std::equal(gx, gx + rows * C, hx)) << "class-index targets";
  }
}

// Gradients of 64 MiB and more are written with non-temporal stores (after a partial vector that aligns them,
// grad_logits and grad_labels in alternating chunks), unless a store would land 1..2047 bytes ahead of an input
// modulo 4 KiB (src/kernels.cc, StreamWithoutAliasing): then with regular stores. Either way the result must
// equal, bit for bit, the same rows computed in halves (each below the threshold). The buffers start on a page,
// so the gradients' offsets fix the path: 0 and 513/515 floats (2052/2060 bytes) ahead stream, 1 float does not.
// The same for class-index targets (grad_logits only).
TEST(Xent, StreamedGradientsEqualCachedOnes) {
  // 67.2 MB of float32 gradient: long rows (GradientRange), and rows of 2 classes (TinyRows).
  for (const auto& [rows, C] : {std::pair<int64_t, int64_t>{4100, 4100}, {8405000, 2}})
    streamed_equals_cached(rows, C);
}

// Every SIMD target compiled into the library and supported by this CPU, through the public API.
TEST(Xent, EveryCompiledTarget) {
  for_each_compiled_target([] {
    for (xent_dtype dtype : kAllDtypes) {
      for (int64_t C : {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 2049})
        run_case({.dtype = dtype, .labels_shape = {2, C}, .logits_shape = {2, C}});
      run_case({.dtype = dtype, .labels_shape = {3, 1}, .logits_shape = {3, 4}, .logits_layout = Layout::kPadded});
      for (int64_t C : {2, 3, 4, 5, 7, 10, 16, 17, 32, 33, 48, 64, 65, 100, 128})
        run_case({.dtype = dtype, .labels_shape = {40, C}, .logits_shape = {40, C}});
      run_case({.dtype = dtype, .labels_shape = {70, 21}, .logits_shape = {70, 21}, .axis = 0});
      run_case({.dtype = dtype, .labels_shape = {5, 3, 9}, .logits_shape = {5, 3, 9}, .axis = 1,
                .logits_layout = Layout::kTransposed});
      // Class axis 1, a run's last lanes on a narrower vector, masked where contiguous (NarrowestLaneRows), staged
      // (9 classes) and swept (800), each tensor ending a page: nothing past the last lane read or written.
      for (const auto& shape : {std::vector<int64_t>{2, 9, 49}, std::vector<int64_t>{1, 800, 22}})
        run_case({.dtype = dtype, .labels_shape = shape, .logits_shape = shape, .axis = 1, .page_end = true});
    }
  });
}

}  // namespace
}  // namespace xent::test
