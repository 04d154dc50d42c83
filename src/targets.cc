#include "src/targets.h"

#include <algorithm>
#include <vector>

#include "src/scalar.h"
#include "src/tuning.h"

namespace xent::internal {
namespace {

template <typename I>
xent_status scan(const Layout& l, xent_dtype dtype, int threads, double* denominator, std::string* error) {
  const Options& o = l.options;
  const I* labels = static_cast<const I*>(l.data[kLabels]);
  // Rows in runs along the innermost batch dimension, each scanned in a tight loop.
  const int inner = l.batch_rank - 1;
  const int64_t run = inner >= 0 ? l.batch_shape[inner] : 1;
  const int64_t step = inner >= 0 ? l.batch_strides[kLabels][inner] : 0;
  const int64_t C = l.vocab_size, ignore = o.ignore_index, first_class = l.vocab_start;
  const bool has_ignore = o.has_ignore;
  // Branch-free predicates, so the unweighted loop vectorises; the unsigned compare also rejects negatives.
  const auto skipped = [&](int64_t t) { return has_ignore && t == ignore; };
  const auto in_range = [&](int64_t t) { return static_cast<uint64_t>(t) < static_cast<uint64_t>(C); };
  // A shard of a vocabulary (stages.h) counts the targets among its own classes: the shards' parts sum to the
  // whole denominator. The single-process op's shard is the whole vocabulary.
  const auto in_shard = [&](int64_t t) {
    return static_cast<uint64_t>(t - first_class) < static_cast<uint64_t>(l.classes);
  };
  const bool whole = first_class == 0 && l.classes == C;
  double total = 0;
  std::vector<int64_t> index(static_cast<size_t>(std::max(inner, 0)), 0);  // position in the outer dimensions
  int64_t offset = 0;
  for (int64_t first = 0; first < l.rows; first += run) {
    const I* p = labels + offset;
    bool bad = false;
    if (o.weight) {
      for (int64_t i = 0; i < run && !bad; ++i) {
        const int64_t t = p[i * step];
        if (skipped(t)) continue;
        bad = !in_range(t);
        if (!bad && in_shard(t)) total += load_as_double(o.weight, dtype, (t - first_class) * o.weight_stride);
      }
    } else {
      int64_t ignored = 0;
      // Targets [begin, end) of the run: whether one is bad; adds the ignored ones (and, for a shard, those of
      // other shards) to `ignored_here`.
      const auto check = [&](int64_t begin, int64_t end, int64_t& ignored_here) {
        bool bad_here = false;
        const auto one = [&](int64_t t) {
          const bool skip = skipped(t);
          bad_here |= !skip && !in_range(t);
          ignored_here += skip || (!whole && !in_shard(t));
        };
        if (step == 1)
          for (int64_t i = begin; i < end; ++i) one(p[i]);
        else
          for (int64_t i = begin; i < end; ++i) one(p[i * step]);
        return bad_here;
      };
      if (step == 1 && run >= kParallelTargets && threads > 1) {
        const int64_t slices = (run + kParallelTargets - 1) / kParallelTargets;
        int any_bad = 0;
#pragma omp parallel for schedule(static) num_threads(threads) reduction(| : any_bad) reduction(+ : ignored)
        for (int64_t k = 0; k < slices; ++k)
          any_bad |= check(k * kParallelTargets, std::min(run, (k + 1) * kParallelTargets), ignored) ? 1 : 0;
        bad = any_bad != 0;
      } else {
        bad = check(0, run, ignored);
      }
      total += static_cast<double>(run - ignored);
    }
    if (bad) {
      for (int64_t i = 0; i < run; ++i) {
        const int64_t t = p[i * step];
        if (skipped(t) || in_range(t)) continue;
        *error = "Received a label value of " + std::to_string(t) + " which is outside the valid range of [0, " +
                 std::to_string(C) + ")" +
                 (has_ignore ? " and is not ignore_index (" + std::to_string(ignore) + ")" : std::string());
        return XENT_INVALID_ARGUMENT;
      }
    }
    for (int d = inner - 1; d >= 0; --d) {  // first row of the next run
      offset += l.batch_strides[kLabels][d];
      if (++index[d] < l.batch_shape[d]) break;
      offset -= l.batch_strides[kLabels][d] * index[d];
      index[d] = 0;
    }
  }
  *denominator = total;
  return XENT_OK;
}

}  // namespace

xent_status scan_targets(const Layout& l, xent_dtype dtype, int threads, double* denominator, std::string* error) {
  if (!l.sparse) {  // a vocabulary's rows are counted once, by the shard holding class 0 (not an empty one beside it)
    *denominator = l.vocab_start == 0 && l.classes > 0 ? static_cast<double>(l.rows) : 0.0;
    return XENT_OK;
  }
  return l.label_dtype == XENT_INT32 ? scan<int32_t>(l, dtype, threads, denominator, error)
                                     : scan<int64_t>(l, dtype, threads, denominator, error);
}

}  // namespace xent::internal
