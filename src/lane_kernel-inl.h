// lane_kernel-inl.h — softmax cross-entropy of up to one vector of rows at once, one row per SIMD lane.
//
// For layouts where a row's classes are not contiguous but neighbouring rows are: the class axis of an NCHW
// tensor (axis=1: rows are the H·W positions, contiguous; classes are 16384 elements apart), or many short rows
// (1M × 10: a group's rows are transposed in registers, or gathered, into a column tile). No transposed copy of
// the tensor: lane l of the vector holds row l, and the loop runs over classes.
//
// Shapes: `count` ≤ Lanes rows; element (row l, class c) of x is x[l·x_lane + c·x_class], same for y, gx, gy;
// loss and grad_loss of row l at loss[l·loss_lane], grad_loss[l·grad_loss_lane].
#if defined(XENT_LANE_KERNEL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_LANE_KERNEL_INL_H_
#undef XENT_LANE_KERNEL_INL_H_
#else
#define XENT_LANE_KERNEL_INL_H_
#endif

#include <algorithm>
#include <limits>
#include <optional>

#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/row_kernel-inl.h"
#include "src/row_state.h"
#include "src/scalar.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Classes per lane block: each lane sums at most this many terms in the compute type before the block is merged
// in double (accuracy), and a block of lanes (64 · 64 bytes) stays in L1 between its two passes.
inline constexpr int64_t kLaneBlock = 64;
// Rows of at most this many classes go through column tiles (see LaneRows): Lanes × 32 elements, 2 KiB each.
inline constexpr int64_t kMaxTiled = 32;
// Contiguous rows of at most this many classes can go through ShortRows: its tiles hold Lanes × 128 elements (8 KiB
// with 16 lanes), rows of more than kLaneBlock classes as two lane blocks merged in double. Rows of 33 to 128
// classes had gone through the row kernel, which paid about 100 ns of per-row work (reductions across lanes, a log,
// row pointers) on top of the classes': forward, one thread, 131072 elements in cache, Zen 3, ns per element:
// C = 33 3.32 -> 0.72, 48 2.22 -> 0.67, 64 1.96 -> 0.66; 262144 elements: 65 1.95 -> 0.99, 100 1.39 -> 0.87, 128
// 1.17 -> 0.82.
inline constexpr int64_t kMaxShortRows = 128;
static_assert(kMaxTiled <= kMaxShortRows);

template <typename T>
struct LaneOperand {
  T* data;
  int64_t lane_stride;
  int64_t class_stride;
};

template <typename T, typename G>
struct LaneGroup {
  LaneOperand<const T> x, y;
  LaneOperand<T> loss;           // class_stride unused
  LaneOperand<const T> grad_loss;  // data may be null; class_stride unused
  LaneOperand<G> gx, gy;         // data may be null
  size_t count;                  // rows in this group, 1..Lanes
  // The general path (options, class-index targets, reductions; see Layout).
  Transform<T> tr;
  double z_loss = 0;
  const void* targets = nullptr;  // class indices of target_dtype at targets[l · targets_lane_stride], or null
  xent_dtype target_dtype = XENT_INT64;
  int64_t targets_lane_stride = 0;
  bool has_ignore = false;
  int64_t ignore_index = 0;
  double grad_scale = 1;
  double* row_loss = nullptr;  // reductions: losses in double at row_loss[first_row + l]
  int64_t first_row = 0;
  bool stream = false;  // non-temporal gradient stores (see StoreLanes)
  // The same lanes of a later stage (staged groups, see RunLaneGroups): the forward asks for one line of each
  // class of them into L2, at data + c·class_stride, while it computes class c. data null: nothing (lane_stride
  // unused).
  LaneOperand<const T> x_next{}, y_next{};
};

// The class-index targets of a group's lanes l < count as values of the compute type A: target[l] (−1 for an
// ignored lane), ignored[l] (1 for an ignored lane, else 0) and the effective label at the target,
// target_weight[l] = alpha·w_t (0 for an ignored lane), as LaneRows' y_at computes it.
template <typename A, typename T, typename G>
HWY_INLINE void ReadTargets(const LaneGroup<T, G>& a, size_t count, A* target, A* ignored, A* target_weight) {
  const Transform<T>& tr = a.tr;
  const A alpha = static_cast<A>(tr.alpha);
  // kPlain: contiguous targets without class weights, the stride and the weight as constants, a loop GCC vectorises
  // (AVX3: two loads and conversions of 8 int64 targets, where with a variable stride it loaded and converted them
  // one by one). In cache, one thread, sparse forward G elements/s, two alternations: 32768x2 0.80 -> 0.91-0.92,
  // 16384x4 1.18-1.19 -> 1.26, 8192x10 1.36-1.37 -> 1.41-1.42; 1Mx10 from DRAM (xent_bench) even, 12.0-12.1 GB/s.
  const auto read = [&](const auto* targets, auto plain) XENT_LAMBDA_INLINE {
    constexpr bool kPlain = decltype(plain)::value;
    const int64_t stride = kPlain ? 1 : a.targets_lane_stride;
    for (size_t l = 0; l < count; ++l) {
      const int64_t t = targets[static_cast<int64_t>(l) * stride];
      const bool skip = a.has_ignore && t == a.ignore_index;
      target[l] = skip ? A{-1} : static_cast<A>(t);
      ignored[l] = skip ? A{1} : A{0};
      target_weight[l] =
          skip ? A{0} : alpha * (!kPlain && tr.weight ? ToCompute(tr.weight[t * tr.weight_stride]) : A{1});
    }
  };
  const auto read_any = [&](const auto* targets) XENT_LAMBDA_INLINE {
    if (a.targets_lane_stride == 1 && !tr.weight) read(targets, std::true_type{});
    else read(targets, std::false_type{});
  };
  if (a.target_dtype == XENT_INT32) read_any(static_cast<const int32_t*>(a.targets));
  else read_any(static_cast<const int64_t*>(a.targets));
}

// Asks for a later group's elements (op.data at its first row, `count` rows) while this one computes: hardware
// prefetchers follow neither 21 streams 64 KiB apart (NCHW classes) nor gathers well. Covers the lines of each
// class's lanes when lanes are contiguous (a span that straddles one more line has it asked for with the next
// group), or the group's one run when its short rows are contiguous.
template <typename T>
HWY_INLINE void PrefetchGroup(const LaneOperand<const T>& op, int64_t C, int64_t count) {
  if (op.data == nullptr) return;
  constexpr int64_t kLine = 64 / sizeof(T);
  if (op.lane_stride == 1) {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < count; i += kLine) hwy::Prefetch(op.data + c * op.class_stride + i);
  } else if (op.class_stride == 1 && op.lane_stride == C) {
    for (int64_t i = 0; i < count * C + kLine - 1; i += kLine) hwy::Prefetch(op.data + std::min(i, count * C - 1));
  }
}

