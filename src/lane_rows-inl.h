// lane_rows-inl.h — LaneRows: one group of up to one vector of rows, one row per SIMD lane, for any layout where
// neighbouring rows sit side by side: the class axis of an NCHW tensor (rows are the H·W positions, contiguous;
// classes are H·W elements apart), or short rows of any strides. No transposed copy of the tensor: lane l holds row
// l, and the loop runs over classes; operands are read in place, from a column tile (short rows gathered or
// transposed once per group), or from a stage (kStagedLanes). With a LaneSweep, a call covers a range of classes
// of its group (kSweptLanes). The arithmetic is lane_state-inl.h's.
//
// Shapes: `count` ≤ Lanes rows; element (row l, class c) of x is x[l·x_lane + c·x_class], same for y, gx, gy;
// loss and grad_loss of row l at loss[l·loss_lane], grad_loss[l·grad_loss_lane].
#if defined(XENT_LANE_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_LANE_ROWS_INL_H_
#undef XENT_LANE_ROWS_INL_H_
#else
#define XENT_LANE_ROWS_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "src/lane_group-inl.h"
#include "src/lane_state-inl.h"
#include "src/loss_terms-inl.h"
#include "src/paths.h"
#include "src/short_rows-inl.h"
#include "src/simd_io-inl.h"
#include "src/transpose-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Rows of at most this many classes go through column tiles (see LaneRows): Lanes × 32 elements, 2 KiB each.
inline constexpr int64_t kMaxTiled = 32;
static_assert(kMaxTiled <= kMaxShortRows);

// One group's share of a block-major sweep over the groups of a work item (see RunLaneGroups): each LaneRows call
// then covers classes [begin, end) of the group's rows, and what the rows need between calls is kept here.
// Forward calls (gradients false) merge the blocks of [begin, end) into the states (begin 0 starts them); the one
// whose end is C finishes the rows: it writes their losses and keeps ref, log_sum and scale for the gradient calls,
// which write gx and gy of classes [begin, end). For C > kLaneBlock only; begin is a multiple of kLaneBlock.
// ahead (lanes contiguous): the call asks for classes [end, end + ahead) while it computes, one line per class
// read. Where they are one contiguous stretch of `stretch` elements of logits (and of dense labels, laid out
// alike: the work item holds every lane of its classes, [64,1000,49] axis 1), the item's group `group` (its lanes
// from group × the widest vector's lanes, also where a last group runs on a narrower vector) asks for lines
// [group·(end − begin), (group + 1)·(end − begin)) of it, in memory order and into L2; the stretch may run past
// class C into the next work item, when it follows in memory (its first classes, asked for by the item's last
// call). Otherwise (end + ahead ≤ C) the group's first line `ahead` classes on, also into L2 (the rest of a span
// that straddles two lines is the next group's first).
template <typename A>
struct LaneSweep {
  int64_t begin = 0, end = 0, ahead = 0;
  int64_t stretch = 0, group = 0;
  bool gradients = false;
  MergedLanes<A> lanes;
};

