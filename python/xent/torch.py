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
import torch

from . import _xent

__all__ = ["cross_entropy", "CrossEntropyLoss"]

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