// Asks for the line at p into L2, not L1 (x86: prefetcht1).
HWY_INLINE void PrefetchToL2(const void* p) { __builtin_prefetch(p, 0, 2); }

// Groups ahead of the one computing that a lane kernel asks for (PrefetchGroup).
inline constexpr int64_t kLaneAhead = 2;

// Asks for rows [at, min(at + most, end)) of x and y (absent operands: nothing), `at` counted in rows from their
// data, while earlier rows compute.
template <typename T>
HWY_INLINE void PrefetchRows(const LaneOperand<const T>& x, const LaneOperand<const T>& y, int64_t C, int64_t at,
                             int64_t end, int64_t most) {
  if (at >= end) return;
  const int64_t count = std::min(most, end - at);
  for (const LaneOperand<const T>* op : {&x, &y}) {
    if (op->data == nullptr) continue;
    PrefetchGroup(LaneOperand<const T>{op->data + at * op->lane_stride, op->lane_stride, op->class_stride}, C, count);
  }
}

// Lanes of row-stepped elements starting at p; lanes ≥ count are 0.
template <class DA, typename T>
HWY_INLINE hn::Vec<DA> LoadRows(DA da, const T* p, int64_t lane_stride, size_t count) {
  if (count == hn::Lanes(da)) return LoadLanes(da, p, lane_stride);
  return LoadPartial(da, p, lane_stride, count, hn::TFromD<DA>{0});
}

// v[c] = class c of Lanes contiguous rows of C ∈ [2, 4] classes at p: C vector loads deinterleaved by shuffles.
template <class DA>
HWY_INLINE void LoadClasses(DA da, const hn::TFromD<DA>* HWY_RESTRICT p, int64_t C, hn::Vec<DA>* v) {
  if (C == 2) hn::LoadInterleaved2(da, p, v[0], v[1]);
  if (C == 3) hn::LoadInterleaved3(da, p, v[0], v[1], v[2]);
  if (C == 4) hn::LoadInterleaved4(da, p, v[0], v[1], v[2], v[3]);
}

// The reverse of LoadClasses: class c of Lanes rows from v[c], stored as contiguous rows at p.
template <class DA>
HWY_INLINE void StoreClasses(DA da, const hn::Vec<DA>* v, int64_t C, hn::TFromD<DA>* HWY_RESTRICT p) {
  if (C == 2) hn::StoreInterleaved2(v[0], v[1], da, p);
  if (C == 3) hn::StoreInterleaved3(v[0], v[1], v[2], da, p);
  if (C == 4) hn::StoreInterleaved4(v[0], v[1], v[2], v[3], da, p);
}

// Lanes contiguous rows of C classes at p (float16/bfloat16 or the compute type), converted to the compute type
// into out[0, Lanes·C) with vector loads.
template <class DA, typename T>
HWY_INLINE void PromoteRows(DA da, const T* HWY_RESTRICT p, int64_t C, hn::TFromD<DA>* HWY_RESTRICT out) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  for (int64_t i = 0; i < N * C; i += N) hn::Store(LoadPromote(da, p + i), da, out + i);
}

// Whether Transpose serves DA: 32-bit lanes, 4, 8 or 16 of them (128-, 256- and 512-bit x86 vectors).
template <class DA>
inline constexpr bool kTransposable = HWY_TARGET != HWY_SCALAR && sizeof(hn::TFromD<DA>) == 4 &&
                                      (hn::MaxLanes(DA()) == 4 || hn::MaxLanes(DA()) == 8 || hn::MaxLanes(DA()) == 16);

#if HWY_TARGET != HWY_SCALAR

// The 4 × 4 transposes within every 128-bit block of four vectors: out[k] block b lane j is r[j] block b lane k.
template <class DA>
HWY_INLINE void TransposeBlocks(DA da, const hn::Vec<DA>* r, hn::Vec<DA>* out) {
  const hn::Repartition<uint64_t, DA> d64;
  const auto wide = [&](hn::Vec<DA> x) { return hn::BitCast(d64, x); };
  const auto t0 = hn::InterleaveLower(da, r[0], r[1]), t1 = hn::InterleaveUpper(da, r[0], r[1]);
  const auto t2 = hn::InterleaveLower(da, r[2], r[3]), t3 = hn::InterleaveUpper(da, r[2], r[3]);
  out[0] = hn::BitCast(da, hn::InterleaveLower(d64, wide(t0), wide(t2)));
  out[1] = hn::BitCast(da, hn::InterleaveUpper(d64, wide(t0), wide(t2)));
  out[2] = hn::BitCast(da, hn::InterleaveLower(d64, wide(t1), wide(t3)));
  out[3] = hn::BitCast(da, hn::InterleaveUpper(d64, wide(t1), wide(t3)));
}

// Block b of the result: the four elements at p + b·step (Lanes / 4 blocks, kTransposable).
template <class D>
HWY_INLINE hn::Vec<D> LoadBlocks(D d, const hn::TFromD<D>* p, int64_t step) {
  if constexpr (hn::MaxLanes(D()) == 4) {
    return hn::LoadU(d, p);
  } else {
    const hn::Half<D> dh;
    constexpr int64_t kHalfBlocks = static_cast<int64_t>(hn::MaxLanes(D())) / 8;
    return hn::Combine(d, LoadBlocks(dh, p + kHalfBlocks * step, step), LoadBlocks(dh, p, step));
  }
}

// Classes [c0, c0 + 4) of N rows at p (row l at p + l·lane_stride) as 4 vectors (out[k] lane l: row l, class
// c0 + k), for the last classes of a row when at most 4 are left: vector j holds 4 classes of rows j, j + 4, ...
// in its blocks, and transposing within blocks makes each class's vector. 8 half-vector loads and 12 shuffles on
// AVX2 for 4 classes, where a transpose of 8 × 8 needs 24 shuffles for 8.
template <class DA>
HWY_INLINE void TransposeFourClasses(DA da, const hn::TFromD<DA>* p, int64_t lane_stride, hn::Vec<DA>* out) {
  hn::Vec<DA> r[4];
  for (int64_t j = 0; j < 4; ++j) r[j] = LoadBlocks(da, p + j * lane_stride, 4 * lane_stride);
  TransposeBlocks(da, r, out);
}

