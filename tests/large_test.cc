// large_test.cc — sizes past 2^31 and 2^32: element counts, byte offsets and strides that do not fit 32 bits, and a
// broadcast that makes a huge output from small inputs, each against its closed form. Buffers are anonymous
// mappings, so untouched pages cost nothing (the huge-stride views); a test whose memory the machine does not have
// available is skipped, saying so.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "xent/half.h"
#include "xent/xent.h"

namespace {

// Bytes of memory available now (MemAvailable).
int64_t available_bytes() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  int64_t kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %ld kB", &kb) == 1) break;
  std::fclose(f);
  return kb * 1024;
}

// An anonymous mapping of `bytes`, unmapped at scope exit: zero pages until written, or with `populate` every page
// allocated at once (one call instead of a page fault per 4 KiB of a buffer that will be written throughout).
struct Mapping {
  void* data = nullptr;
  size_t bytes;
  explicit Mapping(size_t n, bool populate = false) : bytes(n) {
    data = mmap(nullptr, n, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : MAP_NORESERVE), -1, 0);
    if (data == MAP_FAILED) data = nullptr;
  }
  ~Mapping() {
    if (data) munmap(data, bytes);
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

#define SKIP_UNLESS_AVAILABLE(bytes)                                                                     \
  if (available_bytes() < (bytes) + ((bytes) >> 2))                                                      \
  GTEST_SKIP() << "needs " << ((bytes) >> 20) << " MiB available, has " << (available_bytes() >> 20) << " MiB"

xent_loss_options unreduced() {
  xent_loss_options o = xent_default_loss_options();
  o.reduction = XENT_REDUCTION_NONE;
  return o;
}

// One row of 2^31 + 17 float16 classes, all 0 but 2 at the target past 2^31: loss log(C - 1 + e^2) - 2 (sparse and
// dense labels), and the target's gradient e^2 / S - 1, written in place.
TEST(Large, OneRowOfMoreThan2To31Classes) {
  const int64_t C = (int64_t{1} << 31) + 17, t = (int64_t{1} << 31) + 5;
  SKIP_UNLESS_AVAILABLE(2 * C * 2);
  Mapping logits(C * 2, true), labels(C * 2);
  ASSERT_TRUE(logits.data && labels.data);
  xent::float16* x = logits.as<xent::float16>();
  const double S = static_cast<double>(C - 1) + std::exp(2.0), want = std::log(S) - 2;
  for (bool sparse : {true, false}) {
    SCOPED_TRACE(sparse ? "sparse" : "dense");
    std::memset(logits.data, 0, logits.bytes);
    x[t] = xent::to_float16(2.0f);
    const int64_t shape[] = {C};
    const xent_tensor xv = xent_make_tensor(x, XENT_FLOAT16, 1, shape, nullptr);
    int64_t target = t;
    const xent_tensor tv = xent_make_tensor(&target, XENT_INT64, 0, nullptr, nullptr);
    if (!sparse) labels.as<xent::float16>()[t] = xent::to_float16(1.0f);
    const xent_tensor yv = xent_make_tensor(labels.data, XENT_FLOAT16, 1, shape, nullptr);
    xent::float16 loss{};
    const xent_tensor lv = xent_make_tensor(&loss, XENT_FLOAT16, 0, nullptr, nullptr);
    const xent_loss_options o = unreduced();
    ASSERT_EQ(xent_cross_entropy_grad(&xv, sparse ? &tv : &yv, -1, &o, nullptr, &lv, &xv), XENT_OK)
        << xent_last_error_message();
    EXPECT_EQ(xent::to_float(loss), xent::to_float(xent::to_float16(want)));
    EXPECT_EQ(xent::to_float(x[t]), xent::to_float(xent::to_float16(std::exp(2.0) / S - 1)));
    EXPECT_EQ(xent::to_float(x[C - 1]), xent::to_float(xent::to_float16(1 / S)));
  }
}

// 3 x 2^30 float32 elements (12 GiB) over 3 x 2^20 rows of 1024 classes: row i is 0 but 1 at its target i mod 1024,
// so every loss is log(1023 + e) - 1; gradients in place, sampled.
TEST(Large, ThreeTimes2To30ElementsOverRows) {
  const int64_t R = 3 * (int64_t{1} << 20), C = 1024;
  SKIP_UNLESS_AVAILABLE(R * C * 4);
  Mapping logits(R * C * 4, true), targets(R * 8, true), loss(R * 4, true);
  ASSERT_TRUE(logits.data && targets.data && loss.data);
  float* x = logits.as<float>();
  int64_t* t = targets.as<int64_t>();
  for (int64_t i = 0; i < R; ++i) t[i] = i % C, x[i * C + t[i]] = 1.0f;
  const int64_t shape[] = {R, C}, rows[] = {R};
  const xent_tensor xv = xent_make_tensor(x, XENT_FLOAT32, 2, shape, nullptr);
  const xent_tensor tv = xent_make_tensor(t, XENT_INT64, 1, rows, nullptr);
  const xent_tensor lv = xent_make_tensor(loss.data, XENT_FLOAT32, 1, rows, nullptr);
  const xent_loss_options o = unreduced();
  ASSERT_EQ(xent_cross_entropy_grad(&xv, &tv, -1, &o, nullptr, &lv, &xv), XENT_OK) << xent_last_error_message();
  const double S = 1023 + std::exp(1.0);
  const float want = static_cast<float>(std::log(S) - 1);
  int64_t wrong = 0;
  for (int64_t i = 0; i < R; ++i) wrong += std::fabs(loss.as<float>()[i] - want) > 4e-7f * want;
  EXPECT_EQ(wrong, 0) << "rows whose loss is not log(1023 + e) - 1";
  for (int64_t i : {int64_t{0}, R / 2 + 3, R - 1}) {
    EXPECT_NEAR(x[i * C + t[i]], std::exp(1.0) / S - 1, 1e-6) << "row " << i;
    EXPECT_NEAR(x[i * C + (t[i] + 1) % C], 1 / S, 1e-9) << "row " << i;
  }
}

// Strides past 2^31 elements (byte offsets past 2^33): rows 2^31 + 7 elements apart, in a sparse mapping.
TEST(Large, StridesPast2To31) {
  const int64_t R = 3, C = 5, stride = (int64_t{1} << 31) + 7;
  const size_t span = static_cast<size_t>(((R - 1) * stride + C) * 4);
  Mapping logits(span), labels(span), grad(span);
  ASSERT_TRUE(logits.data && labels.data && grad.data);
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j) logits.as<float>()[i * stride + j] = static_cast<float>(j), labels.as<float>()[i * stride + j] = j == i ? 1.f : 0.f;
  const int64_t shape[] = {R, C}, strides[] = {stride, 1}, rows[] = {R};
  const xent_tensor xv = xent_make_tensor(logits.data, XENT_FLOAT32, 2, shape, strides);
  const xent_tensor yv = xent_make_tensor(labels.data, XENT_FLOAT32, 2, shape, strides);
  const xent_tensor gv = xent_make_tensor(grad.data, XENT_FLOAT32, 2, shape, strides);
  float loss[R];
  const xent_tensor lv = xent_make_tensor(loss, XENT_FLOAT32, 1, rows, nullptr);
  ASSERT_EQ(xent_softmax_cross_entropy_grad(&yv, &xv, -1, nullptr, &lv, &gv, nullptr), XENT_OK)
      << xent_last_error_message();
  double S = 0;
  for (int j = 0; j < C; ++j) S += std::exp(static_cast<double>(j));
  for (int64_t i = 0; i < R; ++i) {
    EXPECT_NEAR(loss[i], std::log(S) - static_cast<double>(i), 1e-6) << "row " << i;
    EXPECT_NEAR(grad.as<float>()[i * stride + i], std::exp(static_cast<double>(i)) / S - 1, 1e-6) << "row " << i;
  }
}

