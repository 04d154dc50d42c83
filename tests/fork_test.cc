// fork_test.cc — a process forked from one that ran xent on several threads (as multiprocessing and DataLoader
// workers are) gets results from its first call, the same bits as the parent's, instead of waiting forever on GNU
// OpenMP's thread pool, which fork() does not copy; the parent keeps its threads.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <vector>

#include "xent/xent.h"

namespace {

// Loss and gradient of a shape that runs on every thread (rows × classes large enough for parallel regions), and of
// the fused linear op; returns every output's bytes.
std::vector<float> compute() {
  const int64_t R = 512, C = 4096, H = 32;
  std::vector<float> x(R * C), loss(R), grad(R * C), h(R * H), W(C * H), lin_loss(1), gin(R * H), gw(C * H);
  std::vector<int64_t> t(R);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  for (auto& v : h) v = normal(rng);
  for (auto& v : W) v = 0.1f * normal(rng);
  for (int64_t i = 0; i < R; ++i) t[i] = (i * 37) % C;
  const int64_t xs[] = {R, C}, rs[] = {R}, hs[] = {R, H}, ws[] = {C, H};
  const xent_tensor xv = xent_make_tensor(x.data(), XENT_FLOAT32, 2, xs, nullptr);
  const xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, rs, nullptr);
  const xent_tensor lv = xent_make_tensor(loss.data(), XENT_FLOAT32, 1, rs, nullptr);
  const xent_tensor gv = xent_make_tensor(grad.data(), XENT_FLOAT32, 2, xs, nullptr);
  xent_loss_options o = xent_default_loss_options();
  o.reduction = XENT_REDUCTION_NONE;
  o.label_smoothing = 0.1;
  if (xent_cross_entropy_grad(&xv, &tv, -1, &o, nullptr, &lv, &gv) != XENT_OK) return {};
  const xent_tensor hv = xent_make_tensor(h.data(), XENT_FLOAT32, 2, hs, nullptr);
  const xent_tensor wv = xent_make_tensor(W.data(), XENT_FLOAT32, 2, ws, nullptr);
  const xent_tensor llv = xent_make_tensor(lin_loss.data(), XENT_FLOAT32, 0, nullptr, nullptr);
  const xent_tensor giv = xent_make_tensor(gin.data(), XENT_FLOAT32, 2, hs, nullptr);
  const xent_tensor gwv = xent_make_tensor(gw.data(), XENT_FLOAT32, 2, ws, nullptr);
  const xent_loss_options mean = xent_default_loss_options();
  const xent_status s = xent_linear_cross_entropy_grad(&hv, &wv, nullptr, &tv, &mean, nullptr, &llv, &giv, &gwv, nullptr);
  if (s != XENT_OK && s != XENT_UNSUPPORTED) return {};
  std::vector<float> all = loss;
  all.insert(all.end(), grad.begin(), grad.end());
  if (s == XENT_OK) {
    all.insert(all.end(), lin_loss.begin(), lin_loss.end());
    all.insert(all.end(), gin.begin(), gin.end());
  }
  return all;
}

TEST(Fork, ChildOfAThreadedParentComputesTheSameBits) {
  xent_set_num_threads(2);
  const std::vector<float> parent = compute();
  ASSERT_FALSE(parent.empty()) << xent_last_error_message();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(60);  // a hang ends the child with SIGALRM, which the parent reports
    const std::vector<float> child = compute();
    const bool same = child.size() == parent.size() &&
                      std::memcmp(child.data(), parent.data(), child.size() * sizeof(float)) == 0;
    _exit(same && xent_get_num_threads() == 1 ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_FALSE(WIFSIGNALED(status)) << "the child was killed by signal " << WTERMSIG(status) << " (hung: SIGALRM)";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the child's results differ from the parent's, or it did not run on one thread";
  EXPECT_EQ(xent_get_num_threads(), 2) << "the parent keeps its threads";
  EXPECT_EQ(compute(), parent);
  xent_set_num_threads(0);
}

}  // namespace