// Transposes N × N elements in registers (N = Lanes, kTransposable): on return v[c] lane l is v[l] lane c on entry.
// Every four rows are transposed within each 128-bit block (interleaves of 32-bit, then of 64-bit lanes); then
// the blocks themselves: block b of four rows' result k moves to block (row quad) of result 4b + k (halves, then
// adjacent blocks). 24 shuffles for 8 × 8, 64 for 16 × 16.
template <class DA>
HWY_INLINE void Transpose(DA da, hn::Vec<DA>* v) {
  constexpr size_t kN = hn::MaxLanes(DA());
  static_assert(kTransposable<DA>);
  hn::Vec<DA> quad[kN / 4][4];  // quad[q][k] block b: class 4b + k of rows 4q .. 4q + 3
  for (size_t q = 0; q < kN / 4; ++q) TransposeBlocks(da, v + 4 * q, quad[q]);
  for (size_t k = 0; k < 4; ++k) {
    if constexpr (kN == 4) {
      v[k] = quad[0][k];
    } else if constexpr (kN == 8) {
      v[k] = hn::ConcatLowerLower(da, quad[1][k], quad[0][k]);
      v[4 + k] = hn::ConcatUpperUpper(da, quad[1][k], quad[0][k]);
    } else {
      // Halves: (q0 b0, q0 b1, q2 b0, q2 b1) and (q1 b0, q1 b1, q3 b0, q3 b1), then adjacent blocks.
      const auto p0 = hn::ConcatLowerLower(da, quad[2][k], quad[0][k]), p1 = hn::ConcatLowerLower(da, quad[3][k], quad[1][k]);
      const auto p2 = hn::ConcatUpperUpper(da, quad[2][k], quad[0][k]), p3 = hn::ConcatUpperUpper(da, quad[3][k], quad[1][k]);
      v[k] = hn::OddEvenBlocks(hn::SwapAdjacentBlocks(p1), p0);
      v[4 + k] = hn::OddEvenBlocks(p1, hn::SwapAdjacentBlocks(p0));
      v[8 + k] = hn::OddEvenBlocks(hn::SwapAdjacentBlocks(p3), p2);
      v[12 + k] = hn::OddEvenBlocks(p3, hn::SwapAdjacentBlocks(p2));
    }
  }
}
// N = Lanes full rows of C > 4 contiguous classes at `from` (row l at from + l·lane_stride, lane_stride ≥ C) as a
// column tile, tile[c·N + l] = (row l, class c), for classes c < C; the tile has room for max(C, N) columns. The
// rows are loaded as vectors, N classes at a time, and transposed in registers (16384x10 forward, one thread,
// Zen 3: pair gathers were about half of it). The last 1 to 4 classes of longer rows are the last 4 of each row,
// transposed by TransposeFourClasses (16384x10 forward: 989 -> 930 instructions per group, callgrind). Nothing
// past the group is read: with C ≥ N the last classes are loaded as the last N (or 4) of each row; with C < N only
// the last rows' loads can pass the group's end (at most kTailRows of them, as C > 4), and read a copy of its last
// vector instead. Columns past C (the next row's classes, a gap, or the tail's zeros) are transposed along and
// written, never read.
template <class DA>
HWY_INLINE void TransposeRows(DA da, const hn::TFromD<DA>* from, int64_t C, int64_t lane_stride,
                              hn::TFromD<DA>* HWY_RESTRICT tile) {
  using A = hn::TFromD<DA>;
  constexpr int64_t kN = static_cast<int64_t>(hn::MaxLanes(DA())), kTailRows = (kN + 4) / 5 - 1;
  const int64_t end = (kN - 1) * lane_stride + C, tail_begin = end - kN;
  HWY_ALIGN A tail[2 * kN];
  if (C < kN) {
    hn::Store(hn::LoadU(da, from + tail_begin), da, tail);
    hn::Store(hn::Zero(da), da, tail + kN);
  }
  for (int64_t pass = 0; pass < C; pass += kN) {
    if (pass > 0 && C - pass <= 4) {  // the last 1 to 4 classes (C = 10 on AVX2): the last 4 of each row
      hn::Vec<DA> v[4];
      TransposeFourClasses(da, from + C - 4, lane_stride, v);
      // Four stores, not a loop: GCC made a loop of them a copy of v through the stack, 16-byte pieces.
      A* const columns = tile + (C - 4) * kN;
      hn::Store(v[0], da, columns), hn::Store(v[1], da, columns + kN);
      hn::Store(v[2], da, columns + 2 * kN), hn::Store(v[3], da, columns + 3 * kN);
      break;
    }
    const int64_t c0 = C < kN ? 0 : std::min(pass, C - kN);
    // Rows by a pointer stepped along them, columns at fixed offsets from the pass's first: GCC kept 16 row and
    // column addresses per pass on the stack when each was computed from its index.
    hn::Vec<DA> v[kN];
    const A* row = from + c0;
    for (int64_t l = 0; l < kN - kTailRows; ++l, row += lane_stride) v[l] = hn::LoadU(da, row);
    for (int64_t l = kN - kTailRows; l < kN; ++l, row += lane_stride) {
      const int64_t at = row - from;
      v[l] = hn::LoadU(da, at + kN <= end ? row : tail + (at - tail_begin));
    }
    Transpose(da, v);
    // All N columns: classes the last pass repeats are written again with the same values, columns past C are
    // never read. A data-dependent count here cost 57 instructions a pass.
    A* const columns = tile + c0 * kN;
    for (int64_t c = 0; c < kN; ++c) hn::Store(v[c], da, columns + c * kN);
  }
}

