// paths.h — the kernel paths, and the one place that chooses among them.
//
// A validated call (a Layout: rows × classes over strided operands) runs on exactly one path. choose_path() tries
// the candidates in order, each saying whether it applies to the layout on this SIMD target (oneDNN's impl_list
// habit); the scheduler (schedule-inl.h) only executes the choice. The last candidate, kRows, applies to every
// layout (the row kernel with any strides): the path the others are tested against.
//
//   path           kernel (file)                     serves
//   kStagedLanes   LaneRows (lane_rows-inl.h)        class axis not last, contiguous lanes, few classes: NCHW
//                                                    logits copied a run of lanes at a time into an L2 stage
//   kTinyRows      TinyRows (short_rows-inl.h)       contiguous rows of 2 to 4 classes, a vector of rows a step
//   kShortRows     ShortRows (short_rows-inl.h)      contiguous rows of 5 to 128 classes, transposed in registers
//   kCopiedLanes   LaneRows                          contiguous short rows that are gathered (no transposes for
//                                                    the dtype), from a per-thread copy
//   kSweptLanes    LaneRows + LaneSweep              class axis not last, contiguous lanes, many classes: a work
//                                                    item's groups block by block
//   kLaneRows      LaneRows                          rows one per lane: any other strided or short rows
//   kSplitRows     ForwardRange, GradientRange       fewer rows than threads can share: a row's pieces spread over
//                  (row_kernel-inl.h)                threads, merged in order
//   kRows          ForwardRange, GradientRange       every layout: a row per thread step
// Every path computes each row with the same stages (stages.h) and the same arithmetic per row whatever the
// thread count; kSplitRows and kRows differ only in which thread computes what.
#pragma once

#include <cstdint>

#include "src/plan.h"
#include "src/tuning.h"

namespace xent::internal {

enum class KernelPath { kStagedLanes, kTinyRows, kShortRows, kCopiedLanes, kSweptLanes, kLaneRows, kSplitRows, kRows };
inline constexpr KernelPath kAllPaths[] = {KernelPath::kStagedLanes, KernelPath::kTinyRows,    KernelPath::kShortRows,
                                           KernelPath::kCopiedLanes, KernelPath::kSweptLanes,  KernelPath::kLaneRows,
                                           KernelPath::kSplitRows,   KernelPath::kRows};
const char* path_name(KernelPath path);

// Capacities of the kernels that the choice respects.
// Classes per lane block: each lane sums at most this many terms in the compute type before the block is merged
// in double (accuracy), and a block of lanes (64 · 64 bytes) stays in L1 between its two passes.
inline constexpr int64_t kLaneBlock = 64;
// Contiguous rows of at most this many classes can go through ShortRows, whose tiles hold Lanes × 128 elements.
inline constexpr int64_t kMaxShortRows = 128;
// The lane kernels compare class indices as values of the compute type: exact below 2^24 in float.
inline constexpr int64_t kMaxLaneClasses = int64_t{1} << 24;

// What the choice needs to know of the SIMD target and dtype a call runs on (kernels.cc: TraitsOf).
struct TargetTraits {
  int64_t lanes = 1;          // lanes of the compute type in the target's widest vector
  int64_t vector_bytes = 16;  // HWY_MAX_BYTES: picks the tuning table (tuning.h)
  int64_t storage_bytes = 4;  // sizeof of the dtype's storage type
  bool float32 = false;       // the dtype is float32
  bool narrow = false;        // float16/bfloat16: computed in float, converted on load
  bool transposable = false;  // the compute type's vectors transpose in registers (transpose-inl.h)
  // Only the row kernel is compiled for this call's types: gradients of broadcast float16/bfloat16 inputs, written
  // in float to a temporary (the lane kernels' instances for them would double those dtypes' build time for a
  // call that is rare).
  bool rows_only = false;
};

struct KernelChoice {
  KernelPath path = KernelPath::kRows;
  int64_t stage_lanes = 0;  // kStagedLanes: lanes per stage (a multiple of TargetTraits::lanes)
};

// The path for this layout on this target with `threads` threads.
KernelChoice choose_path(const Layout& l, const TargetTraits& target, int threads);

// Whether a call of this size uses more than one thread.
inline bool runs_parallel(const Layout& l, const Tuning& tuning, int threads) {
  return threads > 1 && l.rows * l.classes >= tuning.min_parallel_elements;
}

// For tests: the path a call would take on the SIMD target dispatched now, with `threads` threads. Validates the
// request as the C API does; returns XENT_OK and sets *path, or the validation's status.
xent_status chosen_path(const Request& request, int threads, KernelPath* path);

}  // namespace xent::internal
