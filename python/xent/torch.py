"""xent as a PyTorch loss: `xent.torch.cross_entropy` is a drop-in for torch.nn.functional.cross_entropy.

    import xent.torch
    loss = xent.torch.cross_entropy(logits, target)          # logits [N, C] (or the class axis at `axis`)
    loss.backward()                                           # one fused xent pass writes grad_logits

CPU tensors of float32, float64, float16 and bfloat16, read in place with their strides (no copy). Options as in
`xent.cross_entropy`: weight, ignore_index, reduction, label_smoothing (PyTorch's semantics), z_loss, softcap.
Note: `axis` defaults to -1 (TensorFlow's convention); torch puts the class axis at dim 1, which is the same for
2-D inputs; pass axis=1 for [N, C, d1, ...] inputs.

Memory: forward saves references to logits, target and weight (no copies) and nothing else; backward recomputes
each row's max and sum in the same pass that writes the gradient, reading logits once. PyTorch's own
cross_entropy keeps its log_softmax output (one value per logit) alive between forward and backward.
Higher derivatives (create_graph=True, Hessian-vector products) differentiate a PyTorch expression of the same
gradient, g * ((sum(a) + 2*z_loss*lse) * softmax(x') - a) * dx'/dx, which materialises softmax for that call.
"""
import math

import torch

from . import _check_options, _vocab_parallel, _xent

__all__ = ["cross_entropy", "CrossEntropyLoss", "linear_cross_entropy", "LinearCrossEntropyLoss",
           "vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]

_DTYPES = {getattr(torch, name): int(value) for name, value in _xent.dtype.__members__.items()}
_REDUCTIONS = {name: int(value) for name, value in _xent.reduction.__members__.items()}


def _descriptor(t, name):
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, received one on {t.device}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name} has dtype {t.dtype}; xent takes float16, bfloat16, float32, float64 "
                        f"(and int32/int64 class indices)")
    return (t.data_ptr(), _DTYPES[t.dtype], tuple(t.shape), tuple(t.stride()))


def _run(logits, target, axis, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, grad_loss,
         gradients):
    logits_d, target_d = _descriptor(logits, "logits"), _descriptor(target, "target")
    loss = torch.empty(_xent.loss_shape_raw(logits_d, target_d, axis, _REDUCTIONS[reduction]), dtype=logits.dtype)
    grad_logits = torch.empty_like(logits, memory_format=torch.contiguous_format) if gradients else None
    _xent.cross_entropy_raw(
        logits_d, target_d, axis,
        None if weight is None else _descriptor(weight, "weight"), ignore_index, _REDUCTIONS[reduction],
        float(label_smoothing), float(z_loss), 0.0 if softcap is None else float(softcap),
        None if grad_loss is None else _descriptor(grad_loss, "grad_loss"), _descriptor(loss, "loss"),
        None if grad_logits is None else _descriptor(grad_logits, "grad_logits"))
    return loss, grad_logits