// TransposeRows' inverse for contiguous rows: a column tile of N = Lanes rows of C > 4 classes, tile[c·N + l], as
// the rows, rows[l·C + c]. tile holds max(C, N) columns (those past C are read and transposed along); rows has
// room for N·C + N elements. Each pass transposes N columns (the last one the last N, overlapping the one before)
// and stores each row's N classes as one vector, rows in order: with C < N a row's store runs into the next row's
// first classes, which the next store writes again, and the last one past N·C.
template <class DA>
HWY_INLINE void TransposeColumns(DA da, const hn::TFromD<DA>* HWY_RESTRICT tile, int64_t C,
                                 hn::TFromD<DA>* HWY_RESTRICT rows) {
  using A = hn::TFromD<DA>;
  constexpr int64_t kN = static_cast<int64_t>(hn::MaxLanes(DA()));
  for (int64_t pass = 0; pass < C; pass += kN) {
    const int64_t c0 = C < kN ? 0 : std::min(pass, C - kN);
    hn::Vec<DA> v[kN];
    const A* column = tile + c0 * kN;
    for (int64_t c = 0; c < kN; ++c) v[c] = hn::Load(da, column + c * kN);
    Transpose(da, v);
    // Rows by a pointer stepped along them (see TransposeRows).
    A* row = rows + c0;
    for (int64_t l = 0; l < kN; ++l, row += C) hn::StoreU(v[l], da, row);
  }
}
#endif  // HWY_TARGET != HWY_SCALAR

// reference_of (row_state.h) of each lane: the max, or 0 for a max of −inf.
template <class D>
HWY_INLINE hn::Vec<D> ReferenceOf(D d, hn::Vec<D> max) {
  return hn::IfThenZeroElse(hn::Eq(max, hn::Set(d, -std::numeric_limits<hn::TFromD<D>>::infinity())), max);
}

// Class-index targets without label smoothing: the one nonzero effective label of each lane, `weight` (alpha·w_t;
// 0 for an ignored lane or one past the group), at class `index` (−1: none), both as values of the compute type.
template <class DA>
struct LaneTargets {
  hn::Vec<DA> index, weight;
};

// A hook that does nothing, for SumLanes' touch (no prefetch) or keep (the exps are not needed).
struct NoHook {
  template <class... Args>
  HWY_INLINE void operator()(Args...) const {}
};

// Sums of one block of classes [begin, end) of every lane (x_at(c): class c of the lanes): max, then
// Σ exp(x − r), Σ y, Σ_{y≠0} y·(x/2 − r/2), as in ForwardRange (row_kernel-inl.h), which explains the halving.
// labels: y_at(c), class c's labels of the lanes; or LaneTargets, whose logit at the target is picked in the max
// pass, so that the exp pass sums exps only (sparse 16384x10 forward: 48 instructions per class and group of 8
// rows in that pass with one-hot labels, by callgrind).
// touch(c) and keep(c, e) are called once per class in the second pass: touch asks for a later block's lines
// (LaneRows, ShortRows), keep gets class c's exps exp(x − r) (TinyRows and ShortRows keep them for the gradients).
// Prefetches go out in the exp pass, about 13 vector operations a class, not in the max pass, about 2: from there
// they left in bursts, and memory and computation took turns. Measured (Zen 4, two threads, from DRAM, GB/s,
// interleaved): [64,1000,49] axis 1 forward 17.4–19.0 -> 20.0–22.1, float16 10.1–11.0 -> 11.8–12.0, float64
// 10.5–11.1 -> 13.7–13.8, sparse 12.2 -> 13.7–14.3; [16,1000,300] (first-line prefetch) 10.8–10.9 -> 15.5–15.6;
// 2^25 elements in rows of 128 classes (ShortRows) float16 8.5–8.6 -> 12.4–12.5, sparse 12.3–12.4 -> 17.0–17.2.
template <class DA>
struct LaneBlock {
  hn::Vec<DA> max, ref, sum, label_sum, half_dot;
};
template <class DA, class XAt, class Labels, class Touch, class Keep>
HWY_INLINE LaneBlock<DA> SumLanes(DA da, int64_t begin, int64_t end, const XAt& x_at, const Labels& labels,
                                  const Touch& touch, const Keep& keep) {
  using A = hn::TFromD<DA>;
  constexpr bool kTargets = std::is_same_v<Labels, LaneTargets<DA>>;
  const auto zero = hn::Zero(da), half = hn::Set(da, A{0.5}), one = hn::Set(da, A{1});
  const auto neg_inf = hn::Set(da, -std::numeric_limits<A>::infinity());
  // Two running maxima: short rows are a chain of C dependent maxima otherwise.
  auto max = neg_inf, max1 = neg_inf;
  // With targets: x at each lane's target, if this block has it; `column` is class c as a value.
  auto picked = zero, column = hn::Set(da, static_cast<A>(begin));
  const auto pick = [&](hn::Vec<DA> xv) XENT_LAMBDA_INLINE {
    if constexpr (kTargets) {
      picked = hn::IfThenElse(hn::Eq(labels.index, column), xv, picked);
      column = hn::Add(column, one);
    }
  };
  int64_t c = begin;
  for (; c + 1 < end; c += 2) {
    const auto x0 = x_at(c), x1 = x_at(c + 1);
    max = hn::Max(max, x0), max1 = hn::Max(max1, x1);
    pick(x0), pick(x1);
  }
  if (c < end) {
    const auto x0 = x_at(c);
    max = hn::Max(max, x0);
    pick(x0);
  }
  max = hn::Max(max, max1);
  const auto ref = ReferenceOf(da, max);
  const auto half_ref = hn::Mul(ref, half);
  auto sum = zero, label_sum = zero, half_dot = zero;
  const auto add = [&](int64_t c, hn::Vec<DA> xv, hn::Vec<DA> e) XENT_LAMBDA_INLINE {
    keep(c, e);
    sum = hn::Add(sum, e);
    if constexpr (!kTargets) {
      const auto yv = labels(c);
      label_sum = hn::Add(label_sum, yv);
      half_dot = hn::MulAdd(yv, hn::IfThenElseZero(hn::Ne(yv, zero), hn::MulSub(xv, half, half_ref)), half_dot);
    }
  };
  if (end - begin == 2) {
    // Two classes, one exp: x − ref is 0 for the larger (its exp 1) and the other's is exp of their sum. Where
    // neither is 0, the lane's max is −inf (both −inf: 0, as exp gives each) or +inf or NaN (the sum NaN: the
    // row's sum is NaN either way). The same bits as an exp per class wherever the row's sum is a number. 4Mx2
    // forward (TinyRows), Zen 4 AVX3, xent_bench GB/s, two alternations: from DRAM 20.8-21.0 -> 23.5, in cache
    // 23.1-23.2 -> 25.9-26.0; forward+gradients even (30.3-30.6 -> 30.3-30.4).
    touch(begin), touch(begin + 1);
    const auto x0 = x_at(begin), x1 = x_at(begin + 1);
    const auto d0 = hn::Sub(x0, ref), d1 = hn::Sub(x1, ref);
    const auto e = ExpNonPositive(da, hn::Add(d0, d1));
    add(begin, x0, hn::IfThenElse(hn::Eq(d0, zero), one, e));
    add(begin + 1, x1, hn::IfThenElse(hn::Eq(d1, zero), one, e));
  } else {
    for (int64_t c = begin; c < end; ++c) {
      touch(c);
      const auto xv = x_at(c);
      add(c, xv, ExpNonPositive(da, hn::Sub(xv, ref)));
    }
  }
  if constexpr (kTargets) {  // the one term of the lanes whose target is in [begin, end)
    const auto hit = hn::And(hn::Ge(labels.index, hn::Set(da, static_cast<A>(begin))),
                             hn::Lt(labels.index, hn::Set(da, static_cast<A>(end))));
    label_sum = hn::IfThenElseZero(hit, labels.weight);
    half_dot = hn::IfThenElseZero(hn::And(hit, hn::Ne(labels.weight, zero)),
                                  hn::Mul(labels.weight, hn::MulSub(picked, half, half_ref)));
  }
  return {max, ref, sum, label_sum, half_dot};
}

