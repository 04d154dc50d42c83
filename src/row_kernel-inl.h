// row_kernel-inl.h — one row (or a range of one row's classes) of softmax cross-entropy, as the two halves of the
// stages (stages.h): ForwardRange computes the range's statistics (a RowState), GradientRange writes the range's
// gradients from the finished row (a RowResult). Side by side, as llm.c keeps forward and backward; written once
// over Highway ops, compiled for every target by kernels.cc.
//
// Shapes: a range of n classes; x (logits) and y (labels) are read at x[j·x_stride], y[j·y_stride], j ∈ [0, n).
// Stride 1 is read with vector loads; stride 0 (a broadcast label or logit) is splatted; any other stride is
// gathered through a small buffer. Gradients gx (∂loss/∂x) and gy (∂loss/∂y) are written the same way.
#if defined(XENT_ROW_KERNEL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_ROW_KERNEL_INL_H_
#undef XENT_ROW_KERNEL_INL_H_
#else
#define XENT_ROW_KERNEL_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "src/loss_terms-inl.h"
#include "src/row_state.h"
#include "src/simd_io-inl.h"
#include "src/simd_math-inl.h"
#include "src/tuning.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Classes per block at most (and the granularity of a row's pieces, Tuning::piece_classes). Each block is read
// twice (max, then sums) and must stay in L1: 2048 floats = 8 KiB. Its partial sums are in the compute type;
// blocks are merged in double.
inline constexpr int64_t kBlock = 2048;
// Terms each lane of each of the four sum accumulators adds serially per block: 32, so a block holds 128 vectors
// (2048 floats with 16 lanes, 512 doubles with 4). A serial sum of n terms drifts by up to n eps; four times as
// many terms per lane put a visible drift into log(sum) (docs/performance.md).
inline constexpr int64_t kTermsPerLane = 32;

// Loads of x (soft-capped) and of the effective labels for one range, full or partial vectors.
template <bool kGeneral, class DA, typename T>
struct RangeLoader {
  using A = hn::TFromD<DA>;
  DA da;
  const T* x;
  int64_t x_stride;
  const T* y;  // may be null on the general path
  int64_t y_stride;
  const Transform<T>& tr;

  // One vector of p's elements j… at stride (count < Lanes: the other lanes hold fill). kContiguous: a full
  // vector at stride 1, one load without stride or count checks (see Contiguous()).
  template <bool kContiguous>
  HWY_INLINE hn::Vec<DA> Load(const T* p, int64_t stride, int64_t j, size_t count, A fill) const {
    if constexpr (kContiguous) {
      return LoadPromote(da, p + j);
    } else {
      return count == hn::Lanes(da) ? LoadLanes(da, p + j * stride, stride)
                                    : LoadPartial(da, p + j * stride, stride, count, fill);
    }
  }
  // Logits as stored (no soft-cap).
  template <bool kContiguous = false>
  HWY_INLINE hn::Vec<DA> RawLogits(int64_t j, size_t count, A x_fill) const {
    return Load<kContiguous>(x, x_stride, j, count, x_fill);
  }
  // count < Lanes: the other lanes hold x_fill / 0.
  template <bool kContiguous = false>
  HWY_INLINE hn::Vec<DA> Logits(int64_t j, size_t count, A x_fill) const {
    auto v = RawLogits<kContiguous>(j, count, x_fill);
    if constexpr (kGeneral) {
      if (tr.softcap != 0) {
        v = Softcap(da, v, hn::Set(da, static_cast<A>(tr.softcap)), hn::Set(da, static_cast<A>(1 / tr.softcap)));
        if (!kContiguous && count != hn::Lanes(da))  // padding
          v = hn::IfThenElse(hn::FirstN(da, count), v, hn::Set(da, x_fill));
      }
    }
    return v;
  }
  template <bool kContiguous = false>
  HWY_INLINE hn::Vec<DA> Labels(int64_t j, size_t count) const {
    const auto load = [&](const T* p, int64_t stride) { return Load<kContiguous>(p, stride, j, count, A{0}); };
    if constexpr (!kGeneral) {
      return load(y, y_stride);
    } else {
      auto a = y ? hn::MulAdd(hn::Set(da, static_cast<A>(tr.alpha)), load(y, y_stride),
                              hn::Set(da, static_cast<A>(tr.beta)))
                 : hn::Set(da, static_cast<A>(tr.beta));
      if (tr.weight) a = hn::Mul(a, load(tr.weight, tr.weight_stride));
      if (!kContiguous && count != hn::Lanes(da)) a = hn::IfThenElseZero(hn::FirstN(da, count), a);
      return a;
    }
  }
  // Whether any label term can be nonzero (not for plain class-index targets: their one term comes per row).
  bool HasLabels() const { return !kGeneral || y != nullptr || tr.beta != 0; }
  // Whether full vectors may be loaded with kContiguous = true.
  bool Contiguous() const {
    return x_stride == 1 && (y == nullptr || y_stride == 1) && (!kGeneral || !tr.weight || tr.weight_stride == 1);
  }
};

