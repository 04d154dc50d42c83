/** @file xent/xent.h
 * Softmax cross-entropy, C API. This header is the source of truth; xent.hpp is a thin C++ layer.
 *
 * For logits x and labels y along the class axis of length C, per row (every other index):
 *   loss        = sum_j y_j * (logsumexp(x) - x_j)
 *   grad_logits = g * (sum_j y_j * softmax(x) - y)      exact derivative, also when labels do not sum to 1
 *   grad_labels = g * (logsumexp(x) - x)                = -g * log_softmax(x)
 * where g is the upstream gradient of the row's loss (grad_loss, default 1). This is TensorFlow's
 * tf.nn.softmax_cross_entropy_with_logits; its gradient is the one TensorFlow computes with op determinism enabled.
 *
 * Shapes: logits has rank >= 1. labels and logits broadcast numpy-style in every dimension (right-aligned), the
 * class axis included. `axis` in [-rank, rank) picks the class axis of logits (counted in the broadcast shape,
 * which has logits' rank or more). The loss has the broadcast shape without the class axis. grad_logits has
 * logits' shape and grad_labels labels' shape; a gradient of a broadcast input is summed over the broadcast
 * dimensions. Any strides (in elements, negative allowed) are read in place.
 *
 * Dtypes: labels, logits, loss, grad_loss and both gradients all have one dtype: float16, bfloat16, float32 or
 * float64. float16/bfloat16/float32 compute in float32 (blocked sums, reduced in float64) and round once;
 * float64 computes in float64.
 *
 * Error bound (measured, see docs/numerics.md): float32 loss within 4 float32 eps (relative) of a long double
 * reference on rows of 32 000 classes with logits of scale 8; float16/bfloat16 results are the float32 result
 * rounded once; float64 within 1e-13 relative.
 *
 * Special values:
 *   - A class with label 0 contributes exactly 0, also when its logit is -inf: loss, grad_logits (0 there) and
 *     grad_labels stay finite. For grad_labels at a -inf logit with label 0 we return 0 (the true one-sided
 *     derivative is +inf; 0 keeps chain rules NaN-free), documented convention; NaN in a row that a NaN or
 *     +inf logit makes NaN (below).
 *   - Nonzero label on a -inf logit: loss +inf (or -inf for a negative label), grad_labels +inf there.
 *   - Every logit of a row -inf: loss 0 if the row's labels are all 0, else +-inf as above; grad_logits = -g*y.
 *   - Huge finite logits (1e30, 3e38) give the finite, correct loss: everything is computed relative to the row max.
 *   - A NaN in a row's logits or labels makes that row's loss and gradients NaN, and no other row's.
 *   - A +inf logit makes its row NaN (inf - inf), as in TensorFlow. A +-inf label makes its row +-inf or NaN
 *     (unspecified; labels are meant to be finite).
 *
 * Determinism: the same inputs give the same bits on every call and whatever the thread count (a row is split into
 * pieces by its length, never by the threads, and every sum has a fixed order).
 *
 * Errors: every function returns a status and never throws or aborts (in C++ they are noexcept: an internal
 * exception becomes XENT_OUT_OF_MEMORY or XENT_INTERNAL); on failure nothing is written to outputs that were
 * validated out and xent_last_error_message() names the argument, what was expected and what was received. Inputs are never
 * modified, except in place on request: grad_logits may be the logits tensor itself (the very same view: data,
 * dtype, shape, strides), and then the gradient overwrites the logits, so the backward needs no second
 * logits-sized buffer (llm.c's fused classifier does the same); likewise grad_labels over labels (dense op).
 * Any other overlap between outputs, or between an output and an input, is an error. So is a tensor of more than
 * 2^59 elements (only a broadcast view of stride 0 can describe one) or whose farthest byte passes int64.
 */
#ifndef XENT_XENT_H_
#define XENT_XENT_H_

#include <stdint.h>