def _gradient_expression(logits, target, axis, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
                         grad_loss):
    """The gradient wrt logits as a differentiable PyTorch expression (for double backward)."""
    x = logits.movedim(axis, -1)
    C = x.shape[-1]
    xp = softcap * torch.tanh(x / softcap) if softcap is not None else x
    w = weight if weight is not None else torch.ones(C, dtype=x.dtype)
    eps = label_smoothing
    if target.is_floating_point():
        a = w * ((1 - eps) * target.movedim(axis, -1) + eps / C)
        keep = torch.ones(a.shape[:-1], dtype=x.dtype)
        denominator = torch.tensor(float(keep.numel()), dtype=x.dtype)
    else:
        keep_mask = target != ignore_index
        safe = torch.where(keep_mask, target, torch.zeros_like(target))
        onehot = torch.nn.functional.one_hot(safe, C).to(x.dtype)
        a = (1 - eps) * w[safe].unsqueeze(-1) * onehot + eps / C * w
        keep = keep_mask.to(x.dtype)
        a = a * keep.unsqueeze(-1)
        denominator = (w[safe] * keep).sum()
    lse = torch.logsumexp(xp, dim=-1, keepdim=True)
    p = torch.softmax(xp, dim=-1)
    g = grad_loss
    if reduction == "mean":
        g = torch.where(denominator > 0, g / denominator, torch.zeros_like(g))
    g = (g * keep).unsqueeze(-1)
    grad = g * ((a.sum(-1, keepdim=True) + 2 * z_loss * lse) * p - a)
    if softcap is not None:
        grad = grad * (1 - (xp / softcap) ** 2)
    return grad.movedim(-1, axis)


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, weight, axis, ignore_index, reduction, label_smoothing, z_loss, softcap):
        loss, _ = _run(logits, target, axis, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
                       None, False)
        ctx.save_for_backward(logits, target, weight)
        ctx.options = (axis, ignore_index, reduction, label_smoothing, z_loss, softcap)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        logits, target, weight = ctx.saved_tensors
        axis, ignore_index, reduction, label_smoothing, z_loss, softcap = ctx.options
        if torch.is_grad_enabled():  # create_graph=True: a differentiable expression of the same gradient
            grad = _gradient_expression(logits, target, axis, weight, ignore_index, reduction, label_smoothing,
                                        z_loss, softcap, grad_loss)
        else:
            _, grad = _run(logits.detach(), target, axis, weight, ignore_index, reduction, label_smoothing, z_loss,
                           softcap, grad_loss.detach().to(logits.dtype), True)
        if ctx.needs_input_grad[1]:
            raise NotImplementedError("xent.torch.cross_entropy: gradient wrt target is not implemented; use "
                                      "xent.softmax_cross_entropy_with_logits_grad")
        return grad, None, None, None, None, None, None, None, None


def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, z_loss=0.0, softcap=None):
    """Drop-in for torch.nn.functional.cross_entropy (class axis `axis`, default -1), with z_loss and softcap."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', received {reduction!r}")
    if target.is_floating_point() and target.dtype != logits.dtype:
        raise TypeError(f"target probabilities must have logits' dtype {logits.dtype}, received {target.dtype}")
    if weight is not None and weight.dtype != logits.dtype:
        raise TypeError(f"weight must have logits' dtype {logits.dtype}, received {weight.dtype}")
    return _CrossEntropy.apply(logits, target, weight, axis, int(ignore_index), reduction, float(label_smoothing),
                               float(z_loss), softcap)


class CrossEntropyLoss(torch.nn.Module):
    """torch.nn.CrossEntropyLoss's counterpart: the options of cross_entropy, fixed at construction."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                 softcap=None, axis=-1):
        super().__init__()
        self.register_buffer("weight", weight)
        self.options = dict(axis=axis, ignore_index=ignore_index, reduction=reduction,
                            label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap)

    def forward(self, logits, target):
        return cross_entropy(logits, target, weight=self.weight, **self.options)


# ---- The fused linear + cross-entropy

def _optional(t, name):
    return None if t is None else _descriptor(t, name)


