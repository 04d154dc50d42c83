// gather_rate.h — how many float32 elements per second this machine's hardware gathers deliver when they pick
// class c of 16 contiguous short rows (stride C), from L1, on every thread: the ceiling of the lane kernel's
// tile fill for short rows, which needs two gathered elements (logit and label) per element. AVX-512 only; 0
// where the CPU has no AVX-512. Used by xent_bench to show whether short rows are limited by their gathers.
#pragma once

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace xent::bench {

__attribute__((target("avx512f"))) inline float gather_columns(const float* rows, int32_t C, int64_t groups, int reps) {
  const __m512i offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32(C));
  __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
  for (int r = 0; r < reps; ++r)
    for (int64_t g = 0; g < groups; ++g)
      for (int32_t c = 0; c + 1 < C; c += 2) {  // two independent sums: the gathers, not the adds, are timed
        a = _mm512_add_ps(a, _mm512_i32gather_ps(offsets, rows + g * 16 * C + c, 4));
        b = _mm512_add_ps(b, _mm512_i32gather_ps(offsets, rows + g * 16 * C + c + 1, 4));
      }
  return _mm512_reduce_add_ps(_mm512_add_ps(a, b));
}

// Gathered elements per second, all threads, rows of C (even) classes; best of three.
inline double gather_elements_per_second(int32_t C) {
  if (!__builtin_cpu_supports("avx512f")) return 0;
  constexpr int64_t kGroups = 64;  // 64 · 16 rows · 10 classes · 4 bytes = 40 KiB per thread: L1
  constexpr int kReps = 2000;
  double best = 0;
  for (int trial = 0; trial < 3; ++trial) {
    const double t0 = omp_get_wtime();
    int threads = 1;
#pragma omp parallel
    {
      std::vector<float> rows(static_cast<size_t>(kGroups * 16 * C), 1.0f);
      gather_columns(rows.data(), C, kGroups, 1);  // warm
#pragma omp barrier
      volatile float sink = gather_columns(rows.data(), C, kGroups, kReps);
      (void)sink;
#pragma omp single
      threads = omp_get_num_threads();
    }
    const double elements = static_cast<double>(threads) * kReps * kGroups * 16 * (C / 2 * 2);
    best = std::max(best, elements / (omp_get_wtime() - t0));
  }
  return best;
}

}  // namespace xent::bench
