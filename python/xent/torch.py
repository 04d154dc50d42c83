"""xent as PyTorch operators: `xent.torch.cross_entropy` is a drop-in for torch.nn.functional.cross_entropy.

    import xent.torch
    loss = xent.torch.cross_entropy(logits, target)          # logits [N, C] or [N, C, d1, ...], as F.cross_entropy
    loss.backward()                                           # one fused xent pass writes grad_logits

The functions here are thin faces over operators registered with PyTorch's dispatcher (library libxent_torch.so,
include/xent/xent_torch.h): `torch.ops.xent.cross_entropy` and `torch.ops.xent.linear_cross_entropy`, with their
autograd formulas in C++. They work in eager code, in `torch.jit.script` (functions and modules calling them), and
from C++ programs that link libtorch. CPU tensors of float32, float64, float16 and bfloat16, read in place with
their strides (no copy). Options as F.cross_entropy's (weight, ignore_index, reduction, label_smoothing), plus
z_loss and softcap.

Memory: forward saves references to logits, target and weight (no copies) and nothing else; backward recomputes
each row's max and sum in the same pass that writes the gradient, reading logits once. PyTorch's own
cross_entropy keeps its log_softmax output (one value per logit) alive between forward and backward. With
inplace_backward=True the gradient is written over the logits' own memory (no new tensor, no page faults).
Higher derivatives (create_graph=True, Hessian-vector products) differentiate an ATen expression of the same
gradient, g * ((sum(a) + 2*z_loss*lse) * softmax(x') - a) * dx'/dx, which materialises softmax for that call.
Differences from F.cross_entropy: reduction="mean" over a batch whose rows are all ignored gives 0 with gradient 0
(PyTorch: NaN); `size_average` and `reduce` (deprecated in PyTorch) are not taken.
"""
import math
import os
from typing import Optional

import torch

from . import _vocab_parallel, _xent

__all__ = ["cross_entropy", "CrossEntropyLoss", "softmax_cross_entropy_with_logits",
           "sparse_softmax_cross_entropy_with_logits", "linear_cross_entropy", "LinearCrossEntropyLoss",
           "vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]

_OPERATORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libxent_torch.so")
if not os.path.exists(_OPERATORS):
    raise ImportError("xent.torch needs xent's PyTorch operators (libxent_torch.so), which this build of xent does "
                      "not have: build it where libtorch-dev is installed (scripts/setup.sh installs it)")
torch.ops.load_library(_OPERATORS)
# The operators' own callables: eager calls skip the OpOverloadPacket's Python frame (TorchScript calls
# torch.ops.xent.* below).
_CROSS_ENTROPY = torch.ops.xent.cross_entropy._op
_LINEAR_CROSS_ENTROPY = torch.ops.xent.linear_cross_entropy._op
_SOFTMAX_CROSS_ENTROPY_WITH_LOGITS = torch.ops.xent.softmax_cross_entropy_with_logits._op
_SPARSE_SOFTMAX_CROSS_ENTROPY_WITH_LOGITS = torch.ops.xent.sparse_softmax_cross_entropy_with_logits._op

_DTYPES = {getattr(torch, name): int(value) for name, value in _xent.dtype.__members__.items()}


def _descriptor(t, name):
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, received one on {t.device}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name} has dtype {t.dtype}; xent takes float16, bfloat16, float32, float64 "
                        f"(and int32/int64 class indices)")
    return (t.data_ptr(), _DTYPES[t.dtype], tuple(t.shape), tuple(t.stride()))


def _optional(t, name):
    return None if t is None else _descriptor(t, name)


def cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                  ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
                  z_loss: float = 0.0, softcap: Optional[float] = None, axis: Optional[int] = None,
                  inplace_backward: bool = False) -> torch.Tensor:
    """torch.nn.functional.cross_entropy with the same arguments and conventions, plus z_loss and softcap.

    input: logits, class dimension 1 (dim 0 for a 1-D input), or `axis` if given. target: class indices (int64 or
    int32, input's shape without the class dimension) or probabilities (input's dtype and shape). Per row, with
    x' = softcap*tanh(x/softcap) (if given), lse = logsumexp(x'), eps = label_smoothing, w = weight:
    loss = sum_j a_j (lse - x'_j) + z_loss * lse^2, a_j the smoothed, weighted targets (PyTorch's definition).
    reduction: "none", "sum" or "mean" (divides by the weights of the rows not ignored; 0, not NaN, when every row is
    ignored). inplace_backward=True writes the gradient over input's memory in the backward (safe when nothing
    else reads the logits afterwards, e.g. a linear layer's output; a leaf input is refused, and another saved use
    of the logits fails with PyTorch's in-place error). Raises ValueError (shapes, target values, options),
    TypeError (dtypes).
    """
    if torch.jit.is_scripting():
        return torch.ops.xent.cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                                            softcap, axis, inplace_backward)
    return _CROSS_ENTROPY(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, axis,
                          inplace_backward)


class CrossEntropyLoss(torch.nn.Module):
    """torch.nn.CrossEntropyLoss's counterpart (its arguments but size_average and reduce), plus z_loss, softcap,
    axis and inplace_backward: cross_entropy with these options fixed at construction. Scriptable."""

    __constants__ = ["ignore_index", "reduction", "label_smoothing", "z_loss", "inplace_backward"]

    def __init__(self, weight: Optional[torch.Tensor] = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0, z_loss: float = 0.0, softcap: Optional[float] = None,
                 axis: Optional[int] = None, inplace_backward: bool = False):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap, self.axis, self.inplace_backward = z_loss, softcap, axis, inplace_backward

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing,
                             self.z_loss, self.softcap, self.axis, self.inplace_backward)


# ---- TensorFlow's two ops

def softmax_cross_entropy_with_logits(labels: torch.Tensor, logits: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """tf.nn.softmax_cross_entropy_with_logits on tensors: one loss per row, sum_j labels_j (logsumexp(logits) -
    logits_j), in the broadcast shape of labels and logits (numpy broadcasting, the class axis included) without
    `axis`. labels in logits' dtype, any values (exact gradient also when they do not sum to 1). Differentiable in
    logits and labels (higher derivatives too). See xent.softmax_cross_entropy_with_logits."""
    if torch.jit.is_scripting():
        return torch.ops.xent.softmax_cross_entropy_with_logits(labels, logits, axis)
    return _SOFTMAX_CROSS_ENTROPY_WITH_LOGITS(labels, logits, axis)


def sparse_softmax_cross_entropy_with_logits(labels: torch.Tensor, logits: torch.Tensor,
                                             axis: int = -1) -> torch.Tensor:
    """tf.nn.sparse_softmax_cross_entropy_with_logits on tensors: one loss per row, logsumexp(logits) -
    logits[label], labels (int64/int32) of logits' shape without `axis`; a label outside [0, C) raises ValueError.
    Differentiable in logits. See xent.sparse_softmax_cross_entropy_with_logits."""
    if torch.jit.is_scripting():
        return torch.ops.xent.sparse_softmax_cross_entropy_with_logits(labels, logits, axis)
    return _SPARSE_SOFTMAX_CROSS_ENTROPY_WITH_LOGITS(labels, logits, axis)


# ---- The fused linear + cross-entropy

def linear_cross_entropy(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
                         linear_bias: Optional[torch.Tensor] = None, weight: Optional[torch.Tensor] = None,
                         reduction: str = "mean", ignore_index: int = -100, label_smoothing: float = 0.0,
                         z_loss: float = 0.0, softcap: Optional[float] = None) -> torch.Tensor:
    """cross_entropy(input @ linear_weight.T + linear_bias, target) without ever holding the logits.

    The signature of PyTorch 2's F.linear_cross_entropy, plus z_loss and softcap. input [..., H], linear_weight
    [V, H], linear_bias [V] (float32, float64, bfloat16 or float16 CPU tensors, any strides), target: class indices
    of input's shape without its last dimension. Differentiable in input, linear_weight and linear_bias. With a
    reduced loss the gradients are computed in the forward pass (for an upstream gradient of 1) and the backward
    scales them; with reduction='none' the backward runs the fused op again with the per-row upstream gradients.
    Without gradients (eval, torch.no_grad()) only the forward runs. See xent.linear_cross_entropy.
    """
    if torch.jit.is_scripting():
        return torch.ops.xent.linear_cross_entropy(input, linear_weight, target, linear_bias, weight, ignore_index,
                                                   reduction, label_smoothing, z_loss, softcap)
    return _LINEAR_CROSS_ENTROPY(input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
                                 label_smoothing, z_loss, softcap)


class LinearCrossEntropyLoss(torch.nn.Module):
    """A language-model head and its loss in one module: owns the linear layer's weight [num_classes, in_features]
    (and bias), initialised as torch.nn.Linear's, and returns linear_cross_entropy(input, weight, target) without
    holding the logits. `weight` here is the class weight of the loss (stored as `class_weight`). Scriptable."""

    __constants__ = ["in_features", "num_classes", "reduction", "ignore_index", "label_smoothing", "z_loss"]

    def __init__(self, in_features, num_classes, bias=False, dtype=None, reduction="mean", weight=None,
                 ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None):
        super().__init__()
        self.in_features, self.num_classes = in_features, num_classes
        self.weight = torch.nn.Parameter(torch.empty(num_classes, in_features, dtype=dtype))
        self.bias = torch.nn.Parameter(torch.empty(num_classes, dtype=dtype)) if bias else None
        self.register_buffer("class_weight", weight)
        self.reduction, self.ignore_index, self.label_smoothing = reduction, ignore_index, label_smoothing
        self.z_loss, self.softcap = z_loss, softcap
        self.reset_parameters()

    def reset_parameters(self):
        """Initialises weight and bias as torch.nn.Linear does."""
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return linear_cross_entropy(input, self.weight, target, self.bias, self.class_weight, self.reduction,
                                    self.ignore_index, self.label_smoothing, self.z_loss, self.softcap)

    def extra_repr(self):
        return f"in_features={self.in_features}, num_classes={self.num_classes}, bias={self.bias is not None}"


# ---- The class axis sharded across processes (vocabulary parallelism) over torch.distributed

class _DistributedTransport(_vocab_parallel.Transport):
    def __init__(self, group):
        import torch.distributed as dist
        self.dist, self.group = dist, group
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)

    def allgather(self, obj):
        out = [None] * self.size
        self.dist.all_gather_object(out, obj, group=self.group)
        return out

    def allreduce_max(self, array):
        self.dist.all_reduce(torch.from_numpy(array), op=self.dist.ReduceOp.MAX, group=self.group)

    def allreduce_sum(self, array):
        self.dist.all_reduce(torch.from_numpy(array), op=self.dist.ReduceOp.SUM, group=self.group)


