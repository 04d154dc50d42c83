// schedule-inl.h — the scheduler: runs the path choose_path() picked (paths.h) over all rows with OpenMP threads,
// deciding only what runs where: work items of lane groups (RunLaneGroups), whole rows or pieces of rows
// (RunRows), the stages of a shard of a vocabulary one at a time (ShardStatistics, ShardFinish; stages.h), and
// whether gradients are streamed around the caches. Every thread's buffers are allocated before the parallel loops,
// where a failure can still be reported.
#if defined(XENT_SCHEDULE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SCHEDULE_INL_H_
#undef XENT_SCHEDULE_INL_H_
#else
#define XENT_SCHEDULE_INL_H_
#endif

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "hwy/aligned_allocator.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "src/lane_group-inl.h"
#include "src/lane_rows-inl.h"
#include "src/parallel.h"
#include "src/paths.h"
#include "src/row_kernel-inl.h"
#include "src/row_stages-inl.h"
#include "src/short_rows-inl.h"
#include "src/simd_io-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Whether non-temporal gradient stores are safe from 4K aliasing: a streamed store that lands a little ahead of a
// later load modulo 4 KiB stalls that load until the store drains, and streamed stores drain slowly. So stream
// only when every gradient keeps one fixed distance to every input it is computed from (the same strides in
// bytes), and that distance is 0 or at least 2 KiB ahead modulo 4 KiB.
template <typename T, typename G>
bool StreamWithoutAliasing(const Layout& l) {
  for (Operand out : {kGradLogits, kGradLabels}) {
    if (!l.data[out]) continue;
    for (Operand in : {kLogits, kLabels}) {
      if (!l.data[in] || (in == kLabels && l.sparse)) continue;
      const auto bytes = [](int64_t stride, size_t size) { return stride * static_cast<int64_t>(size); };
      if (bytes(l.class_stride[out], sizeof(G)) != bytes(l.class_stride[in], sizeof(T))) return false;
      for (int d = 0; d < l.batch_rank; ++d)
        if (bytes(l.batch_strides[out][d], sizeof(G)) != bytes(l.batch_strides[in][d], sizeof(T))) return false;
      const uintptr_t ahead = (reinterpret_cast<uintptr_t>(l.data[out]) - reinterpret_cast<uintptr_t>(l.data[in])) % 4096;
      if (ahead != 0 && ahead < 2048) return false;
    }
  }
  return true;
}

// Makes every thread's non-temporal stores visible before the call returns (and before FixTargetGradient).
inline void FlushStreams(int threads) {
  if (threads <= 1) return hwy::FlushStream();
#pragma omp parallel num_threads(threads)
  hwy::FlushStream();
}

// A stage's copy of the logits: `lanes` contiguous elements of each class at class_stride, into buf[c·stage].
template <typename T>
HWY_INLINE void CopyIn(const T* from, int64_t class_stride, int64_t C, int64_t lanes, int64_t stage, T* buf) {
  for (int64_t c = 0; c < C; ++c) std::memcpy(buf + c * stage, from + c * class_stride, lanes * sizeof(T));
}

