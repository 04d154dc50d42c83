// tuning.h — the constants chosen by measurement rather than derived, one table per SIMD vector width (a target's
// HWY_MAX_BYTES). Each entry says what it trades and which xent_bench rows re-derive it: change the value, rebuild,
// and compare the rows' best_GB/s against the unchanged build in alternating runs
// (build/xent_bench --benchmark_filter='ROW'; docs/performance.md has the runs behind today's values).
// Constants that follow from accuracy or capacity (block lengths, tile sizes) stay with their kernels.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xent::internal {

struct Tuning {
  // Below this many elements a call runs on one thread: waking threads costs more than the work.
  //   bench/short_rows.py with fewer ELEMENTS, one and two threads (xent_bench has no row this small).
  int64_t min_parallel_elements;
  // Contiguous rows of at most this many classes go to the lane kernels (one row per lane): in the row kernel a
  // row pays reductions across lanes, a log and its own pointers, which short rows cannot amortise.
  //   forward/f32/1Mx10, fwd_grad/f32/1Mx10; bench/short_rows.py
  int64_t short_row;
  // float32's dense forward (no gradients) leaves rows of more classes than this to the row kernel instead of
  // ShortRows: ShortRows transposes labels as well as logits, which outweighs the row kernel's per-row work once a
  // row is a few vectors long.   Rows of 48-128 classes (not in xent_bench): see docs/performance.md.
  int64_t max_short_rows_dense_forward;
  // Gradient outputs at least this large are written with non-temporal stores: they will not be read back from
  // cache, and a streamed line needs no read for ownership.   fwd_grad/f32/4096x32000, fwd_grad/f32/65536x1000
  int64_t min_stream_bytes;
  // With streamed gradients, grad_logits and grad_labels are written this many classes of one, then of the other:
  // two streamed outputs interleaved vector by vector close write-combining buffers before their lines are full.
  //   fwd_grad/f32/4096x32000
  int64_t stream_chunk;
  // Lane groups per work item of the lane kernel (short rows, not staged): a work item's setup (the row's address,
  // a division per batch dimension, the OpenMP loop step) is paid once for these.   forward/f32/1Mx10
  int64_t lane_groups_per_item;
  // The same for TinyRows and ShortRows, which run a work item's groups in one call.   forward/f32/4Mx2,
  //   forward/f32/1Mx10
  int64_t batched_groups_per_item;
  // Groups ahead of the one computing that the lane kernel's prefetch asks for (PrefetchGroup, PrefetchRows).
  //   forward/f32/1Mx10, sparse/f32/1Mx10
  int64_t lane_ahead;
  // The lane kernel's stage buffer (StageLanes): at most this many bytes per thread, to stay in L2.
  //   forward/f32/32x21x128x128_axis1, fwd_grad/f32/32x21x128x128_axis1
  int64_t stage_bytes;
  // Bytes of padding after each class's run in a stage buffer: runs of a power of two put every class into one
  // L1 set, and a group's classes then evict each other between its two passes.   (the same rows)
  int64_t stage_pad;
  // Contiguous short rows that the lane kernel gathers (float64 on x86, which has no transposes here) are copied a
  // work item at a time into a per-thread buffer from this many bytes of logits and this many classes on: gathers
  // from memory keep too few lines in flight, a plain copy streams. Below, the copy only costs.
  //   No xent_bench row is float64: bench/short_rows.py with float64 rows of 2 MiB and more.
  int64_t min_copied_rows_bytes;
  int64_t min_copied_classes;
  // Rows of at most this many classes keep their forward's exps for the gradient pass (a load instead of an exp
  // per class), in a per-thread buffer of this many elements.   fwd_grad/f32/4096x32000, fwd_grad/f32/65536x1000
  int64_t max_kept_exps;
  // Lane blocks per step of a lane sweep (LaneSweep): every group of a work item computes this many blocks of its
  // rows' classes before the next group does, and asks for the next step's meanwhile.
  //   forward/f32/64x1000x49_axis1, fwd_grad/f32/64x1000x49_axis1
  int64_t sweep_blocks;
  // Rows of more classes than this are computed as pieces of this many (a multiple of the row kernel's block),
  // merged in order: pieces spread over threads when rows are few, and a row's arithmetic, so its result, does not
  // depend on the thread count.   forward/f32/1x16M, fwd_grad/f32/1x16M
  int64_t piece_classes;
};

// Scalar code, the same on every target: runs of at least this many contiguous class-index targets (without class
// weights) are checked by every thread, a slice each (targets.cc).   sparse/f32/1Mx10 (and 4Mx2 with class
// indices, not a row of xent_bench)
inline constexpr int64_t kParallelTargets = int64_t{1} << 16;

// SSE4, SSSE3 and the emulated targets (16-byte vectors): never tuned on their own; AVX2's values.
inline constexpr Tuning kTuning16Bytes = {
    .min_parallel_elements = int64_t{1} << 15,
    .short_row = 32,
    .max_short_rows_dense_forward = 128,
    .min_stream_bytes = int64_t{64} << 20,
    .stream_chunk = 1024,
    .lane_groups_per_item = 16,
    .batched_groups_per_item = 128,
    .lane_ahead = 2,
    .stage_bytes = 96 * 1024,
    .stage_pad = 64,
    .min_copied_rows_bytes = int64_t{2} << 20,
    .min_copied_classes = 6,
    .max_kept_exps = int64_t{1} << 16,
    .sweep_blocks = 4,
    .piece_classes = int64_t{1} << 16,
};

// AVX2 (32-byte vectors), measured on Zen 3.
inline constexpr Tuning kTuning32Bytes = kTuning16Bytes;

// AVX-512 (64-byte vectors), measured on Zen 4: as AVX2 but for float32's dense forward of 57 to 128 classes.
inline constexpr Tuning kTuning64Bytes = [] {
  Tuning t = kTuning32Bytes;
  t.max_short_rows_dense_forward = 56;
  return t;
}();

// A row that keeps its exps is one piece (RowStatistics); pieces are whole blocks of the row kernel (kBlock).
static_assert(kTuning16Bytes.max_kept_exps <= kTuning16Bytes.piece_classes &&
              kTuning64Bytes.max_kept_exps <= kTuning64Bytes.piece_classes);
static_assert(kTuning16Bytes.piece_classes % 2048 == 0 && kTuning64Bytes.piece_classes % 2048 == 0);

// The table of a target whose widest vector has this many bytes (HWY_MAX_BYTES).
constexpr const Tuning& TuningFor(size_t vector_bytes) {
  return vector_bytes >= 64 ? kTuning64Bytes : vector_bytes >= 32 ? kTuning32Bytes : kTuning16Bytes;
}

}  // namespace xent::internal
