// short_rows-inl.h — many contiguous short rows, one row per SIMD lane, a work item's groups in one call:
// TinyRows (2 to 4 classes: each vector of rows deinterleaved into its classes by shuffles) and ShortRows (5 to
// kMaxShortRows classes: each group transposed in registers into a column tile), with their gradients written in
// row order (RowOrderGradients: no tiles, no gathers). The lane arithmetic is lane_state-inl.h's, so a row's
// results do not depend on whether it runs here or in LaneRows (a partial last group).
//
// Shapes: rows [0, n), n a multiple of Lanes; x[i·C + c], and y, gx, gy alike (class-index targets instead of y:
// LaneGroup::targets); loss[i·loss.lane_stride], grad_loss likewise (or losses in double at row_loss[first_row + i]
// for reductions).
#if defined(XENT_SHORT_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SHORT_ROWS_INL_H_
#undef XENT_SHORT_ROWS_INL_H_
#else
#define XENT_SHORT_ROWS_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "src/lane_group-inl.h"
#include "src/lane_state-inl.h"
#include "src/loss_terms-inl.h"
#include "src/paths.h"
#include "src/simd_io-inl.h"
#include "src/transpose-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The rows of positions p = k·N + i (i < N) of a group of contiguous rows of C classes (element (row l, class c)
// is at l·C + c): p / C, computed as ⌊(p + ½)·(1/C)⌋, exact in the compute type (p < N·kMaxShortRows = 2^11, so
// the two roundings move (p + ½)/C by less than 2^11·2^-23/C, and it is at least 1/(2C) away from an integer).
template <class DA>
HWY_INLINE hn::Vec<DA> RowOfPositions(DA da, int64_t k, hn::Vec<DA> inv_classes) {
  using A = hn::TFromD<DA>;
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  return hn::Floor(hn::Mul(hn::Add(hn::Iota(da, static_cast<A>(k * N)), hn::Set(da, A{0.5})), inv_classes));
}

// For each vector k of a group of contiguous rows of C ≤ kMaxShortRows classes, its positions' rows as lane indices
// (row[k·N + i], for TableLookupLanes) and classes as values (column[k·N + i] = p − C·(p / C)). The same for every
// group of a call: computed once, they are two loads per vector instead of a fifth of the gradient loop's work.
template <class DA>
struct RowPositions {
  using A = hn::TFromD<DA>;
  using TI = hwy::MakeSigned<A>;
  static constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(A);
  HWY_ALIGN TI row[kMaxLanes * kMaxShortRows];
  HWY_ALIGN A column[kMaxLanes * kMaxShortRows];
  RowPositions(DA da, int64_t C) {
    const hn::RebindToSigned<DA> di;
    const int64_t N = static_cast<int64_t>(hn::Lanes(da));
    const auto classes = hn::Set(da, static_cast<A>(C)), inv_classes = hn::Set(da, static_cast<A>(1.0 / C));
    for (int64_t k = 0; k < C; ++k) {
      const auto rows = RowOfPositions(da, k, inv_classes);
      hn::Store(hn::ConvertTo(di, rows), di, row + k * N);
      hn::Store(hn::NegMulAdd(rows, classes, hn::Iota(da, static_cast<A>(k * N))), da, column + k * N);
    }
  }
};