// The lane kernels over all rows (every path but kRows and kSplitRows): groups of up to Lanes rows along the
// innermost batch dimension, handed out to threads as work items of a stage's lanes (kStagedLanes), of
// batched_groups_per_item groups run in one call (kTinyRows, kShortRows), or of lane_groups_per_item groups, copied
// first (kCopiedLanes), swept block by block (kSweptLanes) or one by one (kLaneRows). A partial last group of a
// run goes through LaneRows on the narrowest vector that holds it.
template <bool kGeneral, typename T, typename G>
void RunLaneGroups(const Layout& l, const KernelChoice& choice, int threads, bool parallel, bool stream) {
  const hn::ScalableTag<Compute<T>> da;
  const int64_t C = l.classes, lanes = static_cast<int64_t>(hn::Lanes(da));
  const int inner = l.batch_rank - 1;
  const int64_t I = l.batch_shape[inner], outer = l.rows / I;
  const bool staging = choice.path == KernelPath::kStagedLanes;
  const int64_t S = staging ? choice.stage_lanes : lanes;
  // A stage buffer holds class c at c·pitch: S elements and one line of padding (see Tuning::stage_pad).
  const int64_t pitch = S + kTuning.stage_pad / static_cast<int64_t>(sizeof(T));
  const auto lane_stride = [&](Operand k) { return l.batch_strides[k][inner]; };
  const bool tiny = choice.path == KernelPath::kTinyRows, batched_short = choice.path == KernelPath::kShortRows;
  const bool batched = tiny || batched_short;
  const int64_t item =
      staging ? S : (batched ? kTuning.batched_groups_per_item : kTuning.lane_groups_per_item) * lanes;
  const int64_t items = (I + item - 1) / item;
  // Staged, only the logits are copied (their lanes are contiguous). Dense labels with contiguous lanes are asked
  // for ahead as the logits are (LaneGroup::y_next) and read in place, once per group in its exp pass (and again
  // by its gradients); gradients are written in place, with regular stores: copying labels in and gradients out
  // costs more than the cache misses it saves, as a stage's lines of labels are read only once a pass.
  const bool labels_ahead = staging && !l.sparse && l.data[kLabels] && lane_stride(kLabels) == 1;
  // Copied operands: contiguous short rows, logits and dense labels laid out alike.
  const bool copy_rows = choice.path == KernelPath::kCopiedLanes;
  const auto copied = [&](Operand k) {
    return copy_rows && l.data[k] && l.class_stride[k] == 1 && lane_stride(k) == C;
  };
  const bool copy_x = copied(kLogits), copy_y = !l.sparse && copied(kLabels);
  // Sweeping (LaneSweep): the groups of a work item in block-major order, for rows of more than one block of
  // classes with contiguous lanes, not staged (too many classes: [64,1000,49] axis 1, whose 1000 runs of 49 lanes
  // are one 196 KB stretch per outer index). Group by group, each group would read one 32-byte piece of every run,
  // a stride the hardware prefetchers do not follow across DRAM, and the other groups read the same lines again;
  // block by block the item is read front to back, a block of classes of every group while the next one is
  // prefetched, and read again (from cache) by the gradients' sweep.
  const bool sweep = choice.path == KernelPath::kSweptLanes;
  // Per thread: a stage buffer, or two copies of a work item's rows; allocated here: a failure inside the parallel
  // loop could not be reported. A thread's stage is followed by as much unused room (the stages of two threads
  // back to back measured slower; docs/performance.md).
  const int64_t part = staging ? kTuning.stage_bytes : item * C * static_cast<int64_t>(sizeof(T));
  const int64_t slot = staging || copy_rows ? 2 * part : 0;
  hwy::AlignedFreeUniquePtr<uint8_t[]> buffers;
  if (slot > 0 && !(buffers = hwy::AllocateAligned<uint8_t>(static_cast<size_t>(threads * slot)))) throw std::bad_alloc();
  // What every group of the call shares; each group sets its operands, count and first row.
  LaneGroup<T, G> shared;
  shared.grad_scale = l.grad_scale;
  shared.row_loss = l.row_loss;
  shared.stream = stream && !staging;
  if constexpr (kGeneral) {
    shared.tr = TransformOf<T>(l);
    shared.z_loss = l.options.z_loss;
    if (l.sparse) {
      shared.target_dtype = l.label_dtype;
      shared.targets_lane_stride = lane_stride(kLabels);
      shared.has_ignore = l.options.has_ignore;
      shared.ignore_index = l.options.ignore_index;
    }
  }
  ParallelFor(outer * items, parallel ? threads : 1, [&](int64_t w, int thread) {
    // This thread's buffers (null when nothing is staged or copied): the stage, or the copies of logits and labels.
    uint8_t* mine = slot > 0 ? buffers.get() + thread * slot : nullptr;
    T* x_stage = reinterpret_cast<T*>(mine);
    T* y_copy = mine ? reinterpret_cast<T*>(mine + part) : nullptr;
    const int64_t begin = (w % items) * item, n = std::min(item, I - begin), first = (w / items) * I + begin;
    const Row<T, G> r = RowAt<T, G>(l, first);
    // Staged or swept: the next run of rows (the next index of the outer dimensions), for prefetches past this one.
    const bool next_run = (staging || sweep) && w / items + 1 < outer;
    const Row<T, G> after = next_run ? RowAt<T, G>(l, first - begin + I) : r;
    if (staging) CopyIn(r.x, l.class_stride[kLogits], C, n, pitch, x_stage);
    if (copy_x) std::memcpy(x_stage, r.x, static_cast<size_t>(n * C) * sizeof(T));
    if (copy_y) std::memcpy(y_copy, r.y, static_cast<size_t>(n * C) * sizeof(T));
    LaneGroup<T, G> group = shared;
    // The group of rows from row g of this item on: g rows on along the innermost batch dimension (of a copy, if
    // copied), or of the stage.
    const auto set_group = [&](int64_t g) XENT_LAMBDA_INLINE {
      const auto operand = [&](Operand k, auto* row) {
        using P = std::remove_pointer_t<decltype(row)>;
        return LaneOperand<P>{row ? row + g * lane_stride(k) : nullptr, lane_stride(k), l.class_stride[k]};
      };
      group.x = staging ? LaneOperand<const T>{x_stage + g, 1, pitch} : operand(kLogits, copy_x ? x_stage : r.x);
      group.y = operand(kLabels, copy_y ? y_copy : r.y);
      group.loss = operand(kLoss, r.loss);
      group.grad_loss = operand(kGradLoss, r.grad_loss);
      group.gx = operand(kGradLogits, r.gx);
      group.gy = operand(kGradLabels, r.gy);
      group.count = static_cast<size_t>(std::min(lanes, n - g));
      group.first_row = first + g;
      if constexpr (kGeneral) {
        if (l.sparse)
          group.targets = static_cast<const char*>(l.data[kLabels]) +
                          (r.label_offset + g * lane_stride(kLabels)) * dtype_size(l.label_dtype);
      }
    };
    if (sweep) {
      // The item's groups (at most lane_groups_per_item), each with its sweep state, sweep_blocks lane blocks at a
      // time, each group asking for its lines of the next such stretch.
      constexpr int64_t kStep = kTuning.sweep_blocks * kLaneBlock;
      LaneSweep<Compute<T>> states[kTuning.lane_groups_per_item];
      const int64_t groups = (n + lanes - 1) / lanes;
      const bool gradients = l.data[kGradLogits] || l.data[kGradLabels];
      // Whether a step's classes are one contiguous stretch: the item holds every lane, classes I apart (and dense
      // labels laid out alike, or none).
      const auto stretched = [&](Operand k) { return l.class_stride[k] == I && lane_stride(k) == 1; };
      const bool contiguous = n == I && stretched(kLogits) && (r.y == nullptr || stretched(kLabels));
      // The item's last call (the forward's last step, or with gradients theirs) asks for the next item's first
      // stretch when it follows this one in memory: otherwise each item starts on lines not yet asked for.
      const bool next_follows =
          contiguous && next_run && after.x == r.x + C * I && (r.y == nullptr || after.y == r.y + C * I);
      for (bool backward : {false, true}) {
        if (backward && !gradients) break;
        for (int64_t begin = 0; begin < C; begin += kStep) {
          for (int64_t k = 0; k < groups; ++k) {
            set_group(k * lanes);
            states[k].begin = begin, states[k].end = std::min(C, begin + kStep);
            states[k].ahead = std::min(kStep, C - states[k].end), states[k].gradients = backward;
            if (next_follows && states[k].end == C && (backward || !gradients))
              states[k].ahead = std::min(kStep, C);
            states[k].stretch = contiguous ? states[k].ahead * I : 0, states[k].group = k;
            NarrowestLaneRows<kGeneral>(da, group, C, &states[k]);
          }
        }
      }
      return;
    }
    int64_t g = 0;
    if (batched) {  // every full group of the item in one call
      set_group(0);
      g = n / lanes * lanes;
      if (C == 2) TinyRows<kGeneral, 2>(da, group, g);
      if (C == 3) TinyRows<kGeneral, 3>(da, group, g);
      if (C == 4) TinyRows<kGeneral, 4>(da, group, g);
      if constexpr (kTransposable<hn::ScalableTag<Compute<T>>>) {
        if (batched_short) ShortRows<kGeneral>(da, group, C, g);
      }
    }
    for (; g < n; g += lanes) {
      // Not staged: asks for the group lane_ahead groups on, if this run of rows has it.
      if (!staging && !copy_x)
        PrefetchRows(LaneOperand<const T>{r.x, lane_stride(kLogits), l.class_stride[kLogits]},
                     LaneOperand<const T>{r.y, lane_stride(kLabels), l.class_stride[kLabels]}, C,
                     g + kTuning.lane_ahead * lanes, I - begin, lanes);
      set_group(g);
      // Staged: each group's forward asks for the same lanes half a stage after the next stage's start, one line
      // per class as it computes (LaneGroup::x_next): the next stage's second half is asked for during this
      // stage's first, its first half during the stage before; past this run of rows, in the next run. Spread over
      // the groups' computation, not in a burst before each stage's copy, the requests overlap the arithmetic.
      if (staging) {
        const int64_t ahead = g + S + S / 2, past = ahead - (I - begin);  // past ≥ 0: lanes into the next run
        const auto lanes_ahead = [&](const T* here, const T* there) -> const T* {
          if (past < 0) return here + ahead;
          return next_run && past < I ? there + past : nullptr;
        };
        group.x_next = {lanes_ahead(r.x, after.x), 1, l.class_stride[kLogits]};
        group.y_next = {labels_ahead ? lanes_ahead(r.y, after.y) : nullptr, 1, l.class_stride[kLabels]};
      }
      NarrowestLaneRows<kGeneral>(da, group, C);
    }
  });
}

