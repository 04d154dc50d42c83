// transpose-inl.h — transposes of lanes in registers: a group of Lanes contiguous short rows becomes a column tile
// (tile[c·N + l] = row l, class c) so that the lane kernels compute one row per lane, and back. Shuffles only, no
// gathers: 4 × 4 transposes within 128-bit blocks, then moves of whole blocks.
#if defined(XENT_TRANSPOSE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_TRANSPOSE_INL_H_
#undef XENT_TRANSPOSE_INL_H_
#else
#define XENT_TRANSPOSE_INL_H_
#endif

#include <algorithm>
#include <cstdint>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

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
// rows are loaded as vectors, N classes at a time, and transposed in registers (gathers cost a load per element).
// The last 1 to 4 classes of longer rows are the last 4 of each row, transposed by TransposeFourClasses (fewer
// shuffles than a whole N × N pass for them). Nothing
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
    // never read: a data-dependent count would put a branch and a loop into every pass.
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

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_TRANSPOSE_INL_H_
