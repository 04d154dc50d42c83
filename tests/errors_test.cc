// errors_test.cc — every validation error: its status, a message naming the argument, expected and received value,
// and no write to any output.
#include <gtest/gtest.h>

#include <new>
#include <stdexcept>

#include "src/faults.h"
#include "tests/test_util.h"
#include "xent/xent.hpp"

namespace xent::test {
namespace {

// Runs the grad entry point and expects `status` with every `needles` substring in the message.
struct Call {
  Tensor labels, logits;
  int64_t axis = -1;
  std::optional<Tensor> grad_loss, loss, grad_logits, grad_labels;
};

void expect_error(Call& c, xent_status status, std::initializer_list<const char*> needles) {
  xent_tensor y = c.labels.view(), x = c.logits.view();
  std::optional<xent_tensor> g, l, gx, gy;
  if (c.grad_loss) g = c.grad_loss->view();
  if (c.loss) l = c.loss->view();
  if (c.grad_logits) gx = c.grad_logits->view();
  if (c.grad_labels) gy = c.grad_labels->view();
  std::vector<std::vector<unsigned char>> before;
  for (auto* t : {&c.loss, &c.grad_logits, &c.grad_labels}) before.push_back(*t ? (*t)->bytes() : std::vector<unsigned char>{});
  const xent_status s = xent_softmax_cross_entropy_grad(&y, &x, c.axis, g ? &*g : nullptr, l ? &*l : nullptr,
                                                        gx ? &*gx : nullptr, gy ? &*gy : nullptr);
  EXPECT_EQ(s, status) << xent_status_name(s) << ": " << xent_last_error_message();
  const std::string message = xent_last_error_message();
  for (const char* n : needles) EXPECT_NE(message.find(n), std::string::npos) << "'" << n << "' not in: " << message;
  int i = 0;
  for (auto* t : {&c.loss, &c.grad_logits, &c.grad_labels}) {
    if (*t) EXPECT_TRUE((*t)->bytes() == before[i]) << "an output was written on error";
    ++i;
  }
}

Tensor f32(std::vector<int64_t> shape) { return Tensor(XENT_FLOAT32, std::move(shape)); }

TEST(Errors, ScalarLogits) {
  Call c{f32({}), f32({})};
  expect_error(c, XENT_INVALID_ARGUMENT, {"logits must have rank >= 1", "rank 0"});
}

TEST(Errors, NotBroadcastable) {
  Call c{f32({3, 4}), f32({2, 4})};
  expect_error(c, XENT_INVALID_ARGUMENT, {"logits and labels must be broadcastable: logits_size=[2,4] labels_size=[3,4]"});
}

TEST(Errors, AxisOutOfRange) {
  for (int64_t axis : {2, -3, 100}) {
    Call c{f32({2, 4}), f32({2, 4}), axis};
    expect_error(c, XENT_INVALID_ARGUMENT, {"axis", std::to_string(axis).c_str(), "[-2, 2)"});
  }
}

TEST(Errors, DtypeMismatchNamesTheCast) {
  Call c{Tensor(XENT_FLOAT64, {2, 3}), f32({2, 3})};
  expect_error(c, XENT_INVALID_DTYPE, {"labels must have the same dtype as logits", "float64", "float32", "cast"});
  Call d{f32({2, 3}), f32({2, 3})};
  d.loss = Tensor(XENT_FLOAT16, {2});
  expect_error(d, XENT_INVALID_DTYPE, {"loss", "float16"});
}

TEST(Errors, UnknownDtype) {
  Call c{f32({2, 3}), f32({2, 3})};
  xent_tensor y = c.labels.view(), x = c.logits.view(), l = f32({2}).view();
  x.dtype = 42;
  EXPECT_EQ(xent_softmax_cross_entropy(&y, &x, -1, &l), XENT_INVALID_DTYPE);
  EXPECT_NE(std::string(xent_last_error_message()).find("unsupported dtype 42"), std::string::npos);
}

TEST(Errors, NoClasses) {
  Call c{f32({3, 0}), f32({3, 0})};
  expect_error(c, XENT_INVALID_ARGUMENT, {"at least one class", "[3,0]"});
}

TEST(Errors, WrongOutputShapes) {
  Call a{f32({2, 4}), f32({2, 4})};
  a.loss = f32({3});
  expect_error(a, XENT_INVALID_ARGUMENT, {"loss must have shape [2]", "received [3]"});
  Call b{f32({2, 4}), f32({2, 4})};
  b.grad_logits = f32({2, 5});
  expect_error(b, XENT_INVALID_ARGUMENT, {"grad_logits must have shape [2,4]", "received [2,5]"});
  Call c{f32({2, 1}), f32({2, 4})};
  c.grad_labels = f32({2, 4});
  expect_error(c, XENT_INVALID_ARGUMENT, {"grad_labels must have shape [2,1]"});
  Call d{f32({2, 4}), f32({2, 4})};
  d.grad_loss = f32({2, 1});
  expect_error(d, XENT_INVALID_ARGUMENT, {"grad_loss must have shape [2]"});
}

TEST(Errors, NullPointers) {
  Tensor x = f32({2, 3}), l = f32({2});
  xent_tensor xv = x.view(), lv = l.view();
  EXPECT_EQ(xent_softmax_cross_entropy(nullptr, &xv, -1, &lv), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("labels must not be NULL"), std::string::npos);
  EXPECT_EQ(xent_softmax_cross_entropy(&xv, &xv, -1, nullptr), XENT_INVALID_ARGUMENT);
  xent_tensor null_data = xv;
  null_data.data = nullptr;
  EXPECT_EQ(xent_softmax_cross_entropy(&null_data, &xv, -1, &lv), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("labels.data is NULL but labels has 6 elements"),
            std::string::npos);
}

TEST(Errors, BadRankAndNegativeSize) {
  Tensor x = f32({2, 3}), l = f32({2});
  xent_tensor xv = x.view(), lv = l.view(), bad = xv;
  bad.rank = 17;
  EXPECT_EQ(xent_softmax_cross_entropy(&xv, &bad, -1, &lv), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("logits has rank 17"), std::string::npos);
  bad = xv;
  bad.shape[1] = -3;
  EXPECT_EQ(xent_softmax_cross_entropy(&xv, &bad, -1, &lv), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("negative size -3"), std::string::npos);
}

TEST(Errors, OutputsMustNotOverlap) {
  // Output overlapping an input (the very same view would be the in-place opt-in; this one is shifted).
  Tensor x = f32({2, 3}), y = f32({2, 3});
  xent_tensor xv = x.view(), yv = y.view(), gx = x.view();
  gx.data = static_cast<float*>(gx.data) + 1;
  EXPECT_EQ(xent_softmax_cross_entropy_grad(&yv, &xv, -1, nullptr, nullptr, &gx, nullptr), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("grad_logits overlaps logits"), std::string::npos);
  // Two outputs sharing memory.
  Tensor g = f32({2, 3});
  xent_tensor g1 = g.view(), g2 = g.view();
  EXPECT_EQ(xent_softmax_cross_entropy_grad(&yv, &xv, -1, nullptr, nullptr, &g1, &g2), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("grad_logits overlaps grad_labels"), std::string::npos);
  // An output whose strides write one location twice.
  Tensor l = f32({2});
  xent_tensor lv = l.view();
  lv.strides[0] = 0;
  EXPECT_EQ(xent_softmax_cross_entropy(&yv, &xv, -1, &lv), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("loss has strides that make several elements share memory"),
            std::string::npos);
}

TEST(Errors, CppApiThrowsWithStatusAndMessage) {
  const float x[6] = {}, y[8] = {};
  float loss[2];
  try {
    softmax_cross_entropy({y, {2, 4}}, {x, {2, 3}}, {loss, {2}});
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XENT_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("logits_size=[2,3] labels_size=[2,4]"), std::string::npos);
  }
}

TEST(Errors, MessageClearedBySuccess) {
  Call c{f32({3, 4}), f32({2, 4})};
  expect_error(c, XENT_INVALID_ARGUMENT, {"broadcastable"});
  Tensor x = f32({2, 3}), y = f32({2, 3}), l = f32({2});
  xent_tensor xv = x.view(), yv = y.view(), lv = l.view();
  expect_ok(xent_softmax_cross_entropy(&yv, &xv, -1, &lv));
  EXPECT_STREQ(xent_last_error_message(), "");
}

TEST(Errors, LossShapeQuery) {
  Tensor x = f32({5, 3, 9}), y = f32({1, 3, 1});
  xent_tensor xv = x.view(), yv = y.view();
  int32_t rank;
  int64_t shape[XENT_MAX_RANK];
  expect_ok(xent_loss_shape(&yv, &xv, 1, &rank, shape));
  ASSERT_EQ(rank, 2);
  EXPECT_EQ(shape[0], 5);
  EXPECT_EQ(shape[1], 9);
}

// Class-index labels: the loss has logits' shape without the class axis; a reduction makes it a scalar.
TEST(Errors, LossShapeOfClassIndicesAndReductions) {
  Tensor x = f32({4, 6, 5});
  std::vector<int64_t> targets(20, 0);
  const int64_t target_shape[] = {4, 5}, bad_shape[] = {4, 6};
  xent_tensor xv = x.view(), tv = xent_make_tensor(targets.data(), XENT_INT64, 2, target_shape, nullptr);
  int32_t rank = -1;
  int64_t shape[XENT_MAX_RANK];
  expect_ok(xent_loss_shape(&tv, &xv, 1, &rank, shape));
  ASSERT_EQ(rank, 2);
  EXPECT_EQ(shape[0], 4);
  EXPECT_EQ(shape[1], 5);
  xent_loss_options o = xent_default_loss_options();
  for (int32_t reduction : {XENT_REDUCTION_NONE, XENT_REDUCTION_SUM, XENT_REDUCTION_MEAN}) {
    o.reduction = reduction;
    expect_ok(xent_cross_entropy_loss_shape(&xv, &tv, 1, &o, &rank, shape));
    EXPECT_EQ(rank, reduction == XENT_REDUCTION_NONE ? 2 : 0);
  }
  Tensor probabilities = f32({4, 6, 1});
  xent_tensor pv = probabilities.view();
  o.reduction = XENT_REDUCTION_NONE;
  expect_ok(xent_cross_entropy_loss_shape(&xv, &pv, 1, &o, &rank, shape));
  ASSERT_EQ(rank, 2);
  EXPECT_EQ(shape[1], 5);
  // The same checks as the ops: labels of the wrong shape, a bad reduction.
  std::vector<int32_t> bad(24, 0);
  xent_tensor bv = xent_make_tensor(bad.data(), XENT_INT32, 2, bad_shape, nullptr);
  EXPECT_EQ(xent_loss_shape(&bv, &xv, 1, &rank, shape), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("labels must have shape [4,5]"), std::string::npos)
      << xent_last_error_message();
  o.reduction = 7;
  EXPECT_EQ(xent_cross_entropy_loss_shape(&xv, &tv, 1, &o, &rank, shape), XENT_INVALID_ARGUMENT);
  EXPECT_EQ(xent_cross_entropy_loss_shape(&xv, &tv, 1, nullptr, &rank, shape), XENT_INVALID_ARGUMENT);
  // The values of class indices are the ops' to check (a shard of a vocabulary asks with indices into the whole
  // vocabulary): the queries give the shape, the op reports the index.
  o.reduction = XENT_REDUCTION_NONE;
  targets[7] = 6;
  expect_ok(xent_cross_entropy_loss_shape(&xv, &tv, 1, &o, &rank, shape));
  expect_ok(xent_loss_shape(&tv, &xv, 1, &rank, shape));
  std::vector<float> loss(20);
  const int64_t loss_shape[] = {4, 5};
  const xent_tensor lv = xent_make_tensor(loss.data(), XENT_FLOAT32, 2, loss_shape, nullptr);
  EXPECT_EQ(xent_cross_entropy(&xv, &tv, 1, &o, &lv), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("label value of 6 which is outside the valid range of [0, 6)"),
            std::string::npos)
      << xent_last_error_message();
}

// Whatever is thrown inside a call after validation becomes a status and a message, never an exception through
// the C ABI, and no output is written: allocation failures XENT_OUT_OF_MEMORY, anything else XENT_INTERNAL.
void throw_runtime_error(const char*) { throw std::runtime_error("injected failure"); }
void throw_bad_alloc(const char*) { throw std::bad_alloc(); }
void throw_length_error(const char*) { throw std::length_error("vector::reserve"); }
void throw_int(const char*) { throw 42; }

TEST(Errors, ExceptionsBecomeStatusesAndWriteNothing) {
  const struct {
    internal::FaultHook hook;
    xent_status status;
    const char* needle;
  } cases[] = {{throw_runtime_error, XENT_INTERNAL, "internal error in xent (please report it): injected failure"},
               {throw_bad_alloc, XENT_OUT_OF_MEMORY, "out of memory"},
               {throw_length_error, XENT_OUT_OF_MEMORY, "out of memory"},
               {throw_int, XENT_INTERNAL, "unknown type"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.needle);
    Call call{f32({3, 5}), f32({3, 5})};
    call.loss = f32({3});
    call.grad_logits = f32({3, 5});
    call.grad_labels = f32({3, 5});
    for (auto* t : {&*call.loss, &*call.grad_logits, &*call.grad_labels})
      for (int64_t i = 0; i < t->size(); ++i) t->set(i, 7);
    internal::set_fault_hook(c.hook);
    expect_error(call, c.status, {c.needle});
    // The other entry points too (sparse, options).
    std::vector<int64_t> targets(3, 0);
    const int64_t target_shape[] = {3};
    xent_tensor tv = xent_make_tensor(targets.data(), XENT_INT64, 1, target_shape, nullptr),
                xv = call.logits.view(), lv = call.loss->view();
    EXPECT_EQ(xent_sparse_softmax_cross_entropy(&tv, &xv, -1, &lv), c.status);
    const xent_loss_options o = xent_default_loss_options();
    Tensor scalar = f32({});
    xent_tensor sv = scalar.view();
    EXPECT_EQ(xent_cross_entropy(&xv, &tv, -1, &o, &sv), c.status);
    internal::set_fault_hook(nullptr);
    for (int64_t i = 0; i < call.loss->size(); ++i) EXPECT_EQ(call.loss->get(i), 7);
  }
  // And the next call works.
  Tensor x = f32({2, 3}), y = f32({2, 3}), l = f32({2});
  xent_tensor xv = x.view(), yv = y.view(), lv = l.view();
  expect_ok(xent_softmax_cross_entropy(&yv, &xv, -1, &lv));
}

// A stride whose offset in bytes overflows int64 is refused on every operand, INT64_MIN included (its magnitude is
// no int64: it used to pass the extent check and read wrapped addresses); on a dimension of size 1 it is never used.
TEST(Errors, StridesWhoseByteOffsetsOverflow) {
  std::vector<float> x(8, 0), y(8, 0), l(4, 0);
  std::vector<int64_t> t(4, 0);
  const int64_t shape[] = {4, 2}, rows[] = {4};
  for (const int64_t bad : {INT64_MIN, INT64_MIN + 1, INT64_MAX, INT64_MAX / 4}) {
    SCOPED_TRACE(bad);
    const int64_t strides[] = {2, bad}, row_strides[] = {bad};
    xent_tensor xv = xent_make_tensor(x.data(), XENT_FLOAT32, 2, shape, nullptr);
    xent_tensor yv = xent_make_tensor(y.data(), XENT_FLOAT32, 2, shape, nullptr);
    xent_tensor lv = xent_make_tensor(l.data(), XENT_FLOAT32, 1, rows, nullptr);
    xent_tensor bad_x = xent_make_tensor(x.data(), XENT_FLOAT32, 2, shape, strides);
    xent_tensor bad_y = xent_make_tensor(y.data(), XENT_FLOAT32, 2, shape, strides);
    xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, rows, row_strides);
    EXPECT_EQ(xent_softmax_cross_entropy(&yv, &bad_x, -1, &lv), XENT_INVALID_ARGUMENT);
    EXPECT_NE(std::string(xent_last_error_message()).find("logits has a stride of"), std::string::npos)
        << xent_last_error_message();
    EXPECT_EQ(xent_softmax_cross_entropy(&bad_y, &xv, -1, &lv), XENT_INVALID_ARGUMENT);
    EXPECT_EQ(xent_sparse_softmax_cross_entropy(&tv, &xv, -1, &lv), XENT_INVALID_ARGUMENT);
    EXPECT_NE(std::string(xent_last_error_message()).find("labels has a stride of"), std::string::npos)
        << xent_last_error_message();
  }
  // Size 1: the stride is not used.
  const int64_t one[] = {1, 2}, strides[] = {INT64_MIN, 1}, one_row[] = {1};
  xent_tensor xv = xent_make_tensor(x.data(), XENT_FLOAT32, 2, one, strides), yv = xv;
  yv.data = y.data();
  xent_tensor lv = xent_make_tensor(l.data(), XENT_FLOAT32, 1, one_row, nullptr);
  expect_ok(xent_softmax_cross_entropy(&yv, &xv, -1, &lv));
}