// The row kernel's instance for a layout's strides: run(std::true_type) when every operand present has contiguous
// classes (ForwardRange's and GradientRange's constant-stride instances), else run(std::false_type).
template <typename Run>
HWY_INLINE auto WithStrides(const Layout& l, const Run& run) {
  const bool unit = l.class_stride[kLogits] == 1 && (l.sparse || !l.data[kLabels] || l.class_stride[kLabels] == 1) &&
                    (!l.data[kGradLogits] || l.class_stride[kGradLogits] == 1) &&
                    (!l.data[kGradLabels] || l.class_stride[kGradLabels] == 1);
  return unit ? run(std::true_type{}) : run(std::false_type{});
}

// Stage 1 of classes [begin, begin + n) of row r (its pieces merged in order; no target term).
template <bool kGeneral, bool kUnit, class DA, typename T, typename G>
HWY_INLINE RowState PieceStatistics(DA da, const Layout& l, const Row<T, G>& r, const Transform<T>& tr,
                                    int64_t begin, int64_t n) {
  const int64_t xs = l.class_stride[kLogits], ys = l.class_stride[kLabels];
  return RowStatistics<kGeneral, kUnit>(da, r.x + begin * xs, xs, r.y ? r.y + begin * ys : nullptr, ys, n,
                                        TransformFrom(tr, begin));
}