// Gradients of a full group of contiguous rows (x, labels or class-index targets, gx and gy: rows C apart, classes
// contiguous, C ≤ kMaxShortRows; effective labels alpha·y + beta, no class weights or soft-cap) from the group's
// results r (ref, log_sum, scale) and g, computed in row order: vector k of the group's elements holds positions
// p = k·N + i, each row's values are moved to its positions with one table lookup, and the gradients are stored
// as they are; no tiles, no gathers (a transposed tile and a gather per output vector cost more). The same
// arithmetic per element as LaneRows' column loop. exps (optional): the forward's exp(x − r) of the group in row
// order (exps[l·C + c]), read instead of computed again.
template <bool kGeneral, class DA, typename T, typename G>
HWY_INLINE void RowOrderGradients(DA da, const LaneGroup<T, G>& a, int64_t C, const RowPositions<DA>& positions,
                                  hn::Vec<DA> target_vec, const LaneResults<DA>& r, hn::Vec<DA> g,
                                  const hn::TFromD<DA>* exps) {
  using A = hn::TFromD<DA>;
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  const hn::RebindToSigned<DA> di;
  const auto one = hn::Set(da, A{1}), half = hn::Set(da, A{0.5});
  const auto alpha = hn::Set(da, static_cast<A>(a.tr.alpha)), beta = hn::Set(da, static_cast<A>(a.tr.beta));
  const auto half_ref = hn::Mul(r.ref, half), half_log_sum = hn::Mul(r.log_sum, half), twice_g = hn::Add(g, g);
  const bool has_targets = kGeneral && a.targets != nullptr;
  const T* const x_data = a.x.data;
  const T* const y_data = a.y.data;
  G* const gx_data = a.gx.data;
  G* const gy_data = a.gy.data;
  const bool stream = a.stream;
  for (int64_t k = 0; k < C; ++k) {
    const auto lanes_row = hn::IndicesFromVec(da, hn::Load(di, positions.row + k * N));
    const auto at_row = [&](hn::Vec<DA> per_row) { return hn::TableLookupLanes(per_row, lanes_row); };
    const auto xv = LoadPromote(da, x_data + k * N);
    hn::Vec<DA> yv;
    if constexpr (!kGeneral) {
      yv = LoadPromote(da, y_data + k * N);
    } else {
      const auto column = hn::Load(da, positions.column + k * N);
      const auto y = has_targets ? hn::IfThenElseZero(hn::Eq(at_row(target_vec), column), one)
                                 : LoadPromote(da, y_data + k * N);
      yv = hn::MulAdd(alpha, y, beta);
    }
    if (gx_data != nullptr) {
      const auto e = exps ? hn::Load(da, exps + k * N) : ExpNonPositive(da, hn::Sub(xv, at_row(r.ref)));
      auto v = GradLogits(at_row(r.scale), e, at_row(g), yv);
      // An ignored row (target −1 here) gets exactly 0, also where it is NaN (its g = 0 times NaN).
      if (has_targets) v = hn::IfThenZeroElse(hn::Eq(at_row(target_vec), hn::Set(da, A{-1})), v);
      StoreLanes(da, v, gx_data + k * N, 1, hn::Lanes(da), stream);
    }
    if (gy_data != nullptr) {
      const auto v = GradLabels(xv, yv, at_row(half_ref), at_row(half_log_sum), at_row(twice_g));
      StoreLanes(da, v, gy_data + k * N, 1, hn::Lanes(da), stream);
    }
  }
}

// TinyRows: rows of kC ∈ [2, 4] contiguous classes (4M × 2, 2M × 4), a vector of rows at a time, each vector's
// classes deinterleaved into registers by shuffles (LoadClasses), gradients interleaved back. Labels are
// contiguous rows like x (plain loss, no options), or with kGeneral class-index targets, with z-loss and
// ignore_index (class weights, soft-cap and label smoothing stay with LaneRows).
// The arithmetic of LaneRows (GroupTargets, SumLanes, FinishLanes, GradLogits, GradLabels); what differs is that
// one call runs many groups in one loop with everything in registers: per group of rows, LaneRows' setup and
// tiles cost more than the arithmetic.
template <bool kGeneral, size_t kC, class DA, typename T, typename G>
void TinyRows(DA da, const LaneGroup<T, G>& shared, int64_t n) {
  using A = hn::TFromD<DA>;
  constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(A);
  constexpr int64_t C = static_cast<int64_t>(kC);
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  HWY_ALIGN A buf[kMaxLanes * kC];  // float16/bfloat16 operands converted, and interleaved gradients
  const auto load = [&](const T* p, hn::Vec<DA>* v) XENT_LAMBDA_INLINE {
    if constexpr (std::is_same_v<T, A>) {
      LoadClasses(da, p, C, v);
    } else {
      PromoteRows(da, p, C, buf);
      LoadClasses(da, buf, C, v);
    }
  };
  const auto store = [&](const hn::Vec<DA>* v, G* p) XENT_LAMBDA_INLINE {
    if constexpr (std::is_same_v<G, A>) {
      if (!shared.stream) return StoreClasses(da, v, C, p);
    }
    StoreClasses(da, v, C, buf);  // then converted, or streamed
    for (int64_t k = 0; k < C; ++k)
      StoreLanes(da, hn::Load(da, buf + k * N), p + k * N, 1, hn::Lanes(da), shared.stream);
  };
  const double z_loss = kGeneral ? shared.z_loss : 0.0;
  const auto half = hn::Set(da, A{0.5}), one = hn::Set(da, A{1});
  const auto alpha = hn::Set(da, static_cast<A>(shared.tr.alpha));
  TargetLanes<DA> target_lanes;
  LaneGroup<T, G> a = shared;  // the group of rows i, i + 1, ...
  for (int64_t i = 0; i < n; i += N) {
    hn::Vec<DA> x[kC], y[kC];
    load(shared.x.data + i * C, x);
    a.SetFirst(shared, i);
    const GroupTargets<DA> targets = ReadGroupTargets(da, a, hn::Lanes(da), kGeneral, target_lanes);
    const auto g = UpstreamGradients(da, shared, i, hn::Lanes(da), targets.ignored);
    if constexpr (kGeneral) {
      // The effective labels, as RowOrderGradients computes them for the gradient (β = 0 here).
      for (size_t c = 0; c < kC; ++c)
        y[c] = hn::Mul(alpha, hn::IfThenElseZero(hn::Eq(targets.index, hn::Set(da, static_cast<A>(c))), one));
    } else {
      load(shared.y.data + i * C, y);
    }
    hn::Vec<DA> e[kC];  // the exps, kept for gx
    const auto keep = [&](int64_t c, hn::Vec<DA> v) XENT_LAMBDA_INLINE { e[c] = v; };
    const auto x_at = [&](int64_t c) { return x[c]; };
    const LaneResults<DA> r = FinishLanes(
        da,
        kGeneral ? SumLanes(da, 0, C, x_at, LaneTargets<DA>{targets.index, targets.weight}, NoHook{}, keep)
                 : SumLanes(da, 0, C, x_at, [&](int64_t c) { return y[c]; }, NoHook{}, keep),
        g, z_loss);
    StoreGroupLosses(da, shared, i, hn::IfThenZeroElse(targets.ignored, r.loss), hn::Lanes(da));
    hn::Vec<DA> grad[kC];
    if (shared.gx.data) {
      // Ignored rows: exactly 0, also where the row is NaN (its g = 0 times NaN).
      for (size_t c = 0; c < kC; ++c) grad[c] = hn::IfThenZeroElse(targets.ignored, GradLogits(r.scale, e[c], g, y[c]));
      store(grad, shared.gx.data + i * C);
    }
    if (shared.gy.data) {
      const auto half_ref = hn::Mul(r.ref, half), half_log_sum = hn::Mul(r.log_sum, half), twice_g = hn::Add(g, g);
      for (size_t c = 0; c < kC; ++c) grad[c] = GradLabels(x[c], y[c], half_ref, half_log_sum, twice_g);
      store(grad, shared.gy.data + i * C);
    }
  }
}

