// read_bandwidth.h — the memory bus's read bandwidth, measured by a plain reader done well: every thread reads two
// parts of its share at once (two streams, like logits and labels) with software prefetch, summing 32-bit integers
// (associative, so the compiler vectorises it), 1 GiB per read. Used by xent_bench (a read before and one after
// each row; best of five at start for the record) and xent_peers (reads taking turns with the systems of each
// case) so that every fraction of the bus is taken against the same kernel, measured in the same run.
// Also the bus for traffic of as many bytes written as read (forward + gradients): a copy of half the buffer onto
// the other half with non-temporal stores, as xent writes large gradients (xent_bench's rows that write).
#pragma once

#include <emmintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <memory>

namespace xent::bench {

// Sum of n 32-bit words, vectorised at any optimisation level (omp simd), compiled for AVX-512, AVX2 and the
// baseline (chosen at load time): with SSE2 only, the reader itself was the limit on a single physical core (25.7
// against 27 GB/s with AVX2).
__attribute__((target_clones("avx512f", "avx2", "default"))) inline uint32_t sum_words(const uint32_t* p, size_t n) {
  uint32_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (size_t k = 0; k < n; ++k) sum += p[k];
  return sum;
}

// A 1 GiB buffer and one timed read of it with every thread. compare.py reads it in turn with the systems of each
// case, so that each case's fraction is taken against the bus as it was during that case.
class ReadBandwidth {
 public:
  ReadBandwidth() : words_(size_t{1} << 28), data_(new uint32_t[words_ + 4 * kChunk]) {
#pragma omp parallel for
    for (size_t i = 0; i < words_ + 4 * kChunk; ++i) data_[i] = static_cast<uint32_t>(i);
  }
  // Bytes per second of one read of the buffer.
  double read_once() const {
    const double t0 = omp_get_wtime();
    uint32_t total = 0;
#pragma omp parallel reduction(+ : total)
    {
      const size_t threads = omp_get_num_threads(), t = omp_get_thread_num();
      const size_t begin = words_ * t / threads, end = words_ * (t + 1) / threads;
      const size_t part = (end - begin) / 2 / kChunk * kChunk;
      for (size_t offset = 0; offset < part; offset += kChunk)
        for (size_t s = 0; s < 2; ++s) {
          const uint32_t* p = data_.get() + begin + s * part + offset;
          for (size_t k = 0; k < kChunk; k += 16) __builtin_prefetch(p + 2 * kChunk + k);
          total += sum_words(p, kChunk);
        }
    }
    volatile uint32_t sink = total;
    (void)sink;
    return static_cast<double>(bytes()) / (omp_get_wtime() - t0);
  }
  size_t bytes() const { return words_ / 2 / kChunk * kChunk * 2 * sizeof(uint32_t); }

  // Bytes per second moved, read plus written (bytes(): half of them read, half written), by one copy of the
  // buffer's first half onto its second half with every thread, 16-byte non-temporal stores (SSE2; their
  // write-combining buffers fill whole lines).
  double copy_once() {
    const size_t half = words_ / 2 / kChunk * kChunk;
    const double t0 = omp_get_wtime();
#pragma omp parallel
    {
      const size_t threads = omp_get_num_threads(), t = omp_get_thread_num();
      const size_t begin = half / kChunk * t / threads * kChunk, end = half / kChunk * (t + 1) / threads * kChunk;
      for (size_t offset = begin; offset < end; offset += kChunk) {
        const uint32_t* from = data_.get() + offset;
        uint32_t* to = data_.get() + half + offset;
        for (size_t k = 0; k < kChunk; k += 16) __builtin_prefetch(from + 2 * kChunk + k);
        for (size_t k = 0; k < kChunk; k += 4)
          _mm_stream_si128(reinterpret_cast<__m128i*>(to + k), _mm_load_si128(reinterpret_cast<const __m128i*>(from + k)));
      }
      _mm_sfence();
    }
    return static_cast<double>(bytes()) / (omp_get_wtime() - t0);
  }

 private:
  static constexpr size_t kChunk = 1024;  // 4 KiB per stream per step
  size_t words_;
  std::unique_ptr<uint32_t[]> data_;
};

// Best of five reads of reader's 1 GiB, in bytes per second.
inline double read_bandwidth_bytes_per_second(const ReadBandwidth& reader) {
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) best = std::max(best, reader.read_once());
  return best;
}

}  // namespace xent::bench