/** noexcept in C++: no function of this header throws. */
#ifdef __cplusplus
#define XENT_NOEXCEPT noexcept
extern "C" {
#else
#define XENT_NOEXCEPT
#endif

/** The largest rank of a tensor. */
#define XENT_MAX_RANK 16

/** Element types. */
typedef enum xent_dtype {
  XENT_FLOAT16 = 1,
  XENT_BFLOAT16 = 2,
  XENT_FLOAT32 = 3,
  XENT_FLOAT64 = 4,
  XENT_INT32 = 5, /**< class indices (sparse labels, integer targets) */
  XENT_INT64 = 6,
} xent_dtype;

/** What every function returns; xent_last_error_message() says more. */
typedef enum xent_status {
  XENT_OK = 0,
  XENT_INVALID_ARGUMENT = 1, /**< bad shape, rank, axis, stride, pointer or overlap */
  XENT_INVALID_DTYPE = 2,    /**< dtype not supported or not matching the other tensors */
  XENT_UNSUPPORTED = 3,      /**< a valid request this build does not implement */
  XENT_OUT_OF_MEMORY = 4,    /**< a temporary buffer could not be allocated */
  XENT_INTERNAL = 5,         /**< a bug in xent: please report it */
} xent_status;

/** A strided view of memory. data points at element [0, ..., 0]; element [i0, ..., i(rank-1)] lives at
 * data + sum_k i_k * strides[k] elements. Entries past `rank` are ignored. */
typedef struct xent_tensor {
  void* data;    /**< element [0, ..., 0] */
  int32_t dtype; /**< an xent_dtype; a fixed-size integer so the struct's layout does not depend on enum sizes */
  int32_t rank;  /**< in [0, XENT_MAX_RANK] */
  int64_t shape[XENT_MAX_RANK]; /**< sizes, >= 0 */
  int64_t strides[XENT_MAX_RANK]; /**< in elements, not bytes */
} xent_tensor;

/** A view with the given shape (rank entries); strides == NULL means row-major contiguous. The rank is kept as
 * given and the functions below reject one outside [0, XENT_MAX_RANK] with a clear message; only the first
 * min(rank, XENT_MAX_RANK) entries of shape and strides are read (none when shape is NULL). */
xent_tensor xent_make_tensor(void* data, xent_dtype dtype, int32_t rank, const int64_t* shape,
                             const int64_t* strides) XENT_NOEXCEPT;

/** Forward: writes the loss (broadcast shape without the class axis) into *loss. */
xent_status xent_softmax_cross_entropy(const xent_tensor* labels, const xent_tensor* logits, int64_t axis,
                                       const xent_tensor* loss) XENT_NOEXCEPT;

/** Forward and gradients in one pass over the inputs. grad_loss (loss's shape) may be NULL for g = 1.
 * Each of loss, grad_logits, grad_labels may be NULL when not wanted. */
xent_status xent_softmax_cross_entropy_grad(const xent_tensor* labels, const xent_tensor* logits, int64_t axis,
                                            const xent_tensor* grad_loss, const xent_tensor* loss,
                                            const xent_tensor* grad_logits, const xent_tensor* grad_labels) XENT_NOEXCEPT;

/** ---- Sparse (integer-label) softmax cross-entropy: tf.nn.sparse_softmax_cross_entropy_with_logits.
 *   loss        = logsumexp(x) - x[t]             per row, t = labels[row]
 *   grad_logits = g * (softmax(x) - onehot(t))
 * labels: int32 or int64, shape = logits' shape without the class axis (a scalar label for 1-D logits).
 * A label outside [0, C) is an error naming the value and the range (checked before anything is written); nothing
 * is ever read outside the row. -inf logits other than the label's stay finite (logits [[0,-inf]], label 0 -> 0);
 * a -inf logit at the label gives +inf. Dtypes, accuracy, huge logits and NaN as for the dense op. */
xent_status xent_sparse_softmax_cross_entropy(const xent_tensor* labels, const xent_tensor* logits, int64_t axis,
                                              const xent_tensor* loss) XENT_NOEXCEPT;
/** The sparse op's loss and grad_logits in one pass; grad_loss (loss's shape) may be NULL for g = 1, loss and
 * grad_logits may be NULL when not wanted. */
xent_status xent_sparse_softmax_cross_entropy_grad(const xent_tensor* labels, const xent_tensor* logits,
                                                   int64_t axis, const xent_tensor* grad_loss,
                                                   const xent_tensor* loss, const xent_tensor* grad_logits) XENT_NOEXCEPT;

/** ---- Cross-entropy with the options of torch.nn.functional.cross_entropy, z-loss and logit soft-capping, all
 * fused into the same pass. target: class indices (int32/int64, logits' shape without the class axis) or
 * probabilities (logits' dtype, broadcastable against logits as in the dense op).
 * Per row, with x' = softcap ? c*tanh(x/c) : x, lse = logsumexp(x'), eps = label_smoothing, C classes,
 * w = weight (or 1), and effective labels
 *   a_j = (1-eps) * w_t * [j == t] + eps/C * w_j          (class indices)
 *   a_j = w_j * ((1-eps) * y_j + eps/C)                     (probabilities)
 *   loss = sum_j a_j * (lse - x'_j) + z_loss * lse^2
 *   grad_logits = g * ((sum_j a_j + 2*z_loss*lse) * softmax(x') - a) * dx'/dx,  dx'/dx = 1 - (x'/c)^2
 * which is PyTorch's definition for weight, ignore_index and label_smoothing, PaLM's z-loss and Gemma 2's soft-cap.
 * Rows whose target equals ignore_index have loss 0 and gradient 0. A row whose logits are all -inf has no z-loss
 * term. Soft-capping maps -inf logits to -c (tanh(-inf) = -1): they are no longer masked.
 * Reductions: NONE gives one loss per row; SUM the sum; MEAN divides by sum_i w[t_i] over non-ignored rows
 * (class indices; PyTorch) or by the number of rows (probabilities). If that denominator is 0 (every row ignored)
 * MEAN returns 0 with gradient 0 (PyTorch returns NaN), so that an empty batch cannot poison training.
 * For SUM/MEAN, loss and grad_loss have shape [] (rank 0). */
typedef enum xent_reduction {
  XENT_REDUCTION_NONE = 0,
  XENT_REDUCTION_SUM = 1,
  XENT_REDUCTION_MEAN = 2,
} xent_reduction;

/** The options of xent_cross_entropy (start from xent_default_loss_options()). */
typedef struct xent_loss_options {
  const xent_tensor* weight; /**< [C] per-class weights in logits' dtype, or NULL */
  int64_t ignore_index;      /**< class-index targets equal to this are ignored (default -100) */
  int32_t reduction;         /**< an xent_reduction (default MEAN, as PyTorch) */
  double label_smoothing;    /**< in [0, 1] (default 0) */
  double z_loss;             /**< >= 0 (default 0) */
  double softcap;            /**< > 0, or 0 for no soft-capping (default 0) */
} xent_loss_options;

/** PyTorch's defaults: no weight, ignore_index -100, MEAN, no smoothing, no z-loss, no soft-cap. */
xent_loss_options xent_default_loss_options(void) XENT_NOEXCEPT;

/** Forward: the loss (the target's shape for NONE, [] for SUM and MEAN) into *loss. options NULL: the defaults. */
xent_status xent_cross_entropy(const xent_tensor* logits, const xent_tensor* target, int64_t axis,
                               const xent_loss_options* options, const xent_tensor* loss) XENT_NOEXCEPT;
/** Loss and grad_logits in one pass; grad_loss (the loss's shape) may be NULL for g = 1, loss and grad_logits may
 * be NULL when not wanted. */
xent_status xent_cross_entropy_grad(const xent_tensor* logits, const xent_tensor* target, int64_t axis,
                                    const xent_loss_options* options, const xent_tensor* grad_loss,
                                    const xent_tensor* loss, const xent_tensor* grad_logits) XENT_NOEXCEPT;

/** The loss's shape for these inputs, without computing anything: writes *rank and shape[0..rank). labels are
 * probabilities (xent_softmax_cross_entropy) or class indices of dtype int32/int64
 * (xent_sparse_softmax_cross_entropy); the same checks as those functions (shapes, dtypes, strides, axis, options),
 * so a bad input is reported here, except the values of class indices, which only the ops read (a shard of a
 * vocabulary asks with indices into the whole vocabulary). */
xent_status xent_loss_shape(const xent_tensor* labels, const xent_tensor* logits, int64_t axis, int32_t* rank,
                            int64_t shape[XENT_MAX_RANK]) XENT_NOEXCEPT;

/** The same for xent_cross_entropy: target holds probabilities or class indices; rank 0 (a scalar) when
 * options->reduction is SUM or MEAN. */
xent_status xent_cross_entropy_loss_shape(const xent_tensor* logits, const xent_tensor* target, int64_t axis,
                                          const xent_loss_options* options, int32_t* rank,
                                          int64_t shape[XENT_MAX_RANK]) XENT_NOEXCEPT;

/** ---- The class axis sharded across processes (vocabulary parallelism): xent_cross_entropy as three stages that
 * any transport (MPI, NCCL, gloo, a user's own) can drive; xent_mpi.h drives them over MPI.
 * Each process holds classes [vocab_start, vocab_start + C) of a vocabulary of vocab_size classes: its shard of the
 * logits (C classes along `axis`; C may be 0), of options->weight ([C]) and of probability targets (the logits'
 * shape: no broadcasting), or the class-index targets, indices into the whole vocabulary, the same on every
 * process. Every process holds the same rows. Per call:
 *   1. xent_shard_statistics: each row's statistics over the shard's classes (no communication), and the shard's
 *      part of MEAN's denominator (the targets' weights among its classes; probabilities: the rows, counted by the
 *      shard that holds class 0).
 *   2. Combine the statistics of every shard, row by row, and sum the denominators. Either one all-reduce with a
 *      custom reduction, xent_merge_row_statistics (associative and commutative); or two with standard ones: MAX
 *      over the `max` fields, xent_rebase_row_statistics on each shard with that maximum, SUM over all four
 *      fields, and then each row's `max` set back to the maximum (the SUM added it up).
 *      When rows are also split across processes (data parallelism), sum the denominators over those too: MEAN
 *      then divides by the whole batch's, and each process's loss is its rows' part of the batch's mean.
 *   3. xent_shard_finish: from the combined statistics and denominator, the loss (identical on every shard) and the
 *      gradient of the shard's logits. No communication.
 * Results equal xent_cross_entropy_grad's on the gathered logits within rounding (the statistics are merged in
 * another order), for every option: label smoothing spreads over vocab_size classes, z_loss takes the whole row's
 * logsumexp. Special values as xent_cross_entropy's; a NaN or +inf (without softcap) in any shard's row makes the
 * row NaN on every shard (the NaN reaches the combined `sum`).
 * Memory: the caller's 32 bytes of statistics per row, as much again inside each call, and for SUM and MEAN 8 bytes
 * per row. Communication: 32 bytes per row and one double; nothing of size rows x classes.
 * Errors as for xent_cross_entropy, plus: vocab_size < 0, the shard outside [0, vocab_size), `rows` not the number
 * of rows (the product of the loss's unreduced shape), statistics NULL, a target outside [0, vocab_size) that is not
 * ignore_index, broadcast probability targets with grad_logits. A process whose call fails must still take part in
 * the transport's collectives (or tell the others): xent_mpi.h does. */
typedef struct xent_row_statistics {
  double max;       /**< max_j x'_j over the classes seen (x' = soft-capped logits); -inf when none */
  double sum;       /**< sum_j exp(x'_j - r), r = max (or 0 when max is -inf) */
  double label_sum; /**< sum_j a_j, the effective labels of xent_cross_entropy */
  double label_dot; /**< sum_{j: a_j != 0} a_j (x'_j - r) */
} xent_row_statistics;

/** Stage 1: statistics[0..rows) (row-major over the loss's unreduced shape) and *denominator. */
xent_status xent_shard_statistics(const xent_tensor* logits, const xent_tensor* target, int64_t axis,
                                  const xent_loss_options* options, int64_t vocab_start, int64_t vocab_size,
                                  int64_t rows, xent_row_statistics* statistics, double* denominator) XENT_NOEXCEPT;
/** into[i] = the statistics of the union of the classes of into[i] and from[i] (disjoint), for i < rows. */
xent_status xent_merge_row_statistics(xent_row_statistics* into, const xent_row_statistics* from,
                                      int64_t rows) XENT_NOEXCEPT;
/** Re-expresses statistics[i] against max[i] (the maximum of every shard's statistics[i].max) so that the shards'
 * statistics add up field by field; NaN maxima make the row NaN. */
xent_status xent_rebase_row_statistics(xent_row_statistics* statistics, const double* max, int64_t rows) XENT_NOEXCEPT;
/** Stage 3: loss (target's shape for reduction NONE, [] for SUM and MEAN: the sum over these rows, divided by
 * `denominator` for MEAN, 0 when it is 0) and grad_logits (the shard's logits' shape), each may be NULL; grad_loss as
 * for xent_cross_entropy_grad. merged: every row's combined statistics; denominator: the combined one (read for
 * MEAN only). */
xent_status xent_shard_finish(const xent_tensor* logits, const xent_tensor* target, int64_t axis,
                              const xent_loss_options* options, int64_t vocab_start, int64_t vocab_size, int64_t rows,
                              const xent_row_statistics* merged, double denominator, const xent_tensor* grad_loss,
                              const xent_tensor* loss, const xent_tensor* grad_logits) XENT_NOEXCEPT;

/** ---- Fused linear + cross-entropy: the language-model head's loss without holding the logits.
 * For input h of shape [..., H] (N rows: the product of the leading dimensions), linear_weight W [V, H] (the layout
 * of torch.nn.Linear.weight), optional linear_bias b [V] and class-index target of shape [...] (input's shape
 * without its last dimension, int32/int64): the loss of xent_cross_entropy(h·Wᵀ + b, target, options) along the last
 * axis, with every option (class weight [V], ignore_index, reduction, label_smoothing over V classes, z_loss,
 * softcap), and its gradients
 *   grad_input = dlogits · W,   grad_linear_weight = dlogitsᵀ · h,   grad_linear_bias = Σ_rows dlogits
 * where dlogits is xent_cross_entropy_grad's gradient of the logits (with grad_loss applied per row before it is
 * summed into grad_linear_weight). The [N, V] logits never exist: rows go in chunks whose logits fit the chunk
 * budget (xent_set_linear_chunk_bytes), each chunk's logits come from a matrix product, become loss and dlogits in
 * place, and are consumed by two more products at once (three products of N·V·H). When grad_linear_weight needs a
 * float32 accumulator apart from the output (float16, bfloat16, or an output the GEMM cannot write in place) and
 * that accumulator, V·H floats, is more than half the budget, the vocabulary goes in tiles instead: every row's
 * statistics tile by tile, then each tile's logits recomputed and turned into its gradients (four products of
 * N·V·H: about 4/3 of the time; a budget of at least 2·V·H·4 bytes keeps the one pass).
 *
 * Dtypes: input, linear_weight, linear_bias, options->weight, grad_loss, loss and the gradients share one dtype:
 * float32 or float64 (products and loss in that type), float16 or bfloat16 (products with float32 accumulation,
 * loss in float32, each result rounded once to the dtype; grad_linear_weight is accumulated in float32 across
 * chunks). Any strides.
 * Memory: the chunk budget (logits of a chunk, at least one row of a tile; the weight gradient's accumulator),
 * plus 8 bytes per row (per-row losses; 40 when the vocabulary is tiled: row statistics), copies of a chunk's rows
 * of input and of a 4 MiB tile of W where they cannot be read in place (float16, odd strides), and when the
 * vocabulary is tiled and grad_input is not float32 in place, N·H floats. Buffers up to the budget are kept by the
 * calling thread for its next call.
 * Error bound: the products' (the GEMM library's, float32 or float64 accumulation) followed by the op's
 * (xent_cross_entropy). Results do not depend on the thread count only as far as the GEMM library's do not; the
 * same inputs, threads and chunk budget give the same bits.
 * Special values: as xent_cross_entropy on the logits h·Wᵀ + b (a NaN in h or W makes the rows it reaches NaN).
 * Bad input (before anything is written): H of input vs linear_weight, V of linear_weight vs linear_bias or
 * options->weight, a target outside [0, V) that is not ignore_index, mixed dtypes, ranks, shapes of the outputs,
 * outputs overlapping inputs or each other. A build without a GEMM library returns XENT_UNSUPPORTED. */
xent_status xent_linear_cross_entropy(const xent_tensor* input, const xent_tensor* linear_weight,
                                      const xent_tensor* linear_bias, const xent_tensor* target,
                                      const xent_loss_options* options, const xent_tensor* loss) XENT_NOEXCEPT;
/** The loss and the gradients in one pass over the chunks; each of loss, grad_input, grad_linear_weight and
 * grad_linear_bias may be NULL when not wanted (grad_linear_bias needs a linear_bias). grad_loss: the loss's shape
 * (target's shape for reduction NONE, [] otherwise), or NULL for 1. */
xent_status xent_linear_cross_entropy_grad(const xent_tensor* input, const xent_tensor* linear_weight,
                                           const xent_tensor* linear_bias, const xent_tensor* target,
                                           const xent_loss_options* options, const xent_tensor* grad_loss,
                                           const xent_tensor* loss, const xent_tensor* grad_input,
                                           const xent_tensor* grad_linear_weight,
                                           const xent_tensor* grad_linear_bias) XENT_NOEXCEPT;

/** The fused op with the vocabulary sharded across processes: the stages of the sharded op above (statistics,
 * combine, finish) for linear_weight [V, H] holding rows [vocab_start, vocab_start + V) of the whole head (and
 * linear_bias, options->weight the same rows); input and target are the same on every process. V may be 0.
 *   xent_linear_shard_statistics: statistics[0..N) (N = input's rows) and the shard's part of MEAN's denominator,
 *     from the shard's logits, computed chunk by chunk within the chunk budget (one product of N·V·H).
 *   xent_linear_shard_finish: from the combined statistics and denominator, the loss (identical on every process),
 *     grad_linear_weight and grad_linear_bias of the shard, and grad_input's part from this shard, dlogits · W_shard:
 *     the caller sums grad_input over the processes (one all-reduce of N·H; xent_mpi.h does it). The logits are
 *     recomputed (three products of N·V·H).
 * Dtypes, memory (the chunk budget; 32 bytes of statistics per row), error bound, special values and errors as
 * xent_linear_cross_entropy's and the sharded op's. */
xent_status xent_linear_shard_statistics(const xent_tensor* input, const xent_tensor* linear_weight,
                                         const xent_tensor* linear_bias, const xent_tensor* target,
                                         const xent_loss_options* options, int64_t vocab_start, int64_t vocab_size,
                                         int64_t rows, xent_row_statistics* statistics,
                                         double* denominator) XENT_NOEXCEPT;
/** Stage 3 of the fused op on a shard of the head's rows (see above); grad_input is the shard's part, to be summed
 * over the processes. */
xent_status xent_linear_shard_finish(const xent_tensor* input, const xent_tensor* linear_weight,
                                     const xent_tensor* linear_bias, const xent_tensor* target,
                                     const xent_loss_options* options, int64_t vocab_start, int64_t vocab_size,
                                     int64_t rows, const xent_row_statistics* merged, double denominator,
                                     const xent_tensor* grad_loss, const xent_tensor* loss,
                                     const xent_tensor* grad_input, const xent_tensor* grad_linear_weight,
                                     const xent_tensor* grad_linear_bias) XENT_NOEXCEPT;

/** The fused linear + cross-entropy's working memory, in bytes (default 64 MiB; at least one row of a tile of the
 * logits is used whatever the setting). Larger budgets take larger chunks (fewer, larger products) and keep a
 * float32 weight-gradient accumulator in one pass. Process-wide; n <= 0 restores the default. */
void xent_set_linear_chunk_bytes(int64_t bytes) XENT_NOEXCEPT;
/** The fused op's working memory now, in bytes. */
int64_t xent_get_linear_chunk_bytes(void) XENT_NOEXCEPT;

/** The message of this thread's last failed call ("" if none). Valid until this thread's next xent call. */
const char* xent_last_error_message(void) XENT_NOEXCEPT;
/** For layers built on these functions (xent_mpi.h, a user's own transport): records `message` (NULL: "") as this
 * thread's last error message, as a failed xent call would, and returns `status`. */
xent_status xent_set_last_error(xent_status status, const char* message) XENT_NOEXCEPT;

/** Caps the threads xent uses (OpenMP); n <= 0 restores the default (all available). Process-wide. In a process
 * created by fork() (multiprocessing, DataLoader workers) xent runs on one thread whatever the cap: GNU OpenMP's
 * thread pool does not survive fork(), and a region of more threads would wait forever (PyTorch does the same). */
void xent_set_num_threads(int32_t n) XENT_NOEXCEPT;
/** The threads xent's next call may use (1 in a forked child). */
int32_t xent_get_num_threads(void) XENT_NOEXCEPT;

/** Human-readable names, for messages: "float32", ... */
const char* xent_dtype_name(xent_dtype dtype) XENT_NOEXCEPT;
/** "XENT_OK", "XENT_INVALID_ARGUMENT", ... */
const char* xent_status_name(xent_status status) XENT_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* XENT_XENT_H_ */
