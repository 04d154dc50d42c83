// traffic_twin.h — the traffic of xent's forward+gradients without its math: how fast this machine moves those
// bytes in that order, the bound a fwd_grad row is measured against (xent_bench's traffic_GB/s and of_traffic).
//
// No gradient of a row is known before the whole row has been read (its maximum and sum of exps), so xent reads
// each row whole, then writes its gradients while the row is still in cache. The twin does the same with nothing
// but a sum: per unit of contiguous classes (a row, or for rows under kTwinChunk classes as many whole rows as fit
// in kTwinChunk, as xent's lane kernels take a group of short rows at once), it reads every input, the streams
// side by side with software prefetch (as read_bandwidth.h reads), and then writes every output as its input
// times a factor taken from that sum, kTwinChunk classes of one output and then of the next (xent's
// kStreamChunk). Units are shared among threads as xent shares rows: whole units per thread when there are at
// least 4 per thread, otherwise each row is split into pieces that every thread reads before any is written
// (1x16M). Outputs of 64 MiB or more are written around the caches (non-temporal stores, whole lines), as xent
// writes them (kMinStreamBytes), except an output that is its input (in place): its lines are in cache, and it
// gets regular stores, as in xent.
#pragma once

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "bench/read_bandwidth.h"

namespace xent::bench {

// Classes per step of a read and per chunk of a write; xent's row kernel streams its gradients in chunks this long.
inline constexpr int64_t kTwinChunk = 1024;
// A row is split into pieces only when there are fewer than 4 rows per thread, pieces of at least this many classes.
inline constexpr int64_t kTwinMinPiece = int64_t{1} << 16;
// Outputs at least this large are written with non-temporal stores.
inline constexpr int64_t kTwinMinStreamBytes = int64_t{64} << 20;

// to[k] = from[k] · a for k < n (vectorised at any optimisation level, compiled for AVX-512, AVX2 and the
// baseline, chosen at load time).
__attribute__((target_clones("avx512f", "avx2", "default"))) inline void scale_floats(const float* from, float* to,
                                                                                       int64_t n, float a) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) to[k] = from[k] * a;
}

// The same for n a multiple of 16 and `to` on a cache line, with non-temporal stores: 32 bytes a store where the
// CPU has AVX (as xent's AVX2 and AVX-512 targets store), else 16 (SSE2).
__attribute__((target("avx"))) inline void stream_scaled_avx(const float* from, float* to, int64_t n, float a) {
  const __m256 factor = _mm256_set1_ps(a);
  for (int64_t k = 0; k < n; k += 8) _mm256_stream_ps(to + k, _mm256_mul_ps(_mm256_loadu_ps(from + k), factor));
}
inline void stream_scaled(const float* from, float* to, int64_t n, float a) {
  static const bool avx = __builtin_cpu_supports("avx");
  if (avx) return stream_scaled_avx(from, to, n, a);
  const __m128 factor = _mm_set1_ps(a);
  for (int64_t k = 0; k < n; k += 4) _mm_stream_ps(to + k, _mm_mul_ps(_mm_loadu_ps(from + k), factor));
}

// scale_floats with whole cache lines of `to` written by non-temporal stores if `stream` (the part before its first
// line boundary and after its last one through regular stores, so that no line is written partly around the cache).
inline void write_scaled(const float* from, float* to, int64_t n, float a, bool stream) {
  int64_t k = 0;
  if (stream && reinterpret_cast<uintptr_t>(to) % sizeof(float) == 0) {
    k = std::min<int64_t>(n, (64 - reinterpret_cast<uintptr_t>(to) % 64) % 64 / sizeof(float));
    scale_floats(from, to, k, a);
    const int64_t lines = (n - k) / 16 * 16;
    stream_scaled(from + k, to + k, lines, a);
    k += lines;
  }
  scale_floats(from + k, to + k, n - k, a);
}

// Sum of n words of p and of q, side by side (vectorised, compiled per target as scale_floats).
__attribute__((target_clones("avx512f", "avx2", "default"))) inline uint32_t sum_two(const uint32_t* p,
                                                                                     const uint32_t* q, size_t n) {
  uint32_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (size_t k = 0; k < n; ++k) sum += p[k] + q[k];
  return sum;
}

