// read_bandwidth.h — the memory bus's read bandwidth, measured by a plain reader done well: every thread reads two
// parts of its share at once (two streams, like logits and labels) with software prefetch, summing 32-bit integers
// (associative, so the compiler vectorises it). Best of five reads of 1 GiB. Used by xent_bench and xent_peers so
// that every fraction of the bus is taken against the same kernel, measured in the same run.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <memory>

namespace xent::bench {

// Sum of n 32-bit words, compiled for AVX-512, AVX2 and the baseline (chosen at load time): with SSE2 only, the
// reader itself was the limit on a single physical core (25.7 against 27 GB/s with AVX2).
__attribute__((target_clones("avx512f", "avx2", "default"))) inline uint32_t sum_words(const uint32_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t k = 0; k < n; ++k) sum += p[k];
  return sum;
}

inline double read_bandwidth_bytes_per_second() {
  constexpr size_t kChunk = 1024;  // 4 KiB per stream per step
  const size_t n = (size_t{1} << 30) / sizeof(uint32_t);
  std::unique_ptr<uint32_t[]> a(new uint32_t[n + 4 * kChunk]);
#pragma omp parallel for
  for (size_t i = 0; i < n + 4 * kChunk; ++i) a[i] = static_cast<uint32_t>(i);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = omp_get_wtime();
    uint32_t total = 0;
#pragma omp parallel reduction(+ : total)
    {
      const size_t threads = omp_get_num_threads(), t = omp_get_thread_num();
      const size_t begin = n * t / threads, end = n * (t + 1) / threads;
      const size_t part = (end - begin) / 2 / kChunk * kChunk;
      for (size_t offset = 0; offset < part; offset += kChunk)
        for (size_t s = 0; s < 2; ++s) {
          const uint32_t* p = a.get() + begin + s * part + offset;
          for (size_t k = 0; k < kChunk; k += 16) __builtin_prefetch(p + 2 * kChunk + k);
          total += sum_words(p, kChunk);
        }
    }
    volatile uint32_t sink = total;
    (void)sink;
    best = std::max(best, static_cast<double>(n / 2 / kChunk * kChunk * 2 * sizeof(uint32_t)) / (omp_get_wtime() - t0));
  }
  return best;
}

}  // namespace xent::bench
