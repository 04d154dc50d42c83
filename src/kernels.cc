// kernels.cc — the kernel layer of one dtype on every SIMD target: Highway's foreach_target.h re-includes this file
// once per target, and CMakeLists.txt compiles it once per dtype (XENT_KERNEL_DTYPE), so that the four translation
// units build in parallel. For a validated Layout it asks choose_path() (paths.h) which kernel path serves it on
// the target dispatched now and has the scheduler (schedule-inl.h) run it; it also runs the stages of a shard of a
// vocabulary one at a time (stages.h).
#ifndef XENT_KERNEL_DTYPE
#error "kernels.cc is compiled once per dtype, with XENT_KERNEL_DTYPE defined (see CMakeLists.txt)"
#endif
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <type_traits>

#include "hwy/highway.h"
#include "src/kernels.h"
#include "src/paths.h"
#include "src/schedule-inl.h"
#include "src/stages.h"

HWY_BEFORE_NAMESPACE();
namespace xent::internal::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

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

// What choose_path() needs to know of this target for storage type T.
template <typename T>
TargetTraits TraitsOf() {
  using D = hn::ScalableTag<Compute<T>>;
  TargetTraits t;
  t.lanes = static_cast<int64_t>(hn::Lanes(D()));
  t.vector_bytes = HWY_MAX_BYTES;
  t.storage_bytes = static_cast<int64_t>(sizeof(T));
  t.float32 = std::is_same_v<T, float>;
  t.narrow = !std::is_same_v<T, Compute<T>>;
  t.transposable = kTransposable<D>;
  return t;
}

template <bool kGeneral, typename T, typename G>
void RunPath(const Layout& l, int threads) {
  if (l.rows == 0) return;
  // Gradients in float for a 16-bit dtype (broadcast inputs, see TargetTraits::rows_only): the row kernel only.
  constexpr bool kRowsOnly = !std::is_same_v<T, G>;
  TargetTraits traits = TraitsOf<T>();
  traits.rows_only = kRowsOnly;
  const KernelChoice choice = choose_path(l, traits, threads);
  const bool parallel = runs_parallel(l, kTuning, threads);
  // Gradients this large will not be read back from cache: write them around it.
  const bool stream = (l.data[kGradLogits] || l.data[kGradLabels]) &&
                      l.rows * l.classes * static_cast<int64_t>(sizeof(G)) >= kTuning.min_stream_bytes &&
                      StreamWithoutAliasing<T, G>(l);
  if (choice.path == KernelPath::kRows || choice.path == KernelPath::kSplitRows) {
    RunRows<kGeneral, T, G>(l, choice.path == KernelPath::kSplitRows, threads, parallel, stream);
    return;
  }
  if constexpr (!kRowsOnly) {
    RunLaneGroups<kGeneral, T, G>(l, choice, threads, parallel, stream);
    if (stream) FlushStreams(threads);
  }
}

template <typename T, typename G>
void RunPath(const Layout& l, int threads) {
  if (l.general) RunPath<true, T, G>(l, threads);
  else RunPath<false, T, G>(l, threads);
}

using Storage = typename StorageOf<XENT_KERNEL_DTYPE>::type;

// Internal linkage: each dtype's translation unit has its own.
namespace {
void RunKernelsOfDtype(const Layout& l, bool gradients_in_compute_type, int threads) {
  if (gradients_in_compute_type) RunPath<Storage, Compute<Storage>>(l, threads);
  else RunPath<Storage, Storage>(l, threads);
}

TargetTraits TargetTraitsOfDtype() { return TraitsOf<Storage>(); }

void ShardStatisticsOfDtype(const Layout& l, RowState* states, int threads) {
  if (l.general) ShardStatistics<true, Storage>(l, states, threads);
  else ShardStatistics<false, Storage>(l, states, threads);
}

void ShardFinishOfDtype(const Layout& l, const RowState* merged, int threads) {
  if (l.general) ShardFinish<true, Storage>(l, merged, threads);
  else ShardFinish<false, Storage>(l, merged, threads);
}
}  // namespace

}  // namespace xent::internal::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent::internal {
HWY_EXPORT(RunKernelsOfDtype);
HWY_EXPORT(TargetTraitsOfDtype);
HWY_EXPORT(ShardStatisticsOfDtype);
HWY_EXPORT(ShardFinishOfDtype);

template <>
void run_kernels_of<XENT_KERNEL_DTYPE>(const Layout& layout, bool gradients_in_compute_type, int threads) {
  HWY_DYNAMIC_DISPATCH(RunKernelsOfDtype)(layout, gradients_in_compute_type, threads);
}

template <>
TargetTraits target_traits_of<XENT_KERNEL_DTYPE>() {
  return HWY_DYNAMIC_DISPATCH(TargetTraitsOfDtype)();
}

template <>
void shard_statistics_of<XENT_KERNEL_DTYPE>(const Layout& layout, RowState* states, int threads) {
  HWY_DYNAMIC_DISPATCH(ShardStatisticsOfDtype)(layout, states, threads);
}

template <>
void shard_finish_of<XENT_KERNEL_DTYPE>(const Layout& layout, const RowState* merged, int threads) {
  HWY_DYNAMIC_DISPATCH(ShardFinishOfDtype)(layout, merged, threads);
}
}  // namespace xent::internal
#endif  // HWY_ONCE