// A broadcast that makes a loss of 2^31 + 2^16 elements from inputs of a few hundred kilobytes: logits [2^16, 1, 2]
// against labels [1, 2^15 + 1, 2] (float16), loss [2^16, 2^15 + 1].
TEST(Large, BroadcastToAHugeOutput) {
  const int64_t K = int64_t{1} << 16, M = (int64_t{1} << 15) + 1, rows = K * M;
  SKIP_UNLESS_AVAILABLE(rows * 2);
  Mapping logits(K * 2 * 2), labels(M * 2 * 2), loss(rows * 2, true);
  ASSERT_TRUE(logits.data && labels.data && loss.data);
  // Row (k, m): logits (0, a_k) with a_k = k mod 8; labels (1, 0) or (0, 1) by m's parity.
  for (int64_t k = 0; k < K; ++k) logits.as<xent::float16>()[2 * k + 1] = xent::to_float16(static_cast<float>(k % 8));
  for (int64_t m = 0; m < M; ++m) labels.as<xent::float16>()[2 * m + (m % 2)] = xent::to_float16(1.0f);
  const int64_t xs[] = {K, 1, 2}, ys[] = {1, M, 2}, ls[] = {K, M};
  const xent_tensor xv = xent_make_tensor(logits.data, XENT_FLOAT16, 3, xs, nullptr);
  const xent_tensor yv = xent_make_tensor(labels.data, XENT_FLOAT16, 3, ys, nullptr);
  const xent_tensor lv = xent_make_tensor(loss.data, XENT_FLOAT16, 2, ls, nullptr);
  ASSERT_EQ(xent_softmax_cross_entropy(&yv, &xv, -1, &lv), XENT_OK) << xent_last_error_message();
  for (int64_t r : {int64_t{0}, int64_t{1}, rows / 2 + 5, rows - 2, rows - 1}) {
    const int64_t k = r / M, m = r % M;
    const double a = static_cast<double>(k % 8), lse = std::log(1 + std::exp(a));
    const double want = m % 2 == 0 ? lse : lse - a;
    EXPECT_EQ(xent::to_float(loss.as<xent::float16>()[r]), xent::to_float(xent::to_float16(want))) << "row " << r;
  }
}

