/** @file xent/xent_mpi.h
 * Softmax cross-entropy with the class axis sharded across MPI processes (vocabulary
 * parallelism). Library xent_mpi (CMake target xent::xent_mpi), built when MPI is found; it drives the stages of
 * xent.h (xent_shard_statistics, a merge, xent_shard_finish) over a communicator.
 *
 * Every process of `comm` holds the same rows and a contiguous slice of the classes: logits_shard has the shard's C
 * classes along `axis`, for classes [vocab_start, vocab_start + C) of a vocabulary of V classes, V being the sum of
 * every process's C. The shards must tile [0, V) (unequal sizes allowed, empty ones too). target: class indices
 * into the whole vocabulary (int32/int64, the same on every process), or probabilities sharded like the logits
 * (logits' shape). options->weight: the shard's [C] class weights. Results equal xent_cross_entropy(_grad) on the
 * gathered logits within rounding, for every option: label smoothing over V classes, z_loss of the whole row's
 * logsumexp, ignore_index, softcap, and the reductions (MEAN's denominator summed over the shards).
 *
 * data_comm: MPI_COMM_NULL, or the processes across which the batch's rows are split (data parallelism, each with
 * its own `comm` of vocabulary shards). MEAN then divides by the whole batch's denominator (Σ w[t] over rows not
 * ignored, or the row count for probabilities) summed over data_comm, and each process's loss is its rows' part of
 * the batch's mean: summing losses, or gradients, over data_comm gives the batch's.
 *
 * Communication per call, over comm: one MPI_Allgather of 40 bytes per process (the shards' layout), one
 * MPI_Allreduce of 16 bytes (the denominator and any failure), one MPI_Allreduce of the row statistics (32 bytes per
 * row, merged by a custom commutative reduction), and one MPI_Allreduce of 4 bytes that agrees on the outcome.
 * Over data_comm, for MEAN: one MPI_Allreduce of 8 bytes. Nothing of size rows x classes is sent; the gradient
 * needs no communication. Memory: 32 bytes per row, plus the op's (xent.h).
 *
 * Errors are collective: a bad argument on any process of comm (a target outside [0, V), shards that do not tile
 * the vocabulary, different row counts, a bad tensor) makes every process of comm return the same status, with a
 * message that names the process ("rank 2 of 3: ..."), and nothing is written to any output; no process hangs.
 * Every process of comm must call with the same reduction; MPI must be initialised (any thread level, one caller
 * per communicator at a time). MPI failures return XENT_INTERNAL (under MPI's default error handler they abort). */
#ifndef XENT_XENT_MPI_H_
#define XENT_XENT_MPI_H_

/* The C bindings only: MPI's deprecated C++ bindings would need their own library at link time. */
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include "xent/xent.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The loss (target's shape for reduction NONE, [] for SUM and MEAN), identical on every process of comm. */
xent_status xent_mpi_cross_entropy(const xent_tensor* logits_shard, const xent_tensor* target, int64_t axis,
                                   int64_t vocab_start, const xent_loss_options* options, MPI_Comm comm,
                                   MPI_Comm data_comm, const xent_tensor* loss) XENT_NOEXCEPT;

/** The loss and the gradient of this process's logits shard; grad_loss as for xent_cross_entropy_grad (NULL: 1);
 * loss and grad_logits_shard may be NULL when not wanted. */
xent_status xent_mpi_cross_entropy_grad(const xent_tensor* logits_shard, const xent_tensor* target, int64_t axis,
                                        int64_t vocab_start, const xent_loss_options* options, MPI_Comm comm,
                                        MPI_Comm data_comm, const xent_tensor* grad_loss, const xent_tensor* loss,
                                        const xent_tensor* grad_logits_shard) XENT_NOEXCEPT;

/** The fused linear + cross-entropy (xent_linear_cross_entropy) with the vocabulary sharded: each process holds rows
 * [vocab_start, vocab_start + V_local) of the head's linear_weight ([V_local, H]; linear_bias_shard and
 * options->weight the same rows, or NULL) and the same input [..., H] and class-index target (into the whole
 * vocabulary). The logits are never held: each process computes its shard's chunk by chunk (xent_linear_shard_*).
 * Results as xent_linear_cross_entropy_grad's on the whole head within rounding: the loss on every process, the
 * gradients of this process's rows of linear_weight and linear_bias, and grad_input, the sum over the processes of
 * each shard's part (one more MPI_Allreduce, of N x H: float32/float64 contiguous in place, otherwise through a
 * float64 copy, each shard's part rounded once to the dtype before the sum). Every process asks for grad_input or
 * none. Products: four of N x V_local x H per process (statistics, then logits again for the gradients). */
xent_status xent_mpi_linear_cross_entropy(const xent_tensor* input, const xent_tensor* linear_weight_shard,
                                          const xent_tensor* linear_bias_shard, const xent_tensor* target,
                                          int64_t vocab_start, const xent_loss_options* options, MPI_Comm comm,
                                          MPI_Comm data_comm, const xent_tensor* loss) XENT_NOEXCEPT;
/** The loss and the gradients of the fused op, each optional (grad_input: the sum over the processes). */
xent_status xent_mpi_linear_cross_entropy_grad(const xent_tensor* input, const xent_tensor* linear_weight_shard,
                                               const xent_tensor* linear_bias_shard, const xent_tensor* target,
                                               int64_t vocab_start, const xent_loss_options* options, MPI_Comm comm,
                                               MPI_Comm data_comm, const xent_tensor* grad_loss,
                                               const xent_tensor* loss, const xent_tensor* grad_input,
                                               const xent_tensor* grad_linear_weight_shard,
                                               const xent_tensor* grad_linear_bias_shard) XENT_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* XENT_XENT_MPI_H_ */
