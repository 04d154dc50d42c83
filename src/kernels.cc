// kernels.cc — row scheduling over threads, and Highway's per-target compilation of the row kernel
// (row_kernel-inl.h) and the lane kernel (lane_kernel-inl.h) for one dtype. The kernels are written once;
// foreach_target.h re-includes this file per target, and CMakeLists.txt compiles it once per dtype
// (XENT_KERNEL_DTYPE), so that the four translation units build in parallel.
#ifndef XENT_KERNEL_DTYPE
#error "kernels.cc is compiled once per dtype, with XENT_KERNEL_DTYPE defined (see CMakeLists.txt)"
#endif
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"
#include "src/kernels.h"
#include "src/lane_kernel-inl.h"
#include "src/row_kernel-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Pointers to one row of every operand (labels: element offset, as they may be class indices).
template <typename T, typename G>
struct Row {
  const T* x;
  const T* y;
  T* loss;
  const T* grad_loss;
  G* gx;
  G* gy;
  int64_t label_offset;
};

template <typename T, typename G>
Row<T, G> RowAt(const Layout& l, int64_t row) {
  std::array<int64_t, kNumOperands> offset{};
  for (int d = l.batch_rank - 1; d >= 0; --d) {
    const int64_t i = row % l.batch_shape[d];
    row /= l.batch_shape[d];
    for (int k = 0; k < kNumOperands; ++k) offset[k] += i * l.batch_strides[k][d];
  }
  const auto at = [&](Operand k, auto* type) -> decltype(type) {
    return l.data[k] ? static_cast<decltype(type)>(l.data[k]) + offset[k] : nullptr;
  };
  return {at(kLogits, (const T*)nullptr),
          l.sparse ? nullptr : at(kLabels, (const T*)nullptr),
          at(kLoss, (T*)nullptr),
          at(kGradLoss, (const T*)nullptr),
          at(kGradLogits, (G*)nullptr),
          at(kGradLabels, (G*)nullptr),
          offset[kLabels]};
}

// Everything a row needs beyond its pointers on the general path: the class-index target and its effective
// label (1 − eps)·w_t, added to the row state as one term.
struct Target {
  int64_t index = -1;  // −1: no class-index target
  bool ignored = false;
  double class_weight = 0;  // w_t
  double weight = 0;        // (1 − eps) · w_t
  double logit = 0;    // x'_t (soft-capped)
};

template <typename T, typename G>
Target TargetOf(const Layout& l, const Row<T, G>& r, int64_t x_stride) {
  Target t;
  if (!l.sparse) return t;
  const Options& o = l.options;
  t.index = l.label_dtype == XENT_INT32 ? static_cast<const int32_t*>(l.data[kLabels])[r.label_offset]
                                        : static_cast<const int64_t*>(l.data[kLabels])[r.label_offset];
  if (o.has_ignore && t.index == o.ignore_index) {
    t.ignored = true;
    return t;
  }
  // scan_targets has checked 0 ≤ index < C.
  t.class_weight = o.weight ? ToCompute(static_cast<const T*>(o.weight)[t.index * o.weight_stride]) : 1.0;
  t.weight = o.alpha * t.class_weight;
  const double x = ToCompute(r.x[t.index * x_stride]);
  t.logit = o.softcap != 0 ? o.softcap * std::tanh(x / o.softcap) : x;
  return t;
}

// Adds the target's term to a finished row state.
inline RowState WithTarget(RowState s, const Target& t) {
  if (t.index < 0 || t.weight == 0) return s;
  s.label_sum += t.weight;
  s.label_dot += t.weight * (t.logit - reference_of(s.max));
  return s;
}

template <typename T, typename G>
RowResult FinishRow(const Layout& l, int64_t i, const Row<T, G>& r, const RowState& state) {
  const double g = l.grad_scale * (r.grad_loss ? static_cast<double>(ToCompute(*r.grad_loss)) : 1.0);
  const RowResult result = Finalize(state, g, l.options.z_loss);
  if (l.row_loss) l.row_loss[i] = result.loss;
  else if (r.loss) *r.loss = FromDouble<T>(result.loss);
  return result;
}

// An ignored row: loss 0, gradient 0.
template <typename T, typename G>
void IgnoreRow(const Layout& l, int64_t i, const Row<T, G>& r) {
  if (l.row_loss) l.row_loss[i] = 0;
  else if (r.loss) *r.loss = FromDouble<T>(0.0);
  if (r.gx)
    for (int64_t j = 0; j < l.classes; ++j) r.gx[j * l.class_stride[kGradLogits]] = FromDouble<G>(0.0);
}