// Shapes whose element count or byte extent overflows 64 bits are errors, not wrapped sizes.
TEST(Large, SizesPast64BitsAreErrors) {
  float x = 0, l = 0;
  const int64_t huge[] = {int64_t{1} << 40, int64_t{1} << 40}, rows[] = {int64_t{1} << 40};
  const xent_tensor xv = xent_make_tensor(&x, XENT_FLOAT32, 2, huge, nullptr);
  const xent_tensor lv = xent_make_tensor(&l, XENT_FLOAT32, 1, rows, nullptr);
  EXPECT_EQ(xent_softmax_cross_entropy(&xv, &xv, -1, &lv), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("int64"), std::string::npos) << xent_last_error_message();
  const int64_t shape[] = {int64_t{1} << 61}, one[] = {1};
  const xent_tensor big = xent_make_tensor(&x, XENT_FLOAT32, 1, shape, one);  // 2^61 floats: 2^63 bytes
  EXPECT_EQ(xent_softmax_cross_entropy(&big, &big, -1, &lv), XENT_INVALID_ARGUMENT) << "a byte extent past 2^63";
  // A broadcast view of one value along 2^62 + 4 classes addresses 2 bytes, but its element count is past what xent
  // counts in bytes (2^59): an error naming it, not a signed overflow sizing the kernel's buffers (found by the fuzzer).
  const int64_t classes[] = {1, (int64_t{1} << 62) + 4}, stride0[] = {0, 0}, one_row[] = {1};
  int32_t target[1] = {1};
  const xent_tensor wide = xent_make_tensor(&x, XENT_FLOAT32, 2, classes, stride0);
  const xent_tensor tv = xent_make_tensor(target, XENT_INT32, 1, one_row, nullptr);
  float l2[1] = {7};
  const xent_tensor loss2 = xent_make_tensor(l2, XENT_FLOAT32, 1, one_row, nullptr);
  EXPECT_EQ(xent_sparse_softmax_cross_entropy(&tv, &wide, -1, &loss2), XENT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(xent_last_error_message()).find("more than the 2^59"), std::string::npos)
      << xent_last_error_message();
}

}  // namespace