// The forward's exps of one row, kept for its gradients (one load there instead of an exp): values[j] =
// exp(x'_j − r_b) for class j of block b, and block_max[b], whose reference r_b = reference_of(block_max[b]).
// The caller provides values for n classes plus one vector, and one block_max per block of BlockLength(da).
template <typename A>
struct KeptExps {
  A* values;
  double* block_max;
};

// Classes per block of ForwardRange: a power of two.
template <class DA>
constexpr int64_t BlockLength(DA da) {
  return std::min(kBlock, 4 * kTermsPerLane * static_cast<int64_t>(hn::MaxLanes(da)));
}

// Forward state of n classes. n ≥ 1. x_after/y_after (optional, contiguous rows only): where the caller reads
// next (the next row), prefetched during the last block. kGeneral: apply `tr` (soft-cap, effective labels).
// kept (optional): where the exps are kept for GradientRange.
// kUnitStrides: the caller guarantees x_stride = 1 and y_stride = 1 (or no y), contiguous rows, the common case.
// As constants they spare each call the set-up of every other stride's addressing, which short rows pay per row.
template <bool kGeneral, bool kUnitStrides = false, class DA, typename T>
RowState ForwardRange(DA da, const T* HWY_RESTRICT x, int64_t x_stride, const T* HWY_RESTRICT y,
                      int64_t y_stride, int64_t n, const Transform<T>& tr, const T* x_after = nullptr,
                      const T* y_after = nullptr, const KeptExps<hn::TFromD<DA>>* kept = nullptr) {
  if constexpr (kUnitStrides) x_stride = y_stride = 1;
  using A = hn::TFromD<DA>;
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  constexpr A kNegInf = -std::numeric_limits<A>::infinity();
  const auto zero = hn::Zero(da);
  RowState state;
  const int64_t block_length = BlockLength(da);
  for (int64_t begin = 0; begin < n; begin += block_length) {
    const int64_t len = std::min(block_length, n - begin);
    const T* HWY_RESTRICT xb = x + begin * x_stride;
    const T* HWY_RESTRICT yb = y ? y + begin * y_stride : nullptr;
    Transform<T> block_tr = tr;
    if (tr.weight) block_tr.weight = tr.weight + begin * tr.weight_stride;
    const RangeLoader<kGeneral, DA, T> load{da, xb, x_stride, yb, y_stride, block_tr};

    // Pass 1: the block's max, four accumulators (with one, the loop waits on the latency of each Max).
    // (x86 Max may drop a NaN; pass 2 still sees it through exp(NaN).) Soft-capping is monotonic: the max of
    // the raw logits is capped once.
    auto max0 = hn::Set(da, kNegInf), max1 = max0, max2 = max0, max3 = max0;
    int64_t j = 0;
    for (; j + 4 * N <= len; j += 4 * N) {
      max0 = hn::Max(max0, LoadLanes(da, xb + j * x_stride, x_stride));
      max1 = hn::Max(max1, LoadLanes(da, xb + (j + N) * x_stride, x_stride));
      max2 = hn::Max(max2, LoadLanes(da, xb + (j + 2 * N) * x_stride, x_stride));
      max3 = hn::Max(max3, LoadLanes(da, xb + (j + 3 * N) * x_stride, x_stride));
    }
    for (; j + N <= len; j += N) max0 = hn::Max(max0, LoadLanes(da, xb + j * x_stride, x_stride));
    if (j < len) max1 = hn::Max(max1, LoadPartial(da, xb + j * x_stride, x_stride, len - j, kNegInf));
    max0 = hn::Max(hn::Max(max0, max1), hn::Max(max2, max3));
    if constexpr (kGeneral) {
      if (tr.softcap != 0)
        max0 = Softcap(da, max0, hn::Set(da, static_cast<A>(tr.softcap)), hn::Set(da, static_cast<A>(1 / tr.softcap)));
    }
    const A max = hn::GetLane(hn::MaxOfLanes(da, max0));
    const auto ref = hn::Set(da, max == kNegInf ? A{0} : max);  // NaN max stays NaN

    // Pass 2: Σ exp(x − r), Σ y, Σ_{y≠0} y·(x − r); four accumulators each: they hide add latency and keep each
    // partial sum to kTermsPerLane terms.
    // x − r overflows for |x|, |r| > FLT_MAX/2 (logits of 3e38): exp(−inf) = 0 is still right, but the label
    // term is accumulated as y·(x/2 − r/2) and doubled in double, which cannot overflow.
    hn::Vec<DA> sum[4] = {zero, zero, zero, zero}, ysum[4] = {zero, zero, zero, zero},
                dot[4] = {zero, zero, zero, zero};
    const auto half = hn::Set(da, A{0.5});
    const auto half_ref = hn::Mul(ref, half);
    const auto beta = hn::Set(da, static_cast<A>(tr.beta));
    const bool labels = load.HasLabels();
    // While this block computes, the next one streams in: software prefetch one block ahead keeps both
    // inputs' DRAM reads in flight during the exp work (contiguous rows only).
    const bool last = begin + len >= n;
    const T* x_next = last ? x_after : xb + len;
    const T* y_next = last ? y_after : (yb ? yb + len : nullptr);
    const bool prefetch = x_stride == 1 && x_next != nullptr;
    const bool prefetch_y = prefetch && y_stride == 1 && y_next != nullptr;
    constexpr int64_t kLine = 64 / sizeof(T);
    // kLogitsOnly: no label terms and no soft-cap (class-index targets without options: their one label term
    // comes per row), so the loop is Σ exp alone. Chosen once per block: with the per-vector soft-cap and label
    // checks of the general path, GCC kept the accumulators in memory.
    // kUniformLabels: every effective label is β (class-index targets with label smoothing, no class weights
    // or soft-cap): the loop sums β·(x/2 − r/2) with one fused multiply-add, and Σ y = β·len comes in once per
    // block. Through the general loop it would pay a label vector, a compare and a select per vector, and the
    // per-vector option checks. β is applied per term, not to the block's sum: unweighted, two logits near −3e38
    // under a max near 3e38 overflow the float sum of x/2 − r/2 (found by the fuzzer), while the weighted terms
    // add up to at most ε·FLT_MAX per block.
    // kDirect: full vectors of contiguous operands, one load each (see GradientRange).
    // kKeep: store each exp at kept_values (a partial last vector stores its padding's 0s too).
    A* HWY_RESTRICT kept_values = kept ? kept->values + begin : nullptr;
    const bool uniform_labels = kGeneral && labels && y == nullptr && !tr.weight && tr.softcap == 0;
    const auto pass2 = [&](auto logits_only, auto keep, auto uniform) XENT_LAMBDA_INLINE {
      constexpr bool kLogitsOnly = decltype(logits_only)::value, kKeep = decltype(keep)::value;
      constexpr bool kUniformLabels = decltype(uniform)::value;
      const auto accumulate = [&](int64_t i, size_t count, int k, auto direct) XENT_LAMBDA_INLINE {
        constexpr bool kDirect = decltype(direct)::value;
        // Padding: x = −inf adds exp = 0, y = 0 adds nothing. Neither kLogitsOnly nor kUniformLabels runs with a
        // soft-cap: their loads skip its test.
        const auto xv = kLogitsOnly || kUniformLabels ? load.template RawLogits<kDirect>(i, count, kNegInf)
                                                      : load.template Logits<kDirect>(i, count, kNegInf);
        const auto e = ExpNonPositive(da, hn::Sub(xv, ref));
        sum[k] = hn::Add(sum[k], e);
        if constexpr (kKeep) hn::StoreU(e, da, kept_values + i);
        if constexpr (kUniformLabels) {  // padding adds 0 (its x is −inf)
          const auto half_t = hn::MulSub(xv, half, half_ref);
          dot[k] = hn::MulAdd(beta, count == static_cast<size_t>(N) ? half_t : hn::IfThenElseZero(hn::FirstN(da, count), half_t),
                              dot[k]);
          return;
        }
        if (kLogitsOnly || !labels) return;
        const auto yv = load.template Labels<kDirect>(i, count);
        ysum[k] = hn::Add(ysum[k], yv);
        const auto half_t = hn::MulSub(xv, half, half_ref);
        dot[k] = hn::MulAdd(yv, hn::IfThenElseZero(hn::Ne(yv, zero), half_t), dot[k]);  // y = 0 adds 0, even for x = −inf
      };
      int64_t i = 0;
      const auto full_vectors = [&](auto direct) XENT_LAMBDA_INLINE {
        for (; i + 4 * N <= len; i += 4 * N) {
          if (prefetch) {
            for (int64_t b = 0; b < 4 * N; b += kLine) {
              hwy::Prefetch(x_next + i + b);
              if (prefetch_y) hwy::Prefetch(y_next + i + b);
            }
          }
          for (int k = 0; k < 4; ++k) accumulate(i + k * N, static_cast<size_t>(N), k, direct);
        }
      };
      if (load.Contiguous()) full_vectors(std::true_type{});
      else full_vectors(std::false_type{});
      for (int k = 0; i < len; i += N, ++k) accumulate(i, static_cast<size_t>(std::min(N, len - i)), k, std::false_type{});
    };
    const auto pass2_keeping = [&](auto logits_only, auto uniform) XENT_LAMBDA_INLINE {
      if (kept) pass2(logits_only, std::true_type{}, uniform);
      else pass2(logits_only, std::false_type{}, uniform);
    };
    if constexpr (kGeneral) {
      if (!labels && tr.softcap == 0) pass2_keeping(std::true_type{}, std::false_type{});
      else if (uniform_labels) pass2_keeping(std::false_type{}, std::true_type{});
      else pass2_keeping(std::false_type{}, std::false_type{});
    } else {
      pass2_keeping(std::false_type{}, std::false_type{});
    }
    if (kept) kept->block_max[begin / block_length] = static_cast<double>(max);
    const auto total = [&](hn::Vec<DA>* v) {
      return static_cast<double>(hn::GetLane(hn::SumOfLanes(da, hn::Add(hn::Add(v[0], v[1]), hn::Add(v[2], v[3])))));
    };
    RowState block;
    block.max = max;
    block.sum = total(sum);
    block.label_sum = uniform_labels ? tr.beta * static_cast<double>(len) : labels ? total(ysum) : 0.0;
    block.label_dot = labels ? 2.0 * total(dot) : 0.0;
    state = Merge(state, block);
  }
  return state;
}

