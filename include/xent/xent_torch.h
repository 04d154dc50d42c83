/** @file xent/xent_torch.h
 * xent as PyTorch operators: library xent_torch (libxent_torch.so, linking libtorch; built when CMake finds Torch).
 * Loading the library registers the operators with PyTorch's dispatcher, in namespace `xent`:
 *   - Python: `torch.ops.xent.cross_entropy(...)` (xent.torch loads the library and wraps it), also inside
 *     `torch.jit.script`ed code and TorchScript programs loaded from C++;
 *   - C++ linking libtorch (no Python): the functions below, which call the registered operators.
 * Each operator has its autograd formula in C++ (one graph node; the backward recomputes each row's statistics in
 * the same pass that writes the gradient, so the forward saves no logits-sized tensor). Every other property (dtypes,
 * error bound, special values, memory, threads) is the C API's, include/xent/xent.h.
 *
 * Operator schemas (TorchScript):
 *   xent::cross_entropy(Tensor input, Tensor target, Tensor? weight=None, int ignore_index=-100,
 *                       str reduction="mean", float label_smoothing=0.0, float z_loss=0.0, float? softcap=None,
 *                       int? axis=None, bool inplace_backward=False) -> Tensor
 *   xent::linear_cross_entropy(Tensor input, Tensor linear_weight, Tensor target, Tensor? linear_bias=None,
 *                              Tensor? weight=None, int ignore_index=-100, str reduction="mean",
 *                              float label_smoothing=0.0, float z_loss=0.0, float? softcap=None) -> Tensor
 *   xent::softmax_cross_entropy_with_logits(Tensor labels, Tensor logits, int axis=-1) -> Tensor
 *   xent::sparse_softmax_cross_entropy_with_logits(Tensor labels, Tensor logits, int axis=-1) -> Tensor
 */
#ifndef XENT_XENT_TORCH_H_
#define XENT_XENT_TORCH_H_

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cstdint>

namespace xent::torch {

/** torch.nn.functional.cross_entropy(input, target, weight, ignore_index=, reduction=, label_smoothing=) with its
 * conventions, plus PaLM's z-loss and Gemma 2's logit soft-cap (xent_cross_entropy's formula, xent.h).
 *
 * @param input logits, CPU, float16, bfloat16, float32 or float64, any strides (read in place). The class axis is
 *        `axis`, or where F.cross_entropy puts it: dim 1 for rank >= 2, dim 0 for rank 1.
 * @param target class indices (int32/int64, input's shape without the class axis) or probabilities (input's dtype
 *        and shape). A class index outside [0, C) that is not ignore_index is an error (ValueError in Python).
 * @param weight optional per-class weights [C] in input's dtype.
 * @param ignore_index class-index targets equal to it contribute loss 0 and gradient 0.
 * @param reduction "none" (target's shape), "sum" or "mean" (shape []). MEAN over class indices divides by the
 *        summed weights of the rows not ignored; when every row is ignored it returns 0 (F.cross_entropy: NaN).
 * @param label_smoothing ε in [0, 1], spread over the C classes as PyTorch does.
 * @param z_loss λ >= 0: adds λ·logsumexp(x')² per row (PaLM).
 * @param softcap > 0, or nullopt for no soft-capping.
 * @param axis the class dimension, in [-rank, rank); nullopt: F.cross_entropy's (1, or 0 for a 1-D input).
 * @param inplace_backward the backward writes the gradient over input's own memory instead of a new tensor (no
 *        allocation, no page faults: the backward of a logits-sized tensor then costs the kernel only). Safe when
 *        nothing else reads the logits after this loss (true of a linear layer's output: its backward needs its
 *        inputs, not its output). The backward bumps input's version counter, so that any other use of the logits
 *        saved for a backward fails with PyTorch's in-place error instead of reading the gradient; a leaf input
 *        (a parameter or a tensor created by the caller) is refused. Ignored for higher derivatives.
 * @return the loss in input's dtype; differentiable in input (any order: higher derivatives use an ATen expression
 *         of the same gradient) and in probability targets. Errors raise c10::ValueError (bad shapes, labels,
 *         options), c10::TypeError (dtypes) or c10::OutOfMemoryError (a temporary buffer).
 * Memory: the loss; the forward saves references to input, target and weight (no copies); the backward allocates
 * the gradient (input's shape, contiguous) unless inplace_backward. */
at::Tensor cross_entropy(const at::Tensor& input, const at::Tensor& target,
                         const c10::optional<at::Tensor>& weight = c10::nullopt, int64_t ignore_index = -100,
                         c10::string_view reduction = "mean", double label_smoothing = 0.0, double z_loss = 0.0,
                         c10::optional<double> softcap = c10::nullopt, c10::optional<int64_t> axis = c10::nullopt,
                         bool inplace_backward = false);

/** cross_entropy(input @ linear_weight.T + linear_bias, target) without ever holding the logits
 * (xent_linear_cross_entropy, xent.h): input [..., H], linear_weight [V, H], linear_bias [V], class-index target of
 * input's shape without its last dimension; float32, float64, bfloat16 or float16 CPU tensors of one dtype.
 * Differentiable in input, linear_weight and linear_bias (first derivatives). With a reduced loss the gradients
 * are computed in the forward pass and the backward scales them (the forward then holds them: input's, weight's and
 * bias's sizes); with "none" the backward runs the fused op again with the per-row upstream gradients. Without
 * gradients (torch.no_grad(), frozen tensors) only the forward runs. Errors as cross_entropy's. */
at::Tensor linear_cross_entropy(const at::Tensor& input, const at::Tensor& linear_weight, const at::Tensor& target,
                                const c10::optional<at::Tensor>& linear_bias = c10::nullopt,
                                const c10::optional<at::Tensor>& weight = c10::nullopt, int64_t ignore_index = -100,
                                c10::string_view reduction = "mean", double label_smoothing = 0.0,
                                double z_loss = 0.0, c10::optional<double> softcap = c10::nullopt);

/** tf.nn.softmax_cross_entropy_with_logits on tensors (xent_softmax_cross_entropy, xent.h): one loss per row,
 * sum_j labels_j·(logsumexp(logits) − logits_j), in the broadcast shape of labels and logits (numpy broadcasting in
 * every dimension, the class axis included) without the class axis `axis`. labels: logits' dtype (float16, bfloat16,
 * float32, float64), any values. Differentiable in logits and labels (each gradient summed over the dimensions its
 * input was broadcast along; higher derivatives through an ATen expression). Errors as cross_entropy's. */
at::Tensor softmax_cross_entropy_with_logits(const at::Tensor& labels, const at::Tensor& logits, int64_t axis = -1);

/** tf.nn.sparse_softmax_cross_entropy_with_logits (xent_sparse_softmax_cross_entropy, xent.h): one loss per row,
 * logsumexp(logits) − logits[label], labels (int32/int64) of logits' shape without the class axis `axis`. A label
 * outside [0, C) is an error naming the value and the range. Differentiable in logits. */
at::Tensor sparse_softmax_cross_entropy_with_logits(const at::Tensor& labels, const at::Tensor& logits,
                                                    int64_t axis = -1);

}  // namespace xent::torch

#endif  // XENT_XENT_TORCH_H_