// The target's gradient element, recomputed in double from the row (the vector pass wrote it without the target's
// term): (s·exp(x'_t − r) − g·a_t)·dx'/dx, and where it goes (null: the row has no target, or no grad_logits).
template <typename G>
struct TargetGradient {
  G* at = nullptr;
  G value{};
};
template <typename T, typename G>
TargetGradient<G> TargetGradientOf(const Layout& l, const Row<T, G>& r, const Target& t, const RowResult& row) {
  if (t.index < 0 || !r.gx) return {};
  const Options& o = l.options;
  const double a = t.weight + o.beta * t.class_weight;
  double v = row.softmax_scale * std::exp(t.logit - row.reference) - row.grad_loss * a;
  if (o.softcap != 0) v *= 1 - (t.logit / o.softcap) * (t.logit / o.softcap);
  return {r.gx + t.index * l.class_stride[kGradLogits], FromDouble<G>(v)};
}

// Writes the target's gradient element over the one the vector pass wrote.
template <typename T, typename G>
void FixTargetGradient(const Layout& l, const Row<T, G>& r, const Target& t, const RowResult& row) {
  if (const TargetGradient<G> fix = TargetGradientOf(l, r, t, row); fix.at) *fix.at = fix.value;
}

// Below this many elements a call runs on one thread: waking threads costs more than the work.
inline constexpr int64_t kMinParallelElements = int64_t{1} << 15;
// Rows this short are computed one per SIMD lane even when contiguous: per-row overhead (reductions across
// lanes, a log) would dominate them.
inline constexpr int64_t kShortRow = 32;
// Gradient outputs at least this large are written with non-temporal stores.
inline constexpr int64_t kMinStreamBytes = int64_t{64} << 20;
// Groups per work item of the lane kernel when not staged (short rows): a work item's setup (RowAt's division
// per batch dimension, the OpenMP loop step) was about 15% of 16384x10's forward when each group was one.
inline constexpr int64_t kLaneGroupsPerItem = 16;
// The same for TinyRows and ShortRows (2 to 128 classes; 1024 rows per item with AVX2), which run a work item's
// groups in one call: with 16 groups, the work items' setup was a tenth of 16384x2's forward.
inline constexpr int64_t kBatchedGroupsPerItem = 128;
// The lane kernel's stage buffer (see StageLanes): at most this many bytes per thread, in L2. Sized (when labels
// were staged too, in a buffer of their own) for runs of 4 KiB per class at 21 classes: [32,21,128,128]'s forward,
// Zen 3, interleaved A/B, ns per element: one thread 1.59-1.67 (runs of 1 KiB, 24 KiB buffers) -> 1.38-1.42, two
// threads 0.81-1.31 -> 0.71-0.95; runs of 8 KiB measured the same as 4 KiB.
inline constexpr int64_t kStageBytes = 96 * 1024;
// Bytes of padding after each class's run in a stage buffer: runs of a power of two put every class (or every 4th
// for 1 KiB) into one L1 set, and a group's 21 classes of logits and labels (42 lines) then overflowed the 8 ways
// of that set between its two passes over the logits.
inline constexpr int64_t kStagePad = 64;
// Contiguous short rows (class stride 1, rows C apart) of logits at least this large, with at least this many
// classes, are copied one work item at a time (a few KiB) into a per-thread buffer with plain loads and stores,
// and the groups' gathers read the copy: gathers straight from memory did not keep enough of it in flight (the
// copy reads at about one core's DRAM rate). Measured on Zen 3 (forward, one thread, interleaved A/B, ns per
// element): 1Mx10 2.66 -> 2.30, 2Mx16 2.55 -> 2.07, 1Mx32 2.78 -> 1.80, 2Mx8 2.62 -> 2.48, 2Mx6 2.53 -> 2.39;
// two threads 1Mx10 1.34 -> 1.14. Not kept below these sizes, where the copy only costs: 16384x10 (0.6 MiB, in
// cache) 1.70 -> 1.81, 2Mx4 3.22 -> 3.44, 4Mx2 4.68 -> 4.80. Only rows that are gathered are copied: float rows
// are loaded as vectors and transposed in registers (LaneRows), and the copy then only cost (1Mx10 forward, two
// threads: 1.1 with the copy, 0.77 without; 2Mx16 0.99 and 0.63).
inline constexpr int64_t kMinCopiedRowsBytes = int64_t{2} << 20;
inline constexpr int64_t kMinCopiedClasses = 6;
// Rows of at most this many classes keep their forward's exps for the gradient pass (KeptExps: a load instead of
// an exp per class; a per-thread buffer of this many elements of the compute type, 256 KiB of float).
inline constexpr int64_t kMaxKeptExps = int64_t{1} << 16;
// Classes per step of a lane sweep (LaneSweep): every group of a work item computes this many classes of its rows
// before the next group does (a call's setup is then amortised over 4 blocks), and asks for the same classes of
// the next step meanwhile ([64,1000,49]: 100 KB of logits and labels a step, in L2).
inline constexpr int64_t kSweepClasses = 4 * kLaneBlock;
// A row is split across threads only into pieces of at least this many classes.
inline constexpr int64_t kMinSplit = int64_t{1} << 16;