def _transports(group, data_group):
    """(group's transport, data_group's or None)."""
    return _DistributedTransport(group), _DistributedTransport(data_group) if data_group is not None else None


def _shard_options(weight, ignore_index, reduction, label_smoothing, z_loss, softcap):
    return _vocab_parallel.Options(_optional(weight, "weight"), ignore_index, reduction, label_smoothing,
                                   z_loss, softcap)


class _VocabParallelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, weight, vocab_start, group, data_group, options):
        ignore_index, reduction, label_smoothing, z_loss, softcap = options
        transport, data_transport = _transports(group, data_group)
        x = t = o = None
        local_error, rows, classes = None, 0, 0
        try:  # checks this process can make alone; the driver raises their failure on every process
            _check_vocab_parallel(logits, target, weight, reduction, ignore_index, softcap)
            x, t = _descriptor(logits, "logits_shard"), _descriptor(target, "target")
            o = _shard_options(weight, *options)
            classes = logits.shape[-1]
            rows = math.prod(logits.shape[:-1])
        except Exception as e:
            local_error = _vocab_parallel._describe(e)
        merged, denominator, vocab_size = _vocab_parallel.combine(
            transport, data_transport, rows, classes, vocab_start, local_error,
            _vocab_parallel.logits_statistics(x, t, -1, o, vocab_start))
        loss = torch.empty(tuple(logits.shape[:-1]) if reduction == "none" else (), dtype=logits.dtype)
        _vocab_parallel.finish(x, t, -1, o, vocab_start, vocab_size, merged, denominator, None,
                               _descriptor(loss, "loss"), None)
        ctx.save_for_backward(logits, target, weight)
        ctx.shard = (vocab_start, vocab_size, merged, denominator, options)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        logits, target, weight = ctx.saved_tensors
        vocab_start, vocab_size, merged, denominator, options = ctx.shard
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        grad_loss = grad_loss.detach().to(logits.dtype).contiguous()
        _vocab_parallel.finish(_descriptor(logits.detach(), "logits_shard"), _descriptor(target, "target"), -1,
                               _shard_options(weight, *options), vocab_start, vocab_size, merged, denominator,
                               _descriptor(grad_loss, "grad_loss"), None, _descriptor(grad, "grad_logits"))
        return grad, None, None, None, None, None, None