// RowStates (row_state.h) of Lanes(dd) lanes in double vectors, and Merge on them: the same terms in the same
// order, so a lane's merged state is what Merge gives up to exp's last bit (Highway's Exp: 1 ulp). Rows of more
// than kLaneBlock classes merge one such state per block; per lane with std::exp (two calls a lane and block) the
// merges were a quarter of [4,1000,49]'s forward (callgrind).
template <class DD>
struct LaneStates {
  hn::Vec<DD> max, sum, label_sum, label_dot;
};
template <class DD>
HWY_INLINE LaneStates<DD> MergeLanes(DD dd, const LaneStates<DD>& a, const LaneStates<DD>& b) {
  const auto zero = hn::Zero(dd);
  LaneStates<DD> m;
  m.max = hn::IfThenElse(hn::Or(hn::IsNaN(a.max), hn::IsNaN(b.max)),
                         hn::Set(dd, std::numeric_limits<double>::quiet_NaN()), hn::Max(a.max, b.max));
  const auto r = ReferenceOf(dd, m.max), ra = ReferenceOf(dd, a.max), rb = ReferenceOf(dd, b.max);
  // sum · exp(ref − r); ref − r ≤ 0 wherever the sum is not 0, and is clamped into Exp's range for the lanes that
  // are not (their result is not selected); a NaN (Exp gives 0 for it) is kept.
  const auto rescale = [&](hn::Vec<DD> sum, hn::Vec<DD> ref) {
    const auto t = hn::Sub(ref, r);
    const auto e = hn::IfThenElse(hn::IsNaN(t), t, hn::Exp(dd, hn::Min(hn::Max(t, hn::Set(dd, -1000.0)), zero)));
    return hn::IfThenZeroElse(hn::Eq(sum, zero), hn::IfThenElse(hn::Eq(ref, r), sum, hn::Mul(sum, e)));
  };
  const auto shift = [&](hn::Vec<DD> label_sum, hn::Vec<DD> ref) {
    return hn::IfThenZeroElse(hn::Eq(label_sum, zero), hn::Mul(label_sum, hn::Sub(ref, r)));
  };
  m.sum = hn::Add(rescale(a.sum, ra), rescale(b.sum, rb));
  m.label_sum = hn::Add(a.label_sum, b.label_sum);
  m.label_dot = hn::Add(hn::Add(hn::Add(a.label_dot, shift(a.label_sum, ra)), b.label_dot), shift(b.label_sum, rb));
  return m;
}

// The lanes' results when one block holds all their classes, in vectors, as Finalize (row_state.h) per row:
// loss = label_sum · log_sum − label_dot (0 · NaN stays NaN), softmax scale g·label_sum / sum, and with a
// z-loss λ: + λ·lse², scale + 2λ·lse·g / sum. Rows of only −inf: log_sum 0, scale 0.
template <class DA>
struct LaneResults {
  hn::Vec<DA> ref, log_sum, scale, loss;
};
template <class DA>
HWY_INLINE LaneResults<DA> FinishLanes(DA da, const LaneBlock<DA>& b, hn::Vec<DA> g, double z_loss) {
  using A = hn::TFromD<DA>;
  const auto empty = hn::Eq(b.sum, hn::Zero(da));  // every logit −inf
  const auto log = hn::IfThenElse(hn::IsNaN(b.sum), b.sum, hn::Log(da, hn::IfThenElse(empty, hn::Set(da, A{1}), b.sum)));
  const auto log_sum = hn::IfThenZeroElse(empty, log);
  auto scale = hn::IfThenZeroElse(empty, hn::Div(hn::Mul(g, b.label_sum), b.sum));
  auto loss = hn::Sub(hn::Mul(b.label_sum, log_sum), hn::Add(b.half_dot, b.half_dot));
  if (z_loss != 0) {
    const auto z = hn::Set(da, static_cast<A>(z_loss));
    const auto lse = hn::Add(b.ref, log_sum);
    loss = hn::IfThenElse(empty, loss, hn::MulAdd(hn::Mul(z, lse), lse, loss));
    scale = hn::IfThenElse(empty, scale, hn::MulAdd(hn::Mul(hn::Add(z, z), lse), hn::Div(g, b.sum), scale));
  }
  return {b.ref, log_sum, scale, loss};
}

// Rows of more than kLaneBlock classes, one per lane: each lane's RowState (row_state.h) of the blocks merged so
// far, in double, and once finished its results in the compute type (LaneRows, its sweeps, ShortRows).
template <typename A>
struct MergedLanes {
  static constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(A);
  HWY_ALIGN double max[kMaxLanes], sum[kMaxLanes], label_sum[kMaxLanes], label_dot[kMaxLanes];
  HWY_ALIGN A ref[kMaxLanes], log_sum[kMaxLanes], scale[kMaxLanes];

  // Every lane's row empty: no block merged yet.
  void Start() {
    std::fill_n(max, kMaxLanes, -std::numeric_limits<double>::infinity());
    std::fill_n(sum, kMaxLanes, 0.0), std::fill_n(label_sum, kMaxLanes, 0.0), std::fill_n(label_dot, kMaxLanes, 0.0);
  }