// Whether non-temporal gradient stores are safe from 4K aliasing: a streamed store that lands a little ahead of a
// later load modulo 4 KiB stalls that load until the store drains, and streamed stores drain slowly. Measured
// (Zen 3, 2 threads, a plain loop over 4096 rows of 32000 floats: sum x and y, then stream two outputs at a fixed
// distance d ahead of them): d = 0 or ≥ 1 KiB ran at 29-38 GB/s, d = 32 B at 3.1, 256 B at 15, 512 B at 23 GB/s;
// regular stores at 18-21 GB/s for any d. xent at d = 64 B: 3.8 GB/s streamed, 8-14 GB/s with regular stores.
// So stream only when every gradient keeps one fixed distance to every input it is computed from (the same
// strides in bytes), and that distance is 0 or at least 2 KiB ahead modulo 4 KiB.
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
#pragma omp parallel num_threads(threads)
  hwy::FlushStream();
}

// Lanes per stage of the lane kernel's loop, a multiple of `lanes`; `lanes` itself: no staging. Classes a large
// power of two apart with contiguous lanes (NCHW, class axis 1: [32,21,128,128] has its 21 classes 64 KiB apart)
// all fall into one L1 set; a group's 21 lines of logits, read in its max pass and again in its exp pass, then
// evict each other in between (read in place: [32,21,128,128] forward from DRAM 25-26 -> 18 GB/s). A stage copies
// a run of whole lines of every class of the logits into a contiguous buffer once, in runs as long as the buffer
// allows (up to a page: the copy reads faster by longer runs; [32,21,16384] floats and as many labels, one thread,
// Zen 3: runs of 1 / 2 / 4 / 8 KiB 7.8 / 7.8 / 10.4 / 11.5 GB/s; two processes at once 6.9 + 3.8 by 1 KiB, 9.0 +
// 10.2 by 4 KiB). Labels, read once per group and pass, are read in place, and gradients written in place (see
// RunLaneGroups).
template <typename T>
int64_t StageLanes(const Layout& l, int64_t lanes) {
  const int inner = l.batch_rank - 1;
  if (l.batch_strides[kLogits][inner] != 1) return lanes;
  const int64_t size = static_cast<int64_t>(sizeof(T));
  for (int64_t run_bytes : {4096, 2048, 1024, 512, 256, 128, 64}) {
    const int64_t stage = run_bytes / size;
    if (l.classes * (run_bytes + kStagePad) <= kStageBytes && stage % lanes == 0) return stage;
  }
  return lanes;
}

// A stage's copy of the logits: `lanes` contiguous elements of each class at class_stride, into buf[c·stage].
template <typename T>
HWY_INLINE void CopyIn(const T* from, int64_t class_stride, int64_t C, int64_t lanes, int64_t stage, T* buf) {
  for (int64_t c = 0; c < C; ++c) std::memcpy(buf + c * stage, from + c * class_stride, lanes * sizeof(T));
}

// Whether operand k is absent or in contiguous rows of C classes along the innermost batch dimension.
inline bool RowsOfClasses(const Layout& l, Operand k) {
  return !l.data[k] || (l.class_stride[k] == 1 && l.batch_strides[k][l.batch_rank - 1] == l.classes);
}

// The dense float32 forward alone (no gradients) on targets of 16 float lanes (AVX-512) leaves rows of more than
// this many classes to the row kernel: ShortRows transposes labels as well as logits, and longer rows ran faster
// there (Zen 4, AVX3, 2^25 elements from DRAM, two threads, GB/s, ShortRows / row kernel, two alternations: 48
// classes 12.1–13.4 / 11.4, 56 12.2–13.2 / 12.2, 60 11.6–12.4 / 13.2, 64 11.7–11.8 / 13.9–14.0, 96 12.7 /
// 16.9–17.1, 128 12.4–12.5 / 21.8–22.0). float16 measured the other way (64 classes 12.3–12.5 / 5.3, 128 8.5–8.7 /
// 8.8), and sparse or forward+gradient rows ShortRows better or even (docs/performance.md); 8-lane targets (AVX2)
// were measured at 65–128 classes faster in ShortRows.
inline constexpr int64_t kMaxShortRowsDenseForward = 56;

// Whether ShortRows computes the full groups of these rows (when not staged): 5 to kMaxShortRows classes of
// float32 or narrower (kMaxShortRowsDenseForward for float32's dense forward on AVX-512), logits and gradients in
// contiguous rows (or absent), labels too or class indices, no class weights, soft-cap or label smoothing.
template <bool kGeneral, typename T>
bool ShortRowsServe(const Layout& l, const Transform<T>& tr) {
  const int64_t C = l.classes;
  const bool dense_forward = !l.sparse && !l.data[kGradLogits] && !l.data[kGradLabels];
  const bool wide_float = std::is_same_v<T, float> && hn::MaxLanes(hn::ScalableTag<float>()) >= 16;
  const int64_t most = dense_forward && wide_float ? kMaxShortRowsDenseForward : kMaxShortRows;
  return kTransposable<hn::ScalableTag<Compute<T>>> && C > 4 && C <= most && RowsOfClasses(l, kLogits) &&
         (l.sparse || (l.data[kLabels] && RowsOfClasses(l, kLabels))) && RowsOfClasses(l, kGradLogits) &&
         RowsOfClasses(l, kGradLabels) && (!kGeneral || (!tr.weight && tr.softcap == 0 && tr.beta == 0));
}

