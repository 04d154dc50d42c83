// parallel.h — the one way xent runs a loop over OpenMP threads.
#ifndef XENT_SRC_PARALLEL_H_
#define XENT_SRC_PARALLEL_H_

#include <omp.h>

#include <cstdint>
#include <type_traits>

namespace xent::internal {

// body(i) — or body(i, thread), thread in [0, threads) the index of the thread running it, for per-thread buffers
// — for every i in [0, n), over `threads` OpenMP threads with a static schedule (kDynamic: dynamic), or on the
// calling thread (thread 0) when threads <= 1 or n <= 1. A one-thread loop never enters a parallel region: GNU
// OpenMP builds a team even for one thread (an allocation) and ends it with a futex wake, a system call; on a small
// call (32 rows of 10 classes) each such region cost more than the kernel's whole work. (omp_get_thread_num() is
// not the index: on the calling thread it is the caller's own, when the caller runs in a parallel region.)
template <bool kDynamic = false, typename Body>
inline void ParallelFor(int64_t n, int threads, const Body& body) {
  const auto run = [&](int64_t i, int thread) {
    if constexpr (std::is_invocable_v<const Body&, int64_t, int>) body(i, thread);
    else body(i);
  };
  if (threads <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; ++i) run(i, 0);
  } else if constexpr (kDynamic) {
#pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) run(i, omp_get_thread_num());
  } else {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) run(i, omp_get_thread_num());
  }
}

}  // namespace xent::internal

#endif  // XENT_SRC_PARALLEL_H_