// Stage 3's gradients of classes [begin, begin + n) of row r, from its finished row.
template <bool kGeneral, bool kUnit, class DA, typename T, typename G>
HWY_INLINE void PieceGradients(DA da, const Layout& l, const Row<T, G>& r, const Transform<T>& tr,
                               const RowResult& result, int64_t begin, int64_t n, bool stream) {
  const int64_t xs = l.class_stride[kLogits], ys = l.class_stride[kLabels];
  const int64_t gxs = l.class_stride[kGradLogits], gys = l.class_stride[kGradLabels];
  GradientRange<kGeneral, kUnit>(da, r.x + begin * xs, xs, r.y ? r.y + begin * ys : nullptr, ys, n, result,
                                 TransformFrom(tr, begin), r.gx ? r.gx + begin * gxs : nullptr, gxs,
                                 r.gy ? r.gy + begin * gys : nullptr, gys, stream);
}

// The row kernel over all rows (kRows, kSplitRows), stage by stage (stages.h): each row's statistics, merged over
// its pieces, finished, then its gradients. kRows hands whole rows to threads: a thread reads a row once for its
// statistics and writes its gradients while the row is still in cache (rows of at most max_kept_exps classes keep
// their exps in between, a load instead of an exp per class). kSplitRows hands out pieces, so that a few rows of
// many classes (1 × 16M) use every thread, in the same pieces and merge order as one thread.
template <bool kGeneral, typename T, typename G>
void RunRows(const Layout& l, bool split, int threads, bool parallel, bool stream) {
  using A = Compute<T>;
  const hn::ScalableTag<A> da;
  const int64_t rows = l.rows, C = l.classes;
  const bool grads = l.data[kGradLogits] || l.data[kGradLabels];
  const int64_t xs = l.class_stride[kLogits], ys = l.class_stride[kLabels];
  const int64_t gxs = l.class_stride[kGradLogits], gys = l.class_stride[kGradLabels];
  const Transform<T> tr = kGeneral ? TransformOf<T>(l) : Transform<T>{};

  if (!split) {
    // Per-thread buffers for the kept exps: values of C classes and one vector, then one block maximum per block.
    const bool keep = l.data[kGradLogits] != nullptr && C <= kTuning.max_kept_exps;
    const int64_t N = static_cast<int64_t>(hn::Lanes(da)), blocks = (C + BlockLength(da) - 1) / BlockLength(da);
    const auto aligned = [](int64_t bytes) { return (bytes + HWY_ALIGNMENT - 1) / HWY_ALIGNMENT * HWY_ALIGNMENT; };
    const int64_t values_bytes = aligned((C + N) * static_cast<int64_t>(sizeof(A)));
    const int64_t slot = keep ? values_bytes + aligned(blocks * static_cast<int64_t>(sizeof(double))) : 0;
    hwy::AlignedFreeUniquePtr<uint8_t[]> kept_buffers;
    if (slot > 0 && !(kept_buffers = hwy::AllocateAligned<uint8_t>(static_cast<size_t>(threads * slot))))
      throw std::bad_alloc();
    // With streamed gradients, targets' elements are written after every row's stream is flushed: a regular store
    // into a line just streamed waits for that line to be written out and read back.
    std::vector<TargetGradient<G>> deferred(stream && l.sparse ? static_cast<size_t>(rows) : 0);
    ParallelFor(rows, parallel ? threads : 1, [&](int64_t i, int thread) {
      const Row<T, G> r = RowAt<T, G>(l, i);
      const Target t = TargetOf<T, G>(l, r, xs);
      if (t.ignored) {
        IgnoreRow(l, i, r);
        return;
      }
      const Row<T, G> next = RowAt<T, G>(l, i + 1 < rows ? i + 1 : i);
      KeptExps<A> kept{};
      if (keep) {
        uint8_t* mine = kept_buffers.get() + thread * slot;
        kept = {reinterpret_cast<A*>(mine), reinterpret_cast<double*>(mine + values_bytes)};
      }
      KeptExps<A>* kept_exps = keep ? &kept : nullptr;
      const RowState state = WithStrides(l, [&](auto unit) {
        return RowStatistics<kGeneral, decltype(unit)::value>(da, r.x, xs, r.y, ys, C, tr, next.x, next.y, kept_exps);
      });
      const RowResult result = FinishRow(l, i, r, WithTarget(state, t));
      if (grads) {
        WithStrides(l, [&](auto unit) {
          GradientRange<kGeneral, decltype(unit)::value>(da, r.x, xs, r.y, ys, C, result, tr, r.gx, gxs, r.gy, gys,
                                                         stream, kept_exps);
        });
        if (deferred.empty()) FixTargetGradient(l, r, t, result);
        else deferred[i] = TargetGradientOf(l, r, t, result);
      }
    });
    if (stream) FlushStreams(threads);
    if (!deferred.empty()) {
      ParallelFor(rows, parallel ? threads : 1, [&](int64_t i) {
        if (deferred[i].at) *deferred[i].at = deferred[i].value;
      });
    }
    return;
  }

  // Split rows: piece p of a row covers classes [p·len, min(C, (p+1)·len)), len = piece_classes, the pieces
  // RowStatistics computes on one thread.
  const int64_t len = kTuning.piece_classes, pieces = (C + len - 1) / len;
  std::vector<RowState> states(static_cast<size_t>(rows * pieces));
  std::vector<Target> targets(static_cast<size_t>(rows));
  std::vector<RowResult> results(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) targets[i] = TargetOf<T, G>(l, RowAt<T, G>(l, i), xs);
  ParallelFor<true>(rows * pieces, threads, [&](int64_t w) {
    if (targets[w / pieces].ignored) return;
    const Row<T, G> r = RowAt<T, G>(l, w / pieces);
    const int64_t begin = (w % pieces) * len, n = std::min(len, C - begin);
    states[w] = WithStrides(l, [&](auto unit) {
      return PieceStatistics<kGeneral, decltype(unit)::value>(da, l, r, tr, begin, n);
    });
  });
  for (int64_t i = 0; i < rows; ++i) {
    const Row<T, G> r = RowAt<T, G>(l, i);
    if (targets[i].ignored) {
      IgnoreRow(l, i, r);
      continue;
    }
    RowState s = states[i * pieces];
    for (int64_t p = 1; p < pieces; ++p) s = Merge(s, states[i * pieces + p]);
    results[i] = FinishRow(l, i, r, WithTarget(s, targets[i]));
  }
  if (!grads) return;
  ParallelFor<true>(rows * pieces, threads, [&](int64_t w) {
    if (targets[w / pieces].ignored) return;
    const int64_t begin = (w % pieces) * len, n = std::min(len, C - begin);
    WithStrides(l, [&](auto unit) {
      PieceGradients<kGeneral, decltype(unit)::value>(da, l, RowAt<T, G>(l, w / pieces), tr, results[w / pieces],
                                                      begin, n, stream);
    });
  });
  if (stream) FlushStreams(threads);
  for (int64_t i = 0; i < rows; ++i)
    if (!targets[i].ignored) FixTargetGradient(l, RowAt<T, G>(l, i), targets[i], results[i]);
}