// Whether the lane kernel reads contiguous short rows through a copy (see kMinCopiedRowsBytes): rows it gathers,
// double on x86. float16/bfloat16 rows are converted with vector loads, float rows transposed (kTransposable).
template <typename T>
bool CopyShortRows(const Layout& l) {
  const int64_t C = l.classes;
  return std::is_same_v<T, Compute<T>> && !kTransposable<hn::ScalableTag<T>> && C >= kMinCopiedClasses &&
         C <= kShortRow && l.class_stride[kLogits] == 1 &&
         l.batch_strides[kLogits][l.batch_rank - 1] == C &&
         l.rows * C * static_cast<int64_t>(sizeof(T)) >= kMinCopiedRowsBytes;
}

// LaneRows on the narrowest vector that holds the group, down to 128 bits: a run's last few lanes (the 49th of
// [64,1000,49] axis 1) cost a whole vector's arithmetic per class on the widest one, and more for their partial
// loads; on a narrower vector their contiguous lanes are loaded and stored masked, as whole vectors (LaneRows'
// kMaskedGroups). [4,1000,L] axis 1 in cache, one thread, Zen 4 (AVX3), G elements/s: forward L = 49 1.80 ->
// 2.08, 52 1.93 -> 2.26, 56 2.13 -> 2.55 (48: 2.48); forward and both gradients 49 0.81 -> 0.95, 52 0.76 -> 1.05,
// 56 0.82 -> 1.20 (48: 1.15). [256,1000,49] from DRAM, two threads, GB/s: forward 24.0-24.3 -> 25.7-26.3, float16
// 13.0-13.2 -> 16.2-16.3, sparse 16.5-16.6 -> 18.7-19.0, forward and both gradients 18.9-19.1 -> 20.3-20.7, float16
// 6.7-9.4 -> 11.7-11.8.
template <bool kGeneral, class DA, typename T, typename G>
HWY_INLINE void NarrowestLaneRows(DA da, const LaneGroup<T, G>& group, int64_t C,
                                  LaneSweep<hn::TFromD<DA>>* sweep = nullptr) {
  using A = hn::TFromD<DA>;
  if constexpr (hn::MaxLanes(DA()) * sizeof(A) > 16) {
    const hn::Half<DA> dh;
    if (group.count <= hn::Lanes(dh)) return NarrowestLaneRows<kGeneral>(dh, group, C, sweep);
  }
  LaneRows<kGeneral>(da, group, C, sweep);
}