  // Merges the lanes' next block (MergeLanes, Lanes(dd) lanes at a time).
  template <class DA>
  HWY_INLINE void Merge(DA da, const LaneBlock<DA>& b) {
    using DD = hn::ScalableTag<double>;
    const DD dd;
    HWY_ALIGN A m[kMaxLanes] = {}, s[kMaxLanes] = {}, ys[kMaxLanes] = {}, d[kMaxLanes] = {};  // {}: see Finish
    hn::Store(b.max, da, m), hn::Store(b.sum, da, s), hn::Store(b.label_sum, da, ys), hn::Store(b.half_dot, da, d);
    // Lanes i to i + Lanes(dd) of a block's vector, in double.
    const auto promoted = [&](const A* p) XENT_LAMBDA_INLINE {
      if constexpr (std::is_same_v<A, double>) {
        return hn::Load(dd, p);
      } else {
        return hn::PromoteTo(dd, hn::Load(hn::Rebind<A, DD>(), p));
      }
    };
    for (size_t i = 0; i < hn::Lanes(da); i += hn::Lanes(dd)) {
      const LaneStates<DD> merged = MergeLanes(
          dd, {hn::Load(dd, max + i), hn::Load(dd, sum + i), hn::Load(dd, label_sum + i), hn::Load(dd, label_dot + i)},
          {promoted(m + i), promoted(s + i), promoted(ys + i), hn::Add(promoted(d + i), promoted(d + i))});
      hn::Store(merged.max, dd, max + i), hn::Store(merged.sum, dd, sum + i);
      hn::Store(merged.label_sum, dd, label_sum + i), hn::Store(merged.label_dot, dd, label_dot + i);
    }
  }

  // Finalize (row_state.h) of lanes [0, count) with upstream gradients g: ref, log_sum and scale (0 past count),
  // and loss[l] (0 where ignored[l] ≠ 0).
  template <class DA>
  HWY_INLINE void Finish(DA da, hn::Vec<DA> g, double z_loss, const A* ignored, size_t count, A* loss) {
    HWY_ALIGN A gl[kMaxLanes] = {};  // {} silences -Wmaybe-uninitialized (GCC 12, the scalar target)
    hn::Store(g, da, gl);
    std::fill_n(ref, kMaxLanes, A{0}), std::fill_n(log_sum, kMaxLanes, A{0}), std::fill_n(scale, kMaxLanes, A{0});
    for (size_t l = 0; l < count; ++l) {
      const RowState state{max[l], sum[l], label_sum[l], label_dot[l]};
      RowResult result = Finalize(state, gl[l], z_loss);
      if (ignored[l] != 0) result.loss = 0;
      loss[l] = static_cast<A>(result.loss), ref[l] = static_cast<A>(result.reference);
      log_sum[l] = static_cast<A>(result.log_sum), scale[l] = static_cast<A>(result.softmax_scale);
    }
  }
};

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
// group of a call: computed once, they are two loads per vector (ShortRows' gradients had computed them per
// vector, 13 of its 64 instructions, callgrind).
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
// as they are; no tiles, no gathers (16384x10 fwd+grad, one thread, Zen 3: 4.1 -> 2.9 ns per element). The same
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
      const auto v = GradLogits(at_row(r.scale), e, at_row(g), yv);
      StoreLanes(da, v, gx_data + k * N, 1, hn::Lanes(da), stream);
    }
    if (gy_data != nullptr) {
      const auto v = GradLabels(xv, yv, at_row(half_ref), at_row(half_log_sum), at_row(twice_g));
      StoreLanes(da, v, gy_data + k * N, 1, hn::Lanes(da), stream);
    }
  }
}

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
  // Targets of the lanes as values (−1: ignored, or a lane past count), which lanes are ignored, and the effective
  // label at the target (alpha·w_t as y_at computes it; 0 where −1).
  const bool has_targets = kGeneral && a.targets != nullptr;
  HWY_ALIGN A target[kMaxLanes], ignored[kMaxLanes] = {}, target_weight[kMaxLanes] = {};
  std::fill_n(target, kMaxLanes, A{-1});
  if (has_targets) ReadTargets(a, count, target, ignored, target_weight);
  const auto target_vec = hn::Load(da, target);

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
    // A full group of contiguous rows of 2 to 4 classes is deinterleaved by shuffles, no gather (16384x2 forward,
    // one thread, Zen 3: gathers were a quarter of it).
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
  // Soft-capped once in the tile (a test per column while filling it cost 9 instructions per column).
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
  // stage (x_next, y_next). All into L2. In memory order and into L2, [64,1000,49] forward from DRAM ran at
  // 17.1–18.3 GB/s, against 13.8–14.3 by first lines into L1, 14.3–14.9 in memory order into L1 and 9.0–15.2 by
  // first lines into L2 (Zen 4, two threads, interleaved; prefetching in the max pass then, see SumLanes);
  // fwd+grad 13.1–13.4 -> 14.9–15.5. Since the exp pass asks, first lines into L2 rather than L1: [16,1000,300]
  // 15.7–15.8 -> 18.8–18.9 GB/s (Python, two alternations); staged lanes, [32,21,128,128] forward 17.3–17.7 ->
  // 23.8–24.1, float16 14.1 -> 14.3–14.7, fwd+grad 14.4–15.1 -> 15.8–16.8, sparse even (`prefetcht2` the same as
  // `prefetcht1`). ShortRows, which asks one group ahead, keeps L1 (into L2 there: 128 classes float16 12.1–12.3
  // -> 10.4–10.5, sparse 16.2–16.4 -> 15.4–15.6).
  // Local pointers and strides: read through `a` in the loop, GCC reloaded them for every class. The loops that
  // touch are compiled apart from those that do not (NoHook): a test per class cost the other lane paths 7-11% more
  // instructions (callgrind).
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
  const LaneTargets<DA> targets{target_vec, hn::Load(da, target_weight)};
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

  hn::Vec<DA> g = hn::Set(da, static_cast<A>(a.grad_scale));
  if (a.grad_loss.data) g = hn::Mul(g, LoadRows(da, a.grad_loss.data, a.grad_loss.lane_stride, count));
  const auto ignored_mask = hn::Eq(hn::Load(da, ignored), one);
  g = hn::IfThenZeroElse(ignored_mask, g);
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
    if (forward) kept.Finish(da, g, kGeneral ? a.z_loss : 0.0, ignored, count, loss);
    ref = hn::Load(da, kept.ref), log_sum = hn::Load(da, kept.log_sum), scale = hn::Load(da, kept.scale);
  }
  if (forward) {
    if (a.row_loss) {
      for (size_t l = 0; l < count; ++l) a.row_loss[a.first_row + static_cast<int64_t>(l)] = loss[l];
    } else if (a.loss.data) {
      StoreLanes(da, hn::Load(da, loss), a.loss.data, a.loss.lane_stride, count);
    }
  }

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
  // no gx, gy_base or no gy) it is compiled apart, with no test per operand: [4,1000,49]'s gradient sweep ran 72
  // instructions per class and group before.
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

