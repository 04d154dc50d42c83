// stages.h — softmax cross-entropy as three stages, the internal API every op is a composition of.
//
// A validated call is a Layout (plan.h): rows × C classes over strided operands. Its classes may be a shard of a
// larger vocabulary: classes [vocab_start, vocab_start + C) of vocab_size (Layout::vocab_start, vocab_size; for the
// single-process op 0 and C). Class-index targets are indices into the vocabulary, and label smoothing spreads ε
// over all vocab_size classes (Options::beta = ε / vocab_size). Per row i:
//
//   1. statistics   states[i] = RowState (row_state.h) of row i over the layout's C classes:
//                     max_j x'_j, Σ_j exp(x'_j − r), Σ_j a_j, Σ_j a_j (x'_j − r)
//                   reads logits[i, 0:C), labels[i, 0:C) (or the class-index target t_i, whose term counts only
//                   where t_i is one of these classes), weight[0:C); writes nothing else.
//   2. merge        Merge(a, b) (row_state.h) is the RowState of the union of two disjoint sets of one row's
//                   classes. Associative and commutative up to rounding: blocks, pieces, chunks, threads and
//                   processes merge in any tree. (The kernels merge a row's blocks and pieces left to right in
//                   pieces fixed by C, so a result does not depend on the thread count.)
//   3. finish       from merged[i], the RowState of row i over the whole vocabulary:
//                     loss[i]       = Σa·log Σexp − Σa(x' − r) + z·lse²          (or row_loss[i] for reductions;
//                                     the same on every shard)
//                     grad[i, 0:C)  = g_i · ((Σa + 2z·lse)·softmax(x') − a) · dx'/dx   of the layout's classes
//                   where g_i = grad_scale · grad_loss[i]. Ignored rows (target = ignore_index): loss 0, gradient 0.
//
// The kernel paths (paths.h) run these stages fused where one pass over memory can do them all: a whole row's
// statistics and finish in one sweep, its exps kept in between (RunRows, kRows), or a vector of rows at once, one
// per lane (the lane kernels). shard_statistics() and shard_finish() run stage 1 and stage 3 alone, on the row
// kernel, for callers that merge across chunks or processes in between.
#pragma once

#include "src/kernels.h"
#include "src/plan.h"
#include "src/row_state.h"

namespace xent::internal {

// Stage 1: states[i] for every row i of the layout (ignored rows: the empty RowState). Layout::vocab_start places
// its classes in the vocabulary. Up to `threads` OpenMP threads.
inline void shard_statistics(const Layout& layout, xent_dtype dtype, RowState* states, int threads) {
  with_dtype(dtype, [&](auto d) { shard_statistics_of<decltype(d)::value>(layout, states, threads); });
}

// Stage 3: the loss of every row and the gradients of the layout's classes, from the merged statistics.
inline void shard_finish(const Layout& layout, xent_dtype dtype, const RowState* merged, int threads) {
  with_dtype(dtype, [&](auto d) { shard_finish_of<decltype(d)::value>(layout, merged, threads); });
}

}  // namespace xent::internal