// The lane kernel over all rows: groups of up to Lanes rows along the innermost batch dimension, handed out to
// threads as work items of StageLanes rows when staged, else of kLaneGroupsPerItem groups (copied first when
// CopyShortRows).
template <bool kGeneral, typename T, typename G>
void RunLaneGroups(const Layout& l, int threads, bool parallel, bool stream, const Transform<T>& tr) {
  const hn::ScalableTag<Compute<T>> da;
  const int64_t C = l.classes, lanes = static_cast<int64_t>(hn::Lanes(da));
  const int inner = l.batch_rank - 1;
  const int64_t I = l.batch_shape[inner], outer = l.rows / I;
  const int64_t S = StageLanes<T>(l, lanes);
  const bool staging = S > lanes;
  // A stage buffer holds class c at c·pitch: S elements and one line of padding (see kStagePad).
  const int64_t pitch = S + kStagePad / static_cast<int64_t>(sizeof(T));
  const auto lane_stride = [&](Operand k) { return l.batch_strides[k][inner]; };
  // Rows of 2 to 4 classes, every operand in contiguous rows (or absent), plain loss, or class-index targets
  // without class weights, soft-cap or label smoothing: TinyRows.
  const bool tiny = !staging && C >= 2 && C <= 4 && RowsOfClasses(l, kLogits) && RowsOfClasses(l, kGradLogits) &&
                    RowsOfClasses(l, kGradLabels) &&
                    (kGeneral ? l.sparse && !tr.weight && tr.softcap == 0 && tr.beta == 0
                              : l.data[kLabels] && RowsOfClasses(l, kLabels));
  const bool batched_short = !staging && ShortRowsServe<kGeneral>(l, tr);
  const bool batched = tiny || batched_short;
  const int64_t item = staging ? S : (batched ? kBatchedGroupsPerItem : kLaneGroupsPerItem) * lanes;
  const int64_t items = (I + item - 1) / item;
  // Staged, only the logits are copied (their lanes are contiguous). Dense labels with contiguous lanes are asked
  // for ahead as the logits are (LaneGroup::y_next) and read in place, once per group in its exp pass (and again
  // by its gradients); gradients are written in place, with regular stores. Staged too, labels and gradients
  // (copied out per stage, streamed when large) measured slower: [32,21,128,128] axis 1 from DRAM, two threads,
  // GB/s, xent_bench, three alternations: forward 23.0-23.2 -> 26.6-26.8, float16 14.1 -> 14.9-15.0, forward and
  // gradient 16.8-17.7 -> 18.7-18.8, sparse forward and gradient 13.0-13.3 -> 14.8-15.3, sparse forward even; Python,
  // three alternations: forward 20.5-25.8 -> 24.9-29.5 (labels in place), forward and both gradients 17.5-19.1 ->
  // 19.5-20.0 (labels in place) -> 24.3-24.4 (gradients too), float16 10.0-11.3 -> 11.0-11.1 -> 13.0-13.5; in
  // cache (one thread, [1,21,128,128], G elements/s) forward 1.69-1.70 -> 1.94, float16 1.80 -> 1.92-1.93, sparse
  // forward and gradient 1.05-1.06 -> 1.15-1.16. [64,21,128,128] (gradients of 88 MB) forward and both gradients,
  // streamed per group 19.9 GB/s, regular stores 23.0-23.1 (sparse 14.3-14.5, 15.0).
  const bool labels_ahead = staging && !l.sparse && l.data[kLabels] && lane_stride(kLabels) == 1;
  // Copied operands (not staged): contiguous short rows, logits and dense labels laid out alike.
  const bool copy_rows = !staging && CopyShortRows<T>(l);
  const auto copied = [&](Operand k) {
    return copy_rows && l.data[k] && l.class_stride[k] == 1 && lane_stride(k) == C;
  };
  const bool copy_x = copied(kLogits), copy_y = !l.sparse && copied(kLabels);
  // Sweeping (LaneSweep): the groups of a work item in block-major order, for rows of more than one block of
  // classes with contiguous lanes, not staged (too many classes: [64,1000,49] axis 1, whose 1000 runs of 49 lanes
  // are one 196 KB stretch per outer index). Group by group, each group read one 32-byte piece of every run, a
  // stride the hardware prefetchers did not follow across DRAM, and the other groups read the same lines again;
  // block by block the item is read front to back, a block of classes of every group while the next one is
  // prefetched, and read again (from cache) by the gradients' sweep. [64,1000,49] forward, interleaved A/B, ns
  // per element (Zen 3): one thread 1.31-1.55 -> 1.21-1.29, two threads 0.59-0.89 -> 0.57-0.81; in L3 it costs
  // (0.82-0.91 -> 0.90-0.94: the calls and the prefetches), and fwd+grad measured no different.
  const bool sweep = !staging && !copy_rows && !tiny && C > kLaneBlock && lane_stride(kLogits) == 1;
  // Per thread: a stage buffer, or two copies of a work item's rows; allocated here: a failure inside the parallel
  // loop could not be reported. A thread's stage is followed by as much unused room: with the threads' stages back
  // to back, [32,21,128,128] ran slower (xent_bench, two alternations, GB/s: forward 22.7-23.1 against 24.6-25.8,
  // sparse 11.7-13.1 against 14.3; with a page between them 21.4-22.0 and 13.1-13.3); why was not found (not the
  // stage's offset within a page: 0 to 3968 bytes measured even).
  const int64_t part = staging ? kStageBytes : item * C * static_cast<int64_t>(sizeof(T));
  const int64_t slot = staging || copy_rows ? 2 * part : 0;
  hwy::AlignedFreeUniquePtr<uint8_t[]> buffers;
  if (slot > 0 && !(buffers = hwy::AllocateAligned<uint8_t>(static_cast<size_t>(threads * slot)))) throw std::bad_alloc();
  // What every group of the call shares; each group sets its operands, count and first row.
  LaneGroup<T, G> shared;
  shared.grad_scale = l.grad_scale;
  shared.row_loss = l.row_loss;
  shared.stream = stream && !staging;
  if constexpr (kGeneral) {
    shared.tr = tr;
    shared.z_loss = l.options.z_loss;
    if (l.sparse) {
      shared.target_dtype = l.label_dtype;
      shared.targets_lane_stride = lane_stride(kLabels);
      shared.has_ignore = l.options.has_ignore;
      shared.ignore_index = l.options.ignore_index;
    }
  }
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
  for (int64_t w = 0; w < outer * items; ++w) {
    // This thread's buffers (null when nothing is staged or copied): the stage, or the copies of logits and labels.
    uint8_t* mine = slot > 0 ? buffers.get() + omp_get_thread_num() * slot : nullptr;
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
      // The item's groups (at most kLaneGroupsPerItem), each with its sweep state, kSweepClasses at a time, each
      // group asking for its lines of the next such stretch.
      LaneSweep<Compute<T>> states[kLaneGroupsPerItem];
      const int64_t groups = (n + lanes - 1) / lanes;
      const bool gradients = l.data[kGradLogits] || l.data[kGradLabels];
      // Whether a step's classes are one contiguous stretch: the item holds every lane, classes I apart (and dense
      // labels laid out alike, or none).
      const auto stretched = [&](Operand k) { return l.class_stride[k] == I && lane_stride(k) == 1; };
      const bool contiguous = n == I && stretched(kLogits) && (r.y == nullptr || stretched(kLabels));
      // The item's last call (the forward's last step, or with gradients theirs) asks for the next item's first
      // stretch when it follows this one in memory: [64,1000,49] axis 1 from DRAM, two threads, GB/s, three
      // alternations: forward 20.9-22.4 -> 26.4-27.6, fwd+grad 17.5-18.2 -> 19.0-20.0, float16 11.4-11.6 ->
      // 12.1-12.4 (each item had started on lines not yet asked for).
      const bool next_follows =
          contiguous && next_run && after.x == r.x + C * I && (r.y == nullptr || after.y == r.y + C * I);
      for (bool backward : {false, true}) {
        if (backward && !gradients) break;
        for (int64_t begin = 0; begin < C; begin += kSweepClasses) {
          for (int64_t k = 0; k < groups; ++k) {
            set_group(k * lanes);
            states[k].begin = begin, states[k].end = std::min(C, begin + kSweepClasses);
            states[k].ahead = std::min(kSweepClasses, C - states[k].end), states[k].gradients = backward;
            if (next_follows && states[k].end == C && (backward || !gradients))
              states[k].ahead = std::min(kSweepClasses, C);
            states[k].stretch = contiguous ? states[k].ahead * I : 0, states[k].group = k;
            NarrowestLaneRows<kGeneral>(da, group, C, &states[k]);
          }
        }
      }
      continue;
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
      // Not staged: asks for the group kLaneAhead groups on, if this run of rows has it.
      if (!staging && !copy_x)
        PrefetchRows(LaneOperand<const T>{r.x, lane_stride(kLogits), l.class_stride[kLogits]},
                     LaneOperand<const T>{r.y, lane_stride(kLabels), l.class_stride[kLabels]}, C,
                     g + kLaneAhead * lanes, I - begin, lanes);
      set_group(g);
      // Staged: each group's forward asks for the same lanes half a stage after the next stage's start, one line
      // per class as it computes (LaneGroup::x_next): the next stage's second half was asked for during this
      // stage's first, its first half during the stage before; past this run of rows, in the next run. Measured
      // on [32,21,128,128] axis 1 from DRAM, two threads, GB/s, interleaved runs. Asked for as a whole before
      // each stage's copy, they went out in a burst and the copy and the computation took turns: forward
      // 14.0-14.1, float16 9.7-10.2, sparse 9.6-9.9, fwd+grad 13.2-14.4. By group, one stage on: 15.1-15.8,
      // 13.5-13.6, 13.1, 13.6-14.3 (the last groups' lines were asked for just before the copy); 1.5 stages on:
      // 17.2-17.4, 13.1-13.2, 13.8-13.9, 14.2-15.5 (float64 12.4 -> 13.7-14.4); 2 stages on: 16.9-17.2,
      // 12.3-12.4, 13.8-14.0 (into L1, one stage on into L2: forward 3% faster, sparse 20% slower). Into the next
      // run too (the first 1.5 stages of each run had not been asked for): forward 16.6-17.3 -> 16.7-17.7, float16
      // 12.9-13.1 -> 13.9-14.4, sparse 13.6-14.0 -> 14.1-14.5. Then into L2 instead of L1 (see LaneRows): forward
      // 17.3-17.7 -> 23.8-24.1.
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
  }
}