def _check_vocab_parallel(logits, target, weight, reduction, ignore_index, softcap):
    _xent.options(reduction, ignore_index, softcap)
    if logits.dim() < 1:
        raise ValueError("logits_shard must have rank >= 1 (a class axis), received a scalar")
    if target.is_floating_point() and target.dtype != logits.dtype:
        raise TypeError(f"target probabilities must have logits' dtype {logits.dtype}, received {target.dtype}")
    if weight is not None and weight.dtype != logits.dtype:
        raise TypeError(f"weight must have logits' dtype {logits.dtype}, received {weight.dtype}")


def vocab_parallel_cross_entropy(logits_shard, target, *, vocab_start, group=None, weight=None, ignore_index=-100,
                                 reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None, data_group=None):
    """cross_entropy over a class axis sharded across the processes of a torch.distributed group (gloo on CPU).

    logits_shard [..., V_local]: this process's classes [vocab_start, vocab_start + V_local) along the last dim;
    shards may have unequal sizes (empty ones too) and must tile the vocabulary; every process holds the same rows.
    target: class indices into the whole vocabulary (the same on every process) or probabilities sharded like the
    logits; weight: this shard's [V_local] class weights. The loss equals cross_entropy on the gathered logits (within
    rounding) on every process, for every option (label_smoothing over the whole vocabulary, z_loss of the whole
    row's logsumexp), and the backward gives each process the gradient of its own shard, with no communication.
    data_group: the processes across which rows are split (data parallelism): reduction="mean" then divides by the
    batch's denominator, so that gradients summed over data_group are the batch's.
    Forward communication over `group`: two tiny all_gather_object calls and two all-reduces of 8 and 32 bytes per
    row. A bad argument on any process raises on every process of the group ("rank r of P: ...").
    """
    return _VocabParallelCrossEntropy.apply(logits_shard, target, weight, int(vocab_start), group, data_group,
                                            (int(ignore_index), reduction, float(label_smoothing), float(z_loss),
                                             softcap))


def _sum_over(tensor, group):
    """Σ over the group's processes, in place; 16-bit tensors through float32 (each part rounded once before)."""
    import torch.distributed as dist
    if tensor.dtype in (torch.float32, torch.float64):
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    else:
        wide = tensor.float()
        dist.all_reduce(wide, op=dist.ReduceOp.SUM, group=group)
        tensor.copy_(wide)
    return tensor