// Reads classes [begin, end) of `streams` (1 or 2) inputs, each from its own base, side by side, kTwinChunk classes
// a step, prefetching two steps ahead; returns a sum of every word read.
inline uint32_t read_range(const float* const* in, int streams, int64_t begin, int64_t end) {
  uint32_t sum = 0;
  for (int64_t j = begin; j < end; j += kTwinChunk) {
    const int64_t n = std::min(kTwinChunk, end - j);
    for (int s = 0; s < streams; ++s)
      for (int64_t k = 0; k < n; k += 16) __builtin_prefetch(in[s] + j + 2 * kTwinChunk + k);
    const auto* p = reinterpret_cast<const uint32_t*>(in[0] + j);
    sum += streams == 2 ? sum_two(p, reinterpret_cast<const uint32_t*>(in[1] + j), static_cast<size_t>(n))
                        : sum_words(p, static_cast<size_t>(n));
  }
  return sum;
}

// Writes classes [begin, end) of each output as its input times a factor taken from `sum`, in chunks of
// kTwinChunk classes of one output and then of the next.
inline void write_range(const float* const* in, float* const* out, int streams, int64_t begin, int64_t end,
                        uint32_t sum, bool stream) {
  const float a = (sum & 1u) ? -1.0f : 1.0f;  // the writes depend on every word read; in place, no value grows
  for (int64_t j = begin; j < end; j += kTwinChunk)
    for (int s = 0; s < streams; ++s)
      write_scaled(in[s] + j, out[s] + j, std::min(kTwinChunk, end - j), a, stream && out[s] != in[s]);
}

// One pass of the twin over `rows` contiguous rows of C classes: streams (1 or 2) inputs in[s] read, outputs
// out[s] written, with the calling program's OpenMP threads. Returns its time in seconds.
inline double traffic_twin_once(const float* const* in, float* const* out, int streams, int64_t rows, int64_t C) {
  const int threads = omp_get_max_threads();
  const bool stream = rows * C * static_cast<int64_t>(sizeof(float)) >= kTwinMinStreamBytes;
  const int64_t rows_per_unit = std::max<int64_t>(1, kTwinChunk / C), unit = rows_per_unit * C;
  const int64_t units = (rows + rows_per_unit - 1) / rows_per_unit, total = rows * C;
  int64_t pieces = 1;
  if (units < 4 * threads && C >= 2 * kTwinMinPiece)
    pieces = std::min<int64_t>((4 * threads + rows - 1) / rows, C / kTwinMinPiece);
  const double t0 = omp_get_wtime();
  if (pieces == 1) {
#pragma omp parallel for schedule(static)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t begin = u * unit, end = std::min(total, begin + unit);
      write_range(in, out, streams, begin, end, read_range(in, streams, begin, end), stream);
    }
  } else {
    // Every piece of every row is read (by all threads) before any is written; a row's sums are merged.
    const int64_t len = (C / pieces + kTwinChunk - 1) / kTwinChunk * kTwinChunk;
    pieces = (C + len - 1) / len;
    std::vector<uint32_t> sums(static_cast<size_t>(rows * pieces));
    const auto range = [&](int64_t w) {  // classes [first, second) of all rows' pieces, piece w
      const int64_t row = w / pieces * C, p = w % pieces;
      return std::pair{row + p * len, row + std::min(C, (p + 1) * len)};
    };
#pragma omp parallel for schedule(dynamic)
    for (int64_t w = 0; w < rows * pieces; ++w) sums[w] = read_range(in, streams, range(w).first, range(w).second);
#pragma omp parallel for schedule(dynamic)
    for (int64_t w = 0; w < rows * pieces; ++w) {
      uint32_t sum = 0;
      for (int64_t p = 0; p < pieces; ++p) sum += sums[w / pieces * pieces + p];
      write_range(in, out, streams, range(w).first, range(w).second, sum, stream);
    }
  }
  if (stream) {
#pragma omp parallel
    _mm_sfence();
  }
  return omp_get_wtime() - t0;
}

}  // namespace xent::bench