template <bool kGeneral, typename T, typename G>
void RunTyped(const Layout& l, int threads) {
  using A = Compute<T>;
  const hn::ScalableTag<A> da;
  const int64_t rows = l.rows, C = l.classes;
  if (rows == 0) return;
  const bool grads = l.data[kGradLogits] || l.data[kGradLabels];
  const int64_t xs = l.class_stride[kLogits], ys = l.class_stride[kLabels];
  const int64_t gxs = l.class_stride[kGradLogits], gys = l.class_stride[kGradLabels];
  // Every operand present has contiguous classes: the row kernel's constant-stride instances (see ForwardRange).
  const bool unit_strides = xs == 1 && (l.sparse || !l.data[kLabels] || ys == 1) &&
                            (!l.data[kGradLogits] || gxs == 1) && (!l.data[kGradLabels] || gys == 1);
  // The row kernel's instance for these strides: run(std::true_type) with every stride the constant 1.
  const auto with_strides = [&](auto run) { return unit_strides ? run(std::true_type{}) : run(std::false_type{}); };
  const bool parallel = threads > 1 && rows * C >= kMinParallelElements;
  // Gradients this large will not be read back from cache: write them around it.
  const bool stream = grads && rows * C * static_cast<int64_t>(sizeof(G)) >= kMinStreamBytes &&
                      StreamWithoutAliasing<T, G>(l);
  Transform<T> tr;
  if constexpr (kGeneral) {
    tr.weight = static_cast<const T*>(l.options.weight);
    tr.weight_stride = l.options.weight_stride;
    tr.alpha = l.options.alpha;
    tr.beta = l.options.beta;
    tr.softcap = l.options.softcap;
  }
  const auto piece_transform = [&](int64_t begin) {
    Transform<T> t = tr;
    if (t.weight) t.weight += begin * t.weight_stride;
    return t;
  };

  // Rows whose classes are strided (class axis not last) or short, with neighbouring rows along the innermost
  // batch dimension: one row per SIMD lane (lane_kernel-inl.h). Class indices are compared as values of the
  // compute type there, exact below 2^24. Contiguous rows of up to kShortRow classes, and up to kMaxShortRows where
  // ShortRows serves them (float64 rows of 48 and 64 classes ran slower in LaneRows than here: forward 3.7 -> 3.9
  // and 3.3 -> 4.0 ns per element, fwd+grad 4.7 -> 10.1 and 4.0 -> 7.8; one thread, Zen 3).
  const int inner = l.batch_rank - 1;
  if (inner >= 0 && l.batch_shape[inner] >= static_cast<int64_t>(hn::Lanes(da)) &&
      (xs != 1 || C <= kShortRow || ShortRowsServe<kGeneral>(l, tr)) && C < (int64_t{1} << 24)) {
    RunLaneGroups<kGeneral, T, G>(l, threads, parallel, stream, tr);
    if (stream) FlushStreams(threads);
    return;
  }

  // Pieces per row: 1 when rows alone keep every thread busy (each thread then reads a row once, computes its
  // state, and writes its gradients while the row is still in cache); otherwise rows are split into pieces
  // whose states are merged (1 × 16M classes uses every core).
  int64_t pieces = 1;
  if (parallel && rows < 4 * threads && C >= 2 * kMinSplit)
    pieces = std::min((4 * threads + rows - 1) / rows, C / kMinSplit);

  if (pieces == 1) {
    // Per-thread buffers for the kept exps (allocated here: a failure inside the parallel loop could not be
    // reported): values of C classes and one vector, then one block maximum per block.
    const bool keep = l.data[kGradLogits] != nullptr && C <= kMaxKeptExps;
    const int64_t N = static_cast<int64_t>(hn::Lanes(da)), blocks = (C + BlockLength(da) - 1) / BlockLength(da);
    const auto aligned = [](int64_t bytes) { return (bytes + HWY_ALIGNMENT - 1) / HWY_ALIGNMENT * HWY_ALIGNMENT; };
    const int64_t values_bytes = aligned((C + N) * static_cast<int64_t>(sizeof(A)));
    const int64_t slot = keep ? values_bytes + aligned(blocks * static_cast<int64_t>(sizeof(double))) : 0;
    hwy::AlignedFreeUniquePtr<uint8_t[]> kept_buffers;
    if (slot > 0 && !(kept_buffers = hwy::AllocateAligned<uint8_t>(static_cast<size_t>(threads * slot))))
      throw std::bad_alloc();
    // With streamed gradients, targets' elements are written after every row's stream is flushed: a regular store
    // into a line just streamed waited, once per row, for that line to be written and read back (sparse fwd+grad
    // 65536x1000, 2 threads, eight alternations of two builds: 0.46-0.69 ns per element, mean 0.58 -> 0.43-0.62,
    // mean 0.52).
    std::vector<TargetGradient<G>> deferred(stream && l.sparse ? static_cast<size_t>(rows) : 0);
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
    for (int64_t i = 0; i < rows; ++i) {
      const Row<T, G> r = RowAt<T, G>(l, i);
      const Target t = TargetOf<T, G>(l, r, xs);
      if (t.ignored) {
        IgnoreRow(l, i, r);
        continue;
      }
      const Row<T, G> next = RowAt<T, G>(l, i + 1 < rows ? i + 1 : i);
      KeptExps<A> kept{};
      if (keep) {
        uint8_t* mine = kept_buffers.get() + omp_get_thread_num() * slot;
        kept = {reinterpret_cast<A*>(mine), reinterpret_cast<double*>(mine + values_bytes)};
      }
      KeptExps<A>* kept_exps = keep ? &kept : nullptr;
      const RowState state = with_strides([&](auto unit) {
        return ForwardRange<kGeneral, decltype(unit)::value>(da, r.x, xs, r.y, ys, C, tr, next.x, next.y, kept_exps);
      });
      const RowResult result = FinishRow(l, i, r, WithTarget(state, t));
      if (grads) {
        with_strides([&](auto unit) {
          GradientRange<kGeneral, decltype(unit)::value>(da, r.x, xs, r.y, ys, C, result, tr, r.gx, gxs, r.gy, gys,
                                                         stream, kept_exps);
        });
        if (deferred.empty()) FixTargetGradient(l, r, t, result);
        else deferred[i] = TargetGradientOf(l, r, t, result);
      }
    }
    if (stream) FlushStreams(threads);
    if (!deferred.empty()) {
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
      for (int64_t i = 0; i < rows; ++i)
        if (deferred[i].at) *deferred[i].at = deferred[i].value;
    }
    return;
  }

  // Split rows: piece p of a row covers classes [p·len, min(C, (p+1)·len)), len a multiple of kBlock. Contiguous
  // pieces run the unit-stride instances too: with the strides as variables the pieces ran at 0.75 of the rows'
  // speed in cache (Zen 4, AVX3, two threads, Python, forward GB/s, two alternations: 1x1M 39.2-39.9 -> 53.5-53.6,
  // 4x256K 41.6-42.6 -> 52.9-54.2, as 256 rows of 4096 classes, 52.6-52.7; xent_bench 1x16M from DRAM, three
  // alternations: forward 24.3-29.4 -> 31.2-34.4, fwd_grad 21.0-27.2 -> 26.7-29.4).
  const int64_t len = (C / pieces + kBlock - 1) / kBlock * kBlock;
  pieces = (C + len - 1) / len;
  std::vector<RowState> states(static_cast<size_t>(rows * pieces));
  std::vector<Target> targets(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) targets[i] = TargetOf<T, G>(l, RowAt<T, G>(l, i), xs);
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t w = 0; w < rows * pieces; ++w) {
    if (targets[w / pieces].ignored) continue;
    const Row<T, G> r = RowAt<T, G>(l, w / pieces);
    const int64_t begin = (w % pieces) * len, n = std::min(len, C - begin);
    states[w] = with_strides([&](auto unit) {
      return ForwardRange<kGeneral, decltype(unit)::value>(da, r.x + begin * xs, xs, r.y ? r.y + begin * ys : nullptr,
                                                           ys, n, piece_transform(begin));
    });
  }
  std::vector<RowResult> results(static_cast<size_t>(rows));
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
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t w = 0; w < rows * pieces; ++w) {
    if (targets[w / pieces].ignored) continue;
    const Row<T, G> r = RowAt<T, G>(l, w / pieces);
    const int64_t begin = (w % pieces) * len, n = std::min(len, C - begin);
    with_strides([&](auto unit) {
      GradientRange<kGeneral, decltype(unit)::value>(da, r.x + begin * xs, xs, r.y ? r.y + begin * ys : nullptr, ys, n,
                                                     results[w / pieces], piece_transform(begin),
                                                     r.gx ? r.gx + begin * gxs : nullptr, gxs,
                                                     r.gy ? r.gy + begin * gys : nullptr, gys, stream);
    });
  }
  if (stream) FlushStreams(threads);
  for (int64_t i = 0; i < rows; ++i)
    if (!targets[i].ignored) FixTargetGradient(l, RowAt<T, G>(l, i), targets[i], results[i]);
}