// Stage 1 alone (stages.h): states[i] = the statistics of row i over this layout's classes, with its class-index
// target's term if the target is one of them; ignored rows get the empty state. Writes nothing else.
template <bool kGeneral, typename T>
void ShardStatistics(const Layout& l, RowState* states, int threads) {
  const hn::ScalableTag<Compute<T>> da;
  const Transform<T> tr = kGeneral ? TransformOf<T>(l) : Transform<T>{};
  ParallelFor(l.rows, runs_parallel(l, kTuning, threads) ? threads : 1, [&](int64_t i) {
    const Row<T, T> r = RowAt<T, T>(l, i);
    const Target t = TargetOf<T, T>(l, r, l.class_stride[kLogits]);
    states[i] = t.ignored ? RowState{} : WithTarget(WithStrides(l, [&](auto unit) {
      return PieceStatistics<kGeneral, decltype(unit)::value>(da, l, r, tr, 0, l.classes);
    }), t);
  });
}

// Stage 3 alone (stages.h): from merged[i], the statistics of row i over the whole vocabulary, writes its loss (or
// row_loss) and the gradients of this layout's classes, the target's element included where it is one of them.
template <bool kGeneral, typename T>
void ShardFinish(const Layout& l, const RowState* merged, int threads) {
  const hn::ScalableTag<Compute<T>> da;
  const Transform<T> tr = kGeneral ? TransformOf<T>(l) : Transform<T>{};
  const bool grads = l.data[kGradLogits] || l.data[kGradLabels];
  ParallelFor(l.rows, runs_parallel(l, kTuning, threads) ? threads : 1, [&](int64_t i) {
    const Row<T, T> r = RowAt<T, T>(l, i);
    const Target t = TargetOf<T, T>(l, r, l.class_stride[kLogits]);
    if (t.ignored) {
      IgnoreRow(l, i, r);
      return;
    }
    const RowResult result = FinishRow(l, i, r, merged[i]);
    if (!grads) return;
    WithStrides(l, [&](auto unit) {
      PieceGradients<kGeneral, decltype(unit)::value>(da, l, r, tr, result, 0, l.classes, false);
    });
    FixTargetGradient(l, r, t, result);
  });
}

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_SCHEDULE_INL_H_