class _VocabParallelLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, linear_weight, linear_bias, target, weight, vocab_start, group, data_group, options):
        ignore_index, reduction, label_smoothing, z_loss, softcap = options
        transport, data_transport = _transports(group, data_group)
        d = o = None
        local_error, rows, classes = None, 0, 0
        try:  # checks this process can make alone; the driver raises their failure on every process
            _check_vocab_parallel(input, target, weight, reduction, ignore_index, softcap)
            for t, name in ((linear_weight, "linear_weight_shard"), (linear_bias, "linear_bias")):
                if t is not None and t.dtype != input.dtype:
                    raise TypeError(f"{name} must have input's dtype {input.dtype}, received {t.dtype}")
            if linear_weight.dim() != 2:
                raise ValueError(f"linear_weight_shard must have shape [V_local, H], received {tuple(linear_weight.shape)}")
            d = (_descriptor(input, "input"), _descriptor(linear_weight, "linear_weight_shard"),
                 _optional(linear_bias, "linear_bias"), _descriptor(target, "target"))
            o = _shard_options(weight, *options)
            classes = linear_weight.shape[0]
            rows = math.prod(input.shape[:-1])
        except Exception as e:
            local_error = _vocab_parallel._describe(e)
        merged, denominator, vocab_size = _vocab_parallel.combine(
            transport, data_transport, rows, classes, vocab_start, local_error,
            _vocab_parallel.linear_statistics(*d, o, vocab_start) if d else None)
        ctx.shard = (vocab_start, vocab_size, merged, denominator, options, group)
        wanted = ctx.needs_input_grad[:3]
        loss = torch.empty(tuple(input.shape[:-1]) if reduction == "none" else (), dtype=input.dtype)
        if not any(wanted) or reduction == "none":
            # The forward alone; with per-row upstream gradients the backward runs the finish again with them.
            _vocab_parallel.linear_finish(*d, o, vocab_start, vocab_size, merged, denominator, None,
                                          _descriptor(loss, "loss"), None, None, None)
            ctx.scaled = False
            ctx.save_for_backward(input, linear_weight, linear_bias, target, weight)
            return loss
        # A reduced loss: the gradients for an upstream gradient of 1 in this same pass; the backward scales them.
        grads = _shard_gradients(input, linear_weight, linear_bias, wanted)
        _vocab_parallel.linear_finish(*d, o, vocab_start, vocab_size, merged, denominator, None,
                                      _descriptor(loss, "loss"), *[_optional(g, "gradient") for g in grads])
        if grads[0] is not None:
            _sum_over(grads[0], group)
        ctx.scaled = True
        ctx.save_for_backward(*grads)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        wanted = ctx.needs_input_grad[:3]
        vocab_start, vocab_size, merged, denominator, options, group = ctx.shard
        if ctx.scaled:
            grads = list(ctx.saved_tensors)
            if not (grad_loss == 1).all():
                grads = [g * grad_loss.to(g.dtype) if g is not None else None for g in grads]
        else:
            input, linear_weight, linear_bias, target, weight = ctx.saved_tensors
            grads = _shard_gradients(input, linear_weight, linear_bias, wanted)
            grad_loss = grad_loss.detach().to(input.dtype).contiguous()
            _vocab_parallel.linear_finish(
                _descriptor(input.detach(), "input"), _descriptor(linear_weight.detach(), "linear_weight_shard"),
                _optional(None if linear_bias is None else linear_bias.detach(), "linear_bias"),
                _descriptor(target, "target"), _shard_options(weight, *options), vocab_start, vocab_size, merged,
                denominator, _descriptor(grad_loss, "grad_loss"), None, *[_optional(g, "gradient") for g in grads])
            if grads[0] is not None:
                _sum_over(grads[0], group)
        grads = [g if want else None for g, want in zip(grads, wanted)]
        return grads[0], grads[1], grads[2], None, None, None, None, None, None


def _shard_gradients(input, linear_weight, linear_bias, wanted):
    return [torch.empty(t.shape, dtype=t.dtype) if want and t is not None else None
            for t, want in zip((input, linear_weight, linear_bias), wanted)]


def vocab_parallel_linear_cross_entropy(input, linear_weight_shard, target, *, vocab_start, linear_bias=None,
                                        group=None, weight=None, ignore_index=-100, reduction="mean",
                                        label_smoothing=0.0, z_loss=0.0, softcap=None, data_group=None):
    """linear_cross_entropy with the head's rows sharded across the processes of a torch.distributed group.

    linear_weight_shard [V_local, H] (and linear_bias [V_local], weight [V_local]): rows [vocab_start, vocab_start +
    V_local) of the head; input [..., H] and target (class indices into the whole vocabulary) the same on every
    process. The logits are never held: each process computes its shard's in chunks (xent.h, xent_linear_shard_*).
    The loss equals linear_cross_entropy on the whole head within rounding on every process; the backward gives each
    process the gradients of its rows of the head and grad_input summed over the group (one all-reduce of N x H;
    16-bit through float32). Products: four of N x V_local x H per step. Other arguments as
    vocab_parallel_cross_entropy's.
    """
    return _VocabParallelLinearCrossEntropy.apply(input, linear_weight_shard, linear_bias, target, weight,
                                                  int(vocab_start), group, data_group,
                                                  (int(ignore_index), reduction, float(label_smoothing),
                                                   float(z_loss), softcap))
