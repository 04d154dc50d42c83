// paths.cc — choose_path: the candidates in order, each with the test of whether it applies (see paths.h).
#include "src/paths.h"

namespace xent::internal {
namespace {

// What the candidates ask of a layout.
struct Facts {
  const Layout& l;
  const TargetTraits& target;
  const Tuning& tuning;
  int threads;

  int64_t classes() const { return l.classes; }
  int inner() const { return l.batch_rank - 1; }
  // Stride between neighbouring rows of operand k along the innermost batch dimension (its lanes).
  int64_t lane_stride(Operand k) const { return l.batch_strides[k][inner()]; }
  // Operand k is absent, or in contiguous rows of C classes along the innermost batch dimension.
  bool rows_of_classes(Operand k) const {
    return !l.data[k] || (l.class_stride[k] == 1 && lane_stride(k) == l.classes);
  }
  bool dense_forward() const { return !l.sparse && !l.data[kGradLogits] && !l.data[kGradLabels]; }
  // No option that changes labels per class or logits (class weights, soft-cap, label smoothing).
  bool plain_labels() const {
    return !l.general || (!l.options.weight && l.options.softcap == 0 && l.options.beta == 0);
  }

  // ShortRows computes the full groups of these rows: 5 to kMaxShortRows classes (fewer for float32's dense
  // forward on some targets), every operand in contiguous rows (or absent), dense labels or class indices.
  bool short_rows_serve() const {
    const int64_t C = classes();
    const int64_t most =
        dense_forward() && target.float32 ? tuning.max_short_rows_dense_forward : kMaxShortRows;
    return target.transposable && C > 4 && C <= most && rows_of_classes(kLogits) &&
           (l.sparse || (l.data[kLabels] && rows_of_classes(kLabels))) && rows_of_classes(kGradLogits) &&
           rows_of_classes(kGradLabels) && plain_labels();
  }

  // The lane kernels (one row per lane) serve rows whose classes are strided (class axis not last) or short, with
  // at least a vector of neighbouring rows along the innermost batch dimension.
  bool lanes_serve() const {
    const int64_t C = classes();
    return inner() >= 0 && l.batch_shape[inner()] >= target.lanes &&
           (l.class_stride[kLogits] != 1 || C <= tuning.short_row || short_rows_serve()) && C < kMaxLaneClasses;
  }

  // Lanes per stage (a multiple of the target's lanes), or the lanes themselves: no stage. A stage copies a run
  // of lanes of every class of the logits into a contiguous buffer, in runs as long as the buffer allows (a copy
  // reads faster by longer runs): classes a large power of two apart with contiguous lanes (NCHW) all fall into
  // one L1 set, and read in place a group's classes evict each other between its max and exp passes.
  int64_t stage_lanes() const {
    if (lane_stride(kLogits) != 1) return target.lanes;
    for (int64_t run_bytes : {4096, 2048, 1024, 512, 256, 128, 64}) {
      const int64_t stage = run_bytes / target.storage_bytes;
      if (classes() * (run_bytes + tuning.stage_pad) <= tuning.stage_bytes && stage % target.lanes == 0)
        return stage;
    }
    return target.lanes;
  }

  bool tiny_rows_serve() const {
    const int64_t C = classes();
    return C >= 2 && C <= 4 && rows_of_classes(kLogits) && rows_of_classes(kGradLogits) &&
           rows_of_classes(kGradLabels) &&
           (l.general ? l.sparse && plain_labels() : l.data[kLabels] && rows_of_classes(kLabels));
  }

  // Contiguous short rows the lane kernel would gather (a dtype loaded without conversion whose vectors do not
  // transpose here: float64 on x86), large enough that the copy pays.
  bool copied_rows_serve() const {
    const int64_t C = classes();
    return !target.narrow && !target.transposable && C >= tuning.min_copied_classes && C <= tuning.short_row &&
           l.class_stride[kLogits] == 1 && lane_stride(kLogits) == C &&
           l.rows * C * target.storage_bytes >= tuning.min_copied_rows_bytes;
  }

  bool swept_lanes_serve() const { return classes() > kLaneBlock && lane_stride(kLogits) == 1; }

  // Fewer rows than the threads can share (a quarter of a work item each), each of several pieces.
  bool split_rows_serve() const {
    return runs_parallel(l, tuning, threads) && l.rows < 4 * threads && classes() > tuning.piece_classes;
  }
};

}  // namespace

const char* path_name(KernelPath path) {
  switch (path) {
    case KernelPath::kStagedLanes: return "staged lanes";
    case KernelPath::kTinyRows: return "tiny rows";
    case KernelPath::kShortRows: return "short rows";
    case KernelPath::kCopiedLanes: return "copied lanes";
    case KernelPath::kSweptLanes: return "swept lanes";
    case KernelPath::kLaneRows: return "lane rows";
    case KernelPath::kSplitRows: return "split rows";
    case KernelPath::kRows: return "rows";
  }
  return "unknown path";
}

KernelChoice choose_path(const Layout& l, const TargetTraits& target, int threads) {
  const Facts f{l, target, TuningFor(static_cast<size_t>(target.vector_bytes)), threads};
  if (l.rows > 0 && !target.rows_only && f.lanes_serve()) {
    const int64_t stage = f.stage_lanes();
    if (stage > target.lanes) return {KernelPath::kStagedLanes, stage};
    if (f.tiny_rows_serve()) return {KernelPath::kTinyRows};
    if (f.short_rows_serve()) return {KernelPath::kShortRows};
    if (f.copied_rows_serve()) return {KernelPath::kCopiedLanes};
    if (f.swept_lanes_serve()) return {KernelPath::kSweptLanes};
    return {KernelPath::kLaneRows};
  }
  if (f.split_rows_serve()) return {KernelPath::kSplitRows};
  return {KernelPath::kRows};
}

}  // namespace xent::internal