// Forward (and gradients when gx or gy is set) of one group of rows, or of its classes [begin, end) in a sweep.
// kGeneral: the loss options, as in ForwardRange; a class-index target t becomes the one-hot label [c == t] of
// its lane, so the effective label w_c·(alpha·onehot + beta) has the same form as for probabilities.
template <bool kGeneral, class DA, typename T, typename G>
void LaneRows(DA da, const LaneGroup<T, G>& a, int64_t C, LaneSweep<hn::TFromD<DA>>* sweep = nullptr) {
  using A = hn::TFromD<DA>;
  constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(A);
  // The classes of this call, and whether it computes the forward (a sweep's gradient calls do not).
  const int64_t from = sweep ? sweep->begin : 0, to = sweep ? sweep->end : C;
  const bool forward = sweep == nullptr || !sweep->gradients;
  const size_t count = a.count;
  const auto one = hn::Set(da, A{1});
  const auto half = hn::Set(da, A{0.5});
  const Transform<T>& tr = a.tr;
  const auto cap = hn::Set(da, static_cast<A>(tr.softcap)), inv_cap = hn::Set(da, static_cast<A>(tr.softcap ? 1 / tr.softcap : 0));
  // Targets of the lanes (GroupTargets).
  const bool has_targets = kGeneral && a.targets != nullptr;
  TargetLanes<DA> target_lanes;
  const GroupTargets<DA> group_targets = ReadGroupTargets(da, a, count, has_targets, target_lanes);
  const auto target_vec = group_targets.index;

  // Short rows whose lanes are not contiguous (C ≤ kMaxTiled, lane stride ≠ 1, e.g. 1M × 10: one gather per class)
  // are gathered once into a column tile in the compute type, tile[c·N + l] = (row l, class c), soft-capped if
  // asked; both passes and the gradients then read vectors from it instead of gathering again. float16/bfloat16
  // have no hardware gather: a full group of contiguous short rows is first converted with vector loads.
  constexpr bool kNarrow = !std::is_same_v<T, A>;
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  const bool short_rows = C <= kMaxTiled;
  HWY_ALIGN A x_tile[kMaxLanes * kMaxTiled], y_tile[kMaxLanes * kMaxTiled];
  HWY_ALIGN A narrow_copy[kNarrow ? kMaxLanes * kMaxTiled : 1];
  const hn::RebindToSigned<DA> di;
  using TI = hn::TFromD<decltype(di)>;
  const auto contiguous_rows = [&](const auto& op) {
    return count == hn::Lanes(da) && op.class_stride == 1 && op.lane_stride == C;
  };
  const auto fill_tile = [&](const LaneOperand<const T>& op, A* tile) XENT_LAMBDA_INLINE {
    if (!short_rows || op.data == nullptr || op.lane_stride == 1) return false;
    // A full group gathers with lane offsets computed once (pairs of classes where classes are contiguous, else
    // one class at a time): float rows whose offsets fit the index type from the operand, narrow rows from a copy
    // converted with vector loads (no hardware gather for them).
    const A* from = reinterpret_cast<const A*>(op.data);
    int64_t lane_stride = op.lane_stride;
    if constexpr (kNarrow) {
      if (!contiguous_rows(op)) lane_stride = 0;
      else PromoteRows(da, op.data, C, narrow_copy);
      from = narrow_copy;
    }
    const bool gather = count == hn::Lanes(da) && lane_stride > 0 &&
                        lane_stride <= static_cast<int64_t>(hwy::LimitsMax<TI>()) / N;
    // Stores v as class c's column of the tile.
    const auto put = [&](int64_t c, hn::Vec<DA> v) XENT_LAMBDA_INLINE { hn::Store(v, da, tile + c * N); };
    // A full group of contiguous rows of 2 to 4 classes is deinterleaved by shuffles, no gather.
    if (contiguous_rows(op) && C >= 2 && C <= 4) {
      hn::Vec<DA> v[4];
      LoadClasses(da, from, C, v);
      for (int64_t c = 0; c < C; ++c) put(c, v[c]);
      return true;
    }
    // A full group of rows of more classes, each row's classes contiguous (rows C apart, or further with gaps
    // between them; float16/bfloat16 rows from their converted copy): transposed in registers (TransposeRows).
#if HWY_TARGET != HWY_SCALAR
    if constexpr (kTransposable<DA>) {
      if (count == hn::MaxLanes(da) && op.class_stride == 1 && C > 4 && lane_stride >= C) {
        TransposeRows(da, from, C, lane_stride, tile);
        return true;
      }
    }
#endif
    int64_t c = 0;
#if HWY_TARGET != HWY_SCALAR
    if constexpr (sizeof(A) == 4) {
      // Two neighbouring classes of a row are one 64-bit element: gather those pairs for each half of the lanes
      // and split them with ConcatEven/ConcatOdd; half the gathered elements of one gather per class (the cost
      // of a gather grows with its elements). Left to float rows the transposes above do not take: 2 to 4
      // classes with gaps between rows, and targets whose vectors are not kTransposable.
      if (gather && op.class_stride == 1) {
        const hn::Repartition<double, DA> dd;
        const hn::RebindToSigned<decltype(dd)> dq;
        const auto pair_offsets = hn::Mul(hn::Iota(dq, 0), hn::Set(dq, static_cast<int64_t>(lane_stride * sizeof(A))));
        const A* upper_half = from + (N / 2) * lane_stride;  // row N/2
        for (; c + 2 <= C; c += 2) {
          const auto low = hn::BitCast(da, hn::GatherOffset(dd, reinterpret_cast<const double*>(from + c), pair_offsets));
          const auto high = hn::BitCast(da, hn::GatherOffset(dd, reinterpret_cast<const double*>(upper_half + c), pair_offsets));
          put(c, hn::ConcatEven(da, high, low));
          put(c + 1, hn::ConcatOdd(da, high, low));
        }
      }
    }
#endif
    const auto offsets = hn::Mul(hn::Iota(di, 0), hn::Set(di, static_cast<TI>(gather ? lane_stride : 0)));
    for (; c < C; ++c)
      put(c, gather ? hn::GatherIndex(da, from + c * op.class_stride, offsets)
                    : LoadRows(da, op.data + c * op.class_stride, op.lane_stride, count));
    return true;
  };
  const bool x_tiled = fill_tile(a.x, x_tile);
  // Soft-capped once in the tile, not tested per column while filling it.
  if (kGeneral && x_tiled && tr.softcap != 0)
    for (int64_t c = 0; c < C; ++c) hn::Store(Softcap(da, hn::Load(da, x_tile + c * N), cap, inv_cap), da, x_tile + c * N);
  const bool y_tiled = !has_targets && fill_tile(a.y, y_tile);
  // Direct operands: class c of every lane is one vector load at base + c·step (a column tile, or a full group
  // of contiguous lanes in the compute type, as NCHW stages are). Deciding that once per group, not per load,
  // keeps the hot loops free of taken branches (the per-load checks cost about a third of NCHW's forward).
  // On a vector narrower than the target's widest, LaneRows computes the last few lanes of a run
  // (NarrowestLaneRows in kernels.cc): there a partial group of contiguous lanes is direct too, each of its loads
  // and stores one masked to its lanes, which never touches memory past them (kMaskedLanes; BlendedStore on AVX2
  // and AVX-512). The widest vector's loads and stores stay unmasked: its partial groups, if any, take LoadRows.
  constexpr bool kMaskedGroups = hn::MaxLanes(DA()) * sizeof(A) < HWY_MAX_BYTES && kMaskedLanes<DA, T>;
  const bool whole = kMaskedGroups || count == hn::Lanes(da);  // loaded and stored as whole vectors
  const auto lanes_mask = hn::FirstN(da, count);
  const auto load_lanes = [&](const A* p) XENT_LAMBDA_INLINE {
    if constexpr (kMaskedGroups) return hn::MaskedLoad(lanes_mask, da, p);
    else return hn::LoadU(da, p);
  };
  const auto promote_lanes = [&](const T* p) XENT_LAMBDA_INLINE {
    if constexpr (kMaskedGroups) return LoadMaskedLanes(da, p, count);
    else return LoadPromote(da, p);
  };
  const auto store_lanes = [&](hn::Vec<DA> v, A* p) XENT_LAMBDA_INLINE {
    if constexpr (kMaskedGroups) hn::BlendedStore(v, lanes_mask, da, p);
    else hn::StoreU(v, da, p);
  };
  const auto direct = [&](const auto& op) {
    return !kNarrow && whole && op.data != nullptr && op.lane_stride == 1;
  };
  const A* x_base = x_tiled ? x_tile : direct(a.x) ? reinterpret_cast<const A*>(a.x.data) : nullptr;
  const A* y_base = y_tiled ? y_tile : direct(a.y) ? reinterpret_cast<const A*>(a.y.data) : nullptr;
  const int64_t x_step = x_tiled ? N : a.x.class_stride, y_step = y_tiled ? N : a.y.class_stride;
  // float16/bfloat16 likewise: a full group of contiguous lanes is one load and one conversion at base + c·step,
  // tested first (NCHW stages, [64,1000,49]). Through LoadRows each load had three tests, and GCC laid the taken
  // paths out of the loop (float16 NCHW in cache, one thread: two jumps per load).
  const auto narrow_lanes = [&](const auto& op) -> const T* {
    return kNarrow && whole && op.data != nullptr && op.lane_stride == 1 ? op.data : nullptr;
  };
  const T* const x_lanes = x_tiled ? nullptr : narrow_lanes(a.x);
  const T* const y_lanes = y_tiled || has_targets ? nullptr : narrow_lanes(a.y);
  const bool capped_on_load = kGeneral && tr.softcap != 0 && !x_tiled;
  // Class c of the lanes' logits (soft-capped if asked) and effective labels. direct (a constant): x_base is set,
  // and y_base or the targets, so no test for them is compiled. What the loads need is in locals: read through
  // `a` or `tr`, GCC loaded it again for every class (each store through an intrinsic may alias anything).
  const T* const weight = tr.weight;
  const int64_t weight_stride = tr.weight_stride;
  const auto alpha = hn::Set(da, static_cast<A>(tr.alpha)), beta = hn::Set(da, static_cast<A>(tr.beta));
  const auto x_load = [&](int64_t c, auto direct) XENT_LAMBDA_INLINE {
    hn::Vec<DA> v;
    if (kNarrow && HWY_LIKELY(x_lanes != nullptr)) {
      v = promote_lanes(x_lanes + c * x_step);
    } else {
      v = decltype(direct)::value || HWY_LIKELY(x_base != nullptr)
              ? load_lanes(x_base + c * x_step)
              : LoadRows(da, a.x.data + c * a.x.class_stride, a.x.lane_stride, count);
    }
    if constexpr (kGeneral) {
      if (capped_on_load) v = Softcap(da, v, cap, inv_cap);
    }
    return v;
  };
  const auto y_load = [&](int64_t c, auto direct) XENT_LAMBDA_INLINE {
    const auto labels = [&] {
      if (kNarrow && HWY_LIKELY(y_lanes != nullptr)) return promote_lanes(y_lanes + c * y_step);
      return decltype(direct)::value || HWY_LIKELY(y_base != nullptr)
                 ? load_lanes(y_base + c * y_step)
                 : LoadRows(da, a.y.data + c * a.y.class_stride, a.y.lane_stride, count);
    };
    if constexpr (!kGeneral) {
      return labels();
    } else {
      const auto y = has_targets ? hn::IfThenElseZero(hn::Eq(target_vec, hn::Set(da, static_cast<A>(c))), one) : labels();
      auto v = hn::MulAdd(alpha, y, beta);
      if (weight) v = hn::Mul(v, hn::Set(da, ToCompute(weight[c * weight_stride])));
      return v;
    }
  };
  const auto x_at = [&](int64_t c) XENT_LAMBDA_INLINE { return x_load(c, std::false_type{}); };
  const auto y_at = [&](int64_t c) XENT_LAMBDA_INLINE { return y_load(c, std::false_type{}); };

  // A sweep's prefetch (see LaneSweep): the group's share of the next classes' stretch, a line per class, or the
  // first line of the group's lanes `ahead` classes on (to + ahead ≤ C); or a staged group's lines of a later
  // stage (x_next, y_next). All into L2: lines asked for this far ahead would be evicted from L1 before their
  // use, and in memory order the DRAM pages are opened once. (ShortRows, which asks one group ahead, keeps L1.)
  // Local pointers and strides: read through `a` in the loop, GCC reloaded them for every class. The loops that
  // touch are compiled apart from those that do not (NoHook), so the others carry no test per class.
  const int64_t ahead = sweep ? sweep->ahead : 0;
  const int64_t x_class = ahead > 0 ? a.x.class_stride : a.x_next.class_stride;
  const int64_t y_class = ahead > 0 ? a.y.class_stride : a.y_next.class_stride;
  const T* const x_ahead = ahead > 0 ? a.x.data + ahead * x_class : a.x_next.data;
  const T* const y_ahead = ahead > 0 ? (!has_targets && a.y.data != nullptr && a.y.lane_stride == 1
                                            ? a.y.data + ahead * y_class
                                            : nullptr)
                                     : a.y_next.data;
  // The stretch: its lines from first_line + c, c the class read, up to `lines`; x_stretch and y_stretch its start.
  constexpr int64_t kLine = 64 / sizeof(T);
  const int64_t stretch = ahead > 0 ? sweep->stretch : 0, lines = (stretch + kLine - 1) / kLine;
  const int64_t first_line = stretch > 0 ? sweep->group * (to - from) - from : 0;
  // The item's first lane: its groups are the widest vector's lanes apart (a narrower DA runs only a last group).
  const int64_t item_lane = sweep ? sweep->group * static_cast<int64_t>(hn::Lanes(hn::ScalableTag<A>())) : 0;
  const T* const x_stretch = stretch > 0 ? a.x.data - item_lane + to * x_class : nullptr;
  const T* const y_stretch = stretch > 0 && y_ahead != nullptr ? a.y.data - item_lane + to * y_class : nullptr;
  const auto touch = [&](int64_t c) XENT_LAMBDA_INLINE {
    if (stretch > 0) {
      const int64_t line = first_line + c;
      if (line >= lines) return;
      PrefetchToL2(x_stretch + line * kLine);
      if (y_stretch != nullptr) PrefetchToL2(y_stretch + line * kLine);
      return;
    }
    PrefetchToL2(x_ahead + c * x_class);
    if (y_ahead != nullptr) PrefetchToL2(y_ahead + c * y_class);
  };
  // Class-index targets without smoothing (beta = 0) have one label per lane: LaneTargets.
  const bool one_label = has_targets && tr.beta == 0;
  const LaneTargets<DA> targets{target_vec, group_targets.weight};
  const auto block = [&](int64_t begin, int64_t end) XENT_LAMBDA_INLINE {
    if constexpr (kGeneral) {
      if (one_label) {
        if (x_ahead != nullptr) return SumLanes(da, begin, end, x_at, targets, touch, NoHook{});
        return SumLanes(da, begin, end, x_at, targets, NoHook{}, NoHook{});
      }
    }
    if (x_ahead != nullptr) return SumLanes(da, begin, end, x_at, y_at, touch, NoHook{});
    return SumLanes(da, begin, end, x_at, y_at, NoHook{}, NoHook{});
  };

  const auto ignored_mask = group_targets.ignored;
  const auto g = UpstreamGradients(da, a, 0, count, ignored_mask);
  hn::Vec<DA> ref, log_sum, scale;
  HWY_ALIGN A loss[kMaxLanes] = {};  // set by the forward calls; {} silences -Wmaybe-uninitialized
  if (C <= kLaneBlock) {
    // One block: finish in vectors.
    const LaneResults<DA> r = FinishLanes(da, block(0, C), g, kGeneral ? a.z_loss : 0.0);
    ref = r.ref, log_sum = r.log_sum, scale = r.scale;
    hn::Store(hn::IfThenZeroElse(ignored_mask, r.loss), da, loss);
  } else {
    // Several blocks: merge each lane's blocks in double, then finish per lane. The states and results are a
    // sweep's, or this call's own.
    MergedLanes<A> own;
    MergedLanes<A>& kept = sweep ? sweep->lanes : own;
    if (from == 0 && forward) kept.Start();
    for (int64_t begin = from; forward && begin < to; begin += kLaneBlock)
      kept.Merge(da, block(begin, std::min(to, begin + kLaneBlock)));
    if (forward && to < C) return;  // a sweep's forward call before the last
    if (forward) kept.Finish(da, g, kGeneral ? a.z_loss : 0.0, target_lanes.ignored_lanes(has_targets), count, loss);
    ref = hn::Load(da, kept.ref), log_sum = hn::Load(da, kept.log_sum), scale = hn::Load(da, kept.scale);
  }
  if (forward) StoreGroupLosses(da, a, 0, hn::Load(da, loss), count);

  if (sweep && !sweep->gradients) return;
  // The gradients' pointers, strides and flags in locals (see x_load).
  G* const gx_data = a.gx.data;
  G* const gy_data = a.gy.data;
  if (gx_data == nullptr && gy_data == nullptr) return;
  const int64_t gx_class = a.gx.class_stride, gx_lane = a.gx.lane_stride;
  const int64_t gy_class = a.gy.class_stride, gy_lane = a.gy.lane_stride;
  const bool stream = a.stream, slope = kGeneral && tr.softcap != 0;
  const auto half_ref = hn::Mul(ref, half), half_log_sum = hn::Mul(log_sum, half), twice_g = hn::Add(g, g);
  // Inputs and outputs all contiguous rows (1M×10 and the like; labels may be class indices, no class weights or
  // soft-cap): the gradients in row order (RowOrderGradients), no tiles, no gathers.
  const bool row_labels = has_targets || contiguous_rows(a.y);
  const bool plain = !kGeneral || (!weight && !slope);
  if (short_rows && plain && contiguous_rows(a.x) && row_labels && (!gx_data || contiguous_rows(a.gx)) &&
      (!gy_data || contiguous_rows(a.gy))) {
    const LaneResults<DA> results{ref, log_sum, scale, hn::Zero(da)};
    RowOrderGradients<kGeneral>(da, a, C, RowPositions<DA>(da, C), target_vec, results, g, nullptr);
    return;
  }
  // Other gradients of contiguous short rows are computed into column tiles too, then transposed back with one gather
  // per output vector: output vector k holds row-major positions p = k·N + i, that is row p / C, class p mod C.
  HWY_ALIGN A gx_tile[kMaxLanes * kMaxTiled], gy_tile[kMaxLanes * kMaxTiled];
  const auto tiled_output = [&](const auto& op) {
    return op.data != nullptr && short_rows && op.lane_stride != 1 && contiguous_rows(op);
  };
  const bool gx_tiled = tiled_output(a.gx), gy_tiled = tiled_output(a.gy);
  // Direct outputs, as direct operands above: a tile, or a full group of contiguous lanes of the compute type
  // written with regular stores.
  const auto direct_output = [&](const LaneOperand<G>& op, bool tiled, A* tile) -> A* {
    if (tiled) return tile;
    if constexpr (std::is_same_v<G, A>) {
      if (!a.stream && direct(op)) return op.data;
    }
    return nullptr;
  };
  A* const gx_base = direct_output(a.gx, gx_tiled, gx_tile);
  A* const gy_base = direct_output(a.gy, gy_tiled, gy_tile);
  const int64_t gx_step = gx_tiled ? N : a.gx.class_stride, gy_step = gy_tiled ? N : a.gy.class_stride;
  // The class loop. Where every operand is one vector load or store (direct: x_base, y_base or targets, gx_base or
  // no gx, gy_base or no gy) it is compiled apart, with no test per operand.
  const bool direct_loop = x_base != nullptr && (y_base != nullptr || has_targets) &&
                           (gx_data == nullptr || gx_base != nullptr) && (gy_data == nullptr || gy_base != nullptr);
  const auto columns = [&](const auto& touch_class, auto direct) XENT_LAMBDA_INLINE {
    constexpr bool kDirect = decltype(direct)::value;
    for (int64_t c = from; c < to; ++c) {
      touch_class(c);
      const auto xv = x_load(c, direct), yv = y_load(c, direct);
      if (gx_data != nullptr) {
        auto v = GradLogits(scale, ExpNonPositive(da, hn::Sub(xv, ref)), g, yv);
        if (kGeneral && slope) v = SoftcapSlope(v, xv, inv_cap);
        v = hn::IfThenZeroElse(ignored_mask, v);  // exactly 0, also where the row is NaN (g = 0 times NaN)
        if (kDirect || HWY_LIKELY(gx_base != nullptr)) store_lanes(v, gx_base + c * gx_step);
        else StoreLanes(da, v, gx_data + c * gx_class, gx_lane, count, stream);
      }
      if (gy_data != nullptr) {
        const auto v = GradLabels(xv, yv, half_ref, half_log_sum, twice_g);
        if (kDirect || HWY_LIKELY(gy_base != nullptr)) store_lanes(v, gy_base + c * gy_step);
        else StoreLanes(da, v, gy_data + c * gy_class, gy_lane, count, stream);
      }
    }
  };
  const auto columns_touching = [&](const auto& touch_class) XENT_LAMBDA_INLINE {
    if (direct_loop) columns(touch_class, std::true_type{});
    else columns(touch_class, std::false_type{});
  };
  if (x_ahead != nullptr && !forward) columns_touching(touch);  // a sweep's gradient call
  else columns_touching(NoHook{});
  if (!gx_tiled && !gy_tiled) return;
  const auto classes = hn::Set(da, static_cast<A>(C)), inv_classes = hn::Set(da, static_cast<A>(1.0 / C));
  for (int64_t k = 0; k < C; ++k) {
    const auto p = hn::Iota(da, static_cast<A>(k * N));
    const auto row = RowOfPositions(da, k, inv_classes);
    const auto column = hn::ConvertTo(di, hn::MulAdd(hn::NegMulAdd(row, classes, p), hn::Set(da, static_cast<A>(N)), row));
    if (gx_tiled) StoreLanes(da, hn::GatherIndex(da, gx_tile, column), a.gx.data + k * N, 1, count, a.stream);
    if (gy_tiled) StoreLanes(da, hn::GatherIndex(da, gy_tile, column), a.gy.data + k * N, 1, count, a.stream);
  }
}

// LaneRows on the narrowest vector that holds the group, down to 128 bits: a run's last few lanes (the 49th of
// [64,1000,49] axis 1) cost a whole vector's arithmetic per class on the widest one, and more for their partial
// loads; on a narrower vector their contiguous lanes are loaded and stored masked, as whole vectors (LaneRows'
// kMaskedGroups).
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

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_LANE_ROWS_INL_H_