// Rows of C ∈ (4, kMaxShortRows] contiguous classes (1M × 10, 2M × 16, 65536 × 100), float32, float16 or bfloat16:
// rows [0, n), n a multiple of Lanes, one group of Lanes rows at a time. Labels are contiguous rows like x, or
// class-index targets (kGeneral), with z-loss and ignore_index (class weights, soft-cap and label smoothing stay
// with LaneRows, or above kMaxTiled classes with the row kernel); gx and gy, if any, contiguous rows.
// Shapes as for TinyRows. The arithmetic of LaneRows, step for step (TransposeRows, GroupTargets, SumLanes,
// FinishLanes or, above kLaneBlock classes, MergedLanes; RowOrderGradients; gx reads the forward's exps, or above
// kLaneBlock classes exps computed again after the merge, the very values LaneRows computes), so that the results
// agree with it to the bit; what differs is that one call runs many groups, and what they share (constants,
// pointers, buffers) is set up once: LaneRows' setup per group costs more than a short group's arithmetic.
template <bool kGeneral, class DA, typename T, typename G>
void ShortRows(DA da, const LaneGroup<T, G>& shared, int64_t C, int64_t n) {
  static_assert(kTransposable<DA>);
  using A = hn::TFromD<DA>;
  constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(A);
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  HWY_ALIGN A x_tile[kMaxLanes * kMaxShortRows], y_tile[kMaxLanes * kMaxShortRows];
  HWY_ALIGN A narrow_copy[std::is_same_v<T, A> ? 1 : kMaxLanes * kMaxShortRows];
  // With gx: the forward's exps as a column tile, then in row order for RowOrderGradients: a transpose back costs
  // less than an exp per vector.
  HWY_ALIGN A exp_tile[kMaxLanes * kMaxShortRows], exp_rows[kMaxLanes * (kMaxShortRows + 1)];
  // Class-major tile of the group's rows at p.
  const auto fill_tile = [&](const T* p, A* tile) XENT_LAMBDA_INLINE {
    if constexpr (std::is_same_v<T, A>) {
      TransposeRows(da, p, C, C, tile);
    } else {
      PromoteRows(da, p, C, narrow_copy);
      TransposeRows(da, narrow_copy, C, C, tile);
    }
  };
  const auto x_at = [&](int64_t c) XENT_LAMBDA_INLINE { return hn::Load(da, x_tile + c * N); };
  const auto y_at = [&](int64_t c) XENT_LAMBDA_INLINE { return hn::Load(da, y_tile + c * N); };
  const bool has_targets = kGeneral && shared.targets != nullptr;
  const double z_loss = kGeneral ? shared.z_loss : 0.0;
  std::optional<RowPositions<DA>> positions;  // for the gradients only
  if (shared.gx.data || shared.gy.data) positions.emplace(da, C);
  const bool keep_exps = shared.gx.data != nullptr;
  // Rows of several lane blocks (C > kLaneBlock): the lanes' merged states and losses.
  MergedLanes<A> merged;
  HWY_ALIGN A merged_loss[kMaxLanes];
  TargetLanes<DA> target_lanes;
  if (keep_exps)  // columns past C: transposed along, never used
    for (int64_t c = C; c < N; ++c) hn::Store(hn::Zero(da), da, exp_tile + c * N);
  const auto keep_in_tile = [&](int64_t c, hn::Vec<DA> e) XENT_LAMBDA_INLINE { hn::Store(e, da, exp_tile + c * N); };
  LaneGroup<T, G> a = shared;  // the group's operands
  a.count = hn::Lanes(da);
  // The groups' loop, compiled twice: with the exps kept, and without for the other calls, which would otherwise
  // pay a store per class for exps nobody reads.
  const auto run_groups = [&](const auto& keep) XENT_LAMBDA_INLINE {
    constexpr bool kKeep = !std::is_same_v<std::decay_t<decltype(keep)>, NoHook>;
    for (int64_t i = 0; i < n; i += N) {
      // The rows lane_ahead groups on. Their reads are linear, yet for rows shorter than a vector (loaded by
      // overlapping vector loads, C elements apart) the hardware prefetchers fall behind from DRAM; rows of a vector
      // or more are read whole by aligned loads, and the prefetchers keep up.
      if (C < N) PrefetchRows(shared.x, shared.y, C, i + kTuning.lane_ahead * N, n, N);
      a.SetFirst(shared, i);
      fill_tile(a.x.data, x_tile);
      const GroupTargets<DA> targets = ReadGroupTargets(da, a, hn::Lanes(da), has_targets, target_lanes);
      const auto g = UpstreamGradients(da, shared, i, hn::Lanes(da), targets.ignored);
      if (!has_targets) fill_tile(a.y.data, y_tile);
      // Rows of several lane blocks: the next group's logits and labels (each one stretch of N·C elements; the
      // last group's own) are asked for while this one computes, N elements of each per class of the exp pass.
      // With the hardware prefetchers alone, rows of 128 classes from DRAM run slower here than in the row kernel,
      // which asks for each next row; rows of one block gain nothing from it.
      const int64_t ahead = std::min(i + N, n - N) * C;
      const T* const x_ahead = shared.x.data + ahead;
      const T* const y_ahead = has_targets ? x_ahead : shared.y.data + ahead;
      const auto touch = [&](int64_t c) XENT_LAMBDA_INLINE {
        hwy::Prefetch(x_ahead + c * N);
        hwy::Prefetch(y_ahead + c * N);
      };
      const auto block = [&](int64_t begin, int64_t end, const auto& touch_of, const auto& keep_exps_of)
                             XENT_LAMBDA_INLINE {
        if (has_targets)
          return SumLanes(da, begin, end, x_at, LaneTargets<DA>{targets.index, targets.weight}, touch_of,
                          keep_exps_of);
        return SumLanes(da, begin, end, x_at, y_at, touch_of, keep_exps_of);
      };
      LaneResults<DA> r;
      if (C <= kLaneBlock) {
        r = FinishLanes(da, block(0, C, NoHook{}, keep), g, z_loss);
      } else {  // as LaneRows: blocks merged per lane in double
        merged.Start();
        for (int64_t begin = 0; begin < C; begin += kLaneBlock)
          merged.Merge(da, block(begin, std::min(C, begin + kLaneBlock), touch, NoHook{}));
        merged.Finish(da, g, z_loss, target_lanes.ignored_lanes(has_targets), a.count, merged_loss);
        r = {hn::Load(da, merged.ref), hn::Load(da, merged.log_sum), hn::Load(da, merged.scale),
             hn::Load(da, merged_loss)};
        // Each block's exps were relative to its own max: the exps for gx are computed again from the tile with
        // the row's reference, as LaneRows computes them, and go the way of one block's kept exps.
        if constexpr (kKeep)
          for (int64_t c = 0; c < C; ++c) keep(c, ExpNonPositive(da, hn::Sub(x_at(c), r.ref)));
      }
      StoreGroupLosses(da, shared, i, hn::IfThenZeroElse(targets.ignored, r.loss), hn::Lanes(da));
      if constexpr (kKeep) TransposeColumns(da, exp_tile, C, exp_rows);
      if (positions)
        RowOrderGradients<kGeneral>(da, a, C, *positions, targets.index, r, g, kKeep ? exp_rows : nullptr);
    }
  };
  if (keep_exps) {
    run_groups(keep_in_tile);
  } else {
    run_groups(NoHook{});
  }
}

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_SHORT_ROWS_INL_H_
