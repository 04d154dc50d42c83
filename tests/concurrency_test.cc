// concurrency_test.cc — hostile callers, concurrently: many threads calling at once with different shapes while
// others change the process-wide thread cap; calls from inside an OpenMP parallel region; each thread's error
// message its own. Every result must be the bits a lone single-threaded call gives (results do not depend on the
// thread count, xent.h). And memory exhaustion (a real allocation failure under an address-space limit, in a child
// process): XENT_OUT_OF_MEMORY with a message, outputs untouched.
#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/memory_limit.h"
#include "xent/xent.h"

namespace {

using xent::test::in_limited_child;

// One call's inputs and its single-threaded results.
struct Job {
  int64_t rows, classes;
  std::vector<float> logits;
  std::vector<int64_t> targets;
  std::vector<float> want_loss, want_grad;
};

// Loss and gradient of a job (class indices, label smoothing: the general path), into loss and grad.
xent_status run(const Job& j, std::vector<float>& loss, std::vector<float>& grad) {
  loss.assign(j.rows, -1), grad.assign(j.rows * j.classes, -1);
  const int64_t xs[] = {j.rows, j.classes}, rs[] = {j.rows};
  const xent_tensor x = xent_make_tensor(const_cast<float*>(j.logits.data()), XENT_FLOAT32, 2, xs, nullptr);
  const xent_tensor t = xent_make_tensor(const_cast<int64_t*>(j.targets.data()), XENT_INT64, 1, rs, nullptr);
  const xent_tensor l = xent_make_tensor(loss.data(), XENT_FLOAT32, 1, rs, nullptr);
  const xent_tensor g = xent_make_tensor(grad.data(), XENT_FLOAT32, 2, xs, nullptr);
  xent_loss_options o = xent_default_loss_options();
  o.reduction = XENT_REDUCTION_NONE;
  o.label_smoothing = 0.05;
  return xent_cross_entropy_grad(&x, &t, -1, &o, nullptr, &l, &g);
}

std::vector<Job> make_jobs() {
  // Short rows (lane kernels), long rows (row kernel, pieces), one very long row (split across threads).
  const std::pair<int64_t, int64_t> shapes[] = {{3000, 10}, {64, 5000}, {2, 300000}, {777, 333}, {1, 1}};
  std::vector<Job> jobs;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  for (const auto& [rows, classes] : shapes) {
    Job j{rows, classes, std::vector<float>(rows * classes), std::vector<int64_t>(rows), {}, {}};
    for (auto& v : j.logits) v = 3 * normal(rng);
    for (int64_t i = 0; i < rows; ++i) j.targets[i] = (i * 7919) % classes;
    xent_set_num_threads(1);
    EXPECT_EQ(run(j, j.want_loss, j.want_grad), XENT_OK) << xent_last_error_message();
    jobs.push_back(std::move(j));
  }
  xent_set_num_threads(0);
  return jobs;
}

TEST(Concurrency, ManyThreadsAndChangingCapsGiveTheSameBits) {
  const std::vector<Job> jobs = make_jobs();
  std::atomic<int> mismatches{0}, failures{0};
  std::atomic<bool> stop{false};
  std::thread capper([&] {  // the process-wide cap changes under the callers' feet
    for (int n = 0; !stop.load(); n = (n + 1) % 5) {
      xent_set_num_threads(n);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> callers;
  for (int c = 0; c < 8; ++c)
    callers.emplace_back([&, c] {
      std::vector<float> loss, grad;
      for (int round = 0; round < 6; ++round) {
        const Job& j = jobs[(c + round) % jobs.size()];
        if (run(j, loss, grad) != XENT_OK) ++failures;
        else if (loss != j.want_loss || grad != j.want_grad) ++mismatches;
      }
    });
  for (auto& t : callers) t.join();
  stop = true;
  capper.join();
  xent_set_num_threads(0);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0) << "a concurrent call gave other bits than a lone single-threaded one";
}

TEST(Concurrency, CallsFromInsideAnOpenMPParallelRegion) {
  const std::vector<Job> jobs = make_jobs();
  int mismatches = 0;
#pragma omp parallel for num_threads(2) schedule(dynamic) reduction(+ : mismatches)
  for (int k = 0; k < 10; ++k) {
    std::vector<float> loss, grad;
    const Job& j = jobs[k % jobs.size()];
    if (run(j, loss, grad) != XENT_OK || loss != j.want_loss || grad != j.want_grad) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Concurrency, EachThreadKeepsItsOwnErrorMessage) {
  std::atomic<int> ready{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 6; ++k)
    threads.emplace_back([&, k] {
      // Thread k fails with a message naming its own bad axis, waits until every thread has failed, then reads it.
      std::vector<float> x(6, 0), l(2, 0);
      const int64_t xs[] = {2, 3}, ls[] = {2};
      const xent_tensor xv = xent_make_tensor(x.data(), XENT_FLOAT32, 2, xs, nullptr);
      const xent_tensor lv = xent_make_tensor(l.data(), XENT_FLOAT32, 1, ls, nullptr);
      const int64_t axis = 10 + k;
      if (xent_softmax_cross_entropy(&xv, &xv, axis, &lv) != XENT_INVALID_ARGUMENT) ++wrong;
      ++ready;
      while (ready.load() < 6) std::this_thread::yield();
      if (std::string(xent_last_error_message()).find("axis " + std::to_string(axis)) == std::string::npos) ++wrong;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Concurrency, MemoryExhaustionIsAStatusAndWritesNothing) {
#ifdef XENT_UNDER_ASAN
  GTEST_SKIP() << "AddressSanitizer reserves address space that an RLIMIT_AS would break";
#else
  // Broadcast labels with both gradients asked for: the op needs two full-shape float temporaries, 2 x 32 MiB, which
  // a 16 MiB headroom refuses (the inputs and outputs are allocated before the limit).
  const int64_t N = 8192, C = 1024;
  std::vector<float> x(N * C, 0.5f), y(C, 1.0f / C), loss(N, 7.f), gx(N * C, 7.f), gy(C, 7.f);
  const int64_t xs[] = {N, C}, ys[] = {1, C}, ls[] = {N};
  const xent_tensor xv = xent_make_tensor(x.data(), XENT_FLOAT32, 2, xs, nullptr);
  const xent_tensor yv = xent_make_tensor(y.data(), XENT_FLOAT32, 2, ys, nullptr);
  const xent_tensor lv = xent_make_tensor(loss.data(), XENT_FLOAT32, 1, ls, nullptr);
  const xent_tensor gxv = xent_make_tensor(gx.data(), XENT_FLOAT32, 2, xs, nullptr);
  const xent_tensor gyv = xent_make_tensor(gy.data(), XENT_FLOAT32, 2, ys, nullptr);
  const int status = in_limited_child(16 << 20, [&] {
    xent_set_num_threads(1);
    if (xent_softmax_cross_entropy_grad(&yv, &xv, -1, nullptr, &lv, &gxv, &gyv) != XENT_OUT_OF_MEMORY) return 1;
    if (std::string(xent_last_error_message()).find("out of memory") == std::string::npos) return 2;
    for (float v : loss) if (v != 7.f) return 3;
    for (float v : gx) if (v != 7.f) return 3;
    for (float v : gy) if (v != 7.f) return 3;
    return 0;
  });
  EXPECT_EQ(status, 0) << "1: not XENT_OUT_OF_MEMORY; 2: no message; 3: an output was written; 10: setrlimit; "
                          ">100: killed by a signal";
  // Without the limit the same call succeeds.
  EXPECT_EQ(xent_softmax_cross_entropy_grad(&yv, &xv, -1, nullptr, &lv, &gxv, &gyv), XENT_OK) << xent_last_error_message();
#endif
}

}  // namespace