// A shape of no elements may hold any other dimension: [0, 5, INT64_MAX] has no rows, and nothing may form the
// product of its other dimensions (found by the fuzzer: the row-major strides of the broadcast shape overflowed, a
// signed overflow that UBSan reports). A class axis of 0 beside rows past int64 is an error naming the rows.
TEST(Errors, EmptyShapesWithHugeDimensions) {
  float x = 0, y = 0, l = 7, g = 7;
  int64_t t = 0;
  const int64_t shape[] = {0, 5, INT64_MAX}, rows[] = {0, 5};
  const int64_t huge_loss[] = {5, INT64_MAX};
  xent_tensor xv = xent_make_tensor(&x, XENT_FLOAT32, 3, shape, nullptr);
  xent_tensor yv = xent_make_tensor(&y, XENT_FLOAT32, 3, shape, nullptr);
  xent_tensor gv = xent_make_tensor(&g, XENT_FLOAT32, 3, shape, nullptr);
  xent_tensor lv = xent_make_tensor(&l, XENT_FLOAT32, 2, rows, nullptr);
  xent_tensor tv = xent_make_tensor(&t, XENT_INT64, 2, rows, nullptr);
  expect_ok(xent_softmax_cross_entropy_grad(&yv, &xv, -1, nullptr, &lv, &gv, nullptr));
  expect_ok(xent_sparse_softmax_cross_entropy(&tv, &xv, -1, &lv));
  EXPECT_EQ(l, 7.0f);
  EXPECT_EQ(g, 7.0f);
  xent_tensor loss_of_them = xent_make_tensor(&l, XENT_FLOAT32, 2, huge_loss, nullptr);
  EXPECT_EQ(xent_softmax_cross_entropy(&yv, &xv, 0, &loss_of_them), XENT_INVALID_ARGUMENT);  // classes: the 0
  EXPECT_NE(std::string(xent_last_error_message()).find("int64"), std::string::npos) << xent_last_error_message();
}

}  // namespace
}  // namespace xent::test