// Rows of kC ∈ [2, 4] contiguous classes (4M × 2, 2M × 4): rows [0, n), n a multiple of Lanes, a vector of rows
// at a time, each vector's classes deinterleaved into registers by shuffles (LoadClasses), gradients interleaved
// back. Labels are contiguous rows like x (plain loss, no options), or with kGeneral class-index targets, with
// z-loss and ignore_index (class weights, soft-cap and label smoothing stay with LaneRows). Shapes: x[i·kC + c] and y,
// gx, gy alike; loss[i·loss.lane_stride], grad_loss likewise (or losses in double at row_loss[first_row + i] for
// reductions).
// The arithmetic of LaneRows (ReadTargets, SumLanes, FinishLanes, GradLogits, GradLabels); what differs is that
// one call runs many groups in one loop with everything in registers: per group of rows, LaneRows' setup and
// tiles cost more than the arithmetic (16384x2 forward, one thread, Zen 3: 3.4 -> 1.7 ns per element; 149
// instructions per group of 8 rows remain, by callgrind; class-index targets, Zen 4 AVX3, in cache: 32768x2
// sparse forward 0.36 -> 0.81 G elements/s, 16384x4 0.63 -> 1.20). Splitting the loop into passes over 8
// groups (sums, results, gradients) to overlap more exp/log chains measured slower (1.8 forward, 2.7 fwd+grad vs
// 2.2).
template <bool kGeneral, size_t kC, class DA, typename T, typename G>
void TinyRows(DA da, const LaneGroup<T, G>& shared, int64_t n) {
  using A = hn::TFromD<DA>;
  constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(A);
  constexpr int64_t C = static_cast<int64_t>(kC);
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  HWY_ALIGN A buf[kMaxLanes * kC];  // float16/bfloat16 operands converted, and interleaved gradients
  HWY_ALIGN A scratch[kMaxLanes], target[kMaxLanes], ignored[kMaxLanes], target_weight[kMaxLanes];
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
  const auto grad_scale = hn::Set(da, static_cast<A>(shared.grad_scale));
  LaneGroup<T, G> a = shared;  // the group's targets
  for (int64_t i = 0; i < n; i += N) {
    hn::Vec<DA> x[kC], y[kC];
    load(shared.x.data + i * C, x);
    auto g = grad_scale;
    if (shared.grad_loss.data)
      g = hn::Mul(g, LoadLanes(da, shared.grad_loss.data + i * shared.grad_loss.lane_stride,
                               shared.grad_loss.lane_stride));
    auto target_vec = hn::Set(da, A{-1});
    auto ignored_mask = hn::FirstN(da, 0);  // none ignored
    if constexpr (kGeneral) {
      a.targets = static_cast<const char*>(shared.targets) +
                  i * shared.targets_lane_stride * dtype_size(shared.target_dtype);
      ReadTargets(a, hn::Lanes(da), target, ignored, target_weight);
      target_vec = hn::Load(da, target);
      ignored_mask = hn::Eq(hn::Load(da, ignored), one);
      g = hn::IfThenZeroElse(ignored_mask, g);
      // The effective labels, as RowOrderGradients computes them for the gradient (β = 0 here).
      for (size_t c = 0; c < kC; ++c)
        y[c] = hn::Mul(alpha, hn::IfThenElseZero(hn::Eq(target_vec, hn::Set(da, static_cast<A>(c))), one));
    } else {
      load(shared.y.data + i * C, y);
    }
    hn::Vec<DA> e[kC];  // the exps, kept for gx
    const auto keep = [&](int64_t c, hn::Vec<DA> v) XENT_LAMBDA_INLINE { e[c] = v; };
    const auto x_at = [&](int64_t c) { return x[c]; };
    const LaneResults<DA> r = FinishLanes(
        da,
        kGeneral ? SumLanes(da, 0, C, x_at, LaneTargets<DA>{target_vec, hn::Load(da, target_weight)}, NoHook{}, keep)
                 : SumLanes(da, 0, C, x_at, [&](int64_t c) { return y[c]; }, NoHook{}, keep),
        g, z_loss);
    const auto loss = hn::IfThenZeroElse(ignored_mask, r.loss);
    if (shared.row_loss) {  // reductions
      hn::Store(loss, da, scratch);
      for (int64_t l = 0; l < N; ++l) shared.row_loss[shared.first_row + i + l] = scratch[l];
    } else if (shared.loss.data) {
      StoreLanes(da, loss, shared.loss.data + i * shared.loss.lane_stride, shared.loss.lane_stride, hn::Lanes(da));
    }
    hn::Vec<DA> grad[kC];
    if (shared.gx.data) {
      for (size_t c = 0; c < kC; ++c) grad[c] = GradLogits(r.scale, e[c], g, y[c]);
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
// Shapes as for TinyRows. The arithmetic of LaneRows, step for step (TransposeRows, ReadTargets, SumLanes,
// FinishLanes or, above kLaneBlock classes, MergedLanes; RowOrderGradients; gx reads the forward's exps, or above
// kLaneBlock classes exps computed again after the merge, the very values LaneRows computes), so that the results
// agree with it to the bit; what differs is that one call runs many groups, and what they share (constants,
// pointers, buffers) is set up once: LaneRows' setup per group cost as much as a group's arithmetic (sparse
// 16384x10 forward, callgrind: 908 instructions per group of 8 rows in LaneRows, of which about 310 in the class
// loops).
template <bool kGeneral, class DA, typename T, typename G>
void ShortRows(DA da, const LaneGroup<T, G>& shared, int64_t C, int64_t n) {
  static_assert(kTransposable<DA>);
  using A = hn::TFromD<DA>;
  constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(A);
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  HWY_ALIGN A x_tile[kMaxLanes * kMaxShortRows], y_tile[kMaxLanes * kMaxShortRows];
  HWY_ALIGN A narrow_copy[std::is_same_v<T, A> ? 1 : kMaxLanes * kMaxShortRows];
  // With gx: the forward's exps as a column tile, then in row order for RowOrderGradients: a transpose back costs
  // less than an exp per vector (callgrind per group of 8 rows, 16384x10: sparse fwd+grad 1170 -> 1127, dense
  // fwd+grad_logits 1196 -> 1131, float16 1252 -> 1164; 16384x32 fwd + both gradients 3773 -> 3351).
  HWY_ALIGN A exp_tile[kMaxLanes * kMaxShortRows], exp_rows[kMaxLanes * (kMaxShortRows + 1)];
  HWY_ALIGN A buf[kMaxLanes], target[kMaxLanes], ignored[kMaxLanes], target_weight[kMaxLanes];
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
  const auto grad_scale = hn::Set(da, static_cast<A>(shared.grad_scale));
  const auto none = hn::Set(da, A{-1}), one = hn::Set(da, A{1});
  std::optional<RowPositions<DA>> positions;  // for the gradients only
  if (shared.gx.data || shared.gy.data) positions.emplace(da, C);
  const bool keep_exps = shared.gx.data != nullptr;
  // Rows of several lane blocks (C > kLaneBlock): the lanes' merged states and losses.
  MergedLanes<A> merged;
  HWY_ALIGN A merged_loss[kMaxLanes];
  std::fill_n(ignored, kMaxLanes, A{0});  // no lane ignored without class-index targets
  if (keep_exps)  // columns past C: transposed along, never used
    for (int64_t c = C; c < N; ++c) hn::Store(hn::Zero(da), da, exp_tile + c * N);
  const auto keep_in_tile = [&](int64_t c, hn::Vec<DA> e) XENT_LAMBDA_INLINE { hn::Store(e, da, exp_tile + c * N); };
  LaneGroup<T, G> a = shared;  // the group's operands
  a.count = hn::Lanes(da);
  // The groups' loop, compiled twice: with the exps kept, and without for the other calls, whose code is then
  // what it was before exps were kept (dense 16384x10 forward storing them too: 741 -> 833 instructions per group,
  // callgrind; 0.96 -> 1.14 ns per element, one thread in cache).
  const auto run_groups = [&](const auto& keep) XENT_LAMBDA_INLINE {
    constexpr bool kKeep = !std::is_same_v<std::decay_t<decltype(keep)>, NoHook>;
    for (int64_t i = 0; i < n; i += N) {
      // The rows kLaneAhead groups on. Their reads are linear, yet for rows shorter than a vector (loaded by
      // overlapping vector loads, C elements apart) the hardware prefetchers left this loop from DRAM at about half
      // its in-cache speed. Measured on Zen 4 with AVX3 (16 lanes), dense forward of 32M elements, GB/s, three
      // alternations without / with: 8 classes 10.0-11.3 / 10.2-17.4, 10: 11.5-11.8 / 17.9-18.8, 12: 12.7-13.1 /
      // 18.3-21.3 (xent_bench 1Mx10: forward 8.2-10.5 / 15.2-19.4, fwd_grad 13.5-16.6 / 17.2-19.0, sparse 7.9-8.7
      // / 9.5-11.3); but 16: 25.5-27.1 / 17.5-20.7, 32: 20.8-21.1 / 16.5-16.7, 64 and 128 even: rows of a vector
      // or more are read whole by aligned loads, and the prefetchers keep up. TinyRows (2 to 4 classes,
      // compute-bound) measured the same with it (4Mx2).
      if (C < N) PrefetchRows(shared.x, shared.y, C, i + kLaneAhead * N, n, N);
      const auto at = [&](auto* p, int64_t stride) { return p ? p + i * stride : nullptr; };
      a.x.data = at(shared.x.data, C), a.y.data = at(shared.y.data, C);
      a.gx.data = at(shared.gx.data, C), a.gy.data = at(shared.gy.data, C);
      a.first_row = shared.first_row + i;
      fill_tile(a.x.data, x_tile);
      auto g = grad_scale;
      if (shared.grad_loss.data)
        g = hn::Mul(g, LoadLanes(da, at(shared.grad_loss.data, shared.grad_loss.lane_stride),
                                 shared.grad_loss.lane_stride));
      auto target_vec = none;
      auto ignored_mask = hn::FirstN(da, 0);  // none ignored
      if (has_targets) {
        a.targets = static_cast<const char*>(shared.targets) +
                    i * shared.targets_lane_stride * dtype_size(shared.target_dtype);
        ReadTargets(a, a.count, target, ignored, target_weight);
        target_vec = hn::Load(da, target);
        ignored_mask = hn::Eq(hn::Load(da, ignored), one);
        g = hn::IfThenZeroElse(ignored_mask, g);
      } else {
        fill_tile(a.y.data, y_tile);
      }
      // Rows of several lane blocks: the next group's logits and labels (each one stretch of N·C elements; the
      // last group's own) are asked for while this one computes, N elements of each per class of the exp pass.
      // With the hardware prefetchers alone, 262144 rows of 128 classes from DRAM ran slower here than in the row
      // kernel, which asks for each next row; rows of one block ran no faster with it (26214x10 in cache slower).
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
          return SumLanes(da, begin, end, x_at, LaneTargets<DA>{target_vec, hn::Load(da, target_weight)}, touch_of,
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
        merged.Finish(da, g, z_loss, ignored, a.count, merged_loss);
        r = {hn::Load(da, merged.ref), hn::Load(da, merged.log_sum), hn::Load(da, merged.scale),
             hn::Load(da, merged_loss)};
        // Each block's exps were relative to its own max: the exps for gx are computed again from the tile with
        // the row's reference, as LaneRows computes them, and go the way of one block's kept exps.
        if constexpr (kKeep)
          for (int64_t c = 0; c < C; ++c) keep(c, ExpNonPositive(da, hn::Sub(x_at(c), r.ref)));
      }
      const auto loss = hn::IfThenZeroElse(ignored_mask, r.loss);
      if (shared.row_loss) {  // reductions
        hn::Store(loss, da, buf);
        for (int64_t l = 0; l < N; ++l) shared.row_loss[a.first_row + l] = buf[l];
      } else if (shared.loss.data) {
        StoreLanes(da, loss, at(shared.loss.data, shared.loss.lane_stride), shared.loss.lane_stride, hn::Lanes(da));
      }
      if constexpr (kKeep) TransposeColumns(da, exp_tile, C, exp_rows);
      if (positions)
        RowOrderGradients<kGeneral>(da, a, C, *positions, target_vec, r, g, kKeep ? exp_rows : nullptr);
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

#endif  // XENT_LANE_KERNEL_INL_H_