// Gradients of n classes given the finished row: gx = (s·exp(x' − r) − g·a)·dx'/dx and gy = g·(log_sum − (x − r)),
// with gy = 0 where y = 0 and x = −inf (see xent.h). gx or gy may be null; the general path writes gx only.
// kept (optional, the whole row from its ForwardRange): exp(x' − r) = exp(r_b − r)·values[j], with the factor
// folded into s per block.
// In place: gx may be x itself and gy y itself (xent.h), so these four are not HWY_RESTRICT, and each vector's x
// and y are read before its gx and gy are written. With restrict, GCC read x for gy after storing gx when gx came
// from kept exps (gy over in-place logits was wrong from C = 129, where the row kernel starts).
// kUnitStrides: every stride is 1 (or its operand absent), as for ForwardRange.
template <bool kGeneral, bool kUnitStrides = false, class DA, typename T, typename G>
void GradientRange(DA da, const T* x, int64_t x_stride, const T* y, int64_t y_stride, int64_t n, const RowResult& row,
                   const Transform<T>& tr, G* gx, int64_t gx_stride, G* gy, int64_t gy_stride, bool stream = false,
                   const KeptExps<hn::TFromD<DA>>* kept = nullptr) {
  if constexpr (kUnitStrides) x_stride = y_stride = gx_stride = gy_stride = 1;
  using A = hn::TFromD<DA>;
  const int64_t N = static_cast<int64_t>(hn::Lanes(da));
  const RangeLoader<kGeneral, DA, T> load{da, x, x_stride, y, y_stride, tr};
  const bool labels = load.HasLabels();
  const auto ref = hn::Set(da, static_cast<A>(row.reference));
  const auto scale = hn::Set(da, static_cast<A>(row.softmax_scale));
  const auto g = hn::Set(da, static_cast<A>(row.grad_loss));
  // With kept exps: s·exp(r_b − r) of block b (0 where the block is all −inf: its exps are all 0, or NaN in a NaN
  // row: x86's Max drops a NaN beside −inf, so a block of NaN and −inf logits has a max of −inf); scale_of gives
  // the scale of each lane of count classes at j, which may straddle two blocks.
  constexpr int64_t kBlockShift = hwy::FloorLog2(static_cast<uint64_t>(BlockLength(DA())));
  const A* HWY_RESTRICT kept_values = kept ? kept->values : nullptr;
  const auto block_scale = [&](int64_t b) {
    const double m = kept->block_max[b];
    if (m == -std::numeric_limits<double>::infinity())
      return std::isnan(row.softmax_scale) ? std::numeric_limits<A>::quiet_NaN() : A{0};
    return static_cast<A>(row.softmax_scale * std::exp(reference_of(m) - row.reference));
  };
  const auto scale_of = [&](int64_t j, int64_t count) {
    const int64_t b = j >> kBlockShift, last = (j + count - 1) >> kBlockShift;
    const auto scale_b = hn::Set(da, block_scale(b));
    if (b == last) return scale_b;
    return hn::IfThenElse(hn::FirstN(da, static_cast<size_t>((last << kBlockShift) - j)), scale_b,
                          hn::Set(da, block_scale(last)));
  };
  const auto half_ref = hn::Set(da, static_cast<A>(0.5 * row.reference));
  const auto half_log_sum = hn::Set(da, static_cast<A>(0.5 * row.log_sum));
  const auto twice_g = hn::Set(da, static_cast<A>(2.0 * row.grad_loss));
  const auto zero = hn::Zero(da);
  const auto inv_cap = hn::Set(da, static_cast<A>(tr.softcap != 0 ? 1 / tr.softcap : 0));
  // Streamed outputs (non-temporal stores) are written by whole cache lines: the classes before the first line
  // boundary of the first contiguous output and those after its last one go through regular stores, so that no
  // line is written partly around the cache (rows of 1000 floats start mid-line every other row): a partly
  // streamed line is read back from memory and merged. Full vectors in [head, stream_end) are streamed, by
  // outputs that are line-aligned at head.
  // A gradient written over its own input (in place) is not streamed: its lines were just read and are in cache,
  // where a regular store dirties them without a read for ownership, while a non-temporal store to a cached line
  // must first evict it.
  constexpr int64_t kLineBytes = 64;
  constexpr int64_t kSize = static_cast<int64_t>(sizeof(G));
  const auto may_stream = [&](const G* p, int64_t stride) {
    return p != nullptr && stride == 1 && static_cast<const void*>(p) != static_cast<const void*>(x) &&
           static_cast<const void*>(p) != static_cast<const void*>(y);
  };
  int64_t head = 0, stream_end = 0;
  G* const first_out = may_stream(gx, gx_stride) ? gx : may_stream(gy, gy_stride) ? gy : nullptr;
  if (stream && std::is_same_v<G, A> && first_out != nullptr && reinterpret_cast<uintptr_t>(first_out) % kSize == 0) {
    const int64_t to_line = static_cast<int64_t>(kLineBytes - reinterpret_cast<uintptr_t>(first_out) % kLineBytes) % kLineBytes;
    head = std::min(n, to_line / kSize);
    stream_end = head + (n - head) * kSize / kLineBytes * (kLineBytes / kSize);
  }
  const auto streams = [&](G* p, int64_t stride) {
    return stream_end > head && may_stream(p, stride) && reinterpret_cast<uintptr_t>(p + head) % kLineBytes == 0;
  };
  const bool gx_streams = streams(gx, gx_stride), gy_streams = streams(gy, gy_stride);
  // kDirect: a full vector of contiguous operands, one load or store each, decided once per range (the per-vector
  // stride, count and alignment checks are taken branches in the hot loop). streamed: j is in [head, stream_end).
  // s: the scale of the vector at j; kKept: e from kept_values (then gx is not null: see kernels.cc).
  const auto columns = [&](int64_t j, size_t count, bool write_gx, bool write_gy, auto direct, bool streamed,
                           hn::Vec<DA> s, auto kept_tag) XENT_LAMBDA_INLINE {
    constexpr bool kDirect = decltype(direct)::value, kKept = decltype(kept_tag)::value;
    // p's type is a parameter of the lambda (auto) so that clang discards the Stream branch for a G other than A
    // (clang 14 checks a non-dependent discarded statement inside a lambda of a generic lambda).
    const auto store = [&](hn::Vec<DA> v, auto* p, int64_t stride, bool streams_here) XENT_LAMBDA_INLINE {
      if constexpr (kDirect && std::is_same_v<std::remove_pointer_t<decltype(p)>, A>) {
        if (streamed && streams_here) return hn::Stream(v, da, p + j);
      }
      if constexpr (kDirect) DemoteStore(da, v, p + j);
      else StoreLanes(da, v, p + j * stride, stride, count, streamed && streams_here);
    };
    const auto xv = load.template Logits<kDirect>(j, count, A{0});
    const auto yv = labels ? load.template Labels<kDirect>(j, count) : zero;
    if (write_gx && (kKept || gx != nullptr)) {
      auto v = kKept ? GradLogits(s, hn::LoadU(da, kept_values + j), g, yv)
                     : GradLogits(s, ExpNonPositive(da, hn::Sub(xv, ref)), g, yv);
      if constexpr (kGeneral) {
        if (tr.softcap != 0) v = SoftcapSlope(v, xv, inv_cap);
      }
      store(v, gx, gx_stride, gx_streams);
    }
    if (write_gy && gy != nullptr) store(GradLabels(xv, yv, half_ref, half_log_sum, twice_g), gy, gy_stride, gy_streams);
  };
  // A partial vector (the head's, the tail's). Inlined like the rest: a call would take columns' address, and
  // GCC then reloads each of its captures from the stack in the hot loop (Highway's stores may alias anything).
  const auto partial = [&](int64_t j, int64_t count) XENT_LAMBDA_INLINE {
    if (kept) columns(j, static_cast<size_t>(count), true, true, std::false_type{}, false, scale_of(j, count), std::true_type{});
    else columns(j, static_cast<size_t>(count), true, true, std::false_type{}, false, scale, std::false_type{});
  };
  for (int64_t k = 0; k < head; k += N) partial(k, std::min(N, head - k));
  int64_t j = head;
  const int64_t full = j + (n - j) / N * N;
  const bool direct = load.Contiguous() && (gx == nullptr || gx_stride == 1) && (gy == nullptr || gy_stride == 1);
  const auto full_vectors = [&](auto direct_tag) XENT_LAMBDA_INLINE {
    // The full vectors k = begin, begin + N, … < end (end − begin a multiple of N). With kept exps, by blocks: one
    // broadcast scale for the vectors inside a block, scale_of for a vector across two (so the hot loop has no
    // per-vector block arithmetic). gy alone needs no scale: it takes the plain loop.
    const auto vectors = [&](int64_t begin, int64_t end, bool write_gx, bool write_gy, bool streamed) XENT_LAMBDA_INLINE {
      if (!kept || !write_gx) {
        for (int64_t k = begin; k < end; k += N)
          columns(k, static_cast<size_t>(N), write_gx, write_gy, direct_tag, streamed, scale, std::false_type{});
        return;
      }
      for (int64_t k = begin; k < end;) {
        const int64_t b = k >> kBlockShift, block_end = (b + 1) << kBlockShift;
        const auto scale_b = hn::Set(da, block_scale(b));
        for (const int64_t inside = std::min(end, k + (block_end - k) / N * N); k < inside; k += N)
          columns(k, static_cast<size_t>(N), write_gx, write_gy, direct_tag, streamed, scale_b, std::true_type{});
        if (k < end && k < block_end) {
          columns(k, static_cast<size_t>(N), write_gx, write_gy, direct_tag, streamed, scale_of(k, N), std::true_type{});
          k += N;
        }
      }
    };
    // In chunks (kTuning.stream_chunk): gx, then gy of the same classes; not when gx is written over x, which gy reads.
    if (gx_streams && gy_streams && static_cast<const void*>(gx) != static_cast<const void*>(x)) {
      for (; j < stream_end; j = std::min(stream_end, j + kTuning.stream_chunk)) {
        const int64_t end = std::min(stream_end, j + kTuning.stream_chunk);
        vectors(j, end, true, false, true);
        vectors(j, end, false, true, true);
      }
    }
    vectors(j, stream_end, true, true, true);
    j = std::max(j, stream_end);
    vectors(j, full, true, true, false);
    j = full;
  };
  if (direct) full_vectors(std::true_type{});
  else full_vectors(std::false_type{});
  if (j < n) partial(j, n - j);
}

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // XENT_ROW_KERNEL_INL_H_