def _linear_run(input, linear_weight, linear_bias, target, weight, options, grad_loss, wanted):
    """Runs the fused op: the loss, and the gradients `wanted` (input, weight, bias) as new tensors (or None)."""
    ignore_index, reduction, label_smoothing, z_loss, softcap = options
    loss = torch.empty(tuple(target.shape) if reduction == "none" else (), dtype=input.dtype)
    grads = [torch.empty(t.shape, dtype=t.dtype) if want and t is not None else None
             for t, want in zip((input, linear_weight, linear_bias), wanted)]
    _xent.linear_raw(
        _descriptor(input, "input"), _descriptor(linear_weight, "linear_weight"), _descriptor(target, "target"),
        _optional(linear_bias, "linear_bias"), _optional(weight, "weight"), ignore_index, _REDUCTIONS[reduction],
        label_smoothing, z_loss, 0.0 if softcap is None else float(softcap), _optional(grad_loss, "grad_loss"),
        _descriptor(loss, "loss"), *[_optional(g, "gradient") for g in grads])
    return loss, grads


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, linear_weight, linear_bias, target, weight, options):
        wanted = ctx.needs_input_grad[:3]
        reduction = options[1]
        ctx.options = options
        if not any(wanted):  # eval, torch.no_grad(), or frozen parameters: the forward alone
            loss, _ = _linear_run(input, linear_weight, linear_bias, target, weight, options, None, (False,) * 3)
            return loss
        if reduction != "none":
            # A reduced loss has one upstream gradient: the gradients for 1 are computed in this same pass and the
            # backward only scales them (no second pass over the vocabulary).
            loss, grads = _linear_run(input, linear_weight, linear_bias, target, weight, options, None, wanted)
            ctx.scaled = True
            ctx.save_for_backward(*[g if g is not None else torch.empty(0) for g in grads])
            return loss
        # Per-row upstream gradients are only known in the backward, which runs the fused op with them.
        loss, _ = _linear_run(input, linear_weight, linear_bias, target, weight, options, None, (False,) * 3)
        ctx.scaled = False
        ctx.save_for_backward(input, linear_weight, linear_bias if linear_bias is not None else torch.empty(0),
                              target, weight if weight is not None else torch.empty(0))
        ctx.has_bias, ctx.has_weight = linear_bias is not None, weight is not None
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        wanted = ctx.needs_input_grad[:3]
        if ctx.scaled:
            grads = list(ctx.saved_tensors)
            if not (grad_loss == 1).all():
                grads = [g * grad_loss.to(g.dtype) if want else None for g, want in zip(grads, wanted)]
        else:
            input, linear_weight, linear_bias, target, weight = ctx.saved_tensors
            _, grads = _linear_run(input, linear_weight, linear_bias if ctx.has_bias else None, target,
                                   weight if ctx.has_weight else None, ctx.options,
                                   grad_loss.to(input.dtype).contiguous(), wanted)
        grads = [g if want else None for g, want in zip(grads, wanted)]
        return grads[0], grads[1], grads[2], None, None, None


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None, reduction="mean",
                         ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None):
    """cross_entropy(input @ linear_weight.T + linear_bias, target) without ever holding the logits.

    The signature of PyTorch 2's F.linear_cross_entropy, plus z_loss and softcap. input [..., H], linear_weight
    [V, H], linear_bias [V] (float32, float64, bfloat16 or float16 CPU tensors, any strides), target: class indices
    of input's shape without its last dimension. Differentiable in input, linear_weight and linear_bias. With a
    reduced loss the gradients are computed in the forward pass (for an upstream gradient of 1) and the backward
    scales them; with reduction='none' the backward runs the fused op again with the per-row upstream gradients.
    Without gradients (eval, torch.no_grad()) only the forward runs. See xent.linear_cross_entropy.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', received {reduction!r}")
    for t, name in ((linear_weight, "linear_weight"), (linear_bias, "linear_bias"), (weight, "weight")):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(f"{name} must have input's dtype {input.dtype}, received {t.dtype}")
    if softcap is not None and not softcap > 0:
        raise ValueError(f"softcap must be > 0 (or None for no soft-capping), received {softcap}")
    options = (int(ignore_index), reduction, float(label_smoothing), float(z_loss), softcap)
    return _LinearCrossEntropy.apply(input, linear_weight, linear_bias, target, weight, options)


class LinearCrossEntropyLoss(torch.nn.Module):
    """A language-model head and its loss in one module: owns the linear layer's weight [num_classes, in_features]
    (and bias), initialised as torch.nn.Linear's, and returns linear_cross_entropy(input, weight, target) without
    holding the logits. `weight` here is the class weight of the loss (stored as `class_weight`)."""

    def __init__(self, in_features, num_classes, *, bias=False, dtype=None, reduction="mean", weight=None,
                 ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None):
        super().__init__()
        self.in_features, self.num_classes = in_features, num_classes
        self.weight = torch.nn.Parameter(torch.empty(num_classes, in_features, dtype=dtype))
        self.bias = torch.nn.Parameter(torch.empty(num_classes, dtype=dtype)) if bias else None
        self.register_buffer("class_weight", weight)
        self.options = dict(reduction=reduction, ignore_index=ignore_index, label_smoothing=label_smoothing,
                            z_loss=z_loss, softcap=softcap)
        self.reset_parameters()

    def reset_parameters(self):
        """Initialises weight and bias as torch.nn.Linear does."""
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input, target):
        return linear_cross_entropy(input, self.weight, target, linear_bias=self.bias, weight=self.class_weight,
                                    **self.options)

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
    return _vocab_parallel.Options(_optional(weight, "weight"), ignore_index, _REDUCTIONS[reduction], label_smoothing,
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
    _check_options(reduction, ignore_index, softcap)
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