template <typename T, typename G>
void RunTyped(const Layout& l, int threads) {
  if (l.general) RunTyped<true, T, G>(l, threads);
  else RunTyped<false, T, G>(l, threads);
}

// The storage type of this translation unit's dtype.
template <int kDtype>
struct StorageOf;
template <>
struct StorageOf<XENT_FLOAT16> { using type = hwy::float16_t; };
template <>
struct StorageOf<XENT_BFLOAT16> { using type = hwy::bfloat16_t; };
template <>
struct StorageOf<XENT_FLOAT32> { using type = float; };
template <>
struct StorageOf<XENT_FLOAT64> { using type = double; };

// Internal linkage: each dtype's translation unit has its own.
namespace {
void RunKernelsOfDtype(const Layout& l, bool gradients_in_compute_type, int threads) {
  using T = typename StorageOf<XENT_KERNEL_DTYPE>::type;
  if (gradients_in_compute_type) RunTyped<T, Compute<T>>(l, threads);
  else RunTyped<T, T>(l, threads);
}
}  // namespace

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent::internal {
HWY_EXPORT(RunKernelsOfDtype);

template <>
void run_kernels_of<XENT_KERNEL_DTYPE>(const Layout& layout, bool gradients_in_compute_type, int threads) {
  HWY_DYNAMIC_DISPATCH(RunKernelsOfDtype)(layout, gradients_in_compute_type, threads);
}
}  // namespace xent::internal
#endif  // HWY_ONCE